"""No stalls: every persisted due time gets a tick, whoever made it, and a mission whose caller
was cancelled mid-step is resumed at once."""

from __future__ import annotations

import functools
from datetime import timedelta
from typing import Any

import anyio
import pytest

from mission_control.core import (
    Context,
    MissionNotActiveError,
    MissionStatus,
    TimelineKind,
    UnknownSignalError,
    m,
)
from mission_control.in_memory_commander import InMemoryPersistenceAdapter
from mission_control.testing import (
    CommanderFactory,
    LoopClock,
    RuntimeFactory,
    wait_all_tasks_blocked,
)

pytestmark = pytest.mark.anyio


def parse_any(raw: Any) -> Any:
    return raw


async def take_five(ctx: Context[Any, Any]) -> str:
    await anyio.sleep(5)
    return "done"


SLOW_STEP = m.define("slow-step").start(parse=parse_any).step("work", take_five).end()
"""Runs a 5-second step as soon as it starts."""

SIGNAL_THEN_TIMER = (
    m.define("signal-then-timer")
    .start(parse=parse_any)
    .need_to("go", parse=parse_any)
    .sleep("wait", timedelta(seconds=60))
    .end()
)
"""Waits for the signal ``go``, then 60 seconds."""


async def test_every_delayed_start_persisted_before_start_up_gets_a_tick(
    make_commander: CommanderFactory,
    make_runtime: RuntimeFactory,
    timer: Any,
    mission_clock: LoopClock,
) -> None:
    """Two delayed starts stored before the runtime started both start at their own times."""
    commander = make_commander([timer])
    began = mission_clock.now()
    await commander.start(timer, {}, id="first", start_at=began + timedelta(hours=1))
    await commander.start(timer, {}, id="second", start_at=began + timedelta(hours=2))

    await make_runtime(commander)
    with anyio.fail_after(timedelta(hours=3).total_seconds()):
        first = await commander.result("first")
        second = await commander.result("second")

    assert (first.status, second.status) == (MissionStatus.COMPLETED, MissionStatus.COMPLETED)
    assert second.updated_at - began == timedelta(hours=2, seconds=60)


async def test_due_times_made_by_the_commander_in_the_same_process_get_a_tick(
    make_commander: CommanderFactory,
    make_runtime: RuntimeFactory,
    timer: Any,
    mission_clock: LoopClock,
) -> None:
    """A delayed start, a timer reached in start and one reached by a signal, all made through
    the commander (not the client) while the runtime runs, fire on time."""
    commander = make_commander([timer, SIGNAL_THEN_TIMER])
    await make_runtime(commander)
    began = mission_clock.now()

    await commander.start(timer, {}, id="delayed", start_at=began + timedelta(minutes=5))
    await commander.start(timer, {}, id="timer")
    await commander.start(SIGNAL_THEN_TIMER, {}, id="signalled")
    await commander.signal("signalled", "go")
    with anyio.fail_after(3600):
        ended = [await commander.result(name) for name in ("timer", "signalled", "delayed")]

    assert [snapshot.status for snapshot in ended] == [MissionStatus.COMPLETED] * 3
    assert [snapshot.updated_at - began for snapshot in ended] == [
        timedelta(seconds=60),
        timedelta(seconds=60),
        timedelta(minutes=6),
    ]


async def test_a_commander_on_the_same_adapter_reaches_the_runtime_of_another(
    make_commander: CommanderFactory,
    make_runtime: RuntimeFactory,
    timer: Any,
) -> None:
    """A due time made by one commander is ticked by the runtime of another on the same store."""
    store = InMemoryPersistenceAdapter()
    driven = make_commander([timer], persistence=store)
    other = make_commander([timer], persistence=store)
    await make_runtime(driven)

    await other.start(timer, {}, id="elsewhere")
    with anyio.fail_after(120):
        snapshot = await driven.result("elsewhere")

    assert snapshot.status is MissionStatus.COMPLETED


