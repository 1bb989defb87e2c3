"""The engine's plain turn (a start, step or end function at the mission's one position, with
nothing pending) against the general turn it shortens: missions of every shape, run once with
plain turns and once without, write the same snapshots and timeline entries in the same order."""

from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import pytest

from mission_control.core import (
    Commander,
    Context,
    ErrorInfo,
    MissionDefinition,
    MissionSnapshot,
    MissionStatus,
    NodeStatus,
    TimelineEntry,
    m,
)
from mission_control.core.lowlevel import (
    NodeEnd,
    ObservedMission,
    ObservedNode,
    RunObserver,
    RunTrigger,
)
from mission_control.in_memory_commander import (
    InMemoryPersistenceAdapter,
    ManualClock,
    create_in_memory_commander,
)
from mission_control.testing import drain_due, wait_all_tasks_blocked

pytestmark = pytest.mark.anyio

Write = tuple[str, MissionSnapshot, tuple[TimelineEntry, ...]]


class _KeptWrites(InMemoryPersistenceAdapter):
    """The in-memory adapter, keeping every insert and commit it is given, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[Write] = []

    async def insert(
        self, snapshot: MissionSnapshot, timeline: Sequence[TimelineEntry], **kwargs: Any
    ) -> MissionSnapshot | None:
        self.writes.append(("insert", snapshot, tuple(timeline)))
        return await super().insert(snapshot, timeline, **kwargs)

    async def commit(
        self, snapshot: MissionSnapshot, *, timeline: Sequence[TimelineEntry], **kwargs: Any
    ) -> None:
        self.writes.append((f"commit {kwargs}", snapshot, tuple(timeline)))
        await super().commit(snapshot, timeline=timeline, **kwargs)


class _Heard:
    """An observer keeping, in order, every call the engine makes to it (errors by type and
    message, as exceptions do not compare equal)."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def context_for(self, mission: ObservedMission) -> Mapping[str, str] | None:
        self.calls.append(("context_for", mission))
        return {"trace": mission.id}

    def run_started(self, mission: ObservedMission, trigger: RunTrigger) -> RunObserver:
        self.calls.append(("run_started", mission, trigger))
        return _HeardRun(self.calls, mission.id)


def _shown(error: BaseException | None) -> tuple[str, str] | None:
    return None if error is None else (type(error).__name__, str(error))


class _HeardRun:
    def __init__(self, calls: list[tuple[Any, ...]], mission_id: str) -> None:
        self.calls = calls
        self.mission_id = mission_id

    def node_started(self, node: ObservedNode) -> NodeEnd:
        self.calls.append(("node_started", self.mission_id, node))
        return lambda error: self.calls.append(("node_ended", self.mission_id, _shown(error)))

    def node_waited(
        self,
        node: ObservedNode,
        since: datetime | None,
        until: datetime,
        outcome: NodeStatus,
        error: ErrorInfo | None,
    ) -> None:
        self.calls.append(("node_waited", self.mission_id, node, since, until, outcome, error))

    def ended(self, status: MissionStatus | None, error: BaseException | None) -> None:
        self.calls.append(("ended", self.mission_id, status, _shown(error)))


def same(raw: Any) -> Any:
    return raw


def one(ctx: Context[Any, Any]) -> int:
    return 1


async def later(ctx: Context[Any, Any]) -> str:
    return f"{ctx.node}@{ctx.attempt}"


def fails(ctx: Context[Any, Any]) -> None:
    raise ValueError(f"{ctx.node} fails")


def flaky(ctx: Context[Any, Any]) -> int:
    if ctx.attempt < 3:
        raise ValueError(f"attempt {ctx.attempt}")
    return ctx.attempt


def undo(ctx: Context[Any, Any], output: Any) -> None:
    return None


_running: dict[str, Any] = {}
"""The commander and clock of the run under way, for the steps that act on them."""


def overruns(ctx: Context[Any, Any]) -> int:
    _running["clock"].advance(90)
    return 1


