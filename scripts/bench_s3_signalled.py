"""Scenario (3): 500 missions waiting on a signal, then all signalled at once."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

import anyio
import trio
from bench_bare import BareDb, Write, bare_mission, describe_writes, record_signal
from bench_common import (
    close_all,
    memory_commanders,
    sqlite_commanders,
    start_waiting,
    transactions_of,
)
from bench_definitions import SIGNALLED
from bench_loops import Config, Loops
from bench_profile import Profiles
from bench_report import Result, Target, row

from mission_control.core import (
    Commander,
    MissionStatus,
    SortableIds,
)


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
    ids = await start_waiting(commander, count)
    before = transactions_of(commander) if transactions is not None else 0
    elapsed = await _signal_all(commander, ids)
    if transactions is not None:
        transactions.append(transactions_of(commander) - before)
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
        "start": describe_writes(start_writes),
        "signal": describe_writes(writes),
    }
    result.details["adapter_calls_per_mission"] = {"start": start_calls, "signal": calls}
    backends = loops.backends
    memory = memory_commanders(loops, SIGNALLED)
    sqlite = sqlite_commanders(loops, SIGNALLED, directory, "s3")
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
        loops.each(lambda b: close_all(memory[b], sqlite[b]))
        bare.close()
    result.rows += [
        row(3, f"in-memory, {n} signalled: all finished", "s", mem, ref),
        row(
            3,
            f"SQLite NORMAL, {n} signalled: all finished",
            "s",
            eng,
            ref,
            target=Target("<= 0.1 s", 0.1, at_most=True),
        ),
    ]
    return result
