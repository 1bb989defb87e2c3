"""Ticks: single flight, what they move, what they report, and that none follows unasked."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import anyio
import pytest

from mission_control.core import (
    Commander,
    ConfigurationError,
    Context,
    MissionStatus,
    PersistenceError,
    m,
)
from mission_control.in_memory_commander import InMemoryPersistenceAdapter
from mission_control.runtime import (
    RuntimeEvent,
    RuntimeMetric,
    RuntimeStateError,
    TickFailedError,
    TickTrigger,
    create_commander_runtime,
)
from mission_control.testing import (
    CommanderFactory,
    RecordingLogger,
    RecordingMetrics,
    RuntimeFactory,
)

pytestmark = pytest.mark.anyio


def tick_events(log: RecordingLogger) -> list[str]:
    return [
        event
        for event in log.events
        if event in (RuntimeEvent.TICK_STARTED, RuntimeEvent.TICK_COMPLETED)
    ]


async def test_a_tick_runs_when_nothing_is_due(
    make_runtime: RuntimeFactory, log: RecordingLogger
) -> None:
    """A tick with nothing due still runs, is logged, and reports that it moved nothing."""
    runtime = await make_runtime(logger=log)
    log.clear()

    report = await runtime.tick()

    assert report.trigger is TickTrigger.DIRECT
    assert (report.moved, report.completed, report.errored, report.more_due) == (0, 0, 0, False)
    assert report.next_due_at is None
    assert tick_events(log) == ["tick-started", "tick-completed"]
    assert runtime.last_report is report


async def test_concurrent_ticks_never_overlap(
    commander: Commander,
    make_runtime: RuntimeFactory,
    log: RecordingLogger,
    slow_after_timer: Any,
) -> None:
    """Ticks asked for at the same time run one after another, never at once."""
    runtime = await make_runtime(logger=log)
    for n in range(3):
        await commander.start(slow_after_timer, {}, id=f"slow-{n}")
    await anyio.sleep(10)
    log.clear()

    async def call_tick() -> None:
        await runtime.tick()

    async with anyio.create_task_group() as tasks:
        for _ in range(5):
            tasks.start_soon(call_tick)

    events = tick_events(log)
    assert events == ["tick-started", "tick-completed"] * (len(events) // 2)
    assert not runtime.is_tick_running
    assert [s.status for s in await commander.list()] == [MissionStatus.COMPLETED] * 3


async def test_callers_arriving_during_a_tick_share_one_fresh_tick(
    commander: Commander,
    make_runtime: RuntimeFactory,
    slow_after_timer: Any,
) -> None:
    """Every caller that arrives while a tick runs gets the one tick that starts after it."""
    runtime = await make_runtime(auto_schedule=False)
    await commander.start(slow_after_timer, {})
    await anyio.sleep(10)
    reports: dict[str, Any] = {}

    async def call_tick(name: str) -> None:
        reports[name] = await runtime.tick()

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(call_tick, "first")
        await anyio.sleep(1)
        asked_at = commander.clock.now()
        for name in ("second", "third", "fourth"):
            tasks.start_soon(call_tick, name)

    assert reports["first"].advanced == 1
    assert reports["second"] is reports["third"] is reports["fourth"]
    assert reports["second"] is not reports["first"]
    assert reports["second"].started_at >= asked_at


async def test_in_the_manual_mode_no_tick_follows_a_tick_unless_scheduled(
    commander: Commander,
    make_runtime: RuntimeFactory,
    log: RecordingLogger,
    timer: Any,
) -> None:
    """With auto_schedule=False, a tick that leaves a timer pending does not schedule the tick
    that would fire it."""
    runtime = await make_runtime(logger=log, auto_schedule=False)
    handle = await commander.start(timer, {})
    due = (await handle.inspect()).due_at
    log.clear()

    report = await runtime.tick()
    await anyio.sleep(3600)

    assert report.next_due_at == due
    assert not report.more_due
    assert runtime.next_tick_at is None
    assert tick_events(log) == ["tick-started", "tick-completed"]
    assert (await handle.inspect()).status is MissionStatus.WAITING


async def test_a_tick_moves_at_most_max_missions_per_tick_and_says_more_are_due(
    commander: Commander, make_runtime: RuntimeFactory, timer: Any
) -> None:
    """A tick advances at most its limit of due missions and reports that more are due."""
    runtime = await make_runtime(max_missions_per_tick=2, auto_schedule=False)
    for n in range(3):
        await commander.start(timer, {}, id=f"timer-{n}")
    await anyio.sleep(60)

    first = await runtime.tick()
    second = await runtime.tick()

    assert (first.advanced, first.completed, first.more_due) == (2, 2, True)
    assert (second.advanced, second.completed, second.more_due) == (1, 1, False)


async def test_cancelling_a_caller_does_not_cancel_its_tick(
    commander: Commander,
    make_runtime: RuntimeFactory,
    slow_after_timer: Any,
) -> None:
    """A caller that stops waiting for a tick leaves the tick to finish its missions."""
    runtime = await make_runtime()
    handle = await commander.start(slow_after_timer, {})
    await anyio.sleep(10)

    with anyio.move_on_after(1):
        await runtime.tick()
    assert runtime.is_tick_running

    snapshot = await handle.wait_for_completion()
    assert snapshot.status is MissionStatus.COMPLETED


async def test_a_mission_that_cannot_be_advanced_is_counted_logged_and_skipped_over(
    make_commander: CommanderFactory,
    make_runtime: RuntimeFactory,
    log: RecordingLogger,
    metrics: RecordingMetrics,
    slow_after_timer: Any,
    timer: Any,
) -> None:
    """A due mission whose advance raises is counted and logged, and the other due ones move."""
    store = InMemoryPersistenceAdapter()
    earlier = make_commander([timer], persistence=store)
    later = make_commander([slow_after_timer], persistence=store)
    runtime = await make_runtime(later, logger=log, metrics=metrics, auto_schedule=False)
    await earlier.start(timer, {}, id="orphan")
    await later.start(slow_after_timer, {}, id="known")
    await anyio.sleep(60)

    report = await runtime.tick()

    assert (report.advanced, report.errored, report.errored_missions) == (1, 1, ("orphan",))
    assert report.more_due
    [failure] = log.of(RuntimeEvent.MISSION_ADVANCE_FAILED)
    assert failure.fields["mission_id"] == "orphan"
    assert "UnknownDefinitionError" in str(failure.fields["reason"])
    assert metrics.total(RuntimeMetric.MISSIONS_ADVANCED, status="error") == 1
    assert (await later.inspect("known")).status is MissionStatus.COMPLETED


class FailingQueries:
    """A driver whose due query fails while ``failing`` is set: the members of
    ``MissionDriver``, nothing of the application API."""

    def __init__(self, commander: Commander) -> None:
        self.commander = commander
        self.failing = False

    @property
    def clock(self) -> Any:
        return self.commander.clock

    @property
    def notices(self) -> Any:
        return self.commander.notices

    @property
    def max_recovery_attempts(self) -> int:
        return self.commander.max_recovery_attempts

    async def inspect(self, mission_id: str) -> Any:
        return await self.commander.inspect(mission_id)

    async def advance(self, mission_id: str) -> Any:
        return await self.commander.advance(mission_id)

    async def running_missions(self, limit: int, after: str | None = None) -> list[str]:
        return await self.commander.running_missions(limit, after)

    async def next_due_at(self, after: Any = None) -> Any:
        return await self.commander.next_due_at(after)

    async def due_missions(self, limit: int, now: Any = None) -> list[str]:
        if self.failing:
            raise PersistenceError("database is locked")
        return await self.commander.due_missions(limit, now)

    @property
    def is_owner(self) -> bool:
        return self.commander.is_owner

    async def take_ownership(self) -> None:
        await self.commander.take_ownership()

    async def watch_submissions(self, wake: Any) -> None:
        await self.commander.watch_submissions(wake)

    async def apply_submissions(self, limit: int, concurrency: int = 10) -> int:
        return await self.commander.apply_submissions(limit, concurrency)

    async def fire_schedules(self, limit: int) -> int:
        return await self.commander.fire_schedules(limit)


async def test_a_tick_whose_queries_fail_raises_and_the_runtime_keeps_going(
    commander: Commander,
    make_runtime: RuntimeFactory,
    log: RecordingLogger,
    metrics: RecordingMetrics,
) -> None:
    """A tick that cannot query the store fails with TickFailedError; later ticks still run."""
    flaky = FailingQueries(commander)
    runtime = await make_runtime(flaky, logger=log, metrics=metrics)
    flaky.failing = True

    with pytest.raises(TickFailedError) as raised:
        await runtime.tick()

    assert isinstance(raised.value.__cause__, PersistenceError)
    [failure] = log.of(RuntimeEvent.TICK_FAILED)
    assert isinstance(failure.error, PersistenceError)
    assert metrics.total(RuntimeMetric.TICKS, outcome="failed") == 1
    flaky.failing = False
    assert (await runtime.tick()).errored == 0


async def test_the_runtime_drives_a_mission_driver_without_the_application_api(
    commander: Commander, make_runtime: RuntimeFactory, timer: Any
) -> None:
    """A runtime made for an object with only MissionDriver's members runs its due missions."""
    handle = await commander.start(timer, {})
    driver = FailingQueries(commander)
    assert not hasattr(driver, "start")

    await make_runtime(driver)
    await anyio.sleep(61)

    assert (await handle.inspect()).status is MissionStatus.COMPLETED


