"""A clock that moves only when told to, for tests and deterministic local runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

DEFAULT_START = datetime(2030, 1, 1, tzinfo=UTC)


class ManualClock:
    """A controllable clock: ``now()`` changes only through :meth:`advance` and :meth:`set`."""

    def __init__(self, start: datetime = DEFAULT_START) -> None:
        if start.tzinfo is None:
            raise ValueError(f"ManualClock needs a timezone-aware start, got naive {start!r}")
        self._now = start.astimezone(UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, amount: float | timedelta) -> datetime:
        """Move forward by ``amount`` (seconds or a ``timedelta``); return the new time."""
        delta = amount if isinstance(amount, timedelta) else timedelta(seconds=amount)
        if delta < timedelta(0):
            raise ValueError(f"a clock cannot go backwards (advance by {amount!r})")
        self._now += delta
        return self._now

    def set(self, when: datetime) -> datetime:
        """Jump to ``when`` (not earlier than now)."""
        if when.tzinfo is None:
            raise ValueError(f"ManualClock.set needs a timezone-aware datetime, got {when!r}")
        when = when.astimezone(UTC)
        if when < self._now:
            raise ValueError(f"a clock cannot go backwards (from {self._now} to {when})")
        self._now = when
        return self._now
