"""Benchmarks: throughput, tick cost and memory of Mission Control, on trio and on asyncio, next to
a bare loop.

    uv run python scripts/benchmark.py                # every scenario, as a table (~2 minutes)
    uv run python scripts/benchmark.py --quick        # small counts: a smoke run of seconds
    uv run python scripts/benchmark.py --scenario 5   # one scenario (repeat the option for more)
    uv run python scripts/benchmark.py --backends asyncio  # one event loop only (default: both)
    uv run python scripts/benchmark.py --json         # JSON on stdout (the table on stderr)
    uv run python scripts/benchmark.py --profile      # and cProfile one engine run per scenario

Each figure is the median of several runs, with their spread (half the min-to-max range, as a
share of the median). The engine's runs are made on each backend (trio and asyncio, through
AnyIO), one fresh event loop per run, the backends alternating round by round, so that both
meet the same phases of a noisy machine; *asyncio/trio* pairs the two runs of each round. Each
scenario also runs, in the same process and interleaved with the engine's runs, a *bare loop*:
trio + apsw writing the same rows with the same statements and no engine, one transaction per
write. It is trio's reference, and runs on trio only. The rows are the JSON the engine writes,
captured from a real mission of the scenario, and the number of writes per mission is the one
counted on the adapter, so each figure can also be read as a ratio to the bare loop, which holds
better than absolute figures on a noisy machine. (Where missions move concurrently, the
adapter's group commit puts several writes in one transaction; the bare loop does not, and the
scenario records how many transactions the adapter took.)

Scenarios (docs/performance.md has the targets and what dominates each):

1. 3-step missions one after another: in-memory, SQLite NORMAL and FULL;
2. 1,000 missions in flight at once (their steps yield to the event loop);
3. 500 missions waiting on a signal, then all signalled at once;
4. 200 missions sleeping 1 s then running a step, driven by the real runtime and system clock;
5. a runtime tick over 100,000 waiting missions of which 100 are due;
6. runtime start-up over 100,000 waiting missions;
7. the cost of a transition at a timeline (history) length of 1 and of 1,000;
8. peak RSS (a fresh process per measurement) for (1) and for 100,000 persisted missions;
9. the cost of a loop's iteration at iteration 1 and at iteration 1,000.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import itertools
import json
import os
import platform
import pstats
import resource
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import metadata
from typing import Any, Protocol, Self, TypeVar, TypeVarTuple, cast

import anyio
import anyio.lowlevel
import apsw
import trio

from mission_control.adapter_sqlite import (
    SQLitePersistenceAdapter,
    Synchronous,
    create_sqlite_persistence_adapter,
)
from mission_control.client import create_mission_client
from mission_control.core import (
    CancelRequest,
    Commander,
    Context,
    JsonValue,
    MissionDefinition,
    MissionSnapshot,
    MissionStatus,
    SortableIds,
    TimelineEntry,
    TimelineKind,
    create_commander,
    m,
)
from mission_control.core.storage import (
    ANY_TENANT,
    BufferedSignal,
    NewSignal,
    PersistenceAdapter,
    TenantFilter,
    snapshot_from_json,
    snapshot_to_json,
    timeline_entry_to_json,
)
from mission_control.in_memory_commander import InMemoryPersistenceAdapter, ManualClock
from mission_control.runtime import CommanderRuntime, create_commander_runtime

Definition = MissionDefinition[Any, Any, Any]
T0 = datetime(2030, 1, 1, tzinfo=UTC)
"""The manual clock's start in scenarios 5, 6 and 8 (and when capturing rows)."""
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# -- definitions ------------------------------------------------------------------------------


def _same(raw: object) -> object:
    return raw


def _started(ctx: Context[object, None]) -> dict[str, bool]:
    return {"ok": True}


def _one(ctx: Context[object, Any]) -> int:
    return 1


async def _yield_one(ctx: Context[object, Any]) -> int:
    await anyio.lowlevel.checkpoint()
    return 1


THREE_STEPS: Definition = (
    m.define("three-steps")
    .start(parse=_same, run=_started)
    .step("a", _one)
    .step("b", _one)
    .step("c", _one)
    .end()
)
"""(1): start, three plain steps, end: one insert and three commits per mission."""

IN_FLIGHT: Definition = (
    m.define("in-flight")
    .start(parse=_same, run=_started)
    .step("a", _yield_one)
    .step("b", _yield_one)
    .step("c", _yield_one)
    .end()
)
"""(2): the same with steps that yield to the event loop, so that missions interleave."""

SIGNALLED: Definition = (
    m.define("signalled")
    .start(parse=_same)
    .need_to("approve", parse=_same)
    .step("work", _one)
    .end()
)
"""(3) and (7): wait for a signal, then one step."""


def _stop_asked(ctx: Context[Any, Any]) -> bool:
    return ctx.events["next"].output == "stop"


LOOPED: Definition = (
    m.define("looped")
    .start(parse=_same)
    .loop(
        "rounds",
        lambda body: body.need_to("next", parse=_same).step("work", _one),
        until=_stop_asked,
        max_iterations=1_000_000,
    )
    .end()
)
"""(9): a loop whose iterations wait for a signal, then run one step."""

SLEEPER_NAME = "sleeper"


def sleeper(seconds: float) -> Definition:
    """(4): sleep, then one step."""
    return m.define(SLEEPER_NAME).start(parse=_same).sleep("nap", seconds).step("work", _one).end()


PARKED: Definition = (
    m.define("parked")
    .start(parse=_same)
    .need_to("approve", parse=_same)
    .sleep("nap", timedelta(days=1))
    .step("work", _one)
    .end()
)
"""(5), (6), (8): the 100,000 waiting missions wait at ``approve`` (a signal) or ``nap`` (a
timer); the due ones run ``work`` and end when a tick advances them."""

# -- statistics and rows --------------------------------------------------------------------------


@dataclass(frozen=True)
class Stats:
    samples: tuple[float, ...]

    @classmethod
    def of(cls, samples: Iterable[float]) -> Stats:
        values = tuple(samples)
        if not values:
            raise ValueError("no samples")
        return cls(values)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def low(self) -> float:
        return min(self.samples)

    @property
    def high(self) -> float:
        return max(self.samples)

    @property
    def spread(self) -> float:
        """Half the min-to-max range, as a share of the median."""
        median = self.median
        return (self.high - self.low) / 2 / median if median else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "median": self.median,
            "min": self.low,
            "max": self.high,
            "spread": self.spread,
            "samples": list(self.samples),
        }


def paired_ratio(engine: Sequence[float], bare: Sequence[float]) -> Stats:
    """Engine / bare for each pair of runs made next to each other."""
    return Stats.of(e / b for e, b in zip(engine, bare, strict=True))


ASYNCIO_MARGIN = 0.10
"""How far asyncio's figure may be from trio's (DESIGN, issue 12): at most 10% slower."""


@dataclass(frozen=True)
class Target:
    """A bound on a row's median, or (``of_bare``) on its ratio to the bare loop."""

    text: str
    bound: float
    at_most: bool
    of_bare: bool = False

    def met(self, value: Stats, vs_bare: Stats | None) -> bool:
        figure = vs_bare if self.of_bare else value
        if figure is None:
            raise ValueError(f"target {self.text!r} needs the bare loop")
        return figure.median <= self.bound if self.at_most else figure.median >= self.bound


@dataclass
class Row:
    scenario: int
    label: str
    unit: str
    values: dict[str, Stats]
    """The engine's figure on each backend that ran, by backend name; their samples are in
    round order, so that the two backends' runs of a round pair up."""
    bare: Stats | None = None
    vs_bare: dict[str, Stats] = field(default_factory=dict[str, Stats])
    """Each backend's figure / the bare loop's (of this row's unit), median of the runs paired
    in time."""
    target: Target | None = None

    @property
    def higher_is_better(self) -> bool:
        return self.unit == "missions/s"

    @property
    def vs_trio(self) -> Stats | None:
        """asyncio / trio (of this row's unit), for each round's pair of runs."""
        if "asyncio" not in self.values or "trio" not in self.values:
            return None
        return paired_ratio(self.values["asyncio"].samples, self.values["trio"].samples)

    @property
    def asyncio_within_margin(self) -> bool | None:
        ratio = self.vs_trio
        if ratio is None:
            return None
        if self.higher_is_better:
            return ratio.median >= 1 - ASYNCIO_MARGIN
        return ratio.median <= 1 + ASYNCIO_MARGIN

    @property
    def met(self) -> dict[str, bool]:
        if self.target is None:
            return {}
        target = self.target
        return {b: target.met(value, self.vs_bare.get(b)) for b, value in self.values.items()}

    def to_json(self) -> dict[str, Any]:
        vs_trio = self.vs_trio
        return {
            "scenario": self.scenario,
            "label": self.label,
            "unit": self.unit,
            "higher_is_better": self.higher_is_better,
            "values": {b: value.to_json() for b, value in self.values.items()},
            "bare": self.bare.to_json() if self.bare is not None else None,
            "ratio_to_bare": {b: ratio.to_json() for b, ratio in self.vs_bare.items()},
            "asyncio_to_trio": vs_trio.to_json() if vs_trio is not None else None,
            "asyncio_within_margin": self.asyncio_within_margin,
            "target": self.target.text if self.target is not None else None,
            "met": self.met,
        }


def row(
    scenario: int,
    label: str,
    unit: str,
    samples: Mapping[str, Sequence[float]],
    bare: Sequence[float] | None = None,
    *,
    target: Target | None = None,
    paired_with_bare: bool = True,
) -> Row:
    """A row of the engine's ``samples`` by backend, next to the bare loop's (in the same
    rounds) unless ``paired_with_bare`` is false (the bare figure is then only shown)."""
    vs_bare: dict[str, Stats] = {}
    if bare is not None and paired_with_bare:
        vs_bare = {backend: paired_ratio(values, bare) for backend, values in samples.items()}
    return Row(
        scenario,
        label,
        unit,
        {backend: Stats.of(values) for backend, values in samples.items()},
        Stats.of(bare) if bare is not None else None,
        vs_bare,
        target,
    )


