"""Letting the other tasks settle, on trio and asyncio, without moving virtual time."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sized

import anyio
import trio
import trio.testing


def _blocked(task: asyncio.Task[object]) -> bool:
    # What the task awaits (asyncio keeps it as ``_fut_waiter``; AnyIO reads it too): None while
    # the task can run, a finished future while it is about to.
    waiter: asyncio.Future[object] | None = getattr(task, "_fut_waiter", None)
    return waiter is not None and not waiter.done()


def _idle(loop: asyncio.AbstractEventLoop, this: asyncio.Task[object] | None) -> bool:
    # Callbacks waiting to run (asyncio's ``_ready``; a task group's "task done" among them)
    # may finish what a blocked task waits for, so they count as work left.
    ready: Sized = getattr(loop, "_ready", ())
    return not ready and all(task is this or _blocked(task) for task in asyncio.all_tasks(loop))


async def wait_all_tasks_blocked() -> None:
    """Return once every other task of the running loop waits (for an event, a lock, a timer,
    I/O, a thread) and no callback is waiting to run, as ``trio.testing.wait_all_tasks_blocked``
    does on trio.

    On asyncio it only yields to the loop until then, so virtual time stands still: no timer
    fires while it waits (``anyio.wait_all_tasks_blocked`` sleeps a tenth of a second between
    looks, which moves virtual time and can fire a timer).
    """
    if trio.lowlevel.in_trio_run():
        await trio.testing.wait_all_tasks_blocked()
        return
    loop = asyncio.get_running_loop()
    this = asyncio.current_task()
    # Idle twice in a row, with one turn of the loop between: that turn polled the selector
    # (without waiting, as callbacks were ready), so bytes a task has just written to a socket
    # of this loop are not left unread; their callbacks would be ready on the second look.
    idle_before = False
    while True:
        await asyncio.sleep(0)
        idle = _idle(loop, this)
        if idle and idle_before:
            return
        idle_before = idle


async def interrupt_when(run: Callable[[], Awaitable[object]], entered: anyio.Event) -> None:
    """Call ``run()`` in a task of its own and cancel it once ``entered`` is set, as a crashed
    or timed-out caller would be: what ``run`` was moving is left as the store has it (call
    ``commander.advance`` afterwards to resume it as the runtime would). Returns early if ``run``
    finishes first."""
    async with anyio.create_task_group() as tasks:

        async def go() -> None:
            await run()
            tasks.cancel_scope.cancel()

        tasks.start_soon(go)
        await entered.wait()
        tasks.cancel_scope.cancel()
