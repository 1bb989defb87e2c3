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
joined writer came to about 8% of a tick's instructions); the group-commit tests run on both, and on
trio with the plain parking too, to hold them equal.
"""

from __future__ import annotations

import asyncio
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


PLAIN_PARKING: Parking = PlainParking()
_TRIO_PARKING: Parking = TrioParking()
# Neither holds state of its own (a spot does): one of each serves every group.


def parking_for_this_loop() -> Parking:
    """The parking for the running loop: trio's own on trio, the plain one elsewhere."""
    if sniffio.current_async_library() == "trio":
        return _TRIO_PARKING
    return PLAIN_PARKING
