"""Concurrency key scenarios: at most ``limit`` missions with one key run at once, the others
wait in start order and begin when a slot frees (also when the mission holding it ended without
giving it back, as after a crash); singletons refuse or join; run by a commander on the adapter
under test."""

from __future__ import annotations

from typing import Any

import anyio
import attrs
import pytest

from mission_control.core import (
    SLOT_RECHECK,
    Commander,
    ConcurrencyLimitError,
    MissionSnapshot,
    MissionStatus,
    SubmissionState,
    WaitKind,
    m,
)
from mission_control.core.storage import (
    ConcurrencyStore,
    Gate,
    PersistenceAdapter,
    RevisionConflictError,
)
from mission_control.in_memory_commander import ManualClock

from ._control_flow_scenarios import accept
from ._engine_scenarios import ScenarioFixtures, drain_due
from ._protocol_battery import build_snapshot


def _customer(value: dict[str, Any]) -> str:
    return str(value["customer"])


def _keyed(limit: int, when_busy: Any = "queue", name: str = "keyed") -> Any:
    """A mission that holds its key's slot until it is signalled ``done``."""
    return (
        m.define(name)
        .start(parse=accept)
        .concurrency(_customer, limit=limit, when_busy=when_busy)
        .need_to("done", parse=accept)
        .end(output=lambda ctx: ctx.events["done"].output)
    )


def _holding(snapshot: MissionSnapshot) -> bool:
    """Whether the mission holds a slot: it began and has not ended."""
    waiting_for_slot = any(wait.kind is WaitKind.SLOT for wait in snapshot.waits)
    return not snapshot.is_terminal and not waiting_for_slot


async def _holders(commander: Commander) -> list[str]:
    return [s.id for s in await commander.list(limit=1000) if _holding(s)]


