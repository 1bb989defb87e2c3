"""Where a commander reads the time from."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    """A source of the current time as an aware UTC ``datetime``.

    Due times (timers, retries, delayed starts) are compared against it, so a test that swaps in
    a controllable clock decides when they are due.
    """

    def now(self) -> datetime: ...


class SystemClock:
    """The wall clock, in UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)


def ensure_aware(value: datetime, *, what: str) -> datetime:
    """Reject naive datetimes (their zone is a guess) and normalise aware ones to UTC."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be a timezone-aware datetime, got naive {value!r}")
    return value.astimezone(UTC)