def test_the_runtime_refuses_an_object_that_cannot_drive_missions(commander: Commander) -> None:
    """create_commander_runtime names MissionDriver when given something that is not one."""
    with pytest.raises(ConfigurationError, match="MissionDriver"):
        create_commander_runtime(object())  # type: ignore[arg-type]


async def test_tick_needs_a_running_runtime(commander: Commander) -> None:
    """tick() before start() and after stop() raises RuntimeStateError."""
    runtime = create_commander_runtime(commander)
    with pytest.raises(RuntimeStateError, match="start"):
        await runtime.tick()
    async with runtime:
        await runtime.tick()
    with pytest.raises(RuntimeStateError):
        await runtime.tick()


async def test_report_counts_missions_by_how_they_ended(
    commander: Commander, make_runtime: RuntimeFactory, timer: Any
) -> None:
    """The report counts completed and cancelled missions among those it moved."""
    runtime = await make_runtime(auto_schedule=False)
    await commander.start(timer, {}, id="a")
    await commander.start(timer, {}, id="b")
    await anyio.sleep(60)

    report = await runtime.tick()

    assert (report.advanced, report.completed, report.failed, report.cancelled) == (2, 2, 0, 0)
    assert report.started_at == commander.clock.now()
    assert report.duration == 0


async def test_report_counts_compensated_missions(
    make_commander: CommanderFactory, make_runtime: RuntimeFactory
) -> None:
    """A mission that fails after a timer and runs its compensations in the tick is counted as
    compensated, not failed."""

    def fail(ctx: Context[Any, Any]) -> None:
        raise RuntimeError("declined")

    flow = (
        m.define("undo-after-timer")
        .start(parse=lambda raw: raw)
        .step("book", lambda ctx: "booked", compensate=lambda ctx, output: None)
        .sleep("wait", 60)
        .step("pay", fail)
        .end()
    )
    commander = make_commander([flow])
    runtime = await make_runtime(commander, auto_schedule=False)
    await commander.start(flow, {}, id="a")
    await anyio.sleep(60)

    report = await runtime.tick()

    assert (report.advanced, report.failed, report.compensated) == (1, 0, 1)


