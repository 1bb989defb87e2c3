"""Benchmarks: throughput, tick cost and memory of Mission Control, next to a bare loop.

    uv run python scripts/benchmark.py                # every scenario, as a table (~2 minutes)
    uv run python scripts/benchmark.py --quick        # small counts: a smoke run of seconds
    uv run python scripts/benchmark.py --scenario 5   # one scenario (repeat the option for more)
    uv run python scripts/benchmark.py --json         # JSON on stdout (the table on stderr)
    uv run python scripts/benchmark.py --profile      # and cProfile one engine run per scenario

Each figure is the median of several runs, with their spread (half the min-to-max range, as a
share of the median). Each scenario also runs, in the same process and interleaved with the
engine's runs, a *bare loop*: trio + apsw writing the same rows with the same statements and no
engine, one transaction per write. The rows are the JSON the engine writes, captured from a real
mission of the scenario, and the number of writes per mission is the one counted on the adapter,
so each figure can also be read as a ratio to the bare loop, which holds better than absolute
figures on a noisy machine. (Where missions move concurrently, the adapter's group commit puts
several writes in one transaction; the bare loop does not, and the scenario records how many
transactions the adapter took.)

Scenarios (docs/performance.md has the targets and what dominates each):

1. 3-step missions one after another: in-memory, SQLite NORMAL and FULL;
2. 1,000 missions in flight at once (their steps yield to trio);
3. 500 missions waiting on a signal, then all signalled at once;
4. 200 missions sleeping 1 s then running a step, driven by the real runtime and system clock;
5. a runtime tick over 100,000 waiting missions of which 100 are due;
6. runtime start-up over 100,000 waiting missions;
7. the cost of a transition at a timeline (history) length of 1 and of 1,000;
8. peak RSS (a fresh process per measurement) for (1) and for 100,000 persisted missions.
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
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, Self, cast

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
    BufferedSignal,
    PersistenceAdapter,
    snapshot_from_json,
    snapshot_to_json,
    timeline_entry_to_json,
)
from mission_control.in_memory_commander import InMemoryPersistenceAdapter, ManualClock
from mission_control.runtime import create_commander_runtime

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
    await trio.lowlevel.checkpoint()
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
"""(2): the same with steps that yield to trio, so that missions interleave."""

SIGNALLED: Definition = (
    m.define("signalled")
    .start(parse=_same)
    .need_to("approve", parse=_same)
    .step("work", _one)
    .end()
)
"""(3) and (7): wait for a signal, then one step."""

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


@dataclass
class Row:
    scenario: int
    label: str
    unit: str
    value: Stats
    higher_is_better: bool
    bare: Stats | None = None
    ratio: Stats | None = None
    """Engine / bare (of this row's unit), median of the runs paired in time."""
    target: str | None = None
    met: bool | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "label": self.label,
            "unit": self.unit,
            "higher_is_better": self.higher_is_better,
            "value": self.value.to_json(),
            "bare": self.bare.to_json() if self.bare is not None else None,
            "ratio_to_bare": self.ratio.to_json() if self.ratio is not None else None,
            "target": self.target,
            "met": self.met,
        }


@dataclass
class Result:
    number: int
    title: str
    rows: list[Row] = field(default_factory=list[Row])
    details: dict[str, Any] = field(default_factory=dict[str, Any])
    profile: Profile | None = None
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "scenario": self.number,
            "title": self.title,
            "rows": [row.to_json() for row in self.rows],
            "details": self.details,
            "profile": None
            if self.profile is None
            else {"shares": self.profile.shares, "text": self.profile.text},
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


def _format_ratio(row: Row) -> str:
    if row.ratio is None:
        return ""
    ratio = row.ratio.median
    return f"{ratio:.0%}" if row.higher_is_better else f"{ratio:.2f}x"


def render_table(results: Sequence[Result], *, markdown: bool = False) -> str:
    header = ("#", "measure", "median", "spread", "bare loop", "vs bare", "target", "met")
    lines: list[tuple[str, ...]] = [header]
    for result in results:
        for row in result.rows:
            met = "" if row.met is None else ("yes" if row.met else "NO")
            lines.append(
                (
                    str(row.scenario),
                    row.label,
                    _format(row.value.median, row.unit),
                    f"±{row.value.spread:.0%}",
                    _format(row.bare.median, row.unit) if row.bare is not None else "",
                    _format_ratio(row),
                    row.target or "",
                    met,
                )
            )
    if markdown:  # keep the indent of a row that details the one above
        lines = [tuple(cell.replace("  ", "&nbsp;&nbsp;", 1) for cell in line) for line in lines]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    right = {2, 3, 4, 5}
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
            warm_up=200,
        )


