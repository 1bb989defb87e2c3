"""How a group commit's writers wait for the task that commits for them.

A writer that joined a group waits, uncancellably, until the group's leader has committed (a
cancelled caller must not leave without knowing whether its write was stored), and the leader
yields twice to the scheduler to let writers join. :class:`PlainParking` does this with AnyIO
primitives on any loop: it is the reference. On trio, :class:`TrioParking` does the same with
trio's own low-level calls, which cost a fraction (an AnyIO event and shielded cancel scope per
joined writer came to about 8% of a tick's instructions); the group-commit tests run on both, and
on trio with the plain parking too, to hold them equal.
"""

from __future__ import annotations

from typing import Protocol

import anyio
import anyio.lowlevel
import sniffio
import trio


class Spot(Protocol):
    """Where one joined writer waits."""

    async def wait(self) -> None:
        """Wait until :meth:`wake` is called; a cancellation does not end the wait."""
        ...

    def wake(self) -> None:
        """End the wait (called once, by the leader, from the same loop)."""
        ...


class Parking(Protocol):
    """The waiting a group commit does, on one kind of loop."""

    def spot(self) -> Spot:
        """A place for the calling task to wait in."""
        ...

    async def yield_shielded(self) -> None:
        """Let every other ready task run once; never raises a cancellation."""
        ...


class _PlainSpot:
    __slots__ = ("_woken",)

    def __init__(self) -> None:
        self._woken = anyio.Event()

    async def wait(self) -> None:
        with anyio.CancelScope(shield=True):
            await self._woken.wait()

    def wake(self) -> None:
        self._woken.set()


class PlainParking:
    """The reference: AnyIO's event and a shielded cancel scope, on any loop."""

    def spot(self) -> Spot:
        return _PlainSpot()

    async def yield_shielded(self) -> None:
        await anyio.lowlevel.cancel_shielded_checkpoint()


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

    async def yield_shielded(self) -> None:
        await trio.lowlevel.cancel_shielded_checkpoint()


def parking_for_this_loop() -> Parking:
    """The parking for the running loop: trio's own on trio, the plain one elsewhere."""
    if sniffio.current_async_library() == "trio":
        return TrioParking()
    return PlainParking()
