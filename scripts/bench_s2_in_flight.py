"""Scenario (2): 1,000 missions in flight at once (their steps yield to the event loop)."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

import anyio
import trio
from bench_bare import BareDb, Write, bare_mission, describe_writes, record_start
from bench_common import (
    check_completed,
    close_all,
    memory_commanders,
    sqlite_commanders,
    transactions_of,
)
from bench_definitions import IN_FLIGHT
from bench_loops import Config, Loops
from bench_profile import Profiles
from bench_report import Result, row

from mission_control.core import (
    Commander,
    SortableIds,
)


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
    result.details["writes_per_mission"] = describe_writes(writes)
    result.details["adapter_calls_per_mission"] = calls
    backends = loops.backends
    memory = memory_commanders(loops, IN_FLIGHT)
    sqlite = sqlite_commanders(loops, IN_FLIGHT, directory, "s2")
    bare = BareDb(os.path.join(directory, "s2-bare.sqlite"))
    mem, eng = loops.samples(), loops.samples()
    ref: list[float] = []
    try:
        loops.each(lambda b: _warm_up_in_flight((memory[b], sqlite[b]), cfg.warm_up))
        loops.reference(_bare_in_flight, bare, writes, cfg.warm_up)
        before = {b: transactions_of(sqlite[b]) for b in backends}
        for order in loops.rounds(cfg.repeat):
            loops.measure(order, mem, lambda b: _in_flight(memory[b], n))
            loops.measure(order, eng, lambda b: _in_flight(sqlite[b], n))
            ref.append(loops.reference(_bare_in_flight, bare, writes, n))
        # The bare loop takes one per write; group commit shares them between missions.
        result.details["sqlite_transactions_per_mission"] = {
            b: (transactions_of(sqlite[b]) - before[b]) / (cfg.repeat * n) for b in backends
        }

        async def check(b: str) -> None:
            for commander in (memory[b], sqlite[b]):
                await check_completed(commander, IN_FLIGHT, cfg.warm_up + cfg.repeat * n)

        loops.each(check)
        result.profiles = profiles.each(loops, lambda b: _in_flight(sqlite[b], n))
    finally:
        loops.each(lambda b: close_all(memory[b], sqlite[b]))
        bare.close()
    result.rows += [
        row(2, f"in-memory, {n:,} in flight", "missions/s", mem, ref),
        row(2, f"SQLite NORMAL, {n:,} in flight", "missions/s", eng, ref),
    ]
    return result