@dataclass
class Result:
    number: int
    title: str
    rows: list[Row] = field(default_factory=list[Row])
    details: dict[str, Any] = field(default_factory=dict[str, Any])
    profiles: dict[str, Profile] = field(default_factory=dict[str, "Profile"])
    """cProfile of one extra engine run, by backend (with ``--profile``)."""
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "scenario": self.number,
            "title": self.title,
            "rows": [row.to_json() for row in self.rows],
            "details": self.details,
            "profiles": {
                backend: {"shares": profile.shares, "text": profile.text}
                for backend, profile in self.profiles.items()
            },
            "seconds": self.seconds,
        }


def _format(value: float, unit: str) -> str:
    if unit == "missions/s":
        return f"{value:,.0f}/s"
    if unit == "us":
        return f"{value:,.0f} us"
    if unit == "ms":
        return f"{value:,.2f} ms"
    if unit == "s":
        return f"{value:.3f} s"
    if unit == "MB":
        return f"{value:.1f} MB"
    if unit == "x":
        return f"{value:.2f}x"
    return f"{value:g} {unit}"


def _format_ratio(ratio: Stats | None, higher_is_better: bool) -> str:
    if ratio is None:
        return ""
    return f"{ratio.median:.0%}" if higher_is_better else f"{ratio.median:.2f}x"


def _yes_no(value: bool | None) -> str:
    return "" if value is None else ("yes" if value else "NO")


def _header(backends: Sequence[str]) -> tuple[tuple[str, ...], set[int]]:
    """The table's column names, and which of them are right-aligned."""
    columns = ["#", "measure"]
    for backend in backends:
        columns += [backend, "±"]
    if len(backends) > 1:
        columns += ["asyncio/trio", f"within {ASYNCIO_MARGIN:.0%}"]
    columns += ["bare loop (trio only)", f"{backends[0]} vs bare", "target", "met"]
    right = {i for i, name in enumerate(columns) if name not in ("#", "measure", "target", "met")}
    return tuple(columns), right


def _cells(row: Row, backends: Sequence[str]) -> tuple[str, ...]:
    cells = [str(row.scenario), row.label]
    for backend in backends:
        value = row.values.get(backend)
        cells += (
            ["", ""] if value is None else [_format(value.median, row.unit), f"±{value.spread:.0%}"]
        )
    if len(backends) > 1:
        cells += [_format_ratio(row.vs_trio, row.higher_is_better)]
        cells += [_yes_no(row.asyncio_within_margin)]
    met = row.met
    cells += [
        _format(row.bare.median, row.unit) if row.bare is not None else "",
        _format_ratio(row.vs_bare.get(backends[0]), row.higher_is_better),
        row.target.text if row.target is not None else "",
        "/".join(_yes_no(met[b]) for b in backends if b in met),
    ]
    return tuple(cells)


def render_table(
    results: Sequence[Result], backends: Sequence[str], *, markdown: bool = False
) -> str:
    header, right = _header(backends)
    lines: list[tuple[str, ...]] = [header]
    for result in results:
        lines += [_cells(row, backends) for row in result.rows]
    if markdown:  # keep the indent of a row that details the one above
        lines = [tuple(cell.replace("  ", "&nbsp;&nbsp;", 1) for cell in line) for line in lines]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out: list[str] = []
    for n, line in enumerate(lines):
        cells = [
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(line)
        ]
        if markdown:
            out.append("| " + " | ".join(cells) + " |")
            if n == 0:
                rules = [
                    ("-" * (w - 1) + ":") if i in right else "-" * w for i, w in enumerate(widths)
                ]
                out.append("| " + " | ".join(rules) + " |")
        else:
            out.append("  ".join(cells).rstrip())
            if n == 0:
                out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


# -- event loops --------------------------------------------------------------------------------

BACKENDS = ("trio", "asyncio")
"""The event loops the engine is measured on, in the table's order."""

T = TypeVar("T")
Ts = TypeVarTuple("Ts")


class Loops:
    """Where each piece of work runs: the one place that knows about event loops.

    The engine's work runs through AnyIO on each chosen backend, in a fresh event loop per call
    (a commander serves the next loop once the previous one has ended). Measurements go round by
    round: in each round every backend makes one run, the first backend alternating from one
    round to the next, so that both meet the same phases of a noisy machine and a round's runs
    can be paired. The bare loop and the setting up (recording a mission's writes, building the
    waiting database) run on trio, the reference, whatever the chosen backends.
    """

    def __init__(self, backends: Iterable[str]) -> None:
        chosen = set(backends)
        self.backends = tuple(backend for backend in BACKENDS if backend in chosen)
        if not self.backends:
            raise ValueError(f"no backend chosen of {', '.join(BACKENDS)}")

    def run(self, backend: str, work: Callable[[*Ts], Awaitable[T]], *args: *Ts) -> T:
        """``work(*args)`` in a fresh event loop of ``backend``."""
        return anyio.run(work, *args, backend=backend)

    def reference(self, work: Callable[[*Ts], Awaitable[T]], *args: *Ts) -> T:
        """``work(*args)`` in a fresh trio loop: the bare loop and the setting up."""
        return trio.run(work, *args)

    def each(self, work: Callable[[str], Awaitable[T]]) -> dict[str, T]:
        """``work(backend)`` once on every chosen backend."""
        return {backend: self.run(backend, work, backend) for backend in self.backends}

    def rounds(self, count: int) -> Iterator[tuple[str, ...]]:
        """The order of the backends in each of ``count`` rounds."""
        for n in range(count):
            yield self.backends if n % 2 == 0 else self.backends[::-1]

    def measure(
        self, order: Sequence[str], into: dict[str, list[T]], work: Callable[[str], Awaitable[T]]
    ) -> None:
        """One round: ``work(backend)`` on each backend in ``order``, added to ``into``."""
        for backend in order:
            into[backend].append(self.run(backend, work, backend))

    def samples(self) -> dict[str, list[Any]]:
        """An empty list of samples per backend."""
        return {backend: [] for backend in self.backends}


# -- configuration ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    quick: bool
    repeat: int
    profile: bool
    s1_missions: int
    s1_full_missions: int
    s2_missions: int
    s3_missions: int
    s4_missions: int
    s4_sleep: float
    waiting: int
    due: int
    s7_history: int
    s7_samples: int
    s9_iteration: int
    warm_up: int

    @classmethod
    def make(cls, *, quick: bool, repeat: int | None, profile: bool) -> Config:
        if quick:
            return cls(
                quick=True,
                repeat=repeat or 2,
                profile=profile,
                s1_missions=200,
                s1_full_missions=50,
                s2_missions=100,
                s3_missions=50,
                s4_missions=20,
                s4_sleep=0.2,
                waiting=5_000,
                due=100,
                s7_history=1_000,
                s7_samples=20,
                s9_iteration=1_000,
                warm_up=20,
            )
        return cls(
            quick=False,
            repeat=repeat or 5,
            profile=profile,
            s1_missions=3_000,
            s1_full_missions=300,
            s2_missions=1_000,
            s3_missions=500,
            s4_missions=200,
            s4_sleep=1.0,
            waiting=100_000,
            due=100,
            s7_history=1_000,
            s7_samples=200,
            s9_iteration=1_000,
            warm_up=200,
        )


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


# -- the adapter calls and rows of one mission ---------------------------------------------------


@dataclass(frozen=True)
class Write:
    """One write transaction of a mission, as the SQLite adapter stores it."""

    insert: bool
    definition: str
    version: int
    revision: int
    status: str
    due: int | None
    snapshot: str
    entries: tuple[str, ...]


def _micros(when: datetime) -> int:
    return (when - _EPOCH) // timedelta(microseconds=1)


def _as_write(insert: bool, snapshot: MissionSnapshot, timeline: Sequence[TimelineEntry]) -> Write:
    wait = snapshot.wait
    due = None
    if snapshot.status is MissionStatus.WAITING and wait is not None and wait.due_at is not None:
        due = _micros(wait.due_at)
    return Write(
        insert=insert,
        definition=snapshot.definition,
        version=snapshot.definition_version,
        revision=snapshot.revision,
        status=snapshot.status.value,
        due=due,
        snapshot=snapshot_to_json(snapshot),
        entries=tuple(timeline_entry_to_json(entry) for entry in timeline),
    )


