"""Clocks for tests: a commander clock that the event loop's clock drives."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import anyio

DEFAULT_START = datetime(2030, 1, 1, tzinfo=UTC)


class LoopClock:
    """A commander clock that moves with the event loop's clock (``anyio.current_time()``, on
    trio or asyncio): ``now()`` is ``start`` plus the loop time that has passed since the clock
    was first read (or made, inside a running loop).

    On a virtual-time loop (trio's ``MockClock(autojump_threshold=0)``, or
    :func:`virtual_time_loop` on asyncio) a runtime that sleeps until a 30-day timer is due gets
    there at once, and the commander sees the same 30 days pass. Reading it outside a running
    event loop raises ``RuntimeError``.
    """

    __slots__ = ("_origin", "_start")

    def __init__(self, start: datetime = DEFAULT_START) -> None:
        if not isinstance(start, datetime) or start.tzinfo is None or start.utcoffset() is None:
            raise ValueError(f"{type(self).__name__} needs a timezone-aware start, got {start!r}")
        self._start = start.astimezone(UTC)
        self._origin: float | None = None
        try:
            self._origin = anyio.current_time()
        except RuntimeError:
            # Made outside a running loop (a sync pytest fixture): start counting at the first
            # read.
            self._origin = None

    @property
    def start(self) -> datetime:
        """What ``now()`` read when the clock started."""
        return self._start

    def now(self) -> datetime:
        current = anyio.current_time()
        if self._origin is None:
            self._origin = current
        return self._start + timedelta(seconds=current - self._origin)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(start={self._start.isoformat()})"


TrioClock = LoopClock
"""The name :class:`LoopClock` had when the library ran on trio only."""
