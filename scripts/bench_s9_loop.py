"""Scenario (9): the cost of a loop's iteration at iteration 1 and at iteration 1,000."""

from __future__ import annotations

import os
import statistics
import time

from bench_common import close_all, sqlite_commander
from bench_definitions import LOOPED
from bench_loops import Config, Loops
from bench_profile import Profiles
from bench_report import Result, Target, paired_ratio, row

from mission_control.core import (
    Commander,
)
from mission_control.core.storage import (
    snapshot_to_json,
)

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
    commander = sqlite_commander(os.path.join(directory, "s9.sqlite"), [LOOPED])
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
        loops.run(backends[0], close_all, commander)
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
