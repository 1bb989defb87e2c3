"""Trigger scenarios: a fired trigger starts a mission of every subscribed definition, each
parsing the payload its own way; fires are recorded, idempotent under an id, and replayed to the
definitions subscribed at the time of the replay, after their missions were purged too."""

from __future__ import annotations

from typing import Any, cast

import pytest

from mission_control.core import (
    Context,
    InvalidInputError,
    MissionDefinition,
    MissionStatus,
    TriggerExistsError,
    TriggerNotFoundError,
    m,
)
from mission_control.core.storage import PersistenceAdapter, TriggerStore
from mission_control.in_memory_commander import ManualClock

from ._engine_scenarios import ScenarioFixtures

MISSED = "heartbeat.missed"


def _service(raw: Any) -> dict[str, Any]:
    fields = cast("dict[str, Any]", raw) if isinstance(raw, dict) else {}
    if not isinstance(fields.get("service"), str):
        raise ValueError("needs {'service': str}")
    return fields


def _incident() -> MissionDefinition[Any, Any, Any]:
    """Opens an incident for the payload's service, then waits to be resolved."""

    def open_incident(ctx: Context[Any, None]) -> str:
        return f"incident for {ctx.input['service']}"

    return (
        m.define("incident")
        .start(parse=_service, run=open_incident)
        .need_to("resolve", parse=lambda raw: raw)
        .triggered_by(MISSED)
        .end()
    )


def _service_name(raw: Any) -> str:
    return str(_service(raw)["service"])


def _page() -> MissionDefinition[Any, Any, Any]:
    """Pages whoever is on call: takes the service name only, and completes at once."""
    return (
        m.define("page")
        .start(parse=_service_name, run=lambda ctx: f"paged {ctx.input}")
        .triggered_by(MISSED, "deploy.failed")
        .end()
    )


def _audit() -> MissionDefinition[Any, Any, Any]:
    """Subscribed to nothing."""
    return m.define("audit").start(parse=_service).end()


def _late() -> MissionDefinition[Any, Any, Any]:
    """Subscribed to the heartbeat trigger by a later deploy."""
    return m.define("late").start(parse=_service).triggered_by(MISSED).end()


