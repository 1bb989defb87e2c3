"""Where a mission's time goes in the engine, counted: Python bytecodes executed and Python
frames entered per mission, by node kind (a definition with one node more, minus one without)
and by module and function, in memory and on SQLite; and cProfile's shares of a longer run
(time, so noisy on a loaded machine, but the C work -- json, apsw -- only shows there).

    uv run python scripts/bench_where.py              # every measure (about a minute)
    uv run python scripts/bench_where.py --top 30     # more functions in the breakdown

Bytecodes are counted with ``sys.settrace`` and ``f_trace_opcodes``: the same program counts
the same on any machine, however loaded (``PYTHONHASHSEED`` aside), so two commits compare
where timings cannot. A bytecode is not a unit of time: a ``CALL`` of a C function (json's
encoder, an apsw statement) counts one; callgrind (scripts/count_instructions.py) counts those.
docs/performance.md, "Where the time goes", gives the figures and what they mean.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import sysconfig
import tempfile
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from types import CodeType, FrameType
from typing import Any

import trio
from bench_definitions import Definition, same, started
from bench_definitions import one as returns_one
from bench_profile import CATEGORIES, profile_shares

from mission_control.adapter_sqlite import create_sqlite_persistence_adapter
from mission_control.core import Commander, create_commander, m
from mission_control.core.storage import PersistenceAdapter
from mission_control.in_memory_commander import InMemoryPersistenceAdapter, ManualClock

TRACED = 200
"""Missions traced per measure (after as many untraced, so that caches and the store are warm)."""


def _with_steps(name: str, steps: int) -> Definition:
    """A start with a ``run`` (as the benchmark's), ``steps`` plain steps, an end."""
    built = m.define(name).start(parse=same, run=started)
    for n in range(steps):
        built = built.step(f"s{n}", returns_one)
    return built.end()


NO_STEP = _with_steps("no-step", 0)
ONE_STEP = _with_steps("one-step", 1)
THREE_STEPS = _with_steps("three-steps", 3)
"""The benchmark's 3-step mission (scenario 1), its functions this module's like the others'."""
SIGNALLED = (
    m.define("signalled")
    .start(parse=same, run=started)
    .need_to("go", parse=same)
    .step("s0", returns_one)
    .end()
)
SLEEPING = (
    m.define("sleeping")
    .start(parse=same, run=started)
    .sleep("nap", timedelta(days=1))
    .step("s0", returns_one)
    .end()
)
DEFINITIONS = [NO_STEP, ONE_STEP, THREE_STEPS, SIGNALLED, SLEEPING]


def _mission(definition: Definition) -> Callable[[Commander, ManualClock, int], Any]:
    """One mission of ``definition`` to its end: a start runs plain steps to the end; a need_to
    then takes a signal, a sleep an advance once its clock has moved past the wait."""

    async def one(commander: Commander, clock: ManualClock, n: int) -> None:
        handle = await commander.start(definition, {"n": n})
        if definition is SIGNALLED:
            await handle.signal("go", {"ok": True})
        elif definition is SLEEPING:
            clock.advance(timedelta(days=1, seconds=1))
            await commander.advance(handle.id)

    return one


# -- counting bytecodes ---------------------------------------------------------------------


class Bytecodes:
    """Bytecodes executed and frames entered, by code object, while installed."""

    def __init__(self) -> None:
        self.ops: Counter[CodeType] = Counter()
        self.frames: Counter[CodeType] = Counter()

    def _global(self, frame: FrameType, event: str, arg: object) -> Any:
        if event != "call":
            return None
        self.frames[frame.f_code] += 1
        frame.f_trace_opcodes = True
        frame.f_trace_lines = False
        return self._local

    def _local(self, frame: FrameType, event: str, arg: object) -> Any:
        if event == "opcode":
            self.ops[frame.f_code] += 1
        return self._local

    def __enter__(self) -> Bytecodes:
        sys.settrace(self._global)
        return self

    def __exit__(self, *exc: object) -> None:
        sys.settrace(None)


_STDLIB = sysconfig.get_paths()["stdlib"].replace(os.sep, "/")


def place(code: CodeType) -> str:
    """The module a code object belongs to, shortly: ``core._engine``, ``adapter_sqlite._group``,
    ``attrs-generated NodeRecord`` (a record's ``__init__``), ``loop`` (trio, AnyIO), ..."""
    path = code.co_filename.replace(os.sep, "/")
    if path.startswith("<attrs generated"):
        # "<attrs generated init mission_control.core._snapshot.NodeRecord>": the class's name.
        return "attrs-generated " + path.removesuffix(">").rsplit(".", 1)[-1]
    if path.startswith("<codec"):
        return "core codec (generated)"
    if path.startswith("<"):
        return path
    for package in ("core", "adapter_sqlite", "in_memory_commander", "runtime"):
        marker = f"/mission_control/{package}/"
        if marker in path:
            return f"{package}.{path.rsplit('/', 1)[1].removesuffix('.py')}"
    for loop in ("trio", "anyio", "outcome", "sniffio"):
        if f"/{loop}/" in path:
            return "loop"
    if path.startswith(_STDLIB + "/"):
        return "stdlib " + path[len(_STDLIB) + 1 :].split("/")[0].removesuffix(".py")
    return "other " + path.rsplit("/", 1)[1]


@dataclass
class Count:
    ops: Counter[CodeType]
    frames: Counter[CodeType]
    missions: int

    @property
    def ops_per_mission(self) -> float:
        return self.ops.total() / self.missions

    @property
    def frames_per_mission(self) -> float:
        return self.frames.total() / self.missions

    def by_place(self) -> Counter[str]:
        found: Counter[str] = Counter()
        for code, ops in self.ops.items():
            found[place(code)] += ops
        return found

    def by_function(self) -> Counter[str]:
        found: Counter[str] = Counter()
        for code, ops in self.ops.items():
            found[f"{place(code)}:{code.co_qualname}"] += ops
        return found

    def frames_by_function(self) -> Counter[str]:
        found: Counter[str] = Counter()
        for code, frames in self.frames.items():
            found[f"{place(code)}:{code.co_qualname}"] += frames
        return found


def _store(kind: str, directory: str) -> PersistenceAdapter:
    if kind == "memory":
        return InMemoryPersistenceAdapter()
    return create_sqlite_persistence_adapter(os.path.join(directory, f"{kind}.sqlite"))


async def _count(kind: str, definition: Definition, directory: str, missions: int) -> Count:
    clock = ManualClock()
    one = _mission(definition)
    async with create_commander(DEFINITIONS, persistence=_store(kind, directory), clock=clock) as c:
        for n in range(missions):
            await one(c, clock, n)
        with Bytecodes() as counted:
            for n in range(missions):
                await one(c, clock, missions + n)
    return Count(counted.ops, counted.frames, missions)


async def _profile(directory: str, missions: int) -> pstats.Stats:
    async with create_commander(
        [THREE_STEPS], persistence=_store("profiled", directory), clock=ManualClock()
    ) as c:
        for n in range(200):
            await c.start(THREE_STEPS, {"n": n})
        profile = cProfile.Profile()
        profile.enable()
        for n in range(missions):
            await c.start(THREE_STEPS, {"n": n})
        profile.disable()
    return pstats.Stats(profile)


def _print_counts(kind: str, counts: dict[str, Count]) -> None:
    print(f"\n{kind}: per mission (bytecodes, Python frames entered)")
    for name, count in counts.items():
        print(f"  {name:<12} {count.ops_per_mission:>9,.0f} {count.frames_per_mission:>7,.0f}")
    none, one, three = counts["no-step"], counts["one-step"], counts["three-steps"]
    print(f"\n{kind}: by node kind (a definition minus one without the node)")
    marginal = [
        ("start + end (+ insert, last commit)", none.ops_per_mission, none.frames_per_mission),
        (
            "a step (its commit)",
            (three.ops_per_mission - one.ops_per_mission) / 2,
            (three.frames_per_mission - one.frames_per_mission) / 2,
        ),
        (
            "a need_to and its signal",
            counts["signalled"].ops_per_mission - one.ops_per_mission,
            counts["signalled"].frames_per_mission - one.frames_per_mission,
        ),
        (
            "a sleep and its firing (advance)",
            counts["sleeping"].ops_per_mission - one.ops_per_mission,
            counts["sleeping"].frames_per_mission - one.frames_per_mission,
        ),
    ]
    for label, ops, frames in marginal:
        print(f"  {label:<40} {ops:>9,.0f} {frames:>7,.0f}")


def _print_breakdown(title: str, ops: Counter[str], missions: float, top: int) -> None:
    total = ops.total()
    print(f"\n{title}: {total / missions:,.0f} bytecodes per mission")
    for name, value in ops.most_common(top):
        print(f"  {value / missions:>8,.0f} {value / total:>5.1%}  {name}")


def _step_delta(counts: dict[str, Count]) -> tuple[Counter[str], Counter[str]]:
    """What one more step adds, by function: (three steps - one step) / 2, bytecodes and frames."""
    three, one = counts["three-steps"], counts["one-step"]
    ops = three.by_function()
    ops.subtract(one.by_function())
    frames = three.frames_by_function()
    frames.subtract(one.frames_by_function())
    return (
        Counter({k: v for k, v in ops.items() if v > 0}),
        Counter({k: v for k, v in frames.items() if v > 0}),
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--top", type=int, default=20, help="functions in each breakdown")
    parser.add_argument("--missions", type=int, default=TRACED, help="missions traced per measure")
    parser.add_argument(
        "--profiled", type=int, default=3000, help="missions of the cProfile run (SQLite)"
    )
    args = parser.parse_args(argv)
    n = args.missions
    with tempfile.TemporaryDirectory(prefix="mission-control-where-") as directory:
        for kind in ("memory", "sqlite"):
            counts: dict[str, Count] = {}
            for definition in DEFINITIONS:
                place_of = os.path.join(directory, f"{kind}-{definition.name}")
                os.makedirs(place_of)
                counts[definition.name] = trio.run(_count, kind, definition, place_of, n)
            _print_counts(kind, counts)
            three = counts["three-steps"]
            _print_breakdown(f"{kind}, a 3-step mission, by module", three.by_place(), n, args.top)
            _print_breakdown(
                f"{kind}, a 3-step mission, by function", three.by_function(), n, args.top
            )
            ops, frames = _step_delta(counts)
            _print_breakdown(f"{kind}, one more step, by function", ops, 2 * n, args.top)
            print(f"\n{kind}, one more step: frames entered by function")
            for name, value in frames.most_common(args.top):
                print(f"  {value / (2 * n):>6,.1f}  {name}")
        stats = trio.run(_profile, directory, args.profiled)
    shares = profile_shares(stats)
    print(f"\nsqlite, a 3-step mission, cProfile over {args.profiled:,} missions (time shares):")
    print("  " + ", ".join(f"{c} {shares[c]:.0%}" for c in CATEGORIES))
    raw: Any = getattr(stats, "stats")  # noqa: B009 (not in the stubs)
    table: dict[tuple[str, int, str], tuple[int, int, float, float, Any]] = raw
    busy = sum(entry[2] for key, entry in table.items() if "epoll" not in key[2]) or 1.0
    print("  top functions by own time (share of busy time, calls per mission):")
    ranked = sorted(table.items(), key=lambda item: -item[1][2])[: args.top]
    for (filename, line, name), (_, calls, own, _, _) in ranked:
        where = os.path.basename(filename) if filename != "~" else ""
        print(f"  {own / busy:>5.1%} {calls / args.profiled:>6.1f}  {where}:{line} {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