async def cancels_itself(ctx: Context[Any, Any]) -> int:
    await _running["commander"].cancel(ctx.mission_id, "from within")
    return 1


async def pauses_itself(ctx: Context[Any, Any]) -> int:
    await _running["commander"].pause(ctx.mission_id, "from within")
    return 1


CHILD = m.define("child").start(parse=same, run=one).step("c", one).end(output=one)

Scenario = Callable[[Commander, ManualClock], Awaitable[None]]

DEFINITIONS: dict[str, MissionDefinition[Any, Any, Any]] = {
    "steps": m.define("steps")
    .start(parse=same, run=one)
    .step("a", one)
    .step("b", later)
    .step("c", one)
    .end(output=lambda ctx: ctx.events["b"].output),
    "bare": m.define("bare").start(parse=same).step("a", one).end(),
    "only-start": m.define("only-start").start(parse=same, run=one).end(),
    "retried": m.define("retried")
    .start(parse=same)
    .step("a", one)
    .step("flaky", flaky, retry=m.retry(3, m.fixed(5)))
    .step("b", one)
    .end(),
    "failing": m.define("failing").start(parse=same).step("a", one).step("boom", fails).end(),
    "failing-start": m.define("failing-start").start(parse=same, run=fails).step("a", one).end(),
    "failing-end": m.define("failing-end").start(parse=same).step("a", one).end(output=fails),
    "timed": m.define("timed").start(parse=same).step("a", later, timeout=30).step("b", one).end(),
    "parallel": m.define("parallel")
    .start(parse=same)
    .step("before", one)
    .parallel(
        "p",
        {
            # One function runs at a time (the others wait), so the order is the same on
            # every run: the scheduler picks which of two runnable tasks goes first.
            "x": lambda b: b.step("x1", later).step("x2", one),
            "y": lambda b: b.need_to("go", parse=same).step("y1", one).step("y2", one),
            "z": lambda b: b.sleep("nap", 30).step("z1", one),
        },
    )
    .step("after", one)
    .end(),
    "choice": m.define("choice")
    .start(parse=same, run=one)
    .choice(
        "route",
        lambda ctx: "left",
        {"left": lambda p: p.step("l1", one).step("l2", one), "right": lambda p: p},
    )
    .step("after", one)
    .end(),
    "loop": m.define("loop")
    .start(parse=same)
    .loop(
        "rounds",
        lambda b: b.step("r1", one).step("r2", later),
        until=lambda ctx: ctx.iteration == 3,
        max_iterations=5,
    )
    .for_each("each", lambda ctx: [1, 2], lambda b: b.step("e1", one), max_iterations=5)
    .step("after", one)
    .end(),
    "parent": m.define("parent")
    .start(parse=same)
    .step("a", one)
    .child("kid", CHILD, lambda ctx: 7)
    .step("b", one)
    .end(),
    "saga": m.define("saga")
    .start(parse=same)
    .step("a", one, compensate=undo)
    .step("b", one)
    .step("c", one, compensate=undo)
    .step("boom", fails)
    .end(),
    "signalled": m.define("signalled")
    .start(parse=same, run=one)
    .need_to("approve", parse=same)
    .step("a", one)
    .step("b", one)
    .end(),
    "signal-timeout": m.define("signal-timeout")
    .start(parse=same)
    .need_to("approve", parse=same, timeout=60, on_timeout=lambda p: p.step("t1", one))
    .step("a", one)
    .end(),
    "sleeping": m.define("sleeping")
    .start(parse=same)
    .step("a", one)
    .sleep("nap", 60)
    .step("b", one)
    .step("c", one)
    .end(),
    "deadline": m.define("deadline")
    .start(parse=same)
    .step("a", one)
    .sleep("nap", 120)
    .step("b", one)
    .deadline(60, on_deadline=lambda p: p.step("expire", one))
    .end(),
    "overrun": m.define("overrun")
    .start(parse=same)
    .step("a", one)
    .step("slow", overruns)
    .step("b", one)
    .deadline(60)
    .end(),
    "cancelled-within": m.define("cancelled-within")
    .start(parse=same)
    .step("a", cancels_itself)
    .step("b", one)
    .end(),
    "paused-within": m.define("paused-within")
    .start(parse=same)
    .step("a", pauses_itself)
    .step("b", one)
    .end(),
    "deadline-met": m.define("deadline-met")
    .start(parse=same)
    .step("a", one)
    .step("b", one)
    .deadline(timedelta(hours=1))
    .end(),
}