class TriggerConformance(ScenarioFixtures):
    """Trigger scenarios every persistence adapter that records fires must pass (skipped on
    one that records none). Subclass it and provide ``persistence``."""

    def _trigger_store(self, persistence: PersistenceAdapter) -> TriggerStore:
        if not isinstance(persistence, TriggerStore):
            pytest.skip("the adapter records no fired triggers (no TriggerStore)")
        return persistence

    async def test_a_fired_trigger_starts_a_mission_of_every_subscribed_definition(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """Firing 'heartbeat.missed' starts one mission of each definition subscribed to it
        (each parsing the payload its own way, each run to its first wait), none of the others,
        and records the fire with their ids."""
        self._trigger_store(persistence)
        commander = self.commander(persistence, clock, _incident(), _page(), _audit())
        fire = await commander.fire_trigger(MISSED, {"service": "api"}, id="hb-1")
        assert fire.missions == ("hb-1:incident", "hb-1:page")
        assert fire.name == MISSED
        assert fire.payload == {"service": "api"}
        assert fire.fired_at == clock.now()
        assert fire.replay_of is None
        incident = await commander.inspect("hb-1:incident")
        assert incident.status is MissionStatus.WAITING
        assert incident.nodes["start"].output == "incident for api"
        page = await commander.inspect("hb-1:page")
        assert page.status is MissionStatus.COMPLETED
        assert page.nodes["start"].output == "paged api"
        assert [s.id async for s in commander.iter_missions()] == [
            "hb-1:incident",
            "hb-1:page",
        ]
        assert await commander.get_trigger("hb-1") == fire
        other = await commander.fire_trigger("deploy.failed", {"service": "web"}, id="d-1")
        assert other.missions == ("d-1:page",)
        assert await commander.list_triggers() == [other, fire]
        assert await commander.list_triggers(name=MISSED) == [fire]
        assert await commander.list_triggers(after_id="d-1") == [fire]

    async def test_a_payload_one_subscriber_refuses_starts_and_records_nothing(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """When one subscribed definition's start refuses the payload, the fire raises
        InvalidInputError naming it, and no mission and no fire are stored."""
        self._trigger_store(persistence)
        commander = self.commander(persistence, clock, _incident(), _page())
        with pytest.raises(InvalidInputError, match="mission 'incident' rejected its input"):
            await commander.fire_trigger(MISSED, {"host": "api"}, id="hb-bad")
        assert [s.id async for s in commander.iter_missions()] == []
        assert await commander.list_triggers() == []
        with pytest.raises(TriggerNotFoundError):
            await commander.get_trigger("hb-bad")

    async def test_firing_again_under_an_id_starts_nothing_twice(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """A fire repeated under its id returns the recorded fire and starts nothing; under an
        id taken by another payload it raises TriggerExistsError; without an id each fire is
        new."""
        self._trigger_store(persistence)
        commander = self.commander(persistence, clock, _incident(), _page())
        first = await commander.fire_trigger(MISSED, {"service": "api"}, id="hb-1")
        clock.advance(60)
        assert await commander.fire_trigger(MISSED, {"service": "api"}, id="hb-1") == first
        with pytest.raises(TriggerExistsError, match="'hb-1'"):
            await commander.fire_trigger(MISSED, {"service": "db"}, id="hb-1")
        one = await commander.fire_trigger(MISSED, {"service": "db"})
        two = await commander.fire_trigger(MISSED, {"service": "db"})
        assert len({first.id, one.id, two.id}) == 3
        assert len([s async for s in commander.iter_missions()]) == 6

    async def test_a_recorded_fire_is_replayed_to_the_definitions_subscribed_now(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """A replay fires the recorded payload again as a new fire naming the original, to the
        definitions subscribed at the replay (a later deploy's included), after the original's
        missions were purged; replaying under an id is idempotent."""
        self._trigger_store(persistence)
        first = self.commander(persistence, clock, _page())
        original = await first.fire_trigger(MISSED, {"service": "api"}, id="hb-1")
        clock.advance(3600)
        purged = await first.purge(finished_before=clock.now())
        assert purged.deleted == 1
        deployed = self.commander(persistence, clock, _page(), _late())
        replay = await deployed.replay_trigger("hb-1", id="hb-1-replay")
        assert replay.replay_of == "hb-1"
        assert replay.payload == original.payload
        assert replay.name == MISSED
        assert replay.missions == ("hb-1-replay:late", "hb-1-replay:page")
        for mission_id in replay.missions:
            assert (await deployed.inspect(mission_id)).status is MissionStatus.COMPLETED
        assert await deployed.replay_trigger("hb-1", id="hb-1-replay") == replay
        assert await deployed.get_trigger("hb-1") == original
        with pytest.raises(TriggerNotFoundError):
            await deployed.replay_trigger("nope")

    async def test_a_trigger_nobody_subscribes_to_is_recorded_and_replayable(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """A fire of a trigger no definition subscribes to starts nothing and is recorded; once
        a definition subscribes, replaying it starts that definition's mission."""
        self._trigger_store(persistence)
        before = self.commander(persistence, clock, _audit())
        fire = await before.fire_trigger(MISSED, {"service": "api"}, id="early")
        assert fire.missions == ()
        after = self.commander(persistence, clock, _late())
        replay = await after.replay_trigger("early", id="early-again")
        assert replay.missions == ("early-again:late",)

    async def test_a_background_fire_leaves_its_missions_to_the_runtime(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """With background=True the fire stores each mission waiting for its start, due now,
        and runs nothing in the caller's task."""
        self._trigger_store(persistence)
        commander = self.commander(persistence, clock, _page())
        fire = await commander.fire_trigger(MISSED, {"service": "api"}, background=True)
        (mission_id,) = fire.missions
        waiting = await commander.inspect(mission_id)
        assert waiting.status is MissionStatus.WAITING
        assert await commander.due_missions(10) == [mission_id]
        await commander.advance(mission_id)
        assert (await commander.inspect(mission_id)).status is MissionStatus.COMPLETED
