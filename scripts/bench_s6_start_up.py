"""Scenario (6): runtime start-up over 100,000 waiting missions."""

from __future__ import annotations

import time

import anyio
from bench_bare import (
    DUE,
    FINGERPRINTS,
    FIRST_VERSION,
    NEXT_DEFINITION,
    NEXT_DUE,
    NEXT_VERSION,
    RUNNING,
    BareDb,
    micros,
)
from bench_common import sqlite_commander
from bench_definitions import PARKED, T0
from bench_loops import Config, Loops
from bench_profile import Profiles
from bench_report import Result, Target, row
from bench_waiting import WaitingDb

from mission_control.in_memory_commander import ManualClock
from mission_control.runtime import create_commander_runtime


async def _start_up(db: WaitingDb) -> tuple[float, float, float]:
    """Milliseconds of ``runtime.start()`` (the definition version check included), of opening
    the database before it, and of the version check alone (``commander.check_versions()``)."""
    began = time.perf_counter()
    before = up = checked = began
    commander = sqlite_commander(db.path, [PARKED], clock=ManualClock(T0))
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
        bare.cursor.execute(RUNNING, ("", 100)).fetchall()
        bare.cursor.execute(DUE, (micros(T0), 100)).fetchall()
        bare.cursor.execute(NEXT_DUE).fetchall()
        version = bare.cursor.execute(FIRST_VERSION).fetchall()
        while version:
            definition = version[0][0]
            version = (
                bare.cursor.execute(NEXT_VERSION, version[0]).fetchall()
                or bare.cursor.execute(NEXT_DEFINITION, (definition,)).fetchall()
            )
        bare.cursor.execute(FINGERPRINTS).fetchall()
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