async def test_a_tick_at_its_limit_that_moved_missions_is_followed_at_once(
    make_commander: CommanderFactory,
    make_runtime: RuntimeFactory,
    timer: Any,
    mission_clock: LoopClock,
) -> None:
    """A backlog larger than max_missions_per_tick is worked off in ticks that follow each
    other at once, with nobody asking for them."""
    commander = make_commander([timer])
    began = mission_clock.now()
    for n in range(7):
        await commander.start(timer, {}, id=f"timer-{n}")
    await make_runtime(commander, max_missions_per_tick=2)

    await anyio.sleep(60)
    await wait_all_tasks_blocked()

    missions = await commander.list()
    assert [snapshot.status for snapshot in missions] == [MissionStatus.COMPLETED] * 7
    assert {snapshot.updated_at - began for snapshot in missions} == {timedelta(seconds=60)}


async def test_a_mission_whose_caller_was_cancelled_mid_step_is_resumed_at_once(
    make_commander: CommanderFactory,
    make_runtime: RuntimeFactory,
    mission_clock: LoopClock,
) -> None:
    """A start whose caller gives up while the step runs (a web request timing out) leaves the
    mission to the running runtime, which runs the step again right away."""
    commander = make_commander([SLOW_STEP])
    runtime = await make_runtime(commander)

    with anyio.move_on_after(1) as request:
        await commander.start(SLOW_STEP, {}, id="web")
    assert request.cancelled_caught
    gave_up = mission_clock.now()
    with anyio.fail_after(60):
        snapshot = await commander.result("web")

    assert snapshot.status is MissionStatus.COMPLETED
    assert snapshot.updated_at - gave_up == timedelta(seconds=5)
    await wait_all_tasks_blocked()
    assert runtime.last_report is not None
    assert runtime.last_report.resumed == 1
    timeline = await commander.timeline("web")
    assert [entry.kind for entry in timeline].count(TimelineKind.MISSION_RESUMED) == 1


async def test_a_mission_in_flight_in_one_commander_is_not_resumed_by_the_runtime_of_another(
    make_commander: CommanderFactory,
    make_runtime: RuntimeFactory,
    timer: Any,
    mission_clock: LoopClock,
) -> None:
    """While one commander runs a long step, the ticks of a runtime on another commander of the
    same adapter leave that mission alone: the step runs once and the mission completes."""
    runs: list[str] = []

    async def take_a_hundred_seconds(ctx: Context[Any, Any]) -> str:
        runs.append(ctx.mission_id)
        await anyio.sleep(100)
        return "done"

    slow = m.define("long-step").start(parse=parse_any).step("work", take_a_hundred_seconds).end()
    store = InMemoryPersistenceAdapter()
    starting = make_commander([slow, timer], persistence=store)
    driven = make_commander([slow, timer], persistence=store)
    await make_runtime(driven)
    began = mission_clock.now()

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(functools.partial(starting.start, slow, {}, id="slow"))
        await wait_all_tasks_blocked()
        # Each delayed start makes the other runtime tick while the step runs.
        for n in range(1, 10):
            await starting.start(
                timer, {}, id=f"tick-{n}", start_at=began + timedelta(seconds=10 * n)
            )

    snapshot = await driven.inspect("slow")
    assert runs == ["slow"]
    assert (snapshot.status, snapshot.recovery_attempts) == (MissionStatus.COMPLETED, 0)
    assert snapshot.updated_at - began == timedelta(seconds=100)
    # The runtime did tick while the step ran: it started the first delayed start at 10 s and
    # completed it at 70 s.
    ticked = await driven.inspect("tick-1")
    assert (ticked.status, ticked.updated_at - began) == (
        MissionStatus.COMPLETED,
        timedelta(seconds=70),
    )


async def test_a_refused_signal_or_cancel_schedules_no_tick(
    make_commander: CommanderFactory,
    make_runtime: RuntimeFactory,
) -> None:
    """Signals and cancellations refused before anything is written arm no tick: a stream of bad
    calls does not make the runtime tick."""
    commander = make_commander([SIGNAL_THEN_TIMER])
    runtime = await make_runtime(commander, stalled_tick_delay=1)
    await commander.start(SIGNAL_THEN_TIMER, {}, id="waiting")
    await commander.start(SIGNAL_THEN_TIMER, {}, id="ended")
    await commander.cancel("ended")
    await wait_all_tasks_blocked()
    assert runtime.scheduled_ticks == ()

    for _ in range(3):
        with pytest.raises(UnknownSignalError):
            await commander.signal("waiting", "stop")
        with pytest.raises(MissionNotActiveError):
            await commander.cancel("ended")
        assert runtime.scheduled_ticks == ()