class RecordingAdapter:
    """A persistence adapter that counts the calls made on another one and keeps the writes."""

    def __init__(self, inner: PersistenceAdapter) -> None:
        self.inner = inner
        self.calls: Counter[str] = Counter()
        self.writes: list[Write] = []

    async def insert(
        self,
        snapshot: MissionSnapshot,
        timeline: Sequence[TimelineEntry],
        *,
        signals: Sequence[NewSignal] = (),
    ) -> MissionSnapshot | None:
        self.calls["insert"] += 1
        self.writes.append(_as_write(True, snapshot, timeline))
        return await self.inner.insert(snapshot, timeline, signals=signals)

    async def load(self, mission_id: str) -> MissionSnapshot | None:
        self.calls["load"] += 1
        return await self.inner.load(mission_id)

    async def commit(
        self,
        snapshot: MissionSnapshot,
        *,
        expected_revision: int,
        timeline: Sequence[TimelineEntry],
        consumed_signal: int | None = None,
        reopened: bool = False,
    ) -> None:
        self.calls["commit"] += 1
        self.writes.append(_as_write(False, snapshot, timeline))
        await self.inner.commit(
            snapshot,
            expected_revision=expected_revision,
            timeline=timeline,
            consumed_signal=consumed_signal,
            reopened=reopened,
        )

    async def delete_missions(self, revisions: Mapping[str, int]) -> list[str]:
        self.calls["delete_missions"] += 1
        return await self.inner.delete_missions(revisions)

    async def append_signal(
        self,
        mission_id: str,
        name: str,
        payload: JsonValue,
        received_at: datetime,
        timeline: Sequence[TimelineEntry],
    ) -> BufferedSignal:
        self.calls["append_signal"] += 1
        return await self.inner.append_signal(mission_id, name, payload, received_at, timeline)

    async def next_signal(self, mission_id: str, name: str) -> BufferedSignal | None:
        self.calls["next_signal"] += 1
        return await self.inner.next_signal(mission_id, name)

    async def request_cancel(
        self, mission_id: str, request: CancelRequest, timeline: Sequence[TimelineEntry]
    ) -> None:
        self.calls["request_cancel"] += 1
        await self.inner.request_cancel(mission_id, request, timeline)

    async def list_missions(
        self,
        *,
        status: MissionStatus | None = None,
        definition: str | None = None,
        limit: int,
        after_id: str | None = None,
        tenant: TenantFilter = ANY_TENANT,
    ) -> list[MissionSnapshot]:
        self.calls["list_missions"] += 1
        return await self.inner.list_missions(
            status=status, definition=definition, limit=limit, after_id=after_id, tenant=tenant
        )

    async def due_missions(self, now: datetime, limit: int) -> list[str]:
        self.calls["due_missions"] += 1
        return await self.inner.due_missions(now, limit)

    async def next_due_at(self, after: datetime | None = None) -> datetime | None:
        self.calls["next_due_at"] += 1
        return await self.inner.next_due_at(after)

    async def running_missions(self, limit: int, after_id: str | None = None) -> list[str]:
        self.calls["running_missions"] += 1
        return await self.inner.running_missions(limit, after_id)

    async def timeline(self, mission_id: str) -> list[TimelineEntry]:
        self.calls["timeline"] += 1
        return await self.inner.timeline(mission_id)

    async def aclose(self) -> None:
        await self.inner.aclose()

    def stage(self) -> tuple[list[Write], dict[str, int]]:
        """The writes and calls since the last stage."""
        writes, calls = self.writes, dict(sorted(self.calls.items()))
        self.writes, self.calls = [], Counter()
        return writes, calls


class Recorder:
    """A commander on the in-memory adapter (manual clock at ``T0``) whose calls are recorded."""

    def __init__(self, definition: Definition) -> None:
        self.clock = ManualClock(T0)
        self.adapter = RecordingAdapter(InMemoryPersistenceAdapter())
        self.commander = create_commander(
            [definition], persistence=self.adapter, clock=self.clock, ids=SortableIds()
        )


def _describe_writes(writes: Sequence[Write]) -> str:
    inserts = sum(1 for w in writes if w.insert)
    commits = len(writes) - inserts
    entries = "+".join(str(len(w.entries)) for w in writes)
    return f"{inserts} insert + {commits} commits, timeline entries {entries}"


Recorded = tuple[list[Write], dict[str, int]]
"""The writes and adapter calls of one stage of a mission."""


async def record_start(definition: Definition) -> Recorded:
    """The writes of starting one mission (to its end, or its first wait)."""
    recorder = Recorder(definition)
    await recorder.commander.start(definition, {"i": 0})
    return recorder.adapter.stage()


async def record_signal(definition: Definition) -> tuple[Recorded, Recorded]:
    """The writes of starting one mission waiting at ``approve``, then of signalling it."""
    recorder = Recorder(definition)
    handle = await recorder.commander.start(definition, {"i": 0})
    start = recorder.adapter.stage()
    await handle.signal("approve", {"ok": True})
    return start, recorder.adapter.stage()


async def record_timer(definition: Definition, seconds: float) -> tuple[Recorded, Recorded]:
    """The writes of starting one sleeping mission, then of advancing it once it is due."""
    recorder = Recorder(definition)
    handle = await recorder.commander.start(definition, {"i": 0})
    start = recorder.adapter.stage()
    recorder.clock.advance(seconds)
    await recorder.commander.advance(handle.id)
    return start, recorder.adapter.stage()


# -- the bare loop ------------------------------------------------------------------------------

_INSERT_MISSION = (
    "INSERT INTO missions (id, definition, status, due_at, revision, snapshot, cancel_request, "
    "definition_version) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING"
)
_UPDATE_MISSION = (
    "UPDATE missions SET status = ?, due_at = ?, revision = ?, snapshot = ?, "
    "cancel_request = coalesce(cancel_request, ?) WHERE id = ? AND revision = ?"
)
_INSERT_ENTRY = "INSERT INTO timeline (mission_id, revision, position, entry) VALUES (?, ?, ?, ?)"
_LOAD = "SELECT revision, snapshot, cancel_request FROM missions WHERE id = ?"
_VERSIONS_INDEX = (
    "missions INDEXED BY missions_unfinished_versions WHERE status IN ('running', 'waiting')"
)
_FIRST_VERSION = (
    f"SELECT definition, definition_version FROM {_VERSIONS_INDEX} "
    "ORDER BY definition, definition_version LIMIT 1"
)
# The next version: of the same definition, else the first of the next definition. (A row
# value comparison, (definition, definition_version) > (?, ?), would seek on the definition
# only and then read every mission of it.)
_NEXT_VERSION = (
    f"SELECT definition, definition_version FROM {_VERSIONS_INDEX} "
    "AND definition = ? AND definition_version > ? ORDER BY definition_version LIMIT 1"
)
_NEXT_DEFINITION = (
    f"SELECT definition, definition_version FROM {_VERSIONS_INDEX} "
    "AND definition > ? ORDER BY definition, definition_version LIMIT 1"
)
_FINGERPRINTS = "SELECT definition, version, fingerprint FROM definition_versions"
_DUE = (
    "SELECT id FROM missions WHERE due_at IS NOT NULL AND due_at <= ? ORDER BY due_at, id LIMIT ?"
)
_NEXT_DUE = "SELECT due_at FROM missions WHERE due_at IS NOT NULL ORDER BY due_at LIMIT 1"
_RUNNING = "SELECT id FROM missions WHERE status = 'running' ORDER BY id LIMIT ?"


class _Cursor(Protocol):
    def execute(self, statements: str, bindings: Sequence[Any] | None = None, /) -> Self: ...

    def executemany(
        self, statements: str, sequenceofbindings: Iterable[Sequence[Any]], /
    ) -> Self: ...

    def fetchall(self) -> list[tuple[Any, ...]]: ...


class _Connection(Protocol):
    def cursor(self) -> _Cursor: ...

    def changes(self) -> int: ...

    def pragma(self, name: str, value: int | str | None = None, /) -> Any: ...

    def close(self) -> None: ...


def _connect(path: str) -> _Connection:
    # apsw's stubs name collections.abc.Buffer, missing before Python 3.12: keep them out.
    return cast(_Connection, apsw.Connection(path))


class BareDb:
    """trio's caller + apsw, in WAL mode, on the adapter's schema: the same statements as the
    adapter, one transaction per write, without the engine and with the JSON made beforehand."""

    def __init__(self, path: str, synchronous: Synchronous = "NORMAL") -> None:
        if not os.path.exists(path):
            create_sqlite_persistence_adapter(path).close()  # the schema, nothing else
        self.db = _connect(path)
        self.db.pragma("journal_mode", "wal")
        self.db.pragma("synchronous", synchronous)
        self.cursor = self.db.cursor()

    def write(self, mission_id: str, write: Write) -> None:
        cursor = self.cursor
        cursor.execute("BEGIN IMMEDIATE")
        if write.insert:
            cursor.execute(
                _INSERT_MISSION,
                (
                    mission_id,
                    write.definition,
                    write.status,
                    write.due,
                    write.revision,
                    write.snapshot,
                    None,
                    write.version,
                ),
            )
        else:
            cursor.execute(
                _UPDATE_MISSION,
                (
                    write.status,
                    write.due,
                    write.revision,
                    write.snapshot,
                    None,
                    mission_id,
                    write.revision - 1,
                ),
            )
        if self.db.changes() != 1:
            cursor.execute("ROLLBACK")
            raise RuntimeError(f"bare loop: mission {mission_id} was not written")
        cursor.executemany(
            _INSERT_ENTRY, [(mission_id, write.revision, i, e) for i, e in enumerate(write.entries)]
        )
        cursor.execute("COMMIT")

    def load(self, mission_id: str) -> str:
        return str(self.cursor.execute(_LOAD, (mission_id,)).fetchall()[0][1])

    def close(self) -> None:
        self.db.close()


async def bare_mission(
    db: BareDb, mission_id: str, writes: Sequence[Write], *, yield_between: bool = False
) -> None:
    for i, write in enumerate(writes):
        if yield_between and i:
            await trio.lowlevel.checkpoint()
        db.write(mission_id, write)


# -- helpers ------------------------------------------------------------------------------------


def _sqlite_commander(
    path: str,
    definitions: Sequence[Definition],
    *,
    synchronous: Synchronous = "NORMAL",
    clock: ManualClock | None = None,
) -> Commander:
    adapter = create_sqlite_persistence_adapter(path, synchronous=synchronous)
    return create_commander(definitions, persistence=adapter, clock=clock)


def _memory_commanders(loops: Loops, definition: Definition) -> dict[str, Commander]:
    """An in-memory commander for each backend."""
    return {
        b: create_commander([definition], persistence=InMemoryPersistenceAdapter())
        for b in loops.backends
    }


def _sqlite_commanders(
    loops: Loops,
    definition: Definition,
    directory: str,
    name: str,
    synchronous: Synchronous = "NORMAL",
) -> dict[str, Commander]:
    """A SQLite commander for each backend, on a database of its own (``name-backend``), as
    large as the one of a run on that backend alone."""
    return {
        b: _sqlite_commander(
            os.path.join(directory, f"{name}-{b}.sqlite"), [definition], synchronous=synchronous
        )
        for b in loops.backends
    }


