"""How a group commit's writers wait for the task that commits for them.

A writer that joined a group waits, uncancellably, until the group's leader has committed (a
cancelled caller must not leave without knowing whether its write was stored), and the leader
yields twice to the scheduler to let writers join, and sleeps between tries on a busy database,
uncancellably too (the writers that joined it wait on it). A cancellation that comes meanwhile
is held back and raised once the wait is over.

On asyncio a shielded cancel scope stops AnyIO's cancellations but not ``Task.cancel()`` (what
``asyncio.timeout``, ``wait_for`` and a server shutting down use): that one is caught, held back and
raised afterwards, so it still reaches the caller, only later. :class:`PlainParking` does this with
AnyIO primitives on any loop: it is the reference. On trio, :class:`TrioParking` does the same with
trio's own low-level calls, which cost a fraction (an AnyIO event and shielded cancel scope per
joined writer came to about 8% of a tick's instructions). On asyncio, :class:`AsyncioParking` waits
on a bare future and yields unshielded, and shields only once a cancellation has arrived (most
waits never see one): an AnyIO scope's cancellation is dropped, to be delivered again by the scope
at the caller's next checkpoint, as the shielded wait would; a ``Task.cancel()`` is held back as in
the plain parking. The group-commit tests run on each loop with its own parking and with the plain
one, to hold them equal.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable
from typing import Protocol

import anyio
import anyio.lowlevel
import sniffio
import trio


class Spot(Protocol):
    """Where one joined writer waits."""

    async def wait(self) -> None:
        """Wait until :meth:`wake` is called; a cancellation does not end the wait, and is
        raised once it is over."""
        ...

    def wake(self) -> None:
        """End the wait (called once, by the leader, from the same loop)."""
        ...


class Parking(Protocol):
    """The waiting a group commit does, on one kind of loop."""

    def spot(self) -> Spot:
        """A place for the calling task to wait in."""
        ...

    async def yield_shielded(self) -> BaseException | None:
        """Let every other ready task run once; return (never raise) a cancellation that came
        meanwhile, for the caller to raise when its work is done."""
        ...

    async def sleep_shielded(self, seconds: float) -> BaseException | None:
        """Sleep ``seconds`` (less when a cancellation is held back); as :meth:`yield_shielded`
        for cancellations."""
        ...


class _PlainSpot:
    __slots__ = ("_woken",)

    def __init__(self) -> None:
        self._woken = anyio.Event()

    async def wait(self) -> None:
        held_back: BaseException | None = None
        while not self._woken.is_set():
            held_back = await _shielded(self._woken.wait()) or held_back
        if held_back is not None:
            raise held_back

    def wake(self) -> None:
        self._woken.set()


async def _shielded(waiting: Awaitable[object]) -> BaseException | None:
    """Await ``waiting`` shielded from cancel scopes; return a ``Task.cancel()`` that ended it
    early instead of raising it."""
    try:
        with anyio.CancelScope(shield=True):
            await waiting
    except asyncio.CancelledError as cancelled:
        return cancelled
    return None


class PlainParking:
    """The reference: AnyIO's event and a shielded cancel scope, on any loop."""

    def spot(self) -> Spot:
        return _PlainSpot()

    async def yield_shielded(self) -> BaseException | None:
        return await _shielded(anyio.lowlevel.checkpoint())

    async def sleep_shielded(self, seconds: float) -> BaseException | None:
        return await _shielded(anyio.sleep(seconds))


def _cannot_abort(_: object) -> trio.lowlevel.Abort:
    return trio.lowlevel.Abort.FAILED


class _TrioSpot:
    __slots__ = ("_task",)

    def __init__(self) -> None:
        self._task = trio.lowlevel.current_task()

    async def wait(self) -> None:
        # Abort.FAILED: trio will not cancel this wait; only reschedule() ends it.
        await trio.lowlevel.wait_task_rescheduled(_cannot_abort)

    def wake(self) -> None:
        trio.lowlevel.reschedule(self._task)


class TrioParking:
    """trio's low-level parking: the same waits as :class:`PlainParking`, for less."""

    def spot(self) -> Spot:
        return _TrioSpot()

    async def yield_shielded(self) -> BaseException | None:
        await trio.lowlevel.cancel_shielded_checkpoint()
        return None

    async def sleep_shielded(self, seconds: float) -> BaseException | None:
        with trio.CancelScope(shield=True):
            await trio.sleep(seconds)
        return None


def _held_back(cancelled: asyncio.CancelledError) -> asyncio.CancelledError | None:
    """What to raise once the wait is over for ``cancelled``, which ended an unshielded wait:
    ``None`` when the task is in a cancelled AnyIO scope (its cancellation: the scope delivers it
    again at the caller's next checkpoint, and keeps its own count of what it delivered), else
    ``cancelled`` (a ``Task.cancel()``)."""
    if anyio.current_effective_deadline() == -math.inf:
        return None
    return cancelled


class _AsyncioSpot:
    __slots__ = ("_future", "_woken")

    def __init__(self) -> None:
        self._future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._woken = False

    async def wait(self) -> None:
        try:
            await self._future
        except asyncio.CancelledError as cancelled:
            held_back: BaseException | None = _held_back(cancelled)
        else:
            return
        # Rare: a cancellation came. From now on the wait is the plain parking's, shielded.
        while not self._woken:
            if self._future.done():
                # Task.cancel() cancels the future the task awaits: wait on a fresh one.
                self._future = asyncio.get_running_loop().create_future()
            held_back = await _shielded(self._future) or held_back
        if held_back is not None:
            raise held_back

    def wake(self) -> None:
        # Recorded apart from the future: a cancellation in the same loop iteration may have
        # cancelled the future before this call, and the writer must still see it was woken.
        self._woken = True
        if not self._future.done():
            self._future.set_result(None)


class AsyncioParking:
    """asyncio's parking: the same waits as :class:`PlainParking`, a bare future per writer and a
    bare yield, shielded only once a cancellation arrives."""

    def spot(self) -> Spot:
        return _AsyncioSpot()

    async def yield_shielded(self) -> BaseException | None:
        try:
            await asyncio.sleep(0)
        except asyncio.CancelledError as cancelled:
            # The trip through the scheduler was made; only its end was a cancellation.
            return _held_back(cancelled)
        return None

    async def sleep_shielded(self, seconds: float) -> BaseException | None:
        # Only on a busy database, between tries: the plain parking's shielded sleep.
        return await _shielded(anyio.sleep(seconds))


PLAIN_PARKING: Parking = PlainParking()
_TRIO_PARKING: Parking = TrioParking()
_ASYNCIO_PARKING: Parking = AsyncioParking()
# None holds state of its own (a spot does): one of each serves every group.


def parking_for_this_loop() -> Parking:
    """The parking for the running loop: trio's own on trio, asyncio's on asyncio, the plain one
    elsewhere."""
    match sniffio.current_async_library():
        case "trio":
            return _TRIO_PARKING
        case "asyncio":
            return _ASYNCIO_PARKING
        case _:
            return PLAIN_PARKING
