"""Mission ids: sortable by creation time, unique without coordination."""

from __future__ import annotations

import os
import random
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
# An id is 130 bits written as 13 pairs of base32 digits, each pair read from this table.
_PAIRS = [high + low for high in _ALPHABET for low in _ALPHABET]
_SHIFTS = tuple(range(120, -1, -10))

# Seeded from os.urandom, and again in a forked child, so that processes never share a
# sequence; its own instance, so that a program seeding the random module changes nothing here.
_random = random.Random()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_random.seed)


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
            # 79 bits: a run of ids in one millisecond cannot overflow into the time.
            randomness = _random.getrandbits(79)
        self._last_ms, self._last_random = ms, randomness
        value = (ms << 80) | (randomness & ((1 << 80) - 1))
        pairs = _PAIRS
        return "".join([pairs[(value >> shift) & 1023] for shift in _SHIFTS])
