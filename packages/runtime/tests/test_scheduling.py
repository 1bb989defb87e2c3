"""Scheduling in virtual time: every persisted due time gets a tick; explicit requests; the
manual mode."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import pytest

from mission_control.core import Commander, Context, MissionStatus, m
from mission_control.runtime import (
    RuntimeEvent,
    RuntimeStateError,
    TickTrigger,
    create_commander_runtime,
)
from mission_control.testing import (
    CommanderFactory,
    LoopClock,
    RecordingLogger,
    RuntimeFactory,
)

pytestmark = pytest.mark.anyio


def scheduled_ticks(log: RecordingLogger) -> list[Any]:
    return [
        record.fields["trigger"]
        for record in log.of(RuntimeEvent.TICK_COMPLETED)
        if record.fields["trigger"] == TickTrigger.SCHEDULED
    ]


async def test_set_next_tick_in_fires_on_time(
    commander: Commander,
    make_runtime: RuntimeFactory,
    timer: Any,
) -> None:
    """A tick asked for in 60 seconds fires at 60 seconds of virtual time, not before."""
    runtime = await make_runtime()
    handle = await commander.start(timer, {})

    runtime.set_next_tick_in(60)
    assert runtime.next_tick_at == commander.clock.now() + timedelta(seconds=60)
    await anyio.sleep(59.999)
    assert (await handle.inspect()).status is MissionStatus.WAITING
    await anyio.sleep(0.002)

    assert (await handle.inspect()).status is MissionStatus.COMPLETED
    assert runtime.next_tick_at is None
    assert runtime.last_report is not None
    assert runtime.last_report.trigger is TickTrigger.SCHEDULED


async def test_set_next_tick_at_fires_on_time(
    commander: Commander,
    make_runtime: RuntimeFactory,
    timer: Any,
) -> None:
    """A tick asked for at the mission's due time fires then and completes the mission."""
    runtime = await make_runtime()
    handle = await commander.start(timer, {})
    due = (await handle.inspect()).due_at
    assert due is not None

    runtime.set_next_tick_at(due)
    await handle.wait_for_completion()

    assert commander.clock.now() == due


async def test_a_later_request_does_not_cancel_an_earlier_one(
    commander: Commander,
    make_runtime: RuntimeFactory,
    log: RecordingLogger,
) -> None:
    """Requests for ticks at 10 s and 20 s (in either order) give two ticks, at 10 s and 20 s."""
    runtime = await make_runtime(logger=log)
    start = commander.clock.now()

    runtime.set_next_tick_in(20)
    runtime.set_next_tick_in(10)
    runtime.set_next_tick_in(20)
    assert runtime.scheduled_ticks == (
        start + timedelta(seconds=10),
        start + timedelta(seconds=20),
    )
    await anyio.sleep(9.999)
    assert scheduled_ticks(log) == []
    await anyio.sleep(0.002)
    assert len(scheduled_ticks(log)) == 1
    await anyio.sleep(9.998)
    assert len(scheduled_ticks(log)) == 1
    await anyio.sleep(0.002)
    assert len(scheduled_ticks(log)) == 2
    assert runtime.scheduled_ticks == ()


async def test_a_direct_tick_satisfies_requests_whose_time_it_reached(
    commander: Commander,
    make_runtime: RuntimeFactory,
    log: RecordingLogger,
) -> None:
    """A tick that starts after a requested time satisfies that request; no extra tick runs."""
    runtime = await make_runtime(logger=log)
    log.clear()
    runtime.set_next_tick_at(commander.clock.now())
    runtime.set_next_tick_in(100)

    await runtime.tick()
    await anyio.sleep(99)

    assert runtime.scheduled_ticks == (commander.clock.now() + timedelta(seconds=1),)
    assert log.events.count(RuntimeEvent.TICK_STARTED) == 1


async def test_scheduling_rejects_bad_times(
    commander: Commander, make_runtime: RuntimeFactory
) -> None:
    """Naive datetimes and negative or infinite delays are refused with ValueError."""
    runtime = await make_runtime()
    with pytest.raises(ValueError, match="timezone-aware"):
        runtime.set_next_tick_at(datetime(2030, 1, 1))
    for bad in (-1, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="finite number"):
            runtime.set_next_tick_in(bad)
    assert runtime.scheduled_ticks == ()


async def test_scheduling_is_refused_once_the_runtime_stopped(commander: Commander) -> None:
    """A stopped runtime takes no scheduled ticks; one not started yet keeps them for later."""
    runtime = create_commander_runtime(commander)
    runtime.set_next_tick_in(5)
    async with runtime:
        assert len(runtime.scheduled_ticks) == 1
    with pytest.raises(RuntimeStateError):
        runtime.set_next_tick_in(5)


