"""Stopping: scheduled ticks are dropped, the in-flight tick is drained, nothing is left running."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from mission_control.core import Commander, MissionStatus
from mission_control.runtime import (
    RuntimeEvent,
    RuntimeState,
    RuntimeStateError,
    create_commander_runtime,
)
from mission_control.testing import RecordingLogger, RuntimeFactory, wait_all_tasks_blocked

pytestmark = pytest.mark.anyio


async def test_stop_waits_for_the_running_tick_and_leaves_no_scheduled_tick(
    commander: Commander,
    make_runtime: RuntimeFactory,
    slow_after_timer: Any,
    log: RecordingLogger,
) -> None:
    """stop() returns after the in-flight tick finished its step, with no tick scheduled after."""
    runtime = await make_runtime(logger=log)
    handle = await commander.start(slow_after_timer, {})
    runtime.set_next_tick_in(10)
    runtime.set_next_tick_in(3600)
    await anyio.sleep(11)
    assert runtime.is_tick_running

    await runtime.stop()

    assert not runtime.is_tick_running
    assert (await handle.inspect()).status is MissionStatus.COMPLETED
    assert runtime.scheduled_ticks == ()
    assert runtime.state is RuntimeState.STOPPED
    ticks = len(log.of(RuntimeEvent.TICK_STARTED))
    await anyio.sleep(7200)
    assert len(log.of(RuntimeEvent.TICK_STARTED)) == ticks
    assert log.events[-3:] == ["runtime-stopping", "tick-completed", "runtime-stopped"]


async def test_stop_also_runs_the_tick_a_caller_is_waiting_for(
    commander: Commander,
    make_runtime: RuntimeFactory,
    slow_after_timer: Any,
) -> None:
    """A tick queued behind the running one before stop() still runs and answers its caller."""
    runtime = await make_runtime()
    await commander.start(slow_after_timer, {})
    await anyio.sleep(10)
    reports: list[Any] = []

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(runtime.tick)
        await anyio.sleep(1)

        async def waiting_caller() -> None:
            reports.append(await runtime.tick())

        tasks.start_soon(waiting_caller)
        await wait_all_tasks_blocked()
        await runtime.stop()

    assert len(reports) == 1
    assert runtime.state is RuntimeState.STOPPED


async def test_stop_is_idempotent_and_safe_from_several_tasks(
    commander: Commander,
    make_runtime: RuntimeFactory,
    slow_after_timer: Any,
) -> None:
    """Several concurrent and repeated stop() calls all return once the runtime stopped."""
    runtime = await make_runtime()
    await commander.start(slow_after_timer, {})
    runtime.set_next_tick_in(10)
    await anyio.sleep(11)

    async with anyio.create_task_group() as tasks:
        for _ in range(3):
            tasks.start_soon(runtime.stop)
    await runtime.stop()

    assert runtime.state is RuntimeState.STOPPED


async def test_async_with_starts_and_stops_the_runtime(commander: Commander, timer: Any) -> None:
    """async with runs the startup tick on entry and drains and stops on exit."""
    handle = await commander.start(timer, {})
    async with create_commander_runtime(commander) as runtime:
        assert runtime.state is RuntimeState.RUNNING
        assert runtime.last_report is not None
        assert runtime.next_tick_at == (await handle.inspect()).due_at
        await handle.wait_for_completion()
    assert runtime.state is RuntimeState.STOPPED
    assert runtime.scheduled_ticks == ()


async def test_an_error_in_the_body_propagates_as_itself(commander: Commander) -> None:
    """An exception leaving async with reaches the caller unwrapped, and the runtime stops."""
    runtime = create_commander_runtime(commander)

    async def fail_inside() -> None:
        async with runtime:
            runtime.set_next_tick_in(60)
            raise KeyError("boom")

    with pytest.raises(KeyError, match="boom"):
        await fail_inside()
    assert runtime.state is RuntimeState.STOPPED
    assert runtime.scheduled_ticks == ()


async def test_cancelling_the_body_cancels_the_in_flight_tick(
    commander: Commander,
    slow_after_timer: Any,
) -> None:
    """Cancellation from outside ends the runtime at once, like any task group; the mission
    whose step it interrupted stays due for the next run."""
    runtime = create_commander_runtime(commander)
    with anyio.move_on_after(12):
        async with runtime:
            handle = await commander.start(slow_after_timer, {})
            runtime.set_next_tick_in(10)
            await anyio.sleep_forever()
    assert runtime.state is RuntimeState.STOPPED
    assert (await handle.inspect()).status is not MissionStatus.COMPLETED
    assert await commander.due_missions(10) == [handle.id]


async def test_start_with_a_task_group_of_your_own(commander: Commander, timer: Any) -> None:
    """start(nursery=...) runs scheduled ticks in a task group of the caller's, which closes after
    stop()."""
    runtime = create_commander_runtime(commander)
    handle = await commander.start(timer, {})
    async with anyio.create_task_group() as tasks:
        report = await runtime.start(nursery=tasks)
        assert report.next_due_at == (await handle.inspect()).due_at
        await handle.wait_for_completion()
        await runtime.stop()
    assert runtime.state is RuntimeState.STOPPED


async def test_a_runtime_starts_once(commander: Commander) -> None:
    """A second start() or async with on the same runtime raises RuntimeStateError."""
    runtime = create_commander_runtime(commander)
    async with runtime:
        with pytest.raises(RuntimeStateError):
            async with runtime:
                pass
    async with anyio.create_task_group() as tasks:
        with pytest.raises(RuntimeStateError):
            await runtime.start(nursery=tasks)


async def test_stopping_a_runtime_that_never_started(commander: Commander) -> None:
    """stop() on a runtime that never started just marks it stopped."""
    runtime = create_commander_runtime(commander)
    runtime.set_next_tick_in(5)
    await runtime.stop()
    assert runtime.state is RuntimeState.STOPPED
    assert runtime.scheduled_ticks == ()