def _transactions(commander: Commander) -> int:
    """Write transactions the commander's SQLite adapter has begun so far."""
    return cast(SQLitePersistenceAdapter, commander.persistence).transactions


async def _sequential(commander: Commander, definition: Definition, count: int) -> float:
    """Missions per second, started and finished one after another."""
    started = time.perf_counter()
    for i in range(count):
        await commander.start(definition, {"i": i})
    return count / (time.perf_counter() - started)


async def _bare_sequential(db: BareDb, writes: Sequence[Write], count: int) -> float:
    ids = SortableIds()
    started = time.perf_counter()
    for _ in range(count):
        await bare_mission(db, ids(), writes)
    return count / (time.perf_counter() - started)


async def _check_completed(commander: Commander, definition: Definition, count: int) -> None:
    missions = commander.iter_missions(definition=definition, status=MissionStatus.COMPLETED)
    done = sum([1 async for _ in missions])
    if done < count:
        raise RuntimeError(f"{definition.name}: only {done} of {count} missions completed")


class GcTimer:
    """Time spent in Python's cyclic garbage collector while in ``with`` (cProfile does not see
    it: it lands on whatever function happened to allocate)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.collections: Counter[int] = Counter()
        self._began = 0.0

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._began = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._began
            self.collections[info["generation"]] += 1

    def __enter__(self) -> Self:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._callback)


def _copy_database(source: str, target: str) -> str:
    """Copy a closed database (its WAL checkpointed into it first) to ``target``."""
    db = _connect(source)
    try:
        db.pragma("wal_checkpoint", "TRUNCATE")
    finally:
        db.close()
    shutil.copyfile(source, target)
    # Write the copy out now, or the first checkpoint's fsync pays for it in a measured run.
    fd = os.open(target, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return target


def _remove_database(path: str) -> None:
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)


# -- (1) 3-step missions one after another ----------------------------------------------------


async def _close(*commanders: Commander) -> None:
    for commander in commanders:
        await commander.aclose()


async def _warm_up(commanders: Sequence[Commander], definition: Definition, count: int) -> None:
    for commander in commanders:
        await _sequential(commander, definition, count)


async def _with_gc(timer: GcTimer, work: Awaitable[float]) -> float:
    with timer:
        return await work


def scenario_1(cfg: Config, directory: str, loops: Loops, profiles: Profiles) -> Result:
    result = Result(1, "3-step missions one after another")
    writes, calls = loops.reference(record_start, THREE_STEPS)
    result.details["writes_per_mission"] = _describe_writes(writes)
    result.details["adapter_calls_per_mission"] = calls
    result.details["snapshot_bytes"] = [len(w.snapshot) for w in writes]
    n, n_full = cfg.s1_missions, cfg.s1_full_missions
    result.details["missions_per_run"] = {"memory": n, "NORMAL": n, "FULL": n_full}

    backends = loops.backends
    memory = _memory_commanders(loops, THREE_STEPS)
    normal = _sqlite_commanders(loops, THREE_STEPS, directory, "s1-normal")
    full = _sqlite_commanders(loops, THREE_STEPS, directory, "s1-full", synchronous="FULL")
    bare_normal = BareDb(os.path.join(directory, "s1-bare-normal.sqlite"), "NORMAL")
    bare_full = BareDb(os.path.join(directory, "s1-bare-full.sqlite"), "FULL")
    gc_memory = {b: GcTimer() for b in backends}
    gc_normal = {b: GcTimer() for b in backends}
    mem, nor, ful = loops.samples(), loops.samples(), loops.samples()
    bn: list[float] = []
    bf: list[float] = []
    try:
        loops.each(lambda b: _warm_up((memory[b], normal[b], full[b]), THREE_STEPS, cfg.warm_up))
        loops.reference(_bare_sequential, bare_normal, writes, cfg.warm_up)
        loops.reference(_bare_sequential, bare_full, writes, cfg.warm_up)
        for order in loops.rounds(cfg.repeat):
            loops.measure(
                order, mem, lambda b: _with_gc(gc_memory[b], _sequential(memory[b], THREE_STEPS, n))
            )
            loops.measure(
                order, nor, lambda b: _with_gc(gc_normal[b], _sequential(normal[b], THREE_STEPS, n))
            )
            bn.append(loops.reference(_bare_sequential, bare_normal, writes, n))
            loops.measure(order, ful, lambda b: _sequential(full[b], THREE_STEPS, n_full))
            bf.append(loops.reference(_bare_sequential, bare_full, writes, n_full))

        async def check(b: str) -> None:
            for commander, count in ((memory[b], n), (normal[b], n), (full[b], n_full)):
                await _check_completed(commander, THREE_STEPS, cfg.warm_up + cfg.repeat * count)

        loops.each(check)
        result.profiles = profiles.each(loops, lambda b: _sequential(normal[b], THREE_STEPS, n))
    finally:
        loops.each(lambda b: _close(memory[b], normal[b], full[b]))
        bare_normal.close()
        bare_full.close()

    # The share of the engine's time spent in the cyclic GC; the in-memory store keeps every
    # mission's objects alive, so its full collections grow with the missions it holds.
    result.details["gc_share"] = {
        b: {
            "memory": gc_memory[b].seconds / sum(n / rate for rate in mem[b]),
            "NORMAL": gc_normal[b].seconds / sum(n / rate for rate in nor[b]),
        }
        for b in backends
    }
    result.details["gc_collections"] = {
        b: {"memory": dict(gc_memory[b].collections), "NORMAL": dict(gc_normal[b].collections)}
        for b in backends
    }
    rate = "missions/s"
    result.rows += [
        row(
            1,
            "in-memory, missions one after another",
            rate,
            mem,
            bn,
            target=Target(">= 20,000/s", 20_000, at_most=False),
        ),
        row(
            1,
            "SQLite NORMAL, missions one after another",
            rate,
            nor,
            bn,
            target=Target(">= 60% of bare", 0.60, at_most=False, of_bare=True),
        ),
        row(1, "SQLite FULL, missions one after another", rate, ful, bf),
    ]
    return result


# -- (2) 1,000 missions in flight at once -----------------------------------------------------


async def _in_flight(commander: Commander, count: int) -> float:
    started = time.perf_counter()
    async with anyio.create_task_group() as tasks:
        for i in range(count):
            tasks.start_soon(commander.start, IN_FLIGHT, {"i": i})
    return count / (time.perf_counter() - started)


async def _warm_up_in_flight(commanders: Sequence[Commander], count: int) -> None:
    for commander in commanders:
        await _in_flight(commander, count)


async def _bare_in_flight(db: BareDb, writes: Sequence[Write], count: int) -> float:
    ids = SortableIds()
    started = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(count):
            nursery.start_soon(_bare_yielding, db, ids(), writes)
    return count / (time.perf_counter() - started)


async def _bare_yielding(db: BareDb, mission_id: str, writes: Sequence[Write]) -> None:
    await bare_mission(db, mission_id, writes, yield_between=True)


def scenario_2(cfg: Config, directory: str, loops: Loops, profiles: Profiles) -> Result:
    n = cfg.s2_missions
    result = Result(2, f"{n:,} missions in flight at once")
    writes, calls = loops.reference(record_start, IN_FLIGHT)
    result.details["writes_per_mission"] = _describe_writes(writes)
    result.details["adapter_calls_per_mission"] = calls
    backends = loops.backends
    memory = _memory_commanders(loops, IN_FLIGHT)
    sqlite = _sqlite_commanders(loops, IN_FLIGHT, directory, "s2")
    bare = BareDb(os.path.join(directory, "s2-bare.sqlite"))
    mem, eng = loops.samples(), loops.samples()
    ref: list[float] = []
    try:
        loops.each(lambda b: _warm_up_in_flight((memory[b], sqlite[b]), cfg.warm_up))
        loops.reference(_bare_in_flight, bare, writes, cfg.warm_up)
        before = {b: _transactions(sqlite[b]) for b in backends}
        for order in loops.rounds(cfg.repeat):
            loops.measure(order, mem, lambda b: _in_flight(memory[b], n))
            loops.measure(order, eng, lambda b: _in_flight(sqlite[b], n))
            ref.append(loops.reference(_bare_in_flight, bare, writes, n))
        # The bare loop takes one per write; group commit shares them between missions.
        result.details["sqlite_transactions_per_mission"] = {
            b: (_transactions(sqlite[b]) - before[b]) / (cfg.repeat * n) for b in backends
        }

        async def check(b: str) -> None:
            for commander in (memory[b], sqlite[b]):
                await _check_completed(commander, IN_FLIGHT, cfg.warm_up + cfg.repeat * n)

        loops.each(check)
        result.profiles = profiles.each(loops, lambda b: _in_flight(sqlite[b], n))
    finally:
        loops.each(lambda b: _close(memory[b], sqlite[b]))
        bare.close()
    result.rows += [
        row(2, f"in-memory, {n:,} in flight", "missions/s", mem, ref),
        row(2, f"SQLite NORMAL, {n:,} in flight", "missions/s", eng, ref),
    ]
    return result


# -- (3) 500 missions waiting on a signal, then all signalled ---------------------------------


async def _start_waiting(commander: Commander, count: int) -> list[str]:
    return [(await commander.start(SIGNALLED, {"i": i})).id for i in range(count)]


async def _signal_all(commander: Commander, ids: Sequence[str]) -> float:
    """Seconds from sending every signal at once until every mission has finished."""
    unfinished: list[str] = []

    async def signal(mission_id: str) -> None:
        snapshot = await commander.signal(mission_id, "approve", {"ok": True})
        if snapshot.status is not MissionStatus.COMPLETED:
            unfinished.append(mission_id)

    started = time.perf_counter()
    async with anyio.create_task_group() as tasks:
        for mission_id in ids:
            tasks.start_soon(signal, mission_id)
    elapsed = time.perf_counter() - started
    if unfinished:
        raise RuntimeError(f"{len(unfinished)} signalled missions did not complete")
    return elapsed


async def _start_and_signal(
    commander: Commander, count: int, transactions: list[int] | None = None
) -> float:
    """Start ``count`` waiting missions, then time signalling them all at once (and add the
    SQLite transactions the signals took to ``transactions``)."""
    ids = await _start_waiting(commander, count)
    before = _transactions(commander) if transactions is not None else 0
    elapsed = await _signal_all(commander, ids)
    if transactions is not None:
        transactions.append(_transactions(commander) - before)
    return elapsed


async def _bare_signal_all(db: BareDb, waiting: Write, after: Sequence[Write], count: int) -> float:
    ids = SortableIds()
    missions = [ids() for _ in range(count)]
    for mission_id in missions:
        db.write(mission_id, waiting)
    started = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for mission_id in missions:
            nursery.start_soon(bare_mission, db, mission_id, after)
    return time.perf_counter() - started


def scenario_3(cfg: Config, directory: str, loops: Loops, profiles: Profiles) -> Result:
    n = cfg.s3_missions
    result = Result(3, f"{n} missions waiting on a signal, then all signalled")
    (start_writes, start_calls), (writes, calls) = loops.reference(record_signal, SIGNALLED)
    (start_write,) = start_writes  # starting one of these missions is one insert
    result.details["writes_per_mission"] = {
        "start": _describe_writes(start_writes),
        "signal": _describe_writes(writes),
    }
    result.details["adapter_calls_per_mission"] = {"start": start_calls, "signal": calls}
    backends = loops.backends
    memory = _memory_commanders(loops, SIGNALLED)
    sqlite = _sqlite_commanders(loops, SIGNALLED, directory, "s3")
    bare = BareDb(os.path.join(directory, "s3-bare.sqlite"))
    mem, eng = loops.samples(), loops.samples()
    ref: list[float] = []
    transactions: dict[str, list[int]] = loops.samples()
    try:

        async def warm_up(b: str) -> None:
            await _start_and_signal(memory[b], cfg.warm_up)
            await _start_and_signal(sqlite[b], cfg.warm_up)

        loops.each(warm_up)
        loops.reference(_bare_signal_all, bare, start_write, writes, cfg.warm_up)
        for order in loops.rounds(cfg.repeat):
            loops.measure(order, mem, lambda b: _start_and_signal(memory[b], n))
            loops.measure(order, eng, lambda b: _start_and_signal(sqlite[b], n, transactions[b]))
            ref.append(loops.reference(_bare_signal_all, bare, start_write, writes, n))
        result.details["sqlite_transactions_per_signal"] = {
            b: sum(transactions[b]) / (cfg.repeat * n) for b in backends
        }
        result.profiles = profiles.each(loops, lambda b: _start_and_signal(sqlite[b], n))
    finally:
        loops.each(lambda b: _close(memory[b], sqlite[b]))
        bare.close()
    result.rows += [
        row(3, f"in-memory, {n} signalled: all finished", "s", mem, ref),
        row(
            3,
            f"SQLite NORMAL, {n} signalled: all finished",
            "s",
            eng,
            ref,
            target=Target("<= 0.2 s", 0.2, at_most=True),
        ),
    ]
    return result


# -- (4) missions sleeping 1 s, driven by the real runtime ------------------------------------


async def _sleepers(commander: Commander, definition: Definition, count: int) -> dict[str, float]:
    """Start the runtime, start ``count`` sleeping missions through the client, wait for all."""
    began = time.perf_counter()
    up = last_start = done = began
    async with create_commander_runtime(commander, auto_schedule=True) as runtime:
        up = time.perf_counter()
        client = create_mission_client(runtime)
        ids = [(await client.start(definition, {"i": i})).id for i in range(count)]
        last_start = time.perf_counter()
        for mission_id in ids:
            await commander.wait_for_completion(mission_id)
        done = time.perf_counter()
    return {
        "total": done - began,
        "runtime_start": up - began,
        "starting": last_start - up,
        "after_last_due": done - last_start,
    }


async def _bare_sleepers(
    db: BareDb, first: Write, after: Sequence[Write], count: int, seconds: float
) -> float:
    ids = SortableIds()
    began = time.perf_counter()

    async def wake(mission_id: str, due: float) -> None:
        await trio.sleep_until(due)
        await bare_mission(db, mission_id, after)

    async with trio.open_nursery() as nursery:
        for _ in range(count):
            mission_id = ids()
            db.write(mission_id, first)
            nursery.start_soon(wake, mission_id, trio.current_time() + seconds)
    return time.perf_counter() - began


def scenario_4(cfg: Config, directory: str, loops: Loops, profiles: Profiles) -> Result:
    n, seconds = cfg.s4_missions, cfg.s4_sleep
    definition = sleeper(seconds)
    result = Result(4, f"{n} missions sleeping {seconds:g} s then a step, real runtime")
    (start_writes, start_calls), (writes, calls) = loops.reference(
        record_timer, definition, seconds
    )
    (start_write,) = start_writes  # starting one of these missions is one insert
    result.details["writes_per_mission"] = {
        "start": _describe_writes(start_writes),
        "timer": _describe_writes(writes),
    }
    result.details["adapter_calls_per_mission"] = {"start": start_calls, "timer": calls}
    backends = loops.backends
    commanders = _sqlite_commanders(loops, definition, directory, "s4")
    bare = BareDb(os.path.join(directory, "s4-bare.sqlite"))
    runs: dict[str, list[dict[str, float]]] = loops.samples()
    ref: list[float] = []
    try:
        for order in loops.rounds(cfg.repeat):
            loops.measure(order, runs, lambda b: _sleepers(commanders[b], definition, n))
            ref.append(loops.reference(_bare_sleepers, bare, start_write, writes, n, seconds))
        result.profiles = profiles.each(loops, lambda b: _sleepers(commanders[b], definition, n))
    finally:
        loops.each(lambda b: _close(commanders[b]))
        bare.close()
    result.details["runs"] = runs

    def part(name: str) -> dict[str, list[float]]:
        return {b: [r[name] for r in runs[b]] for b in backends}

    limit = seconds * 1.2
    result.rows += [
        row(
            4,
            f"SQLite NORMAL, {n} sleeping {seconds:g} s: all done",
            "s",
            part("total"),
            ref,
            target=Target(f"<= {limit:g} s", limit, at_most=True),
        ),
        row(4, f"  of which starting {n} missions through the client", "s", part("starting")),
        row(4, "  of which after the last start (sleep + ticks)", "s", part("after_last_due")),
    ]
    return result


# -- the database of 100,000 waiting missions (5, 6, 8) ---------------------------------------


@dataclass
class WaitingDb:
    """A SQLite file of ``waiting`` missions of :data:`PARKED` (half waiting for a signal, half
    for a timer a day away) plus batches of ``due`` missions whose timers come due one second
    apart: batch ``b`` is due at ``clock_for(b)`` and no earlier batch is left waiting by then."""

    path: str
    waiting: int
    due: int
    batches: int
    tick_writes: list[Write]
    build_seconds: float
    taken: int = 0

    def take_batch(self) -> int:
        if self.taken >= self.batches:
            raise RuntimeError("the waiting database has no due batch left")
        self.taken += 1
        return self.taken - 1

    @staticmethod
    def due_time(batch: int, index: int) -> datetime:
        return T0 + timedelta(seconds=batch + 1, microseconds=index)

    @staticmethod
    def clock_for(batch: int) -> datetime:
        return T0 + timedelta(seconds=batch + 1.5)


async def build_waiting_db(path: str, waiting: int, due: int, batches: int) -> WaitingDb:
    began = time.perf_counter()
    recorder = Recorder(PARKED)
    handle = await recorder.commander.start(PARKED, {"i": 0})
    signal_writes, _ = recorder.adapter.stage()
    await handle.signal("approve", {"ok": True})
    timer_writes, _ = recorder.adapter.stage()
    recorder.clock.advance(timedelta(days=1))
    await recorder.commander.advance(handle.id)
    tick_writes, _ = recorder.adapter.stage()
    template_id = handle.id
    template_due = (T0 + timedelta(days=1)).isoformat()
    # Rows of the template missions, with the id (and the due time) to put in.
    at_signal = signal_writes
    at_timer = signal_writes + timer_writes
    if at_timer[-1].due is None or template_due not in at_timer[-1].snapshot:
        raise RuntimeError("the timer template does not hold its due time")

    ids = SortableIds()
    missions: list[tuple[Any, ...]] = []
    entries: list[tuple[Any, ...]] = []

    def add(template: list[Write], due_at: datetime | None) -> None:
        mission_id = ids()
        iso = due_at.isoformat() if due_at is not None else None
        for write in template:
            for position, entry in enumerate(write.entries):
                text = entry.replace(template_due, iso) if iso is not None else entry
                entries.append((mission_id, write.revision, position, text))
        last = template[-1]
        text = last.snapshot.replace(template_id, mission_id)
        if iso is not None:
            text = text.replace(template_due, iso)
        due_column = _micros(due_at) if due_at is not None else None
        missions.append(
            (
                mission_id,
                last.definition,
                last.status,
                due_column,
                last.revision,
                text,
                None,
                last.version,
            )
        )

    in_signal = waiting // 2
    for _ in range(in_signal):
        add(at_signal, None)
    for i in range(waiting - in_signal - due):
        add(at_timer, T0 + timedelta(days=1, milliseconds=i))
    for batch in range(batches):
        for i in range(due):
            add(at_timer, WaitingDb.due_time(batch, i))
    create_sqlite_persistence_adapter(path).close()
    db = _connect(path)
    try:
        cursor = db.cursor()
        cursor.execute("BEGIN IMMEDIATE")
        cursor.executemany(_INSERT_MISSION, missions)
        cursor.executemany(_INSERT_ENTRY, entries)
        cursor.execute("COMMIT")
        db.pragma("wal_checkpoint", "TRUNCATE")
    finally:
        db.close()
    # The rows must read back as what the engine wrote.
    check = snapshot_from_json(str(missions[-1][5]))
    if check.due_at != WaitingDb.due_time(batches - 1, due - 1) or check.id != missions[-1][0]:
        raise RuntimeError("the bulk-built rows do not read back as their templates")
    return WaitingDb(
        path=path,
        waiting=waiting,
        due=due,
        batches=batches,
        tick_writes=tick_writes,
        build_seconds=time.perf_counter() - began,
    )


class Shared:
    """What several scenarios use: the temporary directory and the waiting database."""

    def __init__(self, cfg: Config, directory: str, loops: Loops, rss_runs: int) -> None:
        self.cfg = cfg
        self.directory = directory
        self.loops = loops
        self.waiting_db: WaitingDb | None = None
        self.rss_runs = rss_runs

    def database(self) -> WaitingDb:
        if self.waiting_db is None:
            cfg = self.cfg
            # Batches for each backend's runs of (5) (a tick, by hand), its profile and its
            # runs of (8); the bare loop takes the first batches of a copy of its own.
            batches = len(self.loops.backends) * (2 * cfg.repeat + 1 + self.rss_runs)
            path = os.path.join(self.directory, "waiting.sqlite")
            self.waiting_db = self.loops.reference(
                build_waiting_db, path, cfg.waiting, cfg.due, batches
            )
        return self.waiting_db


# -- (5) a tick over 100,000 waiting missions of which 100 are due ----------------------------


async def _settled(runtime: CommanderRuntime) -> None:
    """Wait until no tick runs that the measurement did not ask for.

    On SQLite, the owner's first look for submissions made before its wake-up socket existed
    asks for a tick right after the startup one; a tick that began before the clock moved
    would advance the batch the measured tick is meant to find. ``tick()`` waits for it, then
    runs one of its own (nothing is due yet).
    """
    await runtime.tick()


@dataclass
class TickRuns:
    """Scenario (5)'s commander on the waiting database, its clock, and what its runs saw.

    One commander serves every backend in turn: two connections writing one file in turn would
    each find its page cache stale after the other's commit, which a single owner never does.
    """

    db: WaitingDb
    clock: ManualClock
    commander: Commander
    transactions: dict[str, list[int]] = field(default_factory=dict[str, list[int]])
    """SQLite transactions per tick, by backend (group commit: the bare loop takes one per
    mission)."""

    async def tick(self, backend: str) -> float:
        """Milliseconds of one ``runtime.tick()`` that advances the next due batch."""
        db, commander = self.db, self.commander
        elapsed = 0.0
        async with create_commander_runtime(commander) as runtime:
            await _settled(runtime)
            self.clock.set(WaitingDb.clock_for(db.take_batch()))
            before = _transactions(commander)
            began = time.perf_counter()
            report = await runtime.tick()
            elapsed = time.perf_counter() - began
            taken = _transactions(commander) - before
            self.transactions.setdefault(backend, []).append(taken)
            if report.advanced != db.due or report.completed != db.due:
                raise RuntimeError(f"the tick advanced {report.advanced}, not {db.due}")
        return elapsed * 1000

    async def by_hand(self, queries: list[float]) -> float:
        """Milliseconds of ``due_missions`` and ``advance`` of each due mission of the next
        batch, one after another, no runtime (and the due query's, added to ``queries``)."""
        db, commander = self.db, self.commander
        self.clock.set(WaitingDb.clock_for(db.take_batch()))
        began = time.perf_counter()
        ids = await commander.due_missions(db.due)
        queries.append((time.perf_counter() - began) * 1000)
        for mission_id in ids:
            await commander.advance(mission_id)
        elapsed = time.perf_counter() - began
        if len(ids) != db.due:
            raise RuntimeError(f"{len(ids)} missions were due, not {db.due}")
        return elapsed * 1000


class BareTicks:
    """The bare loop of (5) on a copy of the waiting database, made before any batch was taken:
    its ticks take its batches in order."""

    def __init__(self, db: WaitingDb) -> None:
        self.db = db
        self.bare = BareDb(_copy_database(db.path, db.path + ".bare"))
        self.batches = itertools.count()

    def tick(self) -> float:
        db, bare = self.db, self.bare
        now = _micros(WaitingDb.clock_for(next(self.batches)))
        began = time.perf_counter()
        ids = [row[0] for row in bare.cursor.execute(_DUE, (now, db.due)).fetchall()]
        for mission_id in ids:
            bare.load(mission_id)
            for write in db.tick_writes:
                bare.write(mission_id, write)
        elapsed = time.perf_counter() - began
        if len(ids) != db.due:
            raise RuntimeError(f"the bare tick found {len(ids)} due missions")
        return elapsed * 1000

    def close(self) -> None:
        self.bare.close()
        _remove_database(self.db.path + ".bare")


def scenario_5(cfg: Config, db: WaitingDb, loops: Loops, profiles: Profiles) -> Result:
    result = Result(5, f"a tick over {db.waiting:,} waiting missions, {db.due} due")
    result.details["build_seconds"] = db.build_seconds
    result.details["tick_writes_per_mission"] = _describe_writes(db.tick_writes)
    bare = BareTicks(db)
    clock = ManualClock(T0)
    runs = TickRuns(db, clock, _sqlite_commander(db.path, [PARKED], clock=clock))
    ticks, direct, queries = loops.samples(), loops.samples(), loops.samples()
    ref: list[float] = []
    try:
        for order in loops.rounds(cfg.repeat):
            loops.measure(order, ticks, runs.tick)
            loops.measure(order, direct, lambda b: runs.by_hand(queries[b]))
            ref.append(bare.tick())
        result.profiles = profiles.each(loops, runs.tick)
    finally:
        loops.run(loops.backends[0], _close, runs.commander)
        bare.close()
    result.details["tick_transactions"] = runs.transactions
    result.rows += [
        row(
            5,
            f"runtime.tick(): {db.due} due of {db.waiting:,} waiting",
            "ms",
            ticks,
            ref,
            target=Target("<= 10 ms", 10, at_most=True),
        ),
        row(5, f"  due_missions + advance() x {db.due}, no runtime", "ms", direct, ref),
        row(5, "  of which the due query", "ms", queries),
    ]
    return result


# -- (6) runtime start-up over 100,000 waiting missions ---------------------------------------


async def _start_up(db: WaitingDb) -> tuple[float, float, float]:
    """Milliseconds of ``runtime.start()`` (the definition version check included), of opening
    the database before it, and of the version check alone (``commander.check_versions()``)."""
    began = time.perf_counter()
    before = up = checked = began
    commander = _sqlite_commander(db.path, [PARKED], clock=ManualClock(T0))
    try:
        runtime = create_commander_runtime(commander)
        async with anyio.create_task_group() as tasks:
            before = time.perf_counter()
            report = await runtime.start(nursery=tasks)
            up = time.perf_counter()
            await runtime.stop()
            if report.advanced or report.resumed:
                raise RuntimeError("the start-up tick found work; it should find none")
        checked = time.perf_counter()
        await commander.check_versions()
        checked = time.perf_counter() - checked
    finally:
        await commander.aclose()
    return (up - before) * 1000, (up - began) * 1000, checked * 1000


def _bare_start_up(db: WaitingDb) -> float:
    """Milliseconds of the start-up's queries on their own: the tick's three, and the version
    check's (the versions in use, one seek each, and the stored fingerprints)."""
    bare = BareDb(db.path)
    try:
        began = time.perf_counter()
        bare.cursor.execute(_RUNNING, (100,)).fetchall()
        bare.cursor.execute(_DUE, (_micros(T0), 100)).fetchall()
        bare.cursor.execute(_NEXT_DUE).fetchall()
        version = bare.cursor.execute(_FIRST_VERSION).fetchall()
        while version:
            definition = version[0][0]
            version = (
                bare.cursor.execute(_NEXT_VERSION, version[0]).fetchall()
                or bare.cursor.execute(_NEXT_DEFINITION, (definition,)).fetchall()
            )
        bare.cursor.execute(_FINGERPRINTS).fetchall()
        return (time.perf_counter() - began) * 1000
    finally:
        bare.close()


def scenario_6(cfg: Config, db: WaitingDb, loops: Loops, profiles: Profiles) -> Result:
    result = Result(6, f"runtime start-up over {db.waiting:,} waiting missions")
    runs: dict[str, list[tuple[float, float, float]]] = loops.samples()
    ref: list[float] = []
    for order in loops.rounds(cfg.repeat * 2):
        loops.measure(order, runs, lambda b: _start_up(db))
        ref.append(_bare_start_up(db))
    result.profiles = profiles.each(loops, lambda b: _start_up(db))
    starts = {b: [start for start, _, _ in runs[b]] for b in loops.backends}
    opens = {b: [opened for _, opened, _ in runs[b]] for b in loops.backends}
    checks = {b: [checked for _, _, checked in runs[b]] for b in loops.backends}
    result.rows += [
        row(
            6,
            f"runtime.start() over {db.waiting:,} waiting",
            "ms",
            starts,
            ref,
            target=Target("<= 100 ms", 100, at_most=True),
        ),
        row(6, "  open the database + runtime.start()", "ms", opens),
        row(6, "  of which the definition version check", "ms", checks),
    ]
    return result


# -- (7) a transition at history length 1 and 1,000 -------------------------------------------

LENGTHS = ("1", "long")
"""(7)'s two history lengths: one timeline entry, and ``s7_history`` entries."""


async def _start_groups(
    commander: Commander, names: Sequence[str], count: int
) -> dict[str, list[str]]:
    return {name: await _start_waiting(commander, count) for name in names}


async def _signal_timed(commander: Commander, mission_id: str) -> float:
    began = time.perf_counter()
    await commander.signal(mission_id, "approve", {"ok": True})
    return (time.perf_counter() - began) * 1e6


def _bare_transition(bare: BareDb, writes: Sequence[Write], mission_id: str) -> float:
    began = time.perf_counter()
    bare.load(mission_id)
    for write in writes:
        bare.write(mission_id, write)
    return (time.perf_counter() - began) * 1e6


def _lengthen(bare: BareDb, groups: Mapping[str, list[str]], start: Write, history: int) -> None:
    """Leave the missions of the groups named ``...-1`` with one timeline entry, and give the
    others ``history`` entries (what buffered signals of another name leave)."""
    entry = timeline_entry_to_json(TimelineEntry(T0, TimelineKind.SIGNAL_BUFFERED, "other"))
    first = len(start.entries)
    cursor = bare.cursor
    cursor.execute("BEGIN IMMEDIATE")
    for group, missions in groups.items():
        for mission_id in missions:
            if group.endswith("-1"):
                cursor.execute(
                    "DELETE FROM timeline WHERE mission_id = ? AND NOT (revision = 1 "
                    "AND position = 0)",
                    (mission_id,),
                )
            else:
                cursor.executemany(
                    _INSERT_ENTRY, [(mission_id, 1, p, entry) for p in range(first, history)]
                )
    cursor.execute("COMMIT")


def scenario_7(cfg: Config, directory: str, loops: Loops, profiles: Profiles) -> Result:
    history, samples = cfg.s7_history, cfg.s7_samples
    result = Result(7, f"a transition at history length 1 and {history:,}")
    (start_writes, _), (writes, calls) = loops.reference(record_signal, SIGNALLED)
    (start_write,) = start_writes  # starting one of these missions is one insert
    result.details["transition"] = (
        f"signal a waiting mission: {_describe_writes(writes)}; adapter calls {calls}"
    )
    backends = loops.backends
    path = os.path.join(directory, "s7.sqlite")
    # One commander serves every backend in turn (one owner of the file: see TickRuns); each
    # backend signals missions of its own.
    commander = _sqlite_commander(path, [SIGNALLED])
    names = [f"{b}-{length}" for b in backends for length in LENGTHS]
    names += [f"profile-{b}-long" for b in backends]
    try:
        groups = loops.reference(_start_groups, commander, names, samples)
    finally:
        loops.reference(_close, commander)
    bare = BareDb(path)
    ids = SortableIds()
    for length in LENGTHS:
        groups[f"bare-{length}"] = [ids() for _ in range(samples)]
        for mission_id in groups[f"bare-{length}"]:
            bare.write(mission_id, start_write)
    _lengthen(bare, groups, start_write, history)
    # The bare loop gets a copy of the file: two connections writing one file in turn would
    # each find its page cache stale after the other's commit, which a single owner never does.
    bare.close()
    bare = BareDb(_copy_database(path, os.path.join(directory, "s7-bare.sqlite")))
    commander = _sqlite_commander(path, [SIGNALLED])
    # A run is a run of consecutive samples; its figure is their median (single transitions
    # are too noisy to compare one by one: a WAL checkpoint lands on one now and then).
    runs = max(1, min(cfg.repeat, samples))
    size = samples // runs
    medians: dict[str, list[float]] = {name: [] for name in (*names, "bare-1", "bare-long")}

    async def engine_run(backend: str, r: int) -> None:
        times: dict[str, list[float]] = {length: [] for length in LENGTHS}
        for i in range(r * size, (r + 1) * size):
            # Alternate which length goes first, so that neither gains from the order.
            for length in LENGTHS if i % 2 == 0 else LENGTHS[::-1]:
                mission_id = groups[f"{backend}-{length}"][i]
                times[length].append(await _signal_timed(commander, mission_id))
        for length in LENGTHS:
            medians[f"{backend}-{length}"].append(statistics.median(times[length]))

    def bare_run(r: int) -> None:
        times: dict[str, list[float]] = {length: [] for length in LENGTHS}
        for i in range(r * size, (r + 1) * size):
            for length in LENGTHS if i % 2 == 0 else LENGTHS[::-1]:
                mission_id = groups[f"bare-{length}"][i]
                times[length].append(_bare_transition(bare, writes, mission_id))
        for length in LENGTHS:
            medians[f"bare-{length}"].append(statistics.median(times[length]))

    async def profiled(backend: str) -> None:
        for mission_id in groups[f"profile-{backend}-long"]:
            await _signal_timed(commander, mission_id)

    async def lengths() -> dict[str, int]:
        return {
            length: len(await commander.timeline(groups[f"{backends[0]}-{length}"][0]))
            for length in LENGTHS
        }

    try:
        result.details["history_lengths"] = loops.run(backends[0], lengths)
        for r, order in enumerate(loops.rounds(runs)):
            for backend in order:
                loops.run(backend, engine_run, backend, r)
            bare_run(r)
        result.profiles = profiles.each(loops, profiled)
    finally:
        loops.run(backends[0], _close, commander)
        bare.close()
    result.details["samples_per_run"] = size

    def of(length: str) -> dict[str, list[float]]:
        return {b: medians[f"{b}-{length}"] for b in backends}

    b1, bl = medians["bare-1"], medians["bare-long"]
    growth = {b: paired_ratio(medians[f"{b}-long"], medians[f"{b}-1"]).samples for b in backends}
    label = "SQLite NORMAL, signal -> 2 commits, history"
    result.rows += [
        row(7, f"{label} 1", "us", of("1"), b1),
        row(7, f"{label} {history:,}", "us", of("long"), bl),
        row(
            7,
            f"  history {history:,} / history 1",
            "x",
            growth,
            paired_ratio(bl, b1).samples,
            target=Target("<= 1.5x", 1.5, at_most=True),
            paired_with_bare=False,
        ),
    ]
    return result


# -- (9) a loop's iteration at iteration 1 and 1,000 -------------------------------------------

ITERATIONS = ("1", "late")
"""(9)'s two places in a loop: its first iteration, and ``s9_iteration`` on."""


async def _iterate_timed(commander: Commander, mission_id: str) -> float:
    began = time.perf_counter()
    await commander.signal(mission_id, "next", "go")
    return (time.perf_counter() - began) * 1e6


async def _start_looping(
    commander: Commander, backend: str, samples: int, late: int
) -> dict[str, list[str]]:
    """``samples`` missions at iteration 1, and one mission moved on to iteration ``late``."""
    first = [(await commander.start(LOOPED, None)).id for _ in range(samples)]
    long_one = (await commander.start(LOOPED, None)).id
    for _ in range(late - 1):
        await commander.signal(long_one, "next", "go")
    return {f"{backend}-1": first, f"{backend}-late": [long_one]}


def scenario_9(cfg: Config, directory: str, loops: Loops, profiles: Profiles) -> Result:
    late, samples = cfg.s9_iteration, cfg.s7_samples
    result = Result(9, f"a loop's iteration at iteration 1 and {late:,}")
    backends = loops.backends
    commander = _sqlite_commander(os.path.join(directory, "s9.sqlite"), [LOOPED])
    groups: dict[str, list[str]] = {}
    for backend in backends:
        groups.update(loops.run(backend, _start_looping, commander, backend, samples, late))
    runs = max(1, min(cfg.repeat, samples))
    size = samples // runs
    medians: dict[str, list[float]] = {f"{b}-{i}": [] for b in backends for i in ITERATIONS}

    async def engine_run(backend: str, r: int) -> None:
        times: dict[str, list[float]] = {i: [] for i in ITERATIONS}
        for i in range(r * size, (r + 1) * size):
            # A fresh mission makes its first iteration's move; the long one its next.
            for where in ITERATIONS if i % 2 == 0 else ITERATIONS[::-1]:
                missions = groups[f"{backend}-{where}"]
                mission_id = missions[i] if where == "1" else missions[0]
                times[where].append(await _iterate_timed(commander, mission_id))
        for where in ITERATIONS:
            medians[f"{backend}-{where}"].append(statistics.median(times[where]))

    async def sizes() -> dict[str, str]:
        fresh = await commander.start(LOOPED, None)
        long_one = await commander.inspect(groups[f"{backends[0]}-late"][0])
        told: dict[str, str] = {}
        for snapshot in (await fresh.inspect(), long_one):
            iteration = snapshot.nodes["rounds"].attempts
            told[f"iteration {iteration:,}"] = (
                f"{len(snapshot.nodes)} records, {len(snapshot_to_json(snapshot)):,} bytes"
            )
        return told

    try:
        result.details["loop_snapshots"] = loops.run(backends[0], sizes)
        for r, order in enumerate(loops.rounds(runs)):
            for backend in order:
                loops.run(backend, engine_run, backend, r)
    finally:
        loops.run(backends[0], _close, commander)
    result.details["samples_per_run"] = size

    def of(where: str) -> dict[str, list[float]]:
        return {b: medians[f"{b}-{where}"] for b in backends}

    growth = {b: paired_ratio(medians[f"{b}-late"], medians[f"{b}-1"]).samples for b in backends}
    label = "SQLite NORMAL, signal -> iteration ends, next begins, at"
    result.rows += [
        row(9, f"{label} 1", "us", of("1")),
        row(9, f"{label} {late:,}", "us", of("late")),
        row(
            9,
            f"  iteration {late:,} / iteration 1",
            "x",
            growth,
            target=Target("<= 1.5x", 1.5, at_most=True),
            paired_with_bare=False,
        ),
    ]
    return result


# -- (8) peak RSS, each in a fresh process ----------------------------------------------------


def _max_rss_mb() -> tuple[float, float]:
    """This process's peak RSS in MB: ``VmHWM`` where ``/proc`` has it, and ``ru_maxrss``.

    ``VmHWM`` is the high-water mark of this process's own memory since it was executed. Linux
    carries ``ru_maxrss`` over an exec from the process that was replaced, so in a child of a
    big benchmark process it starts at the parent's size; it is kept for platforms without
    ``/proc``.
    """
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    ru_maxrss = rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024
    try:
        with open("/proc/self/status", encoding="ascii") as file:
            for line in file:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024, ru_maxrss
    except OSError:
        pass
    return ru_maxrss, ru_maxrss


async def rss_child(kind: str, missions: int, path: str, batch: int, due: int) -> dict[str, Any]:
    began = time.perf_counter()
    info: dict[str, Any] = {"kind": kind}
    if kind == "memory":
        commander = create_commander([THREE_STEPS], persistence=InMemoryPersistenceAdapter())
        async with commander:
            await _sequential(commander, THREE_STEPS, missions)
    elif kind == "sqlite":
        async with _sqlite_commander(path, [THREE_STEPS]) as commander:
            await _sequential(commander, THREE_STEPS, missions)
    elif kind == "bare":
        recorder = Recorder(THREE_STEPS)
        await recorder.commander.start(THREE_STEPS, {"i": 0})
        writes, _ = recorder.adapter.stage()
        db = BareDb(path)
        try:
            await _bare_sequential(db, writes, missions)
        finally:
            db.close()
    elif kind == "waiting":
        clock = ManualClock(T0)
        async with (
            _sqlite_commander(path, [PARKED], clock=clock) as commander,
            create_commander_runtime(commander) as runtime,
        ):
            await _settled(runtime)
            clock.set(WaitingDb.clock_for(batch))
            report = await runtime.tick()
            if report.advanced != due:
                raise RuntimeError(f"the tick advanced {report.advanced} missions, not {due}")
            info["advanced"] = report.advanced
    elif kind != "imports":
        raise ValueError(f"unknown RSS measurement {kind!r}")
    info["seconds"] = time.perf_counter() - began
    info["max_rss_mb"], info["ru_maxrss_mb"] = _max_rss_mb()
    return info


def _run_child(args: list[str]) -> dict[str, Any]:
    command = [sys.executable, os.path.abspath(__file__), "--rss-child", *args]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"RSS measurement {args} failed:\n{done.stderr}")
    return cast(dict[str, Any], json.loads(done.stdout.strip().splitlines()[-1]))


