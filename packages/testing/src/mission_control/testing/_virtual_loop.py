"""An asyncio event loop on virtual time: asyncio's counterpart of trio's
``MockClock(autojump_threshold=0)``.

asyncio's loop asks its selector to wait ``timeout`` seconds for I/O when its next timer is due
that far ahead (``None`` when no timer waits, ``0`` when callbacks are ready). The selector here
looks for I/O without waiting first; when nothing is ready and a timer waits, it moves the loop's
clock to that timer instead of sleeping, so a 30-day timer fires at once. I/O that is ready (a
socket on 127.0.0.1, a thread waking the loop through its self-pipe) always goes first, and with
no timer at all the loop waits for real until I/O comes. With an ``autojump_threshold`` (as
trio's), the loop first waits that many real seconds for I/O before it jumps: a call that waits
on something real (a database server, a worker thread) then finishes before a timer fires early.
"""

from __future__ import annotations

import asyncio
import asyncio.base_events
import functools
import math
import selectors
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from _typeshed import FileDescriptorLike


_RESOLUTION = time.get_clock_info("monotonic").resolution
"""What asyncio adds to its clock when it looks for the timers that are due."""

_LONGEST_WAIT: float = getattr(asyncio.base_events, "MAXIMUM_SELECT_TIMEOUT", 24 * 3600)
"""The longest wait asyncio asks of its selector (a day; not in its typing stubs): a timer due
later is reached in several waits of this length, between which nothing runs."""


class _VirtualTime:
    """The clock a loop and its selector share."""

    __slots__ = ("now",)

    def __init__(self, start: float) -> None:
        self.now = start

    def advance(self, seconds: float) -> None:
        # ``seconds`` is at least one step of the clock's float (a timer due later than now
        # is due at least one step later), so the clock always moves.
        self.now += seconds


class _JumpingSelector(selectors.BaseSelector):
    """A selector that jumps virtual time to the next timer instead of waiting for it."""

    def __init__(
        self, inner: selectors.BaseSelector, time: _VirtualTime, threshold: float = 0.0
    ) -> None:
        self._inner = inner
        self._time = time
        self._threshold = threshold
        # Whether the last select jumped a capped wait: the loop then found no timer due and ran
        # nothing before asking again, so nothing real can have started meanwhile.
        self._jumped_cap = False

    def register(
        self, fileobj: FileDescriptorLike, events: int, data: Any = None
    ) -> selectors.SelectorKey:
        return self._inner.register(fileobj, events, data)

    def unregister(self, fileobj: FileDescriptorLike) -> selectors.SelectorKey:
        return self._inner.unregister(fileobj)

    def modify(
        self, fileobj: FileDescriptorLike, events: int, data: Any = None
    ) -> selectors.SelectorKey:
        return self._inner.modify(fileobj, events, data)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        jumped_cap, self._jumped_cap = self._jumped_cap, False
        ready = self._inner.select(0)
        if ready or (timeout is not None and timeout <= 0):
            return ready
        if timeout is None:
            # Nothing is scheduled: only I/O (or another thread, through the self-pipe) can
            # wake the loop, so wait for it for real.
            return self._inner.select(None)
        if self._threshold > 0 and not jumped_cap:
            # Real work may be under way elsewhere (a thread, a server): give it a moment of
            # real time before deciding that everything waits for the timer. (Once is enough
            # for a timer months away, which asyncio reaches a day at a time.)
            ready = self._inner.select(min(timeout, self._threshold))
            if ready:
                return ready
        # Everything waits and a timer is due in ``timeout`` seconds: it is due now.
        self._time.advance(timeout)
        self._jumped_cap = timeout >= _LONGEST_WAIT
        return []

    def close(self) -> None:
        self._inner.close()

    def get_key(self, fileobj: FileDescriptorLike) -> selectors.SelectorKey:
        return self._inner.get_key(fileobj)

    def get_map(self) -> Mapping[FileDescriptorLike, selectors.SelectorKey]:
        return self._inner.get_map()


class VirtualTimeEventLoop(asyncio.SelectorEventLoop):
    """An asyncio selector event loop whose clock is virtual: whenever every task waits and a
    timer is pending, the clock jumps to that timer (trio's ``MockClock(autojump_threshold=0)``
    on asyncio). I/O that is ready is always handled first; with no timer pending the loop waits
    for I/O for real.

    ``time()`` (hence ``anyio.current_time()`` and ``loop.call_later``) starts at ``start``
    seconds. With ``autojump_threshold`` (seconds, as trio's ``MockClock``), the clock jumps only
    after that much real time without I/O. Make one with :func:`virtual_time_loop`.
    """

    def __init__(
        self,
        selector: selectors.BaseSelector | None = None,
        *,
        start: float = 0.0,
        autojump_threshold: float = 0.0,
    ) -> None:
        if not autojump_threshold >= 0:
            raise ValueError(f"autojump_threshold must be >= 0, got {autojump_threshold!r}")
        # Set before the base class starts, which may read the clock.
        self._virtual_time = _VirtualTime(start)
        inner = selectors.DefaultSelector() if selector is None else selector
        super().__init__(
            selector=_JumpingSelector(inner, self._virtual_time, float(autojump_threshold))
        )

    def time(self) -> float:
        return self._virtual_time.now

    async def shutdown_default_executor(
        self,
        timeout: float | None = None,  # noqa: ASYNC109 (asyncio's own signature)
    ) -> None:
        # ``asyncio.Runner`` gives the executor's threads (name resolution's among them) 300
        # seconds to finish: a thread's work does not hold virtual time still, so that deadline
        # would pass at once, with a warning. Wait for them without one.
        del timeout
        await super().shutdown_default_executor()

    # asyncio runs the timers due before ``time() + _clock_resolution``. Far from zero (beyond
    # about 100 days) the resolution vanishes in that sum, so a timer due exactly now (a
    # ``call_later(0)``, a nanosecond sleep) would never be due while the loop, asked to wait
    # 0 seconds for it, spins. One step of the clock's float at least keeps "due now" due.
    @property
    def _clock_resolution(self) -> float:  # pyright: ignore[reportIncompatibleVariableOverride]
        return max(_RESOLUTION, math.ulp(self._virtual_time.now))

    @_clock_resolution.setter
    def _clock_resolution(self, _: float) -> None:  # pyright: ignore[reportIncompatibleVariableOverride]
        # The base class sets the real clock's resolution when it starts; the property above
        # already begins with it.
        pass


def virtual_time_loop(*, autojump_threshold: float = 0.0) -> VirtualTimeEventLoop:
    """A new asyncio event loop on virtual time (see :class:`VirtualTimeEventLoop`).

    It fits wherever an event loop factory is taken: AnyIO's
    ``anyio.run(main, backend="asyncio", backend_options={"loop_factory": virtual_time_loop})``
    and its pytest plugin's ``("asyncio", {"loop_factory": virtual_time_loop})``, or
    ``asyncio.Runner(loop_factory=virtual_time_loop)``. With ``autojump_threshold`` (give a
    ``functools.partial`` of it as the factory), the clock jumps only after that many real seconds
    without I/O: for code that waits on real work meanwhile (a database server).
    """
    return VirtualTimeEventLoop(autojump_threshold=autojump_threshold)


def threshold_loop_factory(autojump_threshold: float) -> functools.partial[VirtualTimeEventLoop]:
    """:func:`virtual_time_loop` with ``autojump_threshold``, as a loop factory."""
    return functools.partial(virtual_time_loop, autojump_threshold=autojump_threshold)
