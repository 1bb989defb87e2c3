"""The runtime on the event loop: it serves its commander's loop, refuses what it cannot run
with, and is never left half-started.

The tests pick their loop themselves (``anyio.run``), because the loop is what they are about.
"""

from __future__ import annotations

import asyncio
import threading
from datetime import datetime

import anyio
import pytest

from mission_control.core import ConfigurationError, EventLoopError, m
from mission_control.in_memory_commander import create_in_memory_commander
from mission_control.runtime import RuntimeState, create_commander_runtime

flow = m.define("flow").start(parse=lambda value: value).end()

BACKENDS = ["trio", "asyncio"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_scheduling_a_tick_from_another_thread_is_refused(backend: str) -> None:
    """``set_next_tick_in`` from a thread other than the runtime's loop raises EventLoopError and
    schedules nothing; the runtime still stops cleanly."""
    commander = create_in_memory_commander([flow])
    raised: list[BaseException] = []

    async def main() -> tuple[datetime | None, RuntimeState]:
        async with create_commander_runtime(commander) as runtime:

            def sync_view() -> None:
                try:
                    runtime.set_next_tick_in(5)
                except BaseException as error:
                    raised.append(error)

            thread = threading.Thread(target=sync_view)
            thread.start()
            await anyio.to_thread.run_sync(thread.join)
            scheduled = runtime.next_tick_at
        return scheduled, runtime.state

    scheduled, state = anyio.run(main, backend=backend)
    assert len(raised) == 1
    assert isinstance(raised[0], EventLoopError)
    assert scheduled is None
    assert state is RuntimeState.STOPPED


def test_an_asyncio_task_group_is_refused_before_the_runtime_starts() -> None:
    """``start(nursery=asyncio.TaskGroup())`` raises ConfigurationError naming what to pass, and
    the runtime stays new (it can still be started)."""
    commander = create_in_memory_commander([flow])
    runtime = create_commander_runtime(commander)

    async def main() -> RuntimeState:
        async with asyncio.TaskGroup() as group:
            with pytest.raises(ConfigurationError, match="AnyIO task group"):
                await runtime.start(nursery=group)  # pyright: ignore[reportArgumentType]
        state = runtime.state
        async with runtime:
            pass
        return state

    assert asyncio.run(main()) is RuntimeState.NEW


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_task_group_that_has_ended_leaves_the_runtime_stopped_not_stuck(backend: str) -> None:
    """A task group that can no longer start tasks makes ``start`` raise, and ``stop`` then
    returns at once instead of waiting for a scheduler that never ran."""
    commander = create_in_memory_commander([flow])
    runtime = create_commander_runtime(commander)

    async def main() -> RuntimeState:
        async with anyio.create_task_group() as ended:
            pass
        with pytest.raises(RuntimeError):
            await runtime.start(nursery=ended)
        with anyio.fail_after(5):  # a watchdog: stop() returns at once
            await runtime.stop()
        return runtime.state

    assert anyio.run(main, backend=backend) is RuntimeState.STOPPED


def test_a_runtime_outside_any_loop_raises_event_loop_error() -> None:
    """Entering a runtime with no loop running raises EventLoopError, not an error of AnyIO's."""
    runtime = create_commander_runtime(create_in_memory_commander([flow]))
    entering = runtime.__aenter__()
    with pytest.raises(EventLoopError, match="trio or asyncio event loop"):
        entering.send(None)
    assert runtime.state is RuntimeState.NEW