def scenario_8(cfg: Config, shared: Shared, loops: Loops) -> Result:
    result = Result(8, "peak RSS, a fresh process per measurement")
    db = shared.database()
    missions = cfg.s1_missions * cfg.repeat + cfg.warm_up
    kinds = ("imports", "memory", "sqlite", "waiting")
    rss: dict[str, dict[str, list[float]]] = {kind: loops.samples() for kind in kinds}
    bare: list[float] = []
    children: list[dict[str, Any]] = []

    def child(kind: str, backend: str, *args: str) -> float:
        children.append(_run_child([kind, "--rss-backend", backend, *args]))
        children[-1]["backend"] = backend
        return float(children[-1]["max_rss_mb"])

    for run, order in enumerate(loops.rounds(shared.rss_runs)):
        directory = shared.directory
        for backend in order:
            for kind in kinds[:3]:
                path = os.path.join(directory, f"rss-{kind}-{backend}-{run}.sqlite")
                size = str(missions)
                rss[kind][backend].append(
                    child(kind, backend, "--rss-missions", size, "--rss-db", path)
                )
            batch = str(db.take_batch())
            rss["waiting"][backend].append(
                child(
                    "waiting",
                    backend,
                    "--rss-db",
                    db.path,
                    "--rss-batch",
                    batch,
                    "--rss-due",
                    str(db.due),
                )
            )
        path = os.path.join(directory, f"rss-bare-{run}.sqlite")
        bare.append(child("bare", "trio", "--rss-missions", str(missions), "--rss-db", path))
    result.details["missions_per_run"] = missions
    # Each child process as it reported itself: its kind, time, VmHWM and ru_maxrss.
    result.details["children"] = children
    result.rows += [
        # The bare loop of (1) is the reference of (1)'s rows only: the other two do other work.
        row(8, "python + imports only", "MB", rss["imports"]),
        row(8, f"(1) in-memory, {missions:,} missions", "MB", rss["memory"], bare),
        row(8, f"(1) SQLite NORMAL, {missions:,} missions", "MB", rss["sqlite"], bare),
        row(
            8,
            f"{db.waiting:,} persisted: open, start, tick {db.due}",
            "MB",
            rss["waiting"],
            target=Target("<= 80 MB", 80, at_most=True),
        ),
    ]
    return result


