"""Definition version scenarios: an upgraded definition registered beside the version missions in
flight started on, or without it; a node renamed or a step inserted under the same version
number; fingerprints recorded once per version; run by commanders on the adapter under test (a
later commander on the same adapter is a restart after a deploy)."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from mission_control.core import (
    Context,
    DefinitionVersionError,
    MissionDefinition,
    MissionStatus,
    UnknownDefinitionError,
    check_definitions,
    create_commander,
    fingerprint,
    m,
)
from mission_control.core.storage import DefinitionVersionStore, PersistenceAdapter
from mission_control.in_memory_commander import ManualClock, SequentialIds

from ._control_flow_scenarios import accept
from ._engine_scenarios import ScenarioFixtures


def _order(version: int, *, inserted: bool = False, renamed: bool = False) -> Any:
    """An order that reserves stock, waits for its payment and ships; ``inserted`` adds a
    fraud check before the payment, ``renamed`` calls the payment node ``payment``."""

    def reserve(ctx: Context[Any, Any]) -> str:
        return f"reserved by v{version}"

    built = m.define("order", version=version).start(parse=accept).step("reserve", reserve)
    if inserted:
        built = built.step("check-fraud", lambda ctx: "no fraud")
    built = built.need_to("payment" if renamed else "pay", parse=accept)
    return built.step("ship", lambda ctx: f"shipped by v{version}").end()


def _commander(
    persistence: PersistenceAdapter,
    clock: ManualClock,
    *definitions: MissionDefinition[Any, Any, Any],
    version_check: Any = "raise",
) -> Any:
    return create_commander(
        list(definitions),
        persistence=persistence,
        clock=clock,
        ids=SequentialIds(),
        version_check=version_check,
    )


class VersionConformance(ScenarioFixtures):
    """Definition version scenarios every persistence adapter that keeps fingerprints must pass
    (skipped on one that keeps none). Subclass it and provide ``persistence``."""

    def _store(self, persistence: PersistenceAdapter) -> DefinitionVersionStore:
        if not isinstance(persistence, DefinitionVersionStore):
            pytest.skip("the adapter keeps no definition fingerprints (no DefinitionVersionStore)")
        return persistence

    async def _v1_missions(
        self, persistence: PersistenceAdapter, clock: ManualClock, count: int = 2
    ) -> MissionDefinition[Any, Any, Any]:
        """``count`` missions of order version 1 waiting for their payment, ids o-0, o-1, …"""
        v1 = _order(1)
        first = _commander(persistence, clock, v1)
        await first.check_versions()
        for n in range(count):
            await first.start(v1, {}, id=f"o-{n}")
        return v1

    async def test_missions_in_flight_keep_their_version_beside_a_new_one(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """With v1 and v2 (a step inserted) registered, the check passes, a v1 mission in
        flight ends on v1 (the inserted step never runs for it) and a new start runs v2; each
        version's fingerprint is stored once."""
        store = self._store(persistence)
        v1 = await self._v1_missions(persistence, clock)
        v2 = _order(2, inserted=True)
        commander = _commander(persistence, clock, v1, v2)
        report = await commander.check_versions()
        assert report is not None
        assert report.ok
        assert report.in_use == (("order", 1),)
        assert commander.definitions == {"order": v2}
        assert commander.definition_versions == {("order", 1): v1, ("order", 2): v2}

        old = await commander.signal("o-0", "pay", {"paid": True})
        assert old.status is MissionStatus.COMPLETED
        assert old.definition_version == 1
        assert sorted(old.nodes) == ["end", "pay", "reserve", "ship", "start"]
        assert old.nodes["ship"].output == "shipped by v1"

        new = await (await commander.start(v2, {}, id="n-1")).signal("pay", {})
        assert new.definition_version == 2
        assert sorted(new.nodes) == ["check-fraud", "end", "pay", "reserve", "ship", "start"]
        assert new.nodes["reserve"].output == "reserved by v2"
        assert await store.fingerprints() == {
            ("order", 1): fingerprint(v1),
            ("order", 2): fingerprint(v2),
        }
        assert await store.versions_in_use() == [("order", 1)]

    async def test_a_version_in_use_but_not_registered_is_refused_at_start_naming_missions(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """v2 registered without v1 while v1 missions wait: check_versions raises
        DefinitionVersionError naming the version and its missions; a v1 mission moved anyway
        raises UnknownDefinitionError naming the versions, stored exactly as it was."""
        self._store(persistence)
        await self._v1_missions(persistence, clock, count=7)
        v2 = _order(2, inserted=True)
        commander = _commander(persistence, clock, v2)
        with pytest.raises(DefinitionVersionError) as raised:
            await commander.check_versions()
        (problem,) = raised.value.report.problems
        assert (problem.definition, problem.version, problem.kind) == ("order", 1, "missing")
        assert problem.missions == ("o-0", "o-1", "o-2", "o-3", "o-4")
        assert problem.more
        assert "definition 'order' version 1 is not registered" in str(raised.value)
        assert "o-0, o-1, o-2, o-3, o-4, …" in str(raised.value)

        before = await commander.inspect("o-0")
        with pytest.raises(UnknownDefinitionError) as moved:
            await commander.signal("o-0", "pay", {})
        assert str(moved.value) == (
            "mission 'o-0' runs on version 1 of definition 'order', which this commander was "
            "not given (it has version 2): a mission keeps the version it started on, so give "
            "the commander version 1 beside the others until its missions end"
        )
        assert await commander.inspect("o-0") == before

    async def test_a_paused_mission_keeps_its_version_in_use(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """A paused mission has not ended: its version is in use, and a commander given only
        a later version is refused at start naming it, as for a waiting one."""
        store = self._store(persistence)
        v1 = await self._v1_missions(persistence, clock, count=3)
        first = _commander(persistence, clock, v1)
        await first.pause("o-1")
        await first.cancel("o-0")
        await first.cancel("o-2")
        assert await store.versions_in_use() == [("order", 1)]
        assert await store.missions_on_version("order", 1, 5) == ["o-1"]
        with pytest.raises(DefinitionVersionError) as raised:
            await _commander(persistence, clock, _order(2)).check_versions()
        (problem,) = raised.value.report.problems
        assert (problem.version, problem.missions) == (1, ("o-1",))

    async def test_warn_logs_the_problem_and_lets_the_commander_start(
        self, persistence: PersistenceAdapter, clock: ManualClock, caplog: pytest.LogCaptureFixture
    ) -> None:
        """With version_check="warn", the same problem is logged as a warning naming the
        missions, and the report returned; new missions start on v2."""
        self._store(persistence)
        await self._v1_missions(persistence, clock)
        v2 = _order(2)
        commander = _commander(persistence, clock, v2, version_check="warn")
        with caplog.at_level(logging.WARNING, logger="mission_control.core"):
            report = await commander.check_versions()
        assert report is not None
        assert not report.ok
        assert "definition 'order' version 1 is not registered" in caplog.text
        assert "o-0, o-1" in caplog.text
        started = await commander.start(v2, {}, id="n-1")
        assert (await started.inspect()).definition_version == 2

    async def test_a_node_renamed_under_the_same_version_is_found_before_it_is_reached(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """v1 changed in place (its need_to renamed) is reported as changed, with both
        fingerprints and the missions, while they still wait; the same change as v2 beside
        the unchanged v1 passes."""
        store = self._store(persistence)
        v1 = await self._v1_missions(persistence, clock)
        renamed = _order(1, renamed=True)
        with pytest.raises(DefinitionVersionError) as raised:
            await _commander(persistence, clock, renamed).check_versions()
        (problem,) = raised.value.report.problems
        assert (problem.kind, problem.missions, problem.more) == ("changed", ("o-0", "o-1"), False)
        assert problem.stored == fingerprint(v1)
        assert problem.registered == fingerprint(renamed)
        assert "registered with another shape" in str(problem)
        # Nothing replaced: the stored shape is still the one the missions started on.
        assert (await store.fingerprints())[("order", 1)] == fingerprint(v1)
        report = await _commander(persistence, clock, v1, _order(2, renamed=True)).check_versions()
        assert report is not None
        assert report.ok

    async def test_a_step_inserted_under_the_same_version_is_reported_by_the_offline_check(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """check_definitions reports v1 with an inserted step as changed, and a version no
        fingerprint was stored for as unrecorded, writing nothing."""
        store = self._store(persistence)
        await self._v1_missions(persistence, clock)
        inserted = _order(1, inserted=True)
        report = await check_definitions(persistence, [inserted, _order(3)])
        assert [(p.version, p.kind) for p in report.problems] == [(1, "changed")]
        assert report.unrecorded == (("order", 3),)
        assert not report.ok
        assert ("order", 3) not in await store.fingerprints()

    async def test_missions_stored_before_fingerprints_take_the_registered_versions(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """Missions of a version with no stored fingerprint (stored before fingerprints
        existed) pass the check, and the registered version's fingerprint is recorded for
        them; a stale fingerprint of a version no unfinished mission uses is replaced."""
        store = self._store(persistence)
        v1 = _order(1)
        before = _commander(persistence, clock, v1)
        await before.start(v1, {}, id="old")
        done = _order(5)
        await store.record_fingerprints({("order", 5): fingerprint(_order(5, inserted=True))})
        assert ("order", 1) not in await store.fingerprints()
        report = await _commander(persistence, clock, v1, done).check_versions()
        assert report is not None
        assert report.ok
        assert report.unrecorded == (("order", 1),)
        assert await store.fingerprints() == {
            ("order", 1): fingerprint(v1),
            ("order", 5): fingerprint(done),
        }

    async def test_a_child_runs_on_the_version_its_parent_names(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """A parent's child node starts the version of the child definition it was built
        with, even when a later one is registered; both are checked and recorded."""
        store = self._store(persistence)
        ship_v1 = m.define("ship").start(parse=accept).need_to("picked", parse=accept).end()
        ship_v2 = (
            m.define("ship", version=2)
            .start(parse=accept)
            .step("label", lambda ctx: "label")
            .need_to("picked", parse=accept)
            .end()
        )
        parent = (
            m.define("parent").start(parse=accept).child("shipping", ship_v1, lambda ctx: {}).end()
        )
        commander = _commander(persistence, clock, parent, ship_v2)
        assert commander.definitions["ship"] is ship_v2
        await commander.check_versions()
        await commander.start(parent, {}, id="p")
        child = await commander.inspect("p/shipping")
        assert child.definition_version == 1
        await commander.signal("p/shipping", "picked", {})
        assert (await commander.inspect("p")).status is MissionStatus.COMPLETED
        assert set(await store.fingerprints()) == {("parent", 1), ("ship", 1), ("ship", 2)}
