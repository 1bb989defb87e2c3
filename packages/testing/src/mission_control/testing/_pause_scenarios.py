"""Pause and resume scenarios: missions paused while they wait or run, the signals and timers
that come meanwhile, and resuming them (also from a second commander, as after a restart), run
by a commander on the adapter under test."""

from __future__ import annotations

from datetime import timedelta
from functools import partial
from typing import Any

import anyio
import pytest

from mission_control.core import (
    Commander,
    Context,
    InvalidInputError,
    MissionNotActiveError,
    MissionSnapshot,
    MissionStatus,
    NodeStatus,
    Pause,
    TimelineKind,
    m,
)
from mission_control.core.storage import PersistenceAdapter
from mission_control.in_memory_commander import ManualClock

from ._control_flow_scenarios import accept
from ._engine_scenarios import ScenarioFixtures, drain_due
from ._protocol_battery import T0


class _Runs:
    """Steps that record that they ran, and may run a call on the commander from inside."""

    def __init__(self) -> None:
        self.ran: list[str] = []
        self.commander: Commander | None = None
        self.inside: dict[str, str] = {}
        """What a step does to its own mission while it runs: ``"pause"`` or ``"pause+resume"``."""

    def step(self, name: str) -> Any:
        async def run(ctx: Context[Any, Any]) -> str:
            self.ran.append(name)
            action = self.inside.get(name)
            if action is not None:
                assert self.commander is not None
                await self.commander.pause(ctx.mission_id, "from inside")
                if action == "pause+resume":
                    await self.commander.resume(ctx.mission_id)
            return f"{name} done"

        return run


def _chain(runs: _Runs) -> Any:
    return (
        m.define("paused-chain")
        .start(parse=accept)
        .step("a", runs.step("a"))
        .need_to("go", parse=accept)
        .sleep("cool-off", timedelta(hours=1))
        .step("b", runs.step("b"))
        .sleep("settle", timedelta(hours=1))
        .step("c", runs.step("c"))
        .end(output=lambda ctx: ctx.events["go"].output)
    )


def _kinds(entries: list[Any]) -> list[TimelineKind]:
    return [entry.kind for entry in entries]


