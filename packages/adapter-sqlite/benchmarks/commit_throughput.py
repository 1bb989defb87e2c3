"""Commit throughput of the SQLite adapter, next to the bare apsw loop it is measured against.

    uv run python packages/adapter-sqlite/benchmarks/commit_throughput.py [MISSIONS]

Runs 3-step missions (start, three steps, end: four commits each) through ``create_commander`` on
a temporary file, with ``synchronous`` NORMAL and FULL, and a bare trio + apsw loop writing rows
of the same sizes with the same statements and transactions (no engine, JSON made once). The
adapter's share of the bare loop's rate is what the commander costs on top of SQLite: the engine
and turning each snapshot into JSON.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import apsw
import trio

from mission_control.adapter_sqlite import Synchronous, create_sqlite_persistence_adapter
from mission_control.core import Context, create_commander, m
from mission_control.in_memory_commander import ManualClock


def parse(raw: Any) -> Any:
    return raw


def step(value: int) -> Callable[[Context[Any, Any]], int]:
    def run(ctx: Context[Any, Any]) -> int:
        return value

    return run


MISSION = (
    m.define("bench")
    .start(parse=parse, run=lambda ctx: {"ok": True})
    .step("a", step(1))
    .step("b", step(2))
    .step("c", step(3))
    .end()
)
COMMITS_PER_MISSION = 4
WARM_UP = 200


async def adapter_rate(directory: str, synchronous: Synchronous, missions: int) -> float:
    """Missions per second through ``create_commander`` on the SQLite adapter."""
    adapter = create_sqlite_persistence_adapter(
        os.path.join(directory, f"adapter-{synchronous}.sqlite"), synchronous=synchronous
    )
    async with create_commander([MISSION], persistence=adapter, clock=ManualClock()) as commander:
        for i in range(WARM_UP):
            await commander.start(MISSION, {"i": i})
        started = time.perf_counter()
        for i in range(missions):
            await commander.start(MISSION, {"i": i})
        return missions / (time.perf_counter() - started)


async def bare_rate(directory: str, synchronous: Synchronous, missions: int) -> float:
    """Missions per second for a trio + apsw loop writing the same rows, JSON made once."""
    path = os.path.join(directory, f"bare-{synchronous}.sqlite")
    create_sqlite_persistence_adapter(path).close()
    # apsw's stubs name collections.abc.Buffer, missing before Python 3.12: keep them out.
    db: Any = apsw.Connection(path)
    db.pragma("journal_mode", "wal")
    db.pragma("synchronous", synchronous)
    cursor = db.cursor()
    snapshot, entry = "x" * 1300, "e" * 100
    insert = (
        "INSERT INTO missions (id, definition, status, due_at, revision, snapshot, "
        "cancel_request) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING"
    )
    update = (
        "UPDATE missions SET status = ?, due_at = ?, revision = ?, snapshot = ?, "
        "cancel_request = coalesce(cancel_request, ?) WHERE id = ? AND revision = ?"
    )
    timeline = "INSERT INTO timeline (mission_id, revision, position, entry) VALUES (?, ?, ?, ?)"

    async def one(mission_id: str) -> None:
        cursor.execute("BEGIN IMMEDIATE")
        cursor.execute(insert, (mission_id, "bench", "running", None, 1, snapshot, None))
        cursor.executemany(timeline, [(mission_id, 1, i, entry) for i in range(3)])
        cursor.execute("COMMIT")
        await trio.lowlevel.checkpoint()
        for revision in range(2, COMMITS_PER_MISSION + 1):
            status = "completed" if revision == COMMITS_PER_MISSION else "running"
            cursor.execute("BEGIN IMMEDIATE")
            cursor.execute(
                update, (status, None, revision, snapshot, None, mission_id, revision - 1)
            )
            assert db.changes() == 1
            cursor.executemany(timeline, [(mission_id, revision, i, entry) for i in range(2)])
            cursor.execute("COMMIT")
            await trio.lowlevel.checkpoint()

    for i in range(WARM_UP):
        await one(f"warm-{i:08d}")
    started = time.perf_counter()
    for i in range(missions):
        await one(f"m-{i:08d}")
    rate = missions / (time.perf_counter() - started)
    db.close()
    return rate


async def main(missions: int) -> None:
    with tempfile.TemporaryDirectory() as directory:
        for synchronous in ("NORMAL", "FULL"):
            count = missions if synchronous == "NORMAL" else max(missions // 10, 100)
            adapter = await adapter_rate(directory, synchronous, count)
            bare = await bare_rate(directory, synchronous, count)
            for name, rate in (("adapter", adapter), ("bare apsw", bare)):
                commits = rate * COMMITS_PER_MISSION
                print(
                    f"{synchronous:<6} {name:<9} {rate:7.0f} missions/s  {commits:7.0f} "
                    f"commits/s  {1e6 / commits:6.1f} us/commit"
                )
            print(f"{synchronous:<6} adapter / bare = {adapter / bare:.0%}")


if __name__ == "__main__":
    trio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 3000)