_StatsKey = tuple[str, int, str]
_STDLIB = sysconfig.get_paths()["stdlib"].replace(os.sep, "/")
CATEGORIES = ("sqlite", "json", "engine", "adapter", "runtime", "trio", "other")
"""Where a profile's busy time goes: apsw calls; core's serialization with json and cattrs; the
rest of core; the adapters; the runtime and client; trio; the rest (this script, ...). Time in
builtins and the standard library (but json) counts for the category of their main caller; time
trio spends waiting for I/O or a timer (``epoll``) is idle and left out."""


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
        path.startswith("<cattrs")
        or "/cattrs/" in path
        or path.endswith("/_serialization.py")
        or (path.endswith("core/_snapshot.py") and name == "json_text")
        or path.startswith(_STDLIB + "/json/")
    ):
        return "json"
    if "/packages/core/" in path or path.startswith("<attrs generated"):
        return "engine"
    if "/packages/adapter-sqlite/" in path or "/packages/in-memory-commander/" in path:
        return "adapter"
    if "/packages/runtime/" in path or "/packages/client/" in path:
        return "runtime"
    if "/trio/" in path or "/outcome/" in path:
        return "trio"
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
    """cProfile of one extra engine run per scenario, when ``--profile`` is given."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    async def run(self, work: Callable[[], Awaitable[object]]) -> Profile | None:
        if not self.enabled:
            return None
        profile = cProfile.Profile()
        profile.enable()
        try:
            await work()
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
        self, snapshot: MissionSnapshot, timeline: Sequence[TimelineEntry]
    ) -> MissionSnapshot | None:
        self.calls["insert"] += 1
        self.writes.append(_as_write(True, snapshot, timeline))
        return await self.inner.insert(snapshot, timeline)

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
    ) -> None:
        self.calls["commit"] += 1
        self.writes.append(_as_write(False, snapshot, timeline))
        await self.inner.commit(
            snapshot,
            expected_revision=expected_revision,
            timeline=timeline,
            consumed_signal=consumed_signal,
        )

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
    ) -> list[MissionSnapshot]:
        self.calls["list_missions"] += 1
        return await self.inner.list_missions(
            status=status, definition=definition, limit=limit, after_id=after_id
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


# -- the bare loop ------------------------------------------------------------------------------

_INSERT_MISSION = (
    "INSERT INTO missions (id, definition, status, due_at, revision, snapshot, cancel_request) "
    "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING"
)
_UPDATE_MISSION = (
    "UPDATE missions SET status = ?, due_at = ?, revision = ?, snapshot = ?, "
    "cancel_request = coalesce(cancel_request, ?) WHERE id = ? AND revision = ?"
)
_INSERT_ENTRY = "INSERT INTO timeline (mission_id, revision, position, entry) VALUES (?, ?, ?, ?)"
_LOAD = "SELECT revision, snapshot, cancel_request FROM missions WHERE id = ?"
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


def _at_least(value: float, bound: float) -> bool:
    return value >= bound


def _at_most(value: float, bound: float) -> bool:
    return value <= bound


# -- (1) 3-step missions one after another ----------------------------------------------------


async def scenario_1(cfg: Config, directory: str, profiles: Profiles) -> Result:
    result = Result(1, "3-step missions one after another")
    recorder = Recorder(THREE_STEPS)
    await recorder.commander.start(THREE_STEPS, {"i": 0})
    writes, calls = recorder.adapter.stage()
    result.details["writes_per_mission"] = _describe_writes(writes)
    result.details["adapter_calls_per_mission"] = calls
    result.details["snapshot_bytes"] = [len(w.snapshot) for w in writes]
    n, n_full = cfg.s1_missions, cfg.s1_full_missions
    result.details["missions_per_run"] = {"memory": n, "NORMAL": n, "FULL": n_full}

    memory = create_commander([THREE_STEPS], persistence=InMemoryPersistenceAdapter())
    normal = _sqlite_commander(os.path.join(directory, "s1-normal.sqlite"), [THREE_STEPS])
    full = _sqlite_commander(
        os.path.join(directory, "s1-full.sqlite"), [THREE_STEPS], synchronous="FULL"
    )
    bare_normal = BareDb(os.path.join(directory, "s1-bare-normal.sqlite"), "NORMAL")
    bare_full = BareDb(os.path.join(directory, "s1-bare-full.sqlite"), "FULL")
    try:
        for commander in (memory, normal, full):
            await _sequential(commander, THREE_STEPS, cfg.warm_up)
        await _bare_sequential(bare_normal, writes, cfg.warm_up)
        await _bare_sequential(bare_full, writes, cfg.warm_up)
        samples: dict[str, list[float]] = {k: [] for k in ("mem", "n", "bn", "f", "bf")}
        gc_memory, gc_normal = GcTimer(), GcTimer()
        for _ in range(cfg.repeat):
            with gc_memory:
                samples["mem"].append(await _sequential(memory, THREE_STEPS, n))
            with gc_normal:
                samples["n"].append(await _sequential(normal, THREE_STEPS, n))
            samples["bn"].append(await _bare_sequential(bare_normal, writes, n))
            samples["f"].append(await _sequential(full, THREE_STEPS, n_full))
            samples["bf"].append(await _bare_sequential(bare_full, writes, n_full))
        for commander, count in ((memory, n), (normal, n), (full, n_full)):
            await _check_completed(commander, THREE_STEPS, cfg.warm_up + cfg.repeat * count)
        result.profile = await profiles.run(lambda: _sequential(normal, THREE_STEPS, n))
    finally:
        for commander in (memory, normal, full):
            await commander.aclose()
        bare_normal.close()
        bare_full.close()

    # The share of the engine's time spent in the cyclic GC; the in-memory store keeps every
    # mission's objects alive, so its full collections grow with the missions it holds.
    result.details["gc_share"] = {
        "memory": gc_memory.seconds / sum(n / rate for rate in samples["mem"]),
        "NORMAL": gc_normal.seconds / sum(n / rate for rate in samples["n"]),
    }
    result.details["gc_collections"] = {
        "memory": dict(gc_memory.collections),
        "NORMAL": dict(gc_normal.collections),
    }
    mem, nor, bn = Stats.of(samples["mem"]), Stats.of(samples["n"]), Stats.of(samples["bn"])
    ful, bf = Stats.of(samples["f"]), Stats.of(samples["bf"])
    mem_ratio = paired_ratio(samples["mem"], samples["bn"])
    normal_ratio = paired_ratio(samples["n"], samples["bn"])
    full_ratio = paired_ratio(samples["f"], samples["bf"])
    result.rows += [
        Row(
            1,
            "in-memory, missions one after another",
            "missions/s",
            mem,
            True,
            bn,
            mem_ratio,
            ">= 20,000/s",
            _at_least(mem.median, 20_000),
        ),
        Row(
            1,
            "SQLite NORMAL, missions one after another",
            "missions/s",
            nor,
            True,
            bn,
            normal_ratio,
            ">= 60% of bare",
            _at_least(normal_ratio.median, 0.60),
        ),
        Row(1, "SQLite FULL, missions one after another", "missions/s", ful, True, bf, full_ratio),
    ]
    return result


# -- (2) 1,000 missions in flight at once -----------------------------------------------------


async def _in_flight(commander: Commander, count: int) -> float:
    started = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for i in range(count):
            nursery.start_soon(commander.start, IN_FLIGHT, {"i": i})
    return count / (time.perf_counter() - started)


async def _bare_in_flight(db: BareDb, writes: Sequence[Write], count: int) -> float:
    ids = SortableIds()
    started = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(count):
            nursery.start_soon(_bare_yielding, db, ids(), writes)
    return count / (time.perf_counter() - started)


async def _bare_yielding(db: BareDb, mission_id: str, writes: Sequence[Write]) -> None:
    await bare_mission(db, mission_id, writes, yield_between=True)


async def scenario_2(cfg: Config, directory: str, profiles: Profiles) -> Result:
    n = cfg.s2_missions
    result = Result(2, f"{n:,} missions in flight at once")
    recorder = Recorder(IN_FLIGHT)
    await recorder.commander.start(IN_FLIGHT, {"i": 0})
    writes, calls = recorder.adapter.stage()
    result.details["writes_per_mission"] = _describe_writes(writes)
    result.details["adapter_calls_per_mission"] = calls
    memory = create_commander([IN_FLIGHT], persistence=InMemoryPersistenceAdapter())
    sqlite = _sqlite_commander(os.path.join(directory, "s2.sqlite"), [IN_FLIGHT])
    bare = BareDb(os.path.join(directory, "s2-bare.sqlite"))
    try:
        await _in_flight(memory, cfg.warm_up)
        await _in_flight(sqlite, cfg.warm_up)
        await _bare_in_flight(bare, writes, cfg.warm_up)
        mem: list[float] = []
        eng: list[float] = []
        ref: list[float] = []
        transactions = 0
        for _ in range(cfg.repeat):
            mem.append(await _in_flight(memory, n))
            before = _transactions(sqlite)
            eng.append(await _in_flight(sqlite, n))
            transactions += _transactions(sqlite) - before
            ref.append(await _bare_in_flight(bare, writes, n))
        # The bare loop takes one per write; group commit shares them between missions.
        result.details["sqlite_transactions_per_mission"] = transactions / (cfg.repeat * n)
        for commander in (memory, sqlite):
            await _check_completed(commander, IN_FLIGHT, cfg.warm_up + cfg.repeat * n)
        result.profile = await profiles.run(lambda: _in_flight(sqlite, n))
    finally:
        await memory.aclose()
        await sqlite.aclose()
        bare.close()
    result.rows += [
        Row(
            2,
            f"in-memory, {n:,} in flight",
            "missions/s",
            Stats.of(mem),
            True,
            Stats.of(ref),
            paired_ratio(mem, ref),
        ),
        Row(
            2,
            f"SQLite NORMAL, {n:,} in flight",
            "missions/s",
            Stats.of(eng),
            True,
            Stats.of(ref),
            paired_ratio(eng, ref),
        ),
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
    async with trio.open_nursery() as nursery:
        for mission_id in ids:
            nursery.start_soon(signal, mission_id)
    elapsed = time.perf_counter() - started
    if unfinished:
        raise RuntimeError(f"{len(unfinished)} signalled missions did not complete")
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


async def scenario_3(cfg: Config, directory: str, profiles: Profiles) -> Result:
    n = cfg.s3_missions
    result = Result(3, f"{n} missions waiting on a signal, then all signalled")
    recorder = Recorder(SIGNALLED)
    handle = await recorder.commander.start(SIGNALLED, {"i": 0})
    start_writes, start_calls = recorder.adapter.stage()
    (start_write,) = start_writes  # starting one of these missions is one insert
    await handle.signal("approve", {"ok": True})
    writes, calls = recorder.adapter.stage()
    result.details["writes_per_mission"] = {
        "start": _describe_writes(start_writes),
        "signal": _describe_writes(writes),
    }
    result.details["adapter_calls_per_mission"] = {"start": start_calls, "signal": calls}
    memory = create_commander([SIGNALLED], persistence=InMemoryPersistenceAdapter())
    sqlite = _sqlite_commander(os.path.join(directory, "s3.sqlite"), [SIGNALLED])
    bare = BareDb(os.path.join(directory, "s3-bare.sqlite"))
    try:
        await _signal_all(memory, await _start_waiting(memory, cfg.warm_up))
        await _signal_all(sqlite, await _start_waiting(sqlite, cfg.warm_up))
        await _bare_signal_all(bare, start_write, writes, cfg.warm_up)
        mem: list[float] = []
        eng: list[float] = []
        ref: list[float] = []
        transactions = 0
        for _ in range(cfg.repeat):
            mem.append(await _signal_all(memory, await _start_waiting(memory, n)))
            waiting = await _start_waiting(sqlite, n)
            before = _transactions(sqlite)
            eng.append(await _signal_all(sqlite, waiting))
            transactions += _transactions(sqlite) - before
            ref.append(await _bare_signal_all(bare, start_write, writes, n))
        result.details["sqlite_transactions_per_signal"] = transactions / (cfg.repeat * n)
        ids = await _start_waiting(sqlite, n)
        result.profile = await profiles.run(lambda: _signal_all(sqlite, ids))
    finally:
        await memory.aclose()
        await sqlite.aclose()
        bare.close()
    engine = Stats.of(eng)
    result.rows += [
        Row(
            3,
            f"in-memory, {n} signalled: all finished",
            "s",
            Stats.of(mem),
            False,
            Stats.of(ref),
            paired_ratio(mem, ref),
        ),
        Row(
            3,
            f"SQLite NORMAL, {n} signalled: all finished",
            "s",
            engine,
            False,
            Stats.of(ref),
            paired_ratio(eng, ref),
            "<= 0.2 s",
            _at_most(engine.median, 0.2),
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


async def scenario_4(cfg: Config, directory: str, profiles: Profiles) -> Result:
    n, seconds = cfg.s4_missions, cfg.s4_sleep
    definition = sleeper(seconds)
    result = Result(4, f"{n} missions sleeping {seconds:g} s then a step, real runtime")
    recorder = Recorder(definition)
    handle = await recorder.commander.start(definition, {"i": 0})
    start_writes, start_calls = recorder.adapter.stage()
    (start_write,) = start_writes  # starting one of these missions is one insert
    recorder.clock.advance(seconds)
    await recorder.commander.advance(handle.id)
    writes, calls = recorder.adapter.stage()
    result.details["writes_per_mission"] = {
        "start": _describe_writes(start_writes),
        "timer": _describe_writes(writes),
    }
    result.details["adapter_calls_per_mission"] = {"start": start_calls, "timer": calls}
    commander = _sqlite_commander(os.path.join(directory, "s4.sqlite"), [definition])
    bare = BareDb(os.path.join(directory, "s4-bare.sqlite"))
    runs: list[dict[str, float]] = []
    ref: list[float] = []
    try:
        for _ in range(cfg.repeat):
            runs.append(await _sleepers(commander, definition, n))
            ref.append(await _bare_sleepers(bare, start_write, writes, n, seconds))
        result.profile = await profiles.run(lambda: _sleepers(commander, definition, n))
    finally:
        await commander.aclose()
        bare.close()
    total = Stats.of(r["total"] for r in runs)
    result.details["runs"] = runs
    limit = seconds * 1.2
    result.rows += [
        Row(
            4,
            f"SQLite NORMAL, {n} sleeping {seconds:g} s: all done",
            "s",
            total,
            False,
            Stats.of(ref),
            paired_ratio([r["total"] for r in runs], ref),
            f"<= {limit:g} s",
            _at_most(total.median, limit),
        ),
        Row(
            4,
            f"  of which starting {n} missions through the client",
            "s",
            Stats.of(r["starting"] for r in runs),
            False,
        ),
        Row(
            4,
            "  of which after the last start (sleep + ticks)",
            "s",
            Stats.of(r["after_last_due"] for r in runs),
            False,
        ),
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
            (mission_id, last.definition, last.status, due_column, last.revision, text, None)
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

    def __init__(self, cfg: Config, directory: str, rss_runs: int) -> None:
        self.cfg = cfg
        self.directory = directory
        self.waiting_db: WaitingDb | None = None
        self.rss_runs = rss_runs

    def database(self) -> WaitingDb:
        if self.waiting_db is None:
            cfg = self.cfg
            # Batches for (5)'s runs (a tick, by hand, bare), (8)'s runs and the profile.
            batches = 3 * cfg.repeat + self.rss_runs + 1
            path = os.path.join(self.directory, "waiting.sqlite")
            self.waiting_db = trio.run(build_waiting_db, path, cfg.waiting, cfg.due, batches)
        return self.waiting_db


# -- (5) a tick over 100,000 waiting missions of which 100 are due ----------------------------


async def scenario_5(cfg: Config, db: WaitingDb, profiles: Profiles) -> Result:
    result = Result(5, f"a tick over {db.waiting:,} waiting missions, {db.due} due")
    result.details["build_seconds"] = db.build_seconds
    result.details["tick_writes_per_mission"] = _describe_writes(db.tick_writes)
    # The bare loop runs on a copy of the file, its runs alternating with the engine's: two
    # connections writing one file in turn would each find its page cache stale after the
    # other's commit, which a single owner never does.
    bare = BareDb(_copy_database(db.path, db.path + ".bare"))
    clock = ManualClock(T0)
    commander = _sqlite_commander(db.path, [PARKED], clock=clock)
    ticks: list[float] = []
    direct: list[float] = []
    queries: list[float] = []
    ref: list[float] = []
    tick_transactions: list[int] = []
    try:
        async with create_commander_runtime(commander) as runtime:

            async def tick() -> float:
                clock.set(WaitingDb.clock_for(db.take_batch()))
                before = _transactions(commander)
                began = time.perf_counter()
                report = await runtime.tick()
                elapsed = time.perf_counter() - began
                tick_transactions.append(_transactions(commander) - before)
                if report.advanced != db.due or report.completed != db.due:
                    raise RuntimeError(f"the tick advanced {report.advanced}, not {db.due}")
                return elapsed

            async def by_hand() -> float:
                clock.set(WaitingDb.clock_for(db.take_batch()))
                began = time.perf_counter()
                ids = await commander.due_missions(db.due)
                queries.append((time.perf_counter() - began) * 1000)
                for mission_id in ids:
                    await commander.advance(mission_id)
                elapsed = time.perf_counter() - began
                if len(ids) != db.due:
                    raise RuntimeError(f"{len(ids)} missions were due, not {db.due}")
                return elapsed

            # The copy was made before any batch was taken: its ticks take its batches in order.
            bare_batches = itertools.count()

            def bare_tick() -> float:
                now = _micros(WaitingDb.clock_for(next(bare_batches)))
                began = time.perf_counter()
                ids = [row[0] for row in bare.cursor.execute(_DUE, (now, db.due)).fetchall()]
                for mission_id in ids:
                    bare.load(mission_id)
                    for write in db.tick_writes:
                        bare.write(mission_id, write)
                elapsed = time.perf_counter() - began
                if len(ids) != db.due:
                    raise RuntimeError(f"the bare tick found {len(ids)} due missions")
                return elapsed

            for _ in range(cfg.repeat):
                ticks.append(await tick() * 1000)
                direct.append(await by_hand() * 1000)
                ref.append(bare_tick() * 1000)
            result.profile = await profiles.run(tick)
    finally:
        await commander.aclose()
        bare.close()
        _remove_database(db.path + ".bare")
    # Group commit: the bare loop's tick takes one transaction per mission.
    result.details["tick_transactions"] = tick_transactions
    value = Stats.of(ticks)
    result.rows += [
        Row(
            5,
            f"runtime.tick(): {db.due} due of {db.waiting:,} waiting",
            "ms",
            value,
            False,
            Stats.of(ref),
            paired_ratio(ticks, ref),
            "<= 10 ms",
            _at_most(value.median, 10),
        ),
        Row(
            5,
            f"  due_missions + advance() x {db.due}, no runtime",
            "ms",
            Stats.of(direct),
            False,
            Stats.of(ref),
            paired_ratio(direct, ref),
        ),
        Row(5, "  of which the due query", "ms", Stats.of(queries), False),
    ]
    return result


# -- (6) runtime start-up over 100,000 waiting missions ---------------------------------------


async def scenario_6(cfg: Config, db: WaitingDb, profiles: Profiles) -> Result:
    result = Result(6, f"runtime start-up over {db.waiting:,} waiting missions")
    starts: list[float] = []
    opens: list[float] = []
    ref: list[float] = []

    async def start_once() -> tuple[float, float]:
        began = time.perf_counter()
        commander = _sqlite_commander(db.path, [PARKED], clock=ManualClock(T0))
        try:
            runtime = create_commander_runtime(commander)
            async with trio.open_nursery() as nursery:
                before = time.perf_counter()
                report = await runtime.start(nursery=nursery)
                up = time.perf_counter()
                await runtime.stop()
            if report.advanced or report.resumed:
                raise RuntimeError("the start-up tick found work; it should find none")
        finally:
            await commander.aclose()
        return up - before, up - began

    for _ in range(cfg.repeat * 2):
        start, opened = await start_once()
        starts.append(start * 1000)
        opens.append(opened * 1000)
        bare = BareDb(db.path)
        try:
            began = time.perf_counter()
            bare.cursor.execute(_RUNNING, (100,)).fetchall()
            bare.cursor.execute(_DUE, (_micros(T0), 100)).fetchall()
            bare.cursor.execute(_NEXT_DUE).fetchall()
            ref.append((time.perf_counter() - began) * 1000)
        finally:
            bare.close()
    result.profile = await profiles.run(start_once)
    value = Stats.of(starts)
    result.rows += [
        Row(
            6,
            f"runtime.start() over {db.waiting:,} waiting",
            "ms",
            value,
            False,
            Stats.of(ref),
            paired_ratio(starts, ref),
            "<= 100 ms",
            _at_most(value.median, 100),
        ),
        Row(6, "  open the database + runtime.start()", "ms", Stats.of(opens), False),
    ]
    return result


# -- (7) a transition at history length 1 and 1,000 -------------------------------------------


async def scenario_7(cfg: Config, directory: str, profiles: Profiles) -> Result:
    history, samples = cfg.s7_history, cfg.s7_samples
    result = Result(7, f"a transition at history length 1 and {history:,}")
    recorder = Recorder(SIGNALLED)
    handle = await recorder.commander.start(SIGNALLED, {"i": 0})
    start_writes, _ = recorder.adapter.stage()
    (start_write,) = start_writes  # starting one of these missions is one insert
    await handle.signal("approve", {"ok": True})
    writes, calls = recorder.adapter.stage()
    result.details["transition"] = (
        f"signal a waiting mission: {_describe_writes(writes)}; adapter calls {calls}"
    )
    path = os.path.join(directory, "s7.sqlite")
    commander = _sqlite_commander(path, [SIGNALLED])
    groups: dict[str, list[str]] = {}
    try:
        for group in ("engine-1", "engine-long", "profile-long"):
            groups[group] = await _start_waiting(commander, samples)
    finally:
        await commander.aclose()
    bare = BareDb(path)
    ids = SortableIds()
    for group in ("bare-1", "bare-long"):
        groups[group] = [ids() for _ in range(samples)]
        for mission_id in groups[group]:
            bare.write(mission_id, start_write)
    # History: one entry, or `history` entries (what buffered signals of another name leave).
    entry = timeline_entry_to_json(TimelineEntry(T0, TimelineKind.SIGNAL_BUFFERED, "other"))
    first = len(start_write.entries)
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
    # The bare loop gets a copy of the file: two connections writing one file in turn would
    # each find its page cache stale after the other's commit, which a single owner never does.
    bare.close()
    bare = BareDb(_copy_database(path, os.path.join(directory, "s7-bare.sqlite")))
    commander = _sqlite_commander(path, [SIGNALLED])
    times: dict[str, list[float]] = {group: [] for group in groups}
    try:
        lengths = {
            group: len(await commander.timeline(groups[group][0]))
            for group in ("engine-1", "engine-long")
        }
        result.details["history_lengths"] = lengths

        async def signal(mission_id: str) -> float:
            began = time.perf_counter()
            await commander.signal(mission_id, "approve", {"ok": True})
            return (time.perf_counter() - began) * 1e6

        def bare_transition(mission_id: str) -> float:
            began = time.perf_counter()
            bare.load(mission_id)
            for write in writes:
                bare.write(mission_id, write)
            return (time.perf_counter() - began) * 1e6

        for i in range(samples):
            # Alternate which length goes first, so that neither gains from the order.
            order = ("1", "long") if i % 2 == 0 else ("long", "1")
            for length in order:
                group = f"engine-{length}"
                times[group].append(await signal(groups[group][i]))
            for length in order:
                group = f"bare-{length}"
                times[group].append(bare_transition(groups[group][i]))

        async def profiled() -> None:
            for mission_id in groups["profile-long"]:
                await signal(mission_id)

        result.profile = await profiles.run(profiled)
    finally:
        await commander.aclose()
        bare.close()
    # A run is a run of consecutive samples; its figure is their median (single transitions
    # are too noisy to compare one by one: a WAL checkpoint lands on one now and then).
    runs = max(1, min(cfg.repeat, samples))

    def by_run(group: str) -> list[float]:
        values = times[group]
        size = len(values) // runs
        return [statistics.median(values[r * size : (r + 1) * size]) for r in range(runs)]

    e1, el, b1, bl = (by_run(g) for g in ("engine-1", "engine-long", "bare-1", "bare-long"))
    result.details["samples_per_run"] = len(times["engine-1"]) // runs
    growth = paired_ratio(el, e1)
    result.rows += [
        Row(
            7,
            "SQLite NORMAL, signal -> 2 commits, history 1",
            "us",
            Stats.of(e1),
            False,
            Stats.of(b1),
            paired_ratio(e1, b1),
        ),
        Row(
            7,
            f"SQLite NORMAL, signal -> 2 commits, history {history:,}",
            "us",
            Stats.of(el),
            False,
            Stats.of(bl),
            paired_ratio(el, bl),
        ),
        Row(
            7,
            f"  history {history:,} / history 1",
            "x",
            growth,
            False,
            paired_ratio(bl, b1),
            None,
            "<= 1.5x",
            _at_most(growth.median, 1.5),
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


def scenario_8(cfg: Config, shared: Shared) -> Result:
    result = Result(8, "peak RSS, a fresh process per measurement")
    db = shared.database()
    missions = cfg.s1_missions * cfg.repeat + cfg.warm_up
    runs = shared.rss_runs
    rss: dict[str, list[float]] = {k: [] for k in ("imports", "memory", "sqlite", "bare", "wait")}
    children: list[dict[str, Any]] = []
    for run in range(runs):
        directory = shared.directory
        for kind in ("imports", "memory", "sqlite", "bare"):
            path = os.path.join(directory, f"rss-{kind}-{run}.sqlite")
            children.append(_run_child([kind, "--rss-missions", str(missions), "--rss-db", path]))
            rss[kind].append(children[-1]["max_rss_mb"])
        batch = db.take_batch()
        children.append(
            _run_child(
                [
                    "waiting",
                    "--rss-db",
                    db.path,
                    "--rss-batch",
                    str(batch),
                    "--rss-due",
                    str(db.due),
                ]
            )
        )
        rss["wait"].append(children[-1]["max_rss_mb"])
    result.details["missions_per_run"] = missions
    # Each child process as it reported itself: its kind, time, VmHWM and ru_maxrss.
    result.details["children"] = children
    bare = Stats.of(rss["bare"])
    waiting = Stats.of(rss["wait"])
    result.rows += [
        # The bare loop of (1) is the reference of (1)'s rows only: the other two do other work.
        Row(8, "python + imports only", "MB", Stats.of(rss["imports"]), False),
        Row(
            8,
            f"(1) in-memory, {missions:,} missions",
            "MB",
            Stats.of(rss["memory"]),
            False,
            bare,
            paired_ratio(rss["memory"], rss["bare"]),
        ),
        Row(
            8,
            f"(1) SQLite NORMAL, {missions:,} missions",
            "MB",
            Stats.of(rss["sqlite"]),
            False,
            bare,
            paired_ratio(rss["sqlite"], rss["bare"]),
        ),
        Row(
            8,
            f"{db.waiting:,} persisted: open, start, tick {db.due}",
            "MB",
            waiting,
            False,
            None,
            None,
            "<= 80 MB",
            _at_most(waiting.median, 80),
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
        "commit": commit,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def run(cfg: Config, scenarios: Sequence[int], directory: str) -> list[Result]:
    profiles = Profiles(cfg.profile)
    shared = Shared(cfg, directory, rss_runs=3)
    results: list[Result] = []
    for number in scenarios:
        began = time.perf_counter()
        print(f"scenario {number} ...", file=sys.stderr, flush=True)
        if number == 1:
            result = trio.run(scenario_1, cfg, directory, profiles)
        elif number == 2:
            result = trio.run(scenario_2, cfg, directory, profiles)
        elif number == 3:
            result = trio.run(scenario_3, cfg, directory, profiles)
        elif number == 4:
            result = trio.run(scenario_4, cfg, directory, profiles)
        elif number == 5:
            result = trio.run(scenario_5, cfg, shared.database(), profiles)
        elif number == 6:
            result = trio.run(scenario_6, cfg, shared.database(), profiles)
        elif number == 7:
            result = trio.run(scenario_7, cfg, directory, profiles)
        else:
            result = scenario_8(cfg, shared)
        result.seconds = time.perf_counter() - began
        results.append(result)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Mission Control benchmarks (see docs/performance.md)"
    )
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke run")
    parser.add_argument(
        "--scenario", type=int, action="append", choices=range(1, 9), help="run only these"
    )
    parser.add_argument("--repeat", type=int, help="runs per figure (default 5, quick 2)")
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
    args = parser.parse_args(argv)
    if args.rss_child:
        info = trio.run(
            rss_child, args.rss_child, args.rss_missions, args.rss_db, args.rss_batch, args.rss_due
        )
        print(json.dumps(info))
        return 0
    if args.repeat is not None and args.repeat < 1:
        parser.error("--repeat must be at least 1")
    cfg = Config.make(quick=args.quick, repeat=args.repeat, profile=args.profile)
    scenarios = sorted(set(args.scenario or range(1, 9)))
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mission-control-bench-") as directory:
        results = run(cfg, scenarios, directory)
    info = machine()
    table = render_table(results, markdown=args.markdown)
    heading = (
        f"{info['cpus']} x {info['cpu']}, Python {info['python']}, SQLite {info['sqlite']}, "
        f"{'quick' if cfg.quick else 'full'} run, {cfg.repeat} runs per figure, "
        f"{time.perf_counter() - began:.0f} s"
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
            if result.profile is not None:
                print(f"{result.number}  {format_shares(result.profile.shares)}", file=out)
        if args.profile_text:
            for result in results:
                if result.profile is not None:
                    print(f"\n== profile of scenario {result.number}: {result.title}", file=out)
                    print(result.profile.text, file=out)
    if args.json:
        document = {
            "machine": info,
            "quick": cfg.quick,
            "repeat": cfg.repeat,
            "seconds": time.perf_counter() - began,
            "scenarios": [result.to_json() for result in results],
        }
        print(json.dumps(document, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