async def test_missions_that_cannot_move_do_not_crowd_out_the_others(
    make_commander: Any,
    make_runtime: RuntimeFactory,
    log: RecordingLogger,
) -> None:
    """Due missions whose advance fails are passed over for a while, so later ones still run:
    the next tick, stalled_tick_delay later, tries those never tried before the paused ones."""
    from mission_control.core import m

    store = InMemoryPersistenceAdapter()
    orphan = m.define("orphan").start(parse=lambda v: v).sleep("nap", 10).end()
    healthy = m.define("healthy").start(parse=lambda v: v).sleep("nap", 20).end()
    first = make_commander([orphan, healthy], persistence=store)
    for i in range(3):
        await first.start(orphan, {}, id=f"orphan-{i}")
    await first.start(healthy, {}, id="healthy")
    # A new deployment no longer knows "orphan": its missions fail to advance when due.
    commander = make_commander([healthy], persistence=store, version_check="warn")
    await anyio.sleep(20)
    runtime = await make_runtime(
        commander, max_missions_per_tick=2, stalled_tick_delay=3600, logger=log
    )
    startup = runtime.last_report
    assert startup is not None
    assert (startup.errored, startup.advanced) == (2, 0)
    # Failures are no progress: the next tick comes stalled_tick_delay later (when the pauses
    # end), not at once, and tries the missions never tried first.
    assert runtime.next_tick_at == startup.started_at + timedelta(seconds=3600)
    with anyio.fail_after(3601):
        snapshot = await commander.result("healthy")
    failures = log.of(RuntimeEvent.MISSION_ADVANCE_FAILED)
    assert [failure.fields["mission_id"] for failure in failures] == [
        "orphan-0",
        "orphan-1",
        "orphan-2",
    ]
    assert snapshot.status is MissionStatus.COMPLETED
    assert snapshot.updated_at == startup.started_at + timedelta(seconds=3600)
