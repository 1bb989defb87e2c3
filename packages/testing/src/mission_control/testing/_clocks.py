"""Clocks for tests: a commander clock that trio's clock drives."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import trio

DEFAULT_START = datetime(2030, 1, 1, tzinfo=UTC)


class TrioClock:
    """A commander clock that moves with trio's clock: ``now()`` is ``start`` plus the trio time
    that has passed since the clock was first read (or made, inside a trio run).

    With trio's ``MockClock(autojump_threshold=0)`` (pytest-trio's ``autojump_clock`` fixture)
    a runtime that sleeps until a 30-day timer is due gets there at once, and the commander sees
    the same 30 days pass. Reading it outside a trio run raises ``RuntimeError``.
    """

    __slots__ = ("_origin", "_start")

    def __init__(self, start: datetime = DEFAULT_START) -> None:
        if not isinstance(start, datetime) or start.tzinfo is None or start.utcoffset() is None:
            raise ValueError(f"TrioClock needs a timezone-aware start, got {start!r}")
        self._start = start.astimezone(UTC)
        self._origin: float | None = None
        try:
            self._origin = trio.current_time()
        except RuntimeError:
            # Made outside a trio run (a sync pytest fixture): start counting at the first read.
            self._origin = None

    @property
    def start(self) -> datetime:
        """What ``now()`` read when the clock started."""
        return self._start

    def now(self) -> datetime:
        current = trio.current_time()
        if self._origin is None:
            self._origin = current
        return self._start + timedelta(seconds=current - self._origin)

    def __repr__(self) -> str:
        return f"TrioClock(start={self._start.isoformat()})"