async def _start(commander: Commander, name: str, id: str) -> MissionSnapshot:
    handle = await commander.start(DEFINITIONS[name], {"n": 1}, id=id)
    return await handle.inspect()


async def run_straight(commander: Commander, clock: ManualClock) -> None:
    for name in DEFINITIONS:
        await _start(commander, name, name)
    for _ in range(4):
        clock.advance(61)
        await drain_due(commander)
    await commander.signal("signalled", "approve", "yes")
    await commander.signal("parallel", "go", "now")
    await commander.resume("paused-within")
    await drain_due(commander)


async def run_interrupted(commander: Commander, clock: ManualClock) -> None:
    # Paused, cancelled and retried while at a wait, then moved on.
    for name in ("signalled", "sleeping", "saga", "failing"):
        await _start(commander, name, f"{name}-1")
        await _start(commander, name, f"{name}-2")
    await commander.pause("signalled-1", "hold on")
    await commander.signal("signalled-1", "approve", "yes")
    await commander.resume("signalled-1")
    await commander.cancel("signalled-2", "no")
    await commander.pause("sleeping-1", "hold on")
    await commander.cancel("sleeping-2", "stop", compensate=True)
    clock.advance(61)
    await drain_due(commander)
    await commander.resume("sleeping-1")
    await drain_due(commander)
    await commander.retry("failing-1")
    await commander.retry("failing-2", from_node="a")
    await commander.fork("signalled-1", at_node="a", new_id="fork")
    await wait_all_tasks_blocked()


async def run_signal_with_start(commander: Commander, clock: ManualClock) -> None:
    await commander.signal_with_start(
        DEFINITIONS["signalled"], {"n": 1}, mission_id="s", signal="approve", payload="now"
    )
    await commander.start(DEFINITIONS["steps"], {"n": 2}, id="steps")


async def _writes(
    scenario: Scenario, *, plain: bool, observed: bool
) -> tuple[list[Write], list[Any], list[Any]]:
    persistence = _KeptWrites()
    clock = ManualClock()
    heard = _Heard()
    commander = create_in_memory_commander(
        [*DEFINITIONS.values(), CHILD],
        persistence=persistence,
        clock=clock,
        observer=heard if observed else None,
    )
    commander._engine.plain_turns = plain  # pyright: ignore[reportPrivateUsage, reportAttributeAccessIssue]
    _running.update(commander=commander, clock=clock)
    await scenario(commander, clock)
    missions = [
        (await commander.inspect(s.id), await commander.timeline(s.id))
        for s in await commander.list(limit=1000)
    ]
    return persistence.writes, missions, heard.calls


@pytest.mark.parametrize("observed", [True, False], ids=["observed", "unobserved"])
@pytest.mark.parametrize("scenario", [run_straight, run_interrupted, run_signal_with_start])
async def test_plain_turns_write_what_the_general_turn_writes(
    scenario: Scenario, observed: bool
) -> None:
    """Missions of every shape write the same snapshots and timeline entries, in the same order,
    tell their observer the same, and end the same, whether the engine takes its plain turns or
    only general ones."""
    plain_writes, plain_missions, plain_heard = await _writes(
        scenario, plain=True, observed=observed
    )
    general_writes, general_missions, general_heard = await _writes(
        scenario, plain=False, observed=observed
    )
    assert len(plain_writes) == len(general_writes)
    for plain, general in zip(plain_writes, general_writes, strict=True):
        assert plain == general
    assert plain_missions == general_missions
    assert plain_missions
    assert plain_heard == general_heard
    assert any(call[0] == "node_started" for call in plain_heard) is observed
