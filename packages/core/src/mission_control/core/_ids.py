"""Mission ids: sortable by creation time, unique without coordination."""

from __future__ import annotations

import os
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


class SortableIds:
    """ULID-style ids: 48 bits of milliseconds then 80 random bits, in Crockford base32.

    Ids made in the same millisecond by one generator increase, so ids sort by creation order.
    """

    def __init__(self) -> None:
        self._last_ms = -1
        self._last_random = 0

    def __call__(self) -> str:
        ms = time.time_ns() // 1_000_000
        if ms <= self._last_ms:
            ms = self._last_ms
            randomness = self._last_random + 1
        else:
            randomness = int.from_bytes(os.urandom(10), "big") >> 1
        self._last_ms, self._last_random = ms, randomness
        value = (ms << 80) | (randomness & ((1 << 80) - 1))
        chars: list[str] = []
        for _ in range(26):
            chars.append(_ALPHABET[value & 31])
            value >>= 5
        return "".join(reversed(chars))
