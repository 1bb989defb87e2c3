"""Scenario (5): a runtime tick over 100,000 waiting missions of which 100 are due."""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field

from bench_bare import DUE, BareDb, describe_writes, micros
from bench_common import (
    close_all,
    copy_database,
    remove_database,
    sqlite_commander,
    transactions_of,
)
from bench_definitions import PARKED, T0
from bench_loops import Config, Loops
from bench_profile import Profiles
from bench_report import Result, Target, row
from bench_waiting import WaitingDb, settled

from mission_control.core import (
    Commander,
)
from mission_control.in_memory_commander import ManualClock
from mission_control.runtime import create_commander_runtime


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
            await settled(runtime)
            self.clock.set(WaitingDb.clock_for(db.take_batch()))
            before = transactions_of(commander)
            began = time.perf_counter()
            report = await runtime.tick()
            elapsed = time.perf_counter() - began
            taken = transactions_of(commander) - before
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
        self.bare = BareDb(copy_database(db.path, db.path + ".bare"))
        self.batches = itertools.count()

    def tick(self) -> float:
        db, bare = self.db, self.bare
        now = micros(WaitingDb.clock_for(next(self.batches)))
        began = time.perf_counter()
        ids = [row[0] for row in bare.cursor.execute(DUE, (now, db.due)).fetchall()]
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
        remove_database(self.db.path + ".bare")


def scenario_5(cfg: Config, db: WaitingDb, loops: Loops, profiles: Profiles) -> Result:
    result = Result(5, f"a tick over {db.waiting:,} waiting missions, {db.due} due")
    result.details["build_seconds"] = db.build_seconds
    result.details["tick_writes_per_mission"] = describe_writes(db.tick_writes)
    bare = BareTicks(db)
    clock = ManualClock(T0)
    runs = TickRuns(db, clock, sqlite_commander(db.path, [PARKED], clock=clock))
    ticks, direct, queries = loops.samples(), loops.samples(), loops.samples()
    ref: list[float] = []
    try:
        for order in loops.rounds(cfg.repeat):
            loops.measure(order, ticks, runs.tick)
            loops.measure(order, direct, lambda b: runs.by_hand(queries[b]))
            ref.append(bare.tick())
        result.profiles = profiles.each(loops, runs.tick)
    finally:
        loops.run(loops.backends[0], close_all, runs.commander)
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
