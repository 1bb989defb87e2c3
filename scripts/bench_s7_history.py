"""Scenario (7): the cost of a transition at a timeline length of 1 and of 1,000."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Mapping, Sequence

from bench_bare import INSERT_ENTRY, BareDb, Write, describe_writes, record_signal
from bench_common import close_all, copy_database, sqlite_commander, start_waiting
from bench_definitions import SIGNALLED, T0
from bench_loops import Config, Loops
from bench_profile import Profiles
from bench_report import Result, Target, paired_ratio, row

from mission_control.core import (
    Commander,
    SortableIds,
    TimelineEntry,
    TimelineKind,
)
from mission_control.core.storage import (
    timeline_entry_to_json,
)

LENGTHS = ("1", "long")
"""(7)'s two history lengths: one timeline entry, and ``s7_history`` entries."""


async def _start_groups(
    commander: Commander, names: Sequence[str], count: int
) -> dict[str, list[str]]:
    return {name: await start_waiting(commander, count) for name in names}


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
                    INSERT_ENTRY, [(mission_id, 1, p, entry) for p in range(first, history)]
                )
    cursor.execute("COMMIT")


def scenario_7(cfg: Config, directory: str, loops: Loops, profiles: Profiles) -> Result:
    history, samples = cfg.s7_history, cfg.s7_samples
    result = Result(7, f"a transition at history length 1 and {history:,}")
    (start_writes, _), (writes, calls) = loops.reference(record_signal, SIGNALLED)
    (start_write,) = start_writes  # starting one of these missions is one insert
    result.details["transition"] = (
        f"signal a waiting mission: {describe_writes(writes)}; adapter calls {calls}"
    )
    backends = loops.backends
    path = os.path.join(directory, "s7.sqlite")
    # One commander serves every backend in turn (one owner of the file: see TickRuns); each
    # backend signals missions of its own.
    commander = sqlite_commander(path, [SIGNALLED])
    names = [f"{b}-{length}" for b in backends for length in LENGTHS]
    names += [f"profile-{b}-long" for b in backends]
    try:
        groups = loops.reference(_start_groups, commander, names, samples)
    finally:
        loops.reference(close_all, commander)
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
    bare = BareDb(copy_database(path, os.path.join(directory, "s7-bare.sqlite")))
    commander = sqlite_commander(path, [SIGNALLED])
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
        loops.run(backends[0], close_all, commander)
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