# -- main ---------------------------------------------------------------------------------------


NOTES = (
    "writes_per_mission",
    "tick_writes_per_mission",
    "transition",
    "gc_share",
    "history_lengths",
    "loop_snapshots",
    "build_seconds",
)
"""Details printed under the table (the JSON has them all)."""


def _note(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, dict):
        items = cast(dict[str, object], value).items()
        return ", ".join(f"{k}: {_note(v)}" for k, v in items)
    return str(value)


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as file:
            for line in file:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
            cwd=os.path.dirname(os.path.abspath(__file__)),
        ).stdout.strip()
    except OSError:
        commit = ""
    apsw_module: Any = apsw
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "sqlite": str(apsw_module.sqlite_lib_version()),
        "apsw": str(apsw_module.apsw_version()),
        "trio": trio.__version__,
        "anyio": metadata.version("anyio"),
        "commit": commit,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def run(cfg: Config, scenarios: Sequence[int], directory: str, loops: Loops) -> list[Result]:
    profiles = Profiles(cfg.profile)
    shared = Shared(cfg, directory, loops, rss_runs=3)
    results: list[Result] = []
    for number in scenarios:
        began = time.perf_counter()
        print(f"scenario {number} ...", file=sys.stderr, flush=True)
        if number == 1:
            result = scenario_1(cfg, directory, loops, profiles)
        elif number == 2:
            result = scenario_2(cfg, directory, loops, profiles)
        elif number == 3:
            result = scenario_3(cfg, directory, loops, profiles)
        elif number == 4:
            result = scenario_4(cfg, directory, loops, profiles)
        elif number == 5:
            result = scenario_5(cfg, shared.database(), loops, profiles)
        elif number == 6:
            result = scenario_6(cfg, shared.database(), loops, profiles)
        elif number == 7:
            result = scenario_7(cfg, directory, loops, profiles)
        elif number == 9:
            result = scenario_9(cfg, directory, loops, profiles)
        else:
            result = scenario_8(cfg, shared, loops)
        result.seconds = time.perf_counter() - began
        results.append(result)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Mission Control benchmarks (see docs/performance.md)"
    )
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke run")
    parser.add_argument(
        "--scenario", type=int, action="append", choices=range(1, 10), help="run only these"
    )
    parser.add_argument("--repeat", type=int, help="runs per figure (default 5, quick 2)")
    parser.add_argument(
        "--backends",
        nargs="+",
        choices=BACKENDS,
        default=list(BACKENDS),
        help="the event loops to run the engine on (default: both; the bare loop is trio's)",
    )
    parser.add_argument("--json", action="store_true", help="JSON on stdout, the table on stderr")
    parser.add_argument("--markdown", action="store_true", help="the table in Markdown")
    parser.add_argument(
        "--profile", action="store_true", help="cProfile one engine run each: where time goes"
    )
    parser.add_argument(
        "--profile-text", action="store_true", help="with --profile, print the top functions"
    )
    parser.add_argument("--rss-child", help=argparse.SUPPRESS)
    parser.add_argument("--rss-missions", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--rss-db", default="", help=argparse.SUPPRESS)
    parser.add_argument("--rss-batch", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--rss-due", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--rss-backend", default="trio", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    loops = Loops(args.backends)
    if args.rss_child:
        child = (args.rss_child, args.rss_missions, args.rss_db, args.rss_batch, args.rss_due)
        info = loops.run(args.rss_backend, rss_child, *child)
        print(json.dumps(info))
        return 0
    if args.repeat is not None and args.repeat < 1:
        parser.error("--repeat must be at least 1")
    cfg = Config.make(quick=args.quick, repeat=args.repeat, profile=args.profile)
    scenarios = sorted(set(args.scenario or range(1, 10)))
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mission-control-bench-") as directory:
        results = run(cfg, scenarios, directory, loops)
    info = machine()
    table = render_table(results, loops.backends, markdown=args.markdown)
    heading = (
        f"{info['cpus']} x {info['cpu']}, Python {info['python']}, SQLite {info['sqlite']}, "
        f"{'quick' if cfg.quick else 'full'} run, {cfg.repeat} runs per figure, "
        f"{time.perf_counter() - began:.0f} s, at {info['commit']}; the engine on "
        f"{' and '.join(loops.backends)} (trio {info['trio']}, AnyIO {info['anyio']}), "
        "the bare loop on trio only"
    )
    out = sys.stderr if args.json else sys.stdout
    print(heading, file=out)
    print(table, file=out)
    print(file=out)
    for result in results:
        for key in NOTES:
            if key in result.details:
                print(f"{result.number}  {key}: {_note(result.details[key])}", file=out)
    if cfg.profile:
        print(
            "\nWhere the time goes (cProfile of one engine run; " + ", ".join(CATEGORIES) + "):",
            file=out,
        )
        for result in results:
            for backend, profile in result.profiles.items():
                shares = format_shares(profile.shares)
                print(f"{result.number}  {backend:<8} {shares}", file=out)
        if args.profile_text:
            for result in results:
                for backend, profile in result.profiles.items():
                    title = f"scenario {result.number} on {backend}: {result.title}"
                    print(f"\n== profile of {title}", file=out)
                    print(profile.text, file=out)
    if args.json:
        document = {
            "machine": info,
            "quick": cfg.quick,
            "repeat": cfg.repeat,
            "backends": list(loops.backends),
            "seconds": time.perf_counter() - began,
            "scenarios": [result.to_json() for result in results],
        }
        print(json.dumps(document, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
