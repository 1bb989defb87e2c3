"""The times ticks were asked for and have not run yet."""

from __future__ import annotations

import heapq
from datetime import datetime


class PendingTicks:
    """A set of requested tick times, earliest first.

    Every requested time is kept until a tick starts at or after it, so asking for a later tick
    never cancels an earlier one and vice versa.
    """

    __slots__ = ("_heap", "_times")

    def __init__(self) -> None:
        self._heap: list[datetime] = []
        self._times: set[datetime] = set()

    def add(self, when: datetime) -> bool:
        """Request a tick at ``when``; ``True`` when it is now the earliest request."""
        if when not in self._times:
            self._times.add(when)
            heapq.heappush(self._heap, when)
        return self._heap[0] == when

    def earliest(self) -> datetime | None:
        return self._heap[0] if self._heap else None

    def discard_through(self, now: datetime) -> bool:
        """Drop the requests a tick starting at ``now`` satisfies; ``True`` if any were."""
        dropped = False
        while self._heap and self._heap[0] <= now:
            self._times.discard(heapq.heappop(self._heap))
            dropped = True
        return dropped

    def clear(self) -> None:
        self._heap.clear()
        self._times.clear()

    def sorted(self) -> tuple[datetime, ...]:
        return tuple(sorted(self._heap))

    def __contains__(self, when: object) -> bool:
        return when in self._times

    def __len__(self) -> int:
        return len(self._heap)
