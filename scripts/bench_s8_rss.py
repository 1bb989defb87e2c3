"""Scenario (8): peak RSS, each figure from a fresh process (benchmark.py --rss-child)."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from typing import Any, cast

from bench_bare import BareDb, Recorder
from bench_common import bare_sequential, sequential, sqlite_commander
from bench_definitions import PARKED, T0, THREE_STEPS
from bench_loops import Config, Loops
from bench_report import Result, Target, row
from bench_waiting import Shared, WaitingDb, settled

from mission_control.core import (
    create_commander,
)
from mission_control.in_memory_commander import InMemoryPersistenceAdapter, ManualClock
from mission_control.runtime import create_commander_runtime

BENCHMARK = os.path.join(os.path.dirname(os.path.abspath(__file__)), "benchmark.py")
"""The script, run again for each child (``--rss-child``)."""


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
            await sequential(commander, THREE_STEPS, missions)
    elif kind == "sqlite":
        async with sqlite_commander(path, [THREE_STEPS]) as commander:
            await sequential(commander, THREE_STEPS, missions)
    elif kind == "bare":
        recorder = Recorder(THREE_STEPS)
        await recorder.commander.start(THREE_STEPS, {"i": 0})
        writes, _ = recorder.adapter.stage()
        db = BareDb(path)
        try:
            await bare_sequential(db, writes, missions)
        finally:
            db.close()
    elif kind == "waiting":
        clock = ManualClock(T0)
        async with (
            sqlite_commander(path, [PARKED], clock=clock) as commander,
            create_commander_runtime(commander) as runtime,
        ):
            await settled(runtime)
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
    command = [sys.executable, BENCHMARK, "--rss-child", *args]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"RSS measurement {args} failed:\n{done.stderr}")
    return cast(dict[str, Any], json.loads(done.stdout.strip().splitlines()[-1]))


def scenario_8(cfg: Config, shared: Shared, loops: Loops) -> Result:
    result = Result(8, "peak RSS, a fresh process per measurement")
    db = shared.database()
    missions = cfg.s1_missions * cfg.repeat + cfg.warm_up
    # The in-memory store as large as (10)'s largest: it keeps every mission it is given.
    stored = cfg.s10_stored[-1]
    kinds = ("imports", "memory", "sqlite", "waiting", "memory-stored")
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
            rss["memory-stored"][backend].append(
                child("memory", backend, "--rss-missions", str(stored))
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
        row(8, f"in-memory, {stored:,} missions stored", "MB", rss["memory-stored"]),
    ]
    return result
