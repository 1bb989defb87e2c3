"""Startup: missions a crash left mid-step are resumed, logged and measured; failures don't stop
the runtime."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from mission_control.core import (
    Commander,
    Context,
    MissionDefinition,
    MissionStatus,
    Pause,
    PersistenceError,
    TimelineEntry,
    TimelineKind,
    m,
)
from mission_control.in_memory_commander import InMemoryPersistenceAdapter
from mission_control.runtime import (
    RuntimeEvent,
    RuntimeMetric,
    RuntimeState,
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


class Payments:
    """A payment step whose first process hangs mid-charge until it is killed."""

    def __init__(self) -> None:
        self.hang = True
        self.attempts: list[int] = []

    async def charge(self, ctx: Context[Any, Any]) -> str:
        self.attempts.append(ctx.attempt)
        if self.hang:
            await anyio.sleep_forever()
        return f"charged:{ctx.idempotency_key}"


def checkout(payments: Payments, name: str = "checkout") -> MissionDefinition[Any, Any, Any]:
    return m.define(name).start(parse=lambda raw: raw).step("charge", payments.charge).end()


async def crash_mid_step(commander: Commander, definition: Any, mission_id: str) -> None:
    """Start a mission and kill its first process while the step runs, as a crash would."""
    with anyio.move_on_after(1):
        await commander.start(definition, {}, id=mission_id)
    snapshot = await commander.inspect(mission_id)
    assert (snapshot.status, snapshot.current_node) == (MissionStatus.RUNNING, "charge")


async def test_startup_resumes_a_mission_left_mid_step_and_logs_and_measures_it(
    make_commander: CommanderFactory,
    make_runtime: RuntimeFactory,
    log: RecordingLogger,
    metrics: RecordingMetrics,
) -> None:
    """A mission stored as running by a dead process is resumed by the next process's start()."""
    payments = Payments()
    definition = checkout(payments)
    store = InMemoryPersistenceAdapter()
    await crash_mid_step(make_commander([definition], persistence=store), definition, "order-1")

    payments.hang = False
    restarted = make_commander([definition], persistence=store)
    runtime = await make_runtime(restarted, logger=log, metrics=metrics)

    snapshot = await restarted.inspect("order-1")
    assert snapshot.status is MissionStatus.COMPLETED
    assert len(payments.attempts) == 2
    assert snapshot.nodes["charge"].output == "charged:order-1:charge"
    report = runtime.last_report
    assert report is not None
    assert (report.trigger, report.resumed, report.completed) == (TickTrigger.STARTUP, 1, 1)
    assert log.events[:5] == [
        "runtime-starting",
        "tick-started",
        "mission-resume-started",
        "mission-resume-completed",
        "tick-completed",
    ]
    assert log.of(RuntimeEvent.MISSION_RESUME_STARTED)[0].fields == {"mission_id": "order-1"}
    assert log.of(RuntimeEvent.MISSION_RESUME_COMPLETED)[0].fields["status"] == "completed"
    assert metrics.total(RuntimeMetric.MISSION_RESUMES, outcome="started") == 1
    assert metrics.total(RuntimeMetric.MISSION_RESUMES, outcome="completed") == 1
    assert len(metrics.observations(RuntimeMetric.MISSION_RESUME_DURATION)) == 1
    kinds = [entry.kind for entry in await restarted.timeline("order-1")]
    assert TimelineKind.MISSION_RESUMED in kinds


async def test_a_resume_that_fails_is_logged_and_counted_without_stopping_the_runtime(
    make_commander: CommanderFactory,
    make_runtime: RuntimeFactory,
    log: RecordingLogger,
    metrics: RecordingMetrics,
) -> None:
    """A mission the new process has no definition for fails to resume; the others resume."""
    payments = Payments()
    store = InMemoryPersistenceAdapter()
    retired, kept = checkout(payments, "retired"), checkout(payments, "kept")
    first = make_commander([retired, kept], persistence=store)
    await crash_mid_step(first, retired, "old-order")
    await crash_mid_step(first, kept, "new-order")

    payments.hang = False
    restarted = make_commander([kept], persistence=store, version_check="warn")
    runtime = await make_runtime(restarted, logger=log, metrics=metrics)

    assert runtime.state is RuntimeState.RUNNING
    report = runtime.last_report
    assert report is not None
    assert (report.resumed, report.errored, report.errored_missions) == (1, 1, ("old-order",))
    [failure] = log.of(RuntimeEvent.MISSION_RESUME_FAILED)
    assert failure.fields["mission_id"] == "old-order"
    assert type(failure.error).__name__ == "UnknownDefinitionError"
    assert metrics.total(RuntimeMetric.MISSION_RESUMES, outcome="failed") == 1
    assert (await restarted.inspect("new-order")).status is MissionStatus.COMPLETED
    assert (await restarted.inspect("old-order")).status is MissionStatus.RUNNING
    # Like a due mission whose advance raised, it is passed over for stalled_tick_delay.
    assert (await runtime.tick()).errored == 0
    await anyio.sleep(11)
    assert len(log.of(RuntimeEvent.MISSION_RESUME_FAILED)) == 2