class ConcurrencyConformance(ScenarioFixtures):
    """Concurrency key scenarios every persistence adapter with a ``ConcurrencyStore`` must
    pass (skipped on one without). Subclass it and provide ``persistence``, and ``submitter``
    for an adapter whose other processes submit work to the one that owns the store."""

    @pytest.fixture
    def submitter(self) -> PersistenceAdapter | None:
        """An adapter on the store ``persistence`` keeps, opened as a process that submits its
        starts to it (``None``: the adapter has no such processes; their scenarios skip)."""
        return None

    def _gates(self, persistence: PersistenceAdapter) -> ConcurrencyStore:
        if not isinstance(persistence, ConcurrencyStore):
            pytest.skip("the adapter keeps no concurrency keys (no ConcurrencyStore)")
        return persistence

    async def test_submitted_starts_of_one_key_applied_side_by_side_are_all_decided_at_once(
        self,
        persistence: PersistenceAdapter,
        submitter: PersistenceAdapter | None,
        clock: ManualClock,
    ) -> None:
        """Four submitted starts of a joining singleton, of one key, applied side by side by
        one apply_submissions (no runtime): the first applied stores its mission, the others
        lose the key's compare-and-set, retry and join it, and every one is decided in that
        same round (a write that lost its compare-and-set gives the submission's mark back to
        the retry), its verdict the mission stored."""
        self._gates(persistence)
        if submitter is None:
            pytest.skip("the adapter takes no submissions from other processes")
        joining = _keyed(1, when_busy="join", name="joining")
        owner = self.commander(persistence, clock, joining)
        submitting = self.commander(submitter, clock, joining)
        submitted = [
            await submitting.submit_start(joining, {"customer": "c"}, id=f"j{n}") for n in range(4)
        ]
        assert await owner.apply_submissions(10) == 4
        states = [(await submitting.submission(s.seq)).state for s in submitted]
        assert states == [SubmissionState.APPLIED] * 4
        [first] = [s.id for s in await owner.list()]  # the one applied first, whichever
        joined = [(await submitting.submission(s.seq)).joined for s in submitted]
        assert sorted(j or "" for j in joined) == ["", first, first, first]
        with anyio.fail_after(10):
            verdicts = [(await submitting.verdict(s)).id for s in submitted]
        assert verdicts == [first] * 4

    async def test_fifty_missions_of_one_key_with_limit_two_never_run_more_than_two_at_once(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """50 missions of one key started at once with limit 2: two begin, the other 48 wait
        for a slot; each time a running one ends the first waiting begins, so that never more
        than two run and they begin in start order; a mission of another key is not held
        back."""
        self._gates(persistence)
        flow = _keyed(2)
        commander = self.commander(persistence, clock, flow)
        ids = [f"k-{n:02}" for n in range(50)]

        async def start(mission_id: str) -> None:
            await commander.start(flow, {"customer": "c-1"}, id=mission_id)

        async with anyio.create_task_group() as group:
            for mission_id in ids:
                group.start_soon(start, mission_id)
        other = await commander.start(flow, {"customer": "c-2"}, id="other")
        assert (await other.inspect()).status is MissionStatus.WAITING
        assert "other" in await _holders(commander)

        began: list[str] = []
        for _ in ids:
            holders = [h for h in await _holders(commander) if h != "other"]
            assert 1 <= len(holders) <= 2
            began.extend(h for h in holders if h not in began)
            await commander.signal(holders[0], "done", "ok")
            await drain_due(commander)
        assert len(began) == 50
        assert sorted(began) == ids
        finished = await commander.list(status=MissionStatus.COMPLETED, limit=1000)
        assert len(finished) == 50

    async def test_a_serialized_key_runs_its_missions_one_after_another_in_start_order(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """With limit 1 the missions of a key begin one after another, each once the one before
        it ended, in the order they were started; the waiting ones say so in their wait."""
        self._gates(persistence)
        flow = _keyed(1)
        commander = self.commander(persistence, clock, flow)
        for mission_id in ("s-3", "s-1", "s-2"):
            await commander.start(flow, {"customer": "c"}, id=mission_id)
        waiting = await commander.inspect("s-1")
        assert waiting.wait is not None
        assert waiting.wait.kind is WaitKind.SLOT
        assert waiting.concurrency_key == "keyed/c"
        order: list[str] = []
        for _ in range(3):
            (holder,) = await _holders(commander)
            order.append(holder)
            await commander.signal(holder, "done", None)
            await drain_due(commander)
        assert order == ["s-3", "s-1", "s-2"]

    async def test_a_singleton_refuses_or_joins_while_its_key_runs(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """A refusing singleton's second start raises ConcurrencyLimitError and stores nothing;
        a joining one returns the running mission; once that ended, a start runs again."""
        self._gates(persistence)
        refusing = _keyed(1, when_busy="refuse")
        commander = self.commander(persistence, clock, refusing)
        await commander.start(refusing, {"customer": "c"}, id="r-1")
        with pytest.raises(ConcurrencyLimitError, match="'c' has 1 of 1 running"):
            await commander.start(refusing, {"customer": "c"}, id="r-2")
        assert [s.id for s in await commander.list()] == ["r-1"]
        await commander.signal("r-1", "done", None)
        again = await commander.start(refusing, {"customer": "c"}, id="r-2")
        assert (await again.inspect()).status is MissionStatus.WAITING

        joining = _keyed(1, when_busy="join")
        other = self.commander(persistence, clock, joining)
        await other.signal("r-2", "done", None)
        first = await other.start(joining, {"customer": "j"}, id="j-1")
        joined = await other.start(joining, {"customer": "j"}, id="j-2")
        assert joined.id == first.id == "j-1"
        with pytest.raises(Exception, match="no mission"):
            await other.inspect("j-2")

    async def test_singleton_starts_at_once_leave_one_mission_holding_the_key(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """Six concurrent starts of a refusing singleton with one key (half of them background
        starts): one returns, five raise ConcurrencyLimitError, and only its mission is stored;
        six concurrent starts of a joining one all return the one mission stored."""
        self._gates(persistence)
        refusing = _keyed(1, when_busy="refuse")
        joining = _keyed(1, when_busy="join", name="joining")
        commander = self.commander(persistence, clock, refusing, joining)
        outcomes: dict[str, list[str]] = {"keyed": [], "joining": []}

        async def start(flow: Any, n: int) -> None:
            try:
                handle = await commander.start(
                    flow, {"customer": "c"}, id=f"{flow.name}-{n}", background=n % 2 == 0
                )
            except ConcurrencyLimitError:
                outcomes[flow.name].append("refused")
                return
            outcomes[flow.name].append(handle.id)

        for flow in (refusing, joining):
            async with anyio.create_task_group() as group:
                for n in range(6):
                    group.start_soon(start, flow, n)
        stored = [s.id for s in await commander.list()]
        assert len(stored) == 2
        keyed, joined = sorted(stored, key=lambda mission_id: mission_id.startswith("joining"))
        assert sorted(outcomes["keyed"]) == [keyed] + ["refused"] * 5
        assert outcomes["joining"] == [joined] * 6

    async def test_insert_holding_stores_the_mission_and_its_gate_together_or_nothing(
        self, persistence: PersistenceAdapter
    ) -> None:
        """``insert_holding`` stores the mission and the gate that names it in one write: with
        the gate changed since it was read it raises RevisionConflictError and stores neither;
        with the mission's id taken it returns the stored mission and leaves the gate alone."""
        gates = self._gates(persistence)
        await gates.save_gate(Gate("k/x", 2, ("m-0",), (), 1), expected_revision=0)
        holding = Gate("k/x", 2, ("m-0", "m-1"), (), 1)
        with pytest.raises(RevisionConflictError):
            await gates.insert_holding(build_snapshot("m-1"), [], holding, expected_revision=0)
        assert await persistence.load("m-1") is None
        assert await gates.load_gate("k/x") == Gate("k/x", 2, ("m-0",), (), 1)

        holding = attrs.evolve(holding, revision=2)
        assert (
            await gates.insert_holding(build_snapshot("m-1"), [], holding, expected_revision=1)
            is None
        )
        stored = await persistence.load("m-1")
        assert stored is not None
        assert await gates.load_gate("k/x") == holding

        again = Gate("k/x", 2, ("m-0", "m-1", "m-1"), (), 3)
        existing = await gates.insert_holding(build_snapshot("m-1"), [], again, expected_revision=2)
        assert existing == stored
        assert await gates.load_gate("k/x") == holding

    async def test_cancelling_a_holder_or_a_waiting_mission_gives_its_slot_or_place_up(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """A waiting mission cancelled leaves the queue; the running one cancelled gives its
        slot to the next that waits, which begins."""
        self._gates(persistence)
        flow = _keyed(1)
        commander = self.commander(persistence, clock, flow)
        for mission_id in ("x-1", "x-2", "x-3"):
            await commander.start(flow, {"customer": "c"}, id=mission_id)
        await commander.cancel("x-2", "not needed")
        await commander.cancel("x-1", "stop")
        await drain_due(commander)
        assert await _holders(commander) == ["x-3"]

    async def test_a_paused_waiting_mission_is_passed_over_and_keeps_its_place(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """A mission paused while it waits for a slot does not take one: a freed slot goes to
        the next waiting mission that is not paused, and the paused one, resumed, takes the
        next slot that frees before the missions queued after it."""
        self._gates(persistence)
        flow = _keyed(1)
        commander = self.commander(persistence, clock, flow)
        for mission_id in ("y-1", "y-2", "y-3", "y-4"):
            await commander.start(flow, {"customer": "c"}, id=mission_id)
        await commander.pause("y-2", "not now")
        await commander.signal("y-1", "done", 1)
        await drain_due(commander)
        assert await _holders(commander) == ["y-3"]
        assert (await commander.inspect("y-2")).status is MissionStatus.PAUSED

        resumed = await commander.resume("y-2")
        assert resumed.status is MissionStatus.WAITING
        assert not _holding(resumed)  # y-3 holds the one slot
        await commander.signal("y-3", "done", 3)
        await drain_due(commander)
        assert await _holders(commander) == ["y-2"]

    async def test_a_slot_whose_holder_ended_without_giving_it_back_is_taken_back(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """A gate that still names a mission that ended (a crash between its end and giving its
        slot up) holds nothing back for long: the waiting mission looks at its key again after
        SLOT_RECHECK (a due time the runtime ticks for), takes the slot and begins."""
        gates = self._gates(persistence)
        flow = _keyed(1)
        commander = self.commander(persistence, clock, flow)
        await commander.start(flow, {"customer": "c"}, id="h-1")
        await commander.start(flow, {"customer": "c"}, id="h-2")
        # The crash: h-1's end was stored, and the process died before it gave its slot up.
        holder = await persistence.load("h-1")
        assert holder is not None
        ended = attrs.evolve(
            holder,
            status=MissionStatus.COMPLETED,
            active=(),
            waits=(),
            current_node=None,
            revision=holder.revision + 1,
        )
        await persistence.commit(ended, expected_revision=holder.revision, timeline=[])
        gate = await gates.load_gate("keyed/c")
        assert gate is not None
        assert (gate.running, gate.queued) == (("h-1",), ("h-2",))
        assert await drain_due(commander) == []
        assert await _holders(commander) == []
        assert await commander.next_due_at() == clock.now() + SLOT_RECHECK
        clock.advance(SLOT_RECHECK)
        await drain_due(commander)
        assert await _holders(commander) == ["h-2"]

    async def test_the_tenants_of_a_key_never_share_its_slots(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """Two tenants' missions with the same key each have the key's slots to themselves: a
        joining singleton of one tenant never returns the other tenant's mission."""
        self._gates(persistence)
        joining = _keyed(1, when_busy="join")
        commander = self.commander(persistence, clock, joining)
        acme = await commander.start(joining, {"customer": "c"}, id="t-1", tenant="acme")
        beta = await commander.start(joining, {"customer": "c"}, id="t-1", tenant="beta")
        again = await commander.start(joining, {"customer": "c"}, id="t-2", tenant="beta")
        assert (acme.tenant, beta.tenant, again.tenant) == ("acme", "beta", "beta")
        assert again.id == "t-1"
        for handle in (acme, beta):
            waiting = await handle.inspect()
            assert waiting.wait is not None
            assert waiting.wait.kind is WaitKind.SIGNAL  # began: at its need_to, not its slot

    async def test_gates_of_other_definitions_or_tenants_never_meet_whatever_their_names(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """Definition ``a`` with key ``"b/c"`` and definition ``a/b`` with key ``"c"`` have
        gates of their own, and so do a definition named ``"acme::sync"`` of no tenant and
        tenant acme's ``sync`` with the same key: neither refuses nor joins the other."""
        self._gates(persistence)

        def single(name: str, when_busy: str) -> Any:
            return (
                m.define(name)
                .start(parse=accept)
                .concurrency(_customer, limit=1, when_busy=when_busy)  # pyright: ignore[reportArgumentType]
                .need_to("done", parse=accept)
                .end()
            )

        a, a_b = single("a", "refuse"), single("a/b", "refuse")
        sync, lookalike = single("sync", "join"), single("acme::sync", "join")
        commander = self.commander(persistence, clock, a, a_b, sync, lookalike)
        await commander.start(a, {"customer": "b/c"}, id="g-1")
        second = await commander.start(a_b, {"customer": "c"}, id="g-2")
        assert second.id == "g-2"
        await commander.start(sync, {"customer": "x"}, id="s-1", tenant="acme")
        other = await commander.start(lookalike, {"customer": "x"}, id="s-2")
        assert (other.id, other.tenant) == ("s-2", None)
        assert await _holders(commander) == ["g-1", "g-2", "s-2"]
        assert _holding(await commander.inspect("s-1", tenant="acme"))

    async def test_a_refusal_names_the_definition_the_key_and_the_callers_ids(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """A refused start's ConcurrencyLimitError names the definition as one, the key the
        caller's input gave, and the running missions by the ids the caller knows them by
        (not a tenant's stored keys)."""
        self._gates(persistence)
        refusing = _keyed(1, when_busy="refuse")
        commander = self.commander(persistence, clock, refusing)
        await commander.start(refusing, {"customer": "c/d"}, id="r-1", tenant="acme")
        with pytest.raises(ConcurrencyLimitError) as refused:
            await commander.start(refusing, {"customer": "c/d"}, id="r-2", tenant="acme")
        assert str(refused.value).startswith(
            "definition 'keyed': concurrency key 'c/d' has 1 of 1 running (r-1)"
        )
        assert "acme::" not in str(refused.value)

    async def test_a_retried_or_forked_mission_waits_for_a_slot_of_its_key(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """With limit 1, a failed mission retried while another of its key holds the slot
        waits for a slot at the node it is retried from, and so does a fork: never more than
        one of the key runs; each begins, in turn, once the holder ends."""
        self._gates(persistence)
        failing = {"f-1": True}

        def work(ctx: Any) -> str:
            if failing.get(ctx.mission_id):
                raise RuntimeError("not yet")
            return "worked"

        flow = (
            m.define("keyed-work")
            .start(parse=accept)
            .concurrency(_customer, limit=1)
            .step("work", work)
            .need_to("done", parse=accept)
            .end()
        )
        commander = self.commander(persistence, clock, flow)
        await commander.start(flow, {"customer": "c"}, id="f-1")
        await commander.start(flow, {"customer": "c"}, id="f-2")
        assert (await commander.inspect("f-1")).status is MissionStatus.FAILED
        await drain_due(commander)
        assert await _holders(commander) == ["f-2"]

        failing["f-1"] = False
        retried = await commander.retry("f-1")
        assert retried.wait is not None
        assert retried.wait.kind is WaitKind.SLOT
        forked = await (await commander.fork("f-2", at_node="work", new_id="f-3")).inspect()
        assert forked.wait is not None
        assert forked.wait.kind is WaitKind.SLOT
        assert await _holders(commander) == ["f-2"]

        await commander.signal("f-2", "done", None)
        await drain_due(commander)
        assert await _holders(commander) == ["f-1"]
        assert (await commander.inspect("f-1")).nodes["work"].output == "worked"
        await commander.signal("f-1", "done", None)
        await drain_due(commander)
        assert await _holders(commander) == ["f-3"]
