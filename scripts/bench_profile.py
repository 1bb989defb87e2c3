"""Where a run's time goes: cProfile of one extra engine run, summed by category."""

from __future__ import annotations

import cProfile
import io
import os
import pstats
import sysconfig
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

from bench_loops import Loops

_StatsKey = tuple[str, int, str]
_STDLIB = sysconfig.get_paths()["stdlib"].replace(os.sep, "/")
CATEGORIES = ("sqlite", "json", "engine", "adapter", "runtime", "loop", "other")
"""Where a profile's busy time goes: apsw calls; core's serialization with json and cattrs; the
rest of core; the adapters; the runtime and client; the event loop (trio, or asyncio, and AnyIO
on either); the rest (this script, ...). Time in builtins and the standard library (but json
and asyncio) counts for the category of their main caller; time the loop spends waiting for I/O
or a timer (``epoll``) is idle and left out."""


def _own_category(key: _StatsKey) -> str | None:
    filename, _, name = key
    if "apsw." in name:
        return "sqlite"
    if "select.epoll" in name or "selectors" in filename:
        return "idle"
    if filename == "~":
        return None
    path = filename.replace(os.sep, "/")
    if (
        path.startswith(("<cattrs", "<codec "))  # core's generated codec: "<codec writer of ...>"
        or "/cattrs/" in path
        or path.endswith("/_serialization.py")
        or (path.endswith("core/_snapshot.py") and name == "json_text")
        or path.startswith(_STDLIB + "/json/")
    ):
        return "json"
    if "/packages/core/" in path or path.startswith(("<attrs generated", "<snapshot of a draft")):
        return "engine"
    if "/packages/adapter-sqlite/" in path or "/packages/in-memory-commander/" in path:
        return "adapter"
    if "/packages/runtime/" in path or "/packages/client/" in path:
        return "runtime"
    if any(f"/{name}/" in path for name in ("trio", "outcome", "anyio", "sniffio", "asyncio")):
        return "loop"
    if path.startswith(_STDLIB + "/"):
        return None
    return "other"


def profile_shares(stats: pstats.Stats) -> dict[str, float]:
    """Each category's share of the profiled time (see :data:`CATEGORIES`)."""
    raw: Any = getattr(stats, "stats")  # noqa: B009 (not in the stubs)
    table = cast(dict[_StatsKey, tuple[int, int, float, float, dict[_StatsKey, Any]]], raw)
    memo: dict[_StatsKey, str] = {}

    def category(key: _StatsKey, depth: int = 0) -> str:
        if key in memo:
            return memo[key]
        found = _own_category(key)
        if found is None:
            callers = table[key][4] if key in table else {}
            if not callers or depth > 20:
                found = "other"
            else:
                # The caller that spent the most time in this function.
                caller = max(
                    callers, key=lambda c: cast(tuple[int, int, float, float], callers[c])[2]
                )
                found = category(caller, depth + 1)
        memo[key] = found
        return found

    totals: dict[str, float] = dict.fromkeys((*CATEGORIES, "idle"), 0.0)
    for key, (_, _, tottime, _, _) in table.items():
        totals[category(key)] += tottime
    busy = sum(totals[name] for name in CATEGORIES) or 1.0
    return {name: totals[name] / busy for name in CATEGORIES}


@dataclass(frozen=True)
class Profile:
    text: str
    shares: dict[str, float]


class Profiles:
    """cProfile of one extra engine run per scenario and backend, when ``--profile`` is given."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def each(self, loops: Loops, work: Callable[[str], Awaitable[object]]) -> dict[str, Profile]:
        """A profile of ``work(backend)`` on each backend (none unless enabled)."""
        if not self.enabled:
            return {}
        return loops.each(lambda backend: self._profile(work, backend))

    @staticmethod
    async def _profile(work: Callable[[str], Awaitable[object]], backend: str) -> Profile:
        profile = cProfile.Profile()
        profile.enable()
        try:
            await work(backend)
        finally:
            profile.disable()
        stream = io.StringIO()
        stats = pstats.Stats(profile, stream=stream)
        stats.sort_stats("tottime").print_stats(25)
        stats.sort_stats("cumulative").print_stats("mission_control", 25)
        return Profile(stream.getvalue(), profile_shares(stats))


def format_shares(shares: dict[str, float]) -> str:
    return ", ".join(f"{name} {share:.0%}" for name, share in shares.items() if share >= 0.005)