class BrokenRow(InMemoryPersistenceAdapter):
    """An in-memory store one mission of which cannot be read back."""

    def __init__(self, unreadable: str) -> None:
        super().__init__()
        self.unreadable = unreadable
        self.broken = False

    async def load(self, mission_id: str) -> Any:
        if self.broken and mission_id == self.unreadable:
            raise PersistenceError(f"row {mission_id!r} is corrupt")
        return await super().load(mission_id)


async def test_a_resume_the_store_fails_is_logged_and_counted(
    make_commander: CommanderFactory,
    make_runtime: RuntimeFactory,
    log: RecordingLogger,
    metrics: RecordingMetrics,
) -> None:
    """An adapter that raises while a mission resumes fails that resume only."""
    payments = Payments()
    definition = checkout(payments)
    store = BrokenRow("corrupt")
    first = make_commander([definition], persistence=store)
    await crash_mid_step(first, definition, "corrupt")
    await crash_mid_step(first, definition, "fine")

    payments.hang = False
    store.broken = True
    runtime = await make_runtime(
        make_commander([definition], persistence=store), logger=log, metrics=metrics
    )

    report = runtime.last_report
    assert report is not None
    assert (report.resumed, report.errored) == (1, 1)
    [failure] = log.of(RuntimeEvent.MISSION_RESUME_FAILED)
    assert isinstance(failure.error, PersistenceError)
    assert metrics.total(RuntimeMetric.MISSION_RESUMES, outcome="failed") == 1


async def test_startup_resumes_every_interrupted_mission_page_by_page(
    make_commander: CommanderFactory,
    make_runtime: RuntimeFactory,
) -> None:
    """The startup tick resumes all interrupted missions, however many pages they fill."""
    payments = Payments()
    definition = checkout(payments)
    store = InMemoryPersistenceAdapter()
    first = make_commander([definition], persistence=store)
    for n in range(7):
        await crash_mid_step(first, definition, f"order-{n}")

    payments.hang = False
    restarted = make_commander([definition], persistence=store)
    runtime = await make_runtime(restarted, max_missions_per_tick=3, max_concurrency=2)

    report = runtime.last_report
    assert report is not None
    assert (report.resumed, report.completed, report.more_due) == (7, 7, False)


async def test_a_later_tick_resumes_a_mission_whose_caller_was_cancelled(
    make_commander: CommanderFactory,
    make_runtime: RuntimeFactory,
) -> None:
    """A mission left running by a cancelled start() in a live process is resumed by a tick."""
    payments = Payments()
    definition = checkout(payments)
    commander = make_commander([definition])
    runtime = await make_runtime(commander)
    await crash_mid_step(commander, definition, "order-1")

    payments.hang = False
    report = await runtime.tick()

    assert (report.resumed, report.completed) == (1, 1)


async def test_startup_pauses_a_waiting_mission_left_with_its_pause_request_not_applied(
    make_commander: CommanderFactory,
    make_runtime: RuntimeFactory,
) -> None:
    """A mission that reached its wait as a pause request was stored, its process stopping
    before it paused it (the store holds it waiting, with the request), is paused by the next
    process's startup tick with that request, and a later tick leaves it paused; a signal
    meanwhile is buffered, and the resume takes it."""
    definition = (
        m.define("approval")
        .start(parse=lambda raw: raw)
        .need_to("approve", parse=lambda raw: raw)
        .end(output=lambda ctx: ctx.events["approve"].output)
    )
    store = InMemoryPersistenceAdapter()
    first = make_commander([definition], persistence=store)
    await first.start(definition, {}, id="a-1")
    request = Pause(first.clock.now(), "audit")
    entry = TimelineEntry(request.requested_at, TimelineKind.PAUSE_REQUESTED, "approve")
    # The first of a pause's two writes, the process gone before the second.
    await store.request_pause("a-1", request, [entry])
    left = await first.inspect("a-1")
    assert (left.status, left.pause_request) == (MissionStatus.WAITING, request)

    restarted = make_commander([definition], persistence=store)
    runtime = await make_runtime(restarted)
    paused = await restarted.inspect("a-1")
    assert (paused.status, paused.current_node) == (MissionStatus.PAUSED, "approve")
    assert (paused.pause, paused.pause_request) == (request, None)
    assert await restarted.running_missions(10) == []
    await restarted.signal("a-1", "approve", "yes")
    await runtime.tick()
    assert (await restarted.inspect("a-1")).status is MissionStatus.PAUSED
    done = await restarted.resume("a-1")
    assert (done.status, done.output) == (MissionStatus.COMPLETED, "yes")


class BrokenQueries(InMemoryPersistenceAdapter):
    async def running_missions(self, limit: int, after_id: str | None = None) -> list[str]:
        raise PersistenceError("disk I/O error")


async def test_start_raises_when_the_startup_tick_cannot_run(
    make_commander: CommanderFactory,
    log: RecordingLogger,
) -> None:
    """A store that cannot be queried makes start() fail, logged, with the runtime stopped."""
    runtime = create_commander_runtime(make_commander([], persistence=BrokenQueries()), logger=log)

    with pytest.raises(TickFailedError) as raised:
        async with runtime:
            pytest.fail("the body must not run")

    assert isinstance(raised.value.__cause__, PersistenceError)
    assert runtime.state is RuntimeState.STOPPED
    assert RuntimeEvent.TICK_FAILED in log.events
    assert log.events[-1] == RuntimeEvent.RUNTIME_STOPPED