async def test_in_the_manual_mode_start_schedules_one_tick_for_the_earliest_due_time(
    commander: Commander,
    make_runtime: RuntimeFactory,
    timer: Any,
    log: RecordingLogger,
) -> None:
    """With auto_schedule=False, start() schedules exactly one tick, at the earliest due time
    stored before it ran, and nothing follows it."""
    first = await commander.start(timer, {}, id="first")
    await anyio.sleep(30)
    second = await commander.start(timer, {}, id="second")
    first_due = (await first.inspect()).due_at

    runtime = await make_runtime(logger=log, auto_schedule=False)

    assert runtime.scheduled_ticks == (first_due,)
    await anyio.sleep(30.001)
    assert (await first.inspect()).status is MissionStatus.COMPLETED
    assert runtime.scheduled_ticks == ()
    await anyio.sleep(3600)
    assert (await second.inspect()).status is MissionStatus.WAITING
    assert runtime.last_report is not None
    assert runtime.last_report.next_due_at == (await second.inspect()).due_at


async def fail_twice(ctx: Context[Any, Any]) -> str:
    if ctx.attempt <= 2:
        raise ConnectionError(f"attempt {ctx.attempt} failed")
    return "charged"


LONG_SLEEP = (
    m.define("long-sleep")
    .start(parse=lambda raw: raw)
    .sleep("trial", timedelta(days=30))
    .step("charge", fail_twice, retry=m.retry(3, m.fixed(timedelta(hours=1))))
    .end(lambda ctx: ctx.events["charge"].output)
)


async def test_timers_and_retries_stored_before_start_fire_after_it(
    make_commander: CommanderFactory,
    make_runtime: RuntimeFactory,
    mission_clock: LoopClock,
) -> None:
    """A 30-day sleep and two hourly retries stored before start() run to completion."""
    commander = make_commander([LONG_SLEEP])
    handle = await commander.start(LONG_SLEEP, {})
    began = mission_clock.now()

    await make_runtime(commander)
    snapshot = await handle.wait_for_completion()

    assert snapshot.output == "charged"
    assert snapshot.nodes["charge"].attempts == 3
    assert mission_clock.now() - began == timedelta(days=30, hours=2)


async def test_in_the_manual_mode_the_application_drives_follow_up_ticks(
    make_commander: CommanderFactory,
    make_runtime: RuntimeFactory,
) -> None:
    """With auto_schedule=False each tick's next_due_at is scheduled by the application."""
    commander = make_commander([LONG_SLEEP])
    runtime = await make_runtime(commander, auto_schedule=False)
    handle = await commander.start(LONG_SLEEP, {})
    ticks = 0

    report = await runtime.tick()
    while report.next_due_at is not None:
        runtime.set_next_tick_at(report.next_due_at)
        await anyio.sleep_until(anyio.current_time() + runtime_delay(commander, report.next_due_at))
        report = await runtime.tick()
        ticks += 1

    assert (await handle.inspect()).status is MissionStatus.COMPLETED
    assert ticks == 3


def runtime_delay(commander: Commander, when: datetime) -> float:
    return (when - commander.clock.now()).total_seconds() + 0.001


async def always_fails(ctx: Context[Any, Any]) -> None:
    raise RuntimeError("nope")


async def test_the_scheduler_pauses_instead_of_spinning_on_missions_that_keep_failing(
    make_commander: CommanderFactory,
    make_runtime: RuntimeFactory,
    timer: Any,
    log: RecordingLogger,
) -> None:
    """Due missions that cannot be advanced are retried after a pause of stalled_tick_delay
    that doubles with each failure in a row (at 0, 10 and 30 s), while ticks come every
    stalled_tick_delay."""
    from mission_control.in_memory_commander import InMemoryPersistenceAdapter

    store = InMemoryPersistenceAdapter()
    await make_commander([timer], persistence=store).start(timer, {}, id="orphan")
    stranger = make_commander([], persistence=store, version_check="warn")
    await anyio.sleep(60)

    await make_runtime(stranger, stalled_tick_delay=10, logger=log)
    await anyio.sleep(35)

    assert len(log.of(RuntimeEvent.TICK_COMPLETED)) == 4
    assert len(log.of(RuntimeEvent.MISSION_ADVANCE_FAILED)) == 3


class SkewedClock:
    """A commander clock that follows the loop's but can be set back, like a wall clock corrected
    by NTP."""

    def __init__(self) -> None:
        self.inner = LoopClock(datetime(2030, 1, 1, tzinfo=UTC))
        self.skew = timedelta(0)

    def now(self) -> datetime:
        return self.inner.now() + self.skew


async def test_a_tick_fires_when_the_commanders_clock_reaches_its_time(
    make_commander: CommanderFactory,
    make_runtime: RuntimeFactory,
    timer: Any,
) -> None:
    """When the commander's clock falls behind the loop's, the scheduled tick waits for it."""
    clock = SkewedClock()
    commander = make_commander([timer], clock=clock)
    runtime = await make_runtime(commander)
    handle = await commander.start(timer, {})
    due = (await handle.inspect()).due_at
    assert due is not None
    runtime.set_next_tick_at(due)

    await anyio.sleep(30)
    clock.skew = -timedelta(seconds=5)
    await anyio.sleep(34.999)
    assert (await handle.inspect()).status is MissionStatus.WAITING
    await anyio.sleep(0.002)

    assert (await handle.inspect()).status is MissionStatus.COMPLETED
    assert runtime.last_report is not None
    assert runtime.last_report.started_at == due