class PauseConformance(ScenarioFixtures):
    """Pause and resume scenarios every persistence adapter must pass. Subclass it and provide
    ``persistence``."""

    async def test_a_waiting_mission_pauses_at_once_and_its_signals_wait_for_the_resume(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """A waiting mission pauses at once (status ``paused``, its pause in the snapshot, the
        ``paused`` list filter finds it); a signal sent while it is paused is buffered, not
        taken, and the resume takes it and runs the mission on from the node it stopped at."""
        runs = _Runs()
        flow = _chain(runs)
        commander = self.commander(persistence, clock, flow)
        handle = await commander.start(flow, {}, id="p-1")
        waiting = await handle.inspect()
        paused = await handle.pause("maintenance")
        assert paused.status is MissionStatus.PAUSED
        assert paused.pause == Pause(T0, "maintenance")
        assert paused.revision == waiting.revision + 1
        assert paused.nodes == waiting.nodes
        assert paused.waits == waiting.waits
        assert paused.due_at is None
        assert [s.id for s in await commander.list(status=MissionStatus.PAUSED)] == ["p-1"]
        assert await commander.list(status=MissionStatus.WAITING) == []

        after_signal = await handle.signal("go", "yes")
        assert after_signal.status is MissionStatus.PAUSED
        assert after_signal.nodes["go"].status is NodeStatus.WAITING
        assert runs.ran == ["a"]

        resumed = await handle.resume()
        # The buffered signal was taken, and the mission went on to its next wait.
        assert resumed.status is MissionStatus.WAITING
        assert resumed.pause is None
        assert resumed.nodes["go"].output == "yes"
        assert resumed.current_node == "cool-off"
        kinds = _kinds(await handle.timeline())
        paused_at = kinds.index(TimelineKind.MISSION_PAUSED)
        assert kinds[paused_at:] == [
            TimelineKind.MISSION_PAUSED,
            TimelineKind.SIGNAL_BUFFERED,
            TimelineKind.MISSION_UNPAUSED,
            TimelineKind.SIGNAL_RECEIVED,
            TimelineKind.WAIT_STARTED,
        ]
        clock.advance(timedelta(hours=1))
        await drain_due(commander)
        clock.advance(timedelta(hours=1))
        await drain_due(commander)
        done = await handle.inspect()
        assert done.status is MissionStatus.COMPLETED
        assert done.output == "yes"
        assert runs.ran == ["a", "b", "c"]

    async def test_timers_due_while_paused_fire_after_the_resume_in_order_also_after_a_restart(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """A paused mission is never due: its timer coming due while it is paused fires nothing
        (no due time, no tick), also for a second commander on the store (a restart); the
        resume fires it, and the next sleep counts from the resume, not from when the first
        timer came due."""
        runs = _Runs()
        flow = _chain(runs)
        commander = self.commander(persistence, clock, flow)
        handle = await commander.start(flow, {}, id="p-2")
        await handle.signal("go", 1)
        await handle.pause()
        clock.advance(timedelta(hours=5))
        assert await commander.due_missions(10) == []
        assert await commander.next_due_at() is None
        assert await drain_due(commander) == []

        again = self.commander(persistence, clock, flow)  # another process, after a restart
        assert await again.running_missions(10) == []
        assert await again.due_missions(10) == []
        stored = await again.inspect("p-2")
        assert stored.status is MissionStatus.PAUSED
        assert stored.pause == Pause(T0)
        assert runs.ran == ["a"]

        resumed = await again.resume("p-2")
        resume_at = clock.now()
        assert runs.ran == ["a", "b"]
        assert resumed.status is MissionStatus.WAITING
        assert resumed.current_node == "settle"
        assert resumed.due_at == resume_at + timedelta(hours=1)
        entries = await again.timeline("p-2")
        kinds = _kinds(entries)
        unpaused = kinds.index(TimelineKind.MISSION_UNPAUSED)
        assert kinds.index(TimelineKind.TIMER_FIRED) > unpaused
        assert kinds.index(TimelineKind.MISSION_PAUSED) < unpaused
        assert await again.next_due_at() == resume_at + timedelta(hours=1)
        clock.advance(timedelta(hours=1))
        await drain_due(again)
        assert (await again.inspect("p-2")).status is MissionStatus.COMPLETED
        assert runs.ran == ["a", "b", "c"]

    async def test_timers_due_while_paused_fire_in_due_order_not_branch_order(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """Two branches' timers that came due while the mission was paused fire at the resume
        in the order they came due (the later-declared branch's earlier timer first), and so
        do their next steps; likewise when a runtime catches up on timers it slept through."""
        runs = _Runs()
        flow = (
            m.define("due-order")
            .start(parse=accept)
            .parallel(
                "par",
                {
                    "x": lambda b: b.sleep("late", timedelta(hours=2)).step("x", runs.step("x")),
                    "y": lambda b: b.sleep("early", timedelta(hours=1)).step("y", runs.step("y")),
                },
            )
            .end()
        )
        commander = self.commander(persistence, clock, flow)
        for mission_id, paused in (("o-1", True), ("o-2", False)):
            runs.ran.clear()
            await commander.start(flow, {}, id=mission_id)
            if paused:
                await commander.pause(mission_id)
            clock.advance(timedelta(hours=5))
            if paused:
                await commander.resume(mission_id)
            else:
                await drain_due(commander)
            assert (await commander.inspect(mission_id)).status is MissionStatus.COMPLETED
            fired = [
                entry.node
                for entry in await commander.timeline(mission_id)
                if entry.kind in (TimelineKind.TIMER_FIRED, TimelineKind.STEP_STARTED)
            ]
            assert fired == ["par/y/early", "par/y/y", "par/x/late", "par/x/x"], mission_id
            assert sorted(runs.ran) == ["x", "y"], mission_id

    async def test_a_running_mission_pauses_at_its_next_node_boundary(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """A pause asked for while a step runs lets the step finish and stores its result, then
        pauses the mission before the next node runs; the resume runs that node once and goes
        on exactly from there."""
        runs = _Runs()
        flow = (
            m.define("pause-running")
            .start(parse=accept)
            .step("a", runs.step("a"))
            .step("b", runs.step("b"))
            .end(output=lambda ctx: [ctx.events["a"].output, ctx.events["b"].output])
        )
        commander = self.commander(persistence, clock, flow)
        runs.commander = commander
        runs.inside["a"] = "pause"
        handle = await commander.start(flow, {}, id="p-3")
        paused = await handle.inspect()
        assert paused.status is MissionStatus.PAUSED
        assert paused.pause == Pause(T0, "from inside")
        assert runs.ran == ["a"]
        assert paused.nodes["a"].status is NodeStatus.COMPLETED
        assert paused.nodes["a"].output == "a done"
        assert paused.current_node == "b"
        assert await commander.running_missions(10) == []

        done = await handle.resume()
        assert done.status is MissionStatus.COMPLETED
        assert done.output == ["a done", "b done"]
        assert runs.ran == ["a", "b"]
        assert done.nodes["b"].attempts == 1

    async def test_the_node_after_a_pause_boundary_starts_at_the_resume(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """A mission paused at a node boundary has not started its next step: the timeline
        shows that step started once, after the resume, and its record's start is the
        resume's time, not the pause's."""
        runs = _Runs()
        flow = (
            m.define("pause-next")
            .start(parse=accept)
            .step("a", runs.step("a"))
            .step("b", runs.step("b"))
            .need_to("go", parse=accept)
            .end()
        )
        commander = self.commander(persistence, clock, flow)
        runs.commander = commander
        runs.inside["a"] = "pause"
        await commander.start(flow, {}, id="p-9")
        paused = await commander.timeline("p-9")
        assert [e.node for e in paused if e.kind is TimelineKind.STEP_STARTED] == ["a"]
        clock.advance(timedelta(hours=2))
        resumed = await commander.resume("p-9")
        assert runs.ran == ["a", "b"]
        assert resumed.nodes["b"].started_at == T0 + timedelta(hours=2)
        kinds = [
            (e.kind, e.node)
            for e in await commander.timeline("p-9")
            if e.kind in (TimelineKind.STEP_STARTED, TimelineKind.MISSION_UNPAUSED)
        ]
        assert kinds == [
            (TimelineKind.STEP_STARTED, "a"),
            (TimelineKind.MISSION_UNPAUSED, "b"),
            (TimelineKind.STEP_STARTED, "b"),
        ]

    async def test_a_resume_before_the_boundary_withdraws_the_pause(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """A resume that comes while a pause still waits for the running step to end withdraws
        that pause: the mission never pauses."""
        runs = _Runs()
        flow = m.define("withdrawn").start(parse=accept).step("a", runs.step("a")).end()
        commander = self.commander(persistence, clock, flow)
        runs.commander = commander
        runs.inside["a"] = "pause+resume"
        done = await (await commander.start(flow, {}, id="p-4")).inspect()
        assert done.status is MissionStatus.COMPLETED
        kinds = _kinds(await commander.timeline("p-4"))
        assert TimelineKind.MISSION_PAUSED not in kinds

    async def test_pause_and_resume_refuse_what_they_cannot_do_and_repeat_harmlessly(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """Pausing a paused mission and resuming one that is not paused change nothing; a
        finished mission cannot be paused or resumed, nor a reason that is not text given, and
        nothing is stored then; a paused mission can be cancelled, and is no longer paused."""
        runs = _Runs()
        flow = _chain(runs)
        commander = self.commander(persistence, clock, flow)
        handle = await commander.start(flow, {}, id="p-5")
        waiting = await handle.inspect()
        assert await handle.resume() == waiting
        with pytest.raises(InvalidInputError, match="reason"):
            await handle.pause(42)  # type: ignore[arg-type]
        assert await handle.inspect() == waiting
        paused = await handle.pause("first")
        assert await handle.pause("second") == paused
        assert await commander.timeline("p-5") == await commander.timeline("p-5")
        kinds = _kinds(await commander.timeline("p-5"))
        assert kinds.count(TimelineKind.MISSION_PAUSED) == 1

        cancelled = await handle.cancel("gone")
        assert cancelled.status is MissionStatus.CANCELLED
        assert cancelled.pause is None
        with pytest.raises(MissionNotActiveError, match="cannot pause"):
            await handle.pause()
        with pytest.raises(MissionNotActiveError, match="cannot resume"):
            await handle.resume()
        assert await handle.inspect() == cancelled

    async def test_a_pause_asked_during_compensations_lands_between_them(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """A pause asked for while a compensation runs lets it finish, then pauses the
        compensating mission before the next compensation; the resume runs the rest and the
        mission ends compensated, each compensation run once; the compensation the pause held
        back starts at the resume. A pause asked during the last compensation has nothing
        left to pause: the mission ends compensated, its request cleared."""
        undone: list[str] = []
        commander: Commander | None = None

        def undo(name: str) -> Any:
            async def run(ctx: Context[Any, Any], output: Any) -> None:
                undone.append(name)
                assert commander is not None
                await commander.pause(ctx.mission_id, f"during {name}")

            return run

        def broken(ctx: Context[Any, Any]) -> None:
            raise ValueError("out of stock")

        flow = (
            m.define("saga-paused")
            .start(parse=accept)
            .step("a", lambda ctx: "a", compensate=undo("a"))
            .step("b", lambda ctx: "b", compensate=undo("b"))
            .step("c", broken)
            .end()
        )
        commander = self.commander(persistence, clock, flow)
        paused = await (await commander.start(flow, {}, id="p-6")).inspect()
        assert paused.status is MissionStatus.PAUSED
        assert paused.compensating
        assert undone == ["b"]
        clock.advance(timedelta(minutes=5))
        resumed_at = clock.now()
        done = await commander.resume("p-6")
        assert (done.status, done.pause, done.pause_request) == (
            MissionStatus.COMPENSATED,
            None,
            None,
        )
        assert undone == ["b", "a"]
        entries = [(e.kind, e.node) for e in await commander.timeline("p-6")]
        paused_at = entries.index((TimelineKind.MISSION_PAUSED, "c"))
        # The compensation the pause held back starts at the resume, not before the pause.
        assert entries[paused_at - 1 :] == [
            (TimelineKind.COMPENSATION_COMPLETED, "b/compensate"),
            (TimelineKind.MISSION_PAUSED, "c"),
            (TimelineKind.MISSION_UNPAUSED, "c"),
            (TimelineKind.COMPENSATION_STARTED, "a/compensate"),
            (TimelineKind.PAUSE_REQUESTED, "c"),
            (TimelineKind.COMPENSATION_COMPLETED, "a/compensate"),
            (TimelineKind.MISSION_COMPENSATED, "c"),
        ]
        assert done.nodes["a/compensate"].started_at == resumed_at

    async def test_a_paused_parent_finds_its_child_ended_when_resumed(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """Pausing a parent leaves its child running: the child ends meanwhile, the paused
        parent does not move, and on resume it takes the child's output and completes."""
        kid = (
            m.define("kid")
            .start(parse=accept)
            .need_to("done", parse=accept)
            .end(output=lambda ctx: ctx.events["done"].output)
        )
        parent = (
            m.define("parent")
            .start(parse=accept)
            .child("kid", kid, lambda ctx: {})
            .end(output=lambda ctx: ctx.events["kid"].output)
        )
        commander = self.commander(persistence, clock, parent, kid)
        await commander.start(parent, {}, id="p-7")
        (child,) = await commander.list(definition="kid")
        await commander.pause("p-7")
        ended = await commander.signal(child.id, "done", "kid output")
        assert ended.status is MissionStatus.COMPLETED
        still = await commander.inspect("p-7")
        assert still.status is MissionStatus.PAUSED
        assert still.current_node == "kid"
        done = await commander.resume("p-7")
        assert (done.status, done.output) == (MissionStatus.COMPLETED, "kid output")

    async def test_a_pause_asked_while_a_step_runs_is_stored_and_outlives_its_process(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """A pause asked for while a step runs is stored at once (``pause_request``, a
        ``pause-requested`` entry): when the process stops before the step ends, a second
        commander taking the mission up pauses it at that step without running it, and the
        resume runs the step and goes on; a resume before that withdraws the stored request
        instead; a step that ends pauses the mission at its boundary and clears the request."""
        ran: list[str] = []
        started = anyio.Event()
        forever: set[str] = set()
        gate = anyio.Event()

        async def slow(ctx: Context[Any, Any]) -> str:
            ran.append(ctx.mission_id)
            if ctx.mission_id in forever:
                started.set()
                await anyio.sleep_forever()
            if ctx.mission_id == "q-3":
                started.set()
                await gate.wait()
            return "slow done"

        flow = (
            m.define("pause-stored")
            .start(parse=accept)
            .step("first", lambda ctx: "first done")
            .step("slow", slow)
            .step("next", lambda ctx: "next done")
            .need_to("go", parse=accept)
            .end()
        )
        commander = self.commander(persistence, clock, flow)

        async def stopped_while_slow_runs(mission_id: str) -> MissionSnapshot:
            """Start the mission, pause it while ``slow`` runs, then stop the task running it
            (as a process stops) and return what pause() returned."""
            nonlocal started
            started = anyio.Event()
            forever.add(mission_id)
            asked: MissionSnapshot | None = None
            async with anyio.create_task_group() as task_group:
                task_group.start_soon(partial(commander.start, flow, {}, id=mission_id))
                await started.wait()
                clock.advance(timedelta(minutes=1))
                asked = await commander.pause(mission_id, "ops")
                task_group.cancel_scope.cancel()
            forever.discard(mission_id)
            assert asked is not None
            return asked

        asked = await stopped_while_slow_runs("q-1")
        request = Pause(T0 + timedelta(minutes=1), "ops")
        assert (asked.status, asked.current_node) == (MissionStatus.RUNNING, "slow")
        assert (asked.pause, asked.pause_request) == (None, request)

        again = self.commander(persistence, clock, flow)  # another process, after a restart
        stored = await again.inspect("q-1")
        assert (stored.status, stored.pause_request) == (MissionStatus.RUNNING, request)
        assert await again.running_missions(10) == ["q-1"]
        clock.advance(timedelta(minutes=1))
        recovered = await again.advance("q-1")
        assert recovered is not None
        assert (recovered.status, recovered.current_node) == (MissionStatus.PAUSED, "slow")
        assert (recovered.pause, recovered.pause_request) == (request, None)
        assert recovered.nodes["first"].output == "first done"
        assert recovered.recovery_attempts == 0
        assert ran == ["q-1"]
        assert await again.inspect("q-1") == recovered
        kinds = _kinds(await again.timeline("q-1"))
        assert kinds[kinds.index(TimelineKind.PAUSE_REQUESTED) :] == [
            TimelineKind.PAUSE_REQUESTED,
            TimelineKind.MISSION_RESUMED,
            TimelineKind.MISSION_PAUSED,
        ]
        resumed = await again.resume("q-1")
        assert (resumed.status, resumed.current_node) == (MissionStatus.WAITING, "go")
        assert resumed.nodes["slow"].output == "slow done"
        assert ran == ["q-1", "q-1"]

        await stopped_while_slow_runs("q-2")
        again = self.commander(persistence, clock, flow)
        withdrawn = await again.resume("q-2")
        assert (withdrawn.status, withdrawn.pause_request) == (MissionStatus.RUNNING, None)
        assert await again.inspect("q-2") == withdrawn
        assert _kinds(await again.timeline("q-2"))[-2:] == [
            TimelineKind.PAUSE_REQUESTED,
            TimelineKind.PAUSE_WITHDRAWN,
        ]
        recovered = await again.advance("q-2")
        assert recovered is not None
        assert (recovered.status, recovered.current_node) == (MissionStatus.WAITING, "go")
        assert recovered.pause is None

        started = anyio.Event()
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(partial(again.start, flow, {}, id="q-3"))
            await started.wait()
            await again.pause("q-3", "later")
            assert (await again.inspect("q-3")).pause_request is not None
            gate.set()
        paused = await again.inspect("q-3")
        assert (paused.status, paused.current_node) == (MissionStatus.PAUSED, "next")
        assert (paused.pause_request, paused.nodes["slow"].output) == (None, "slow done")
