"""Helpers the scenarios share: commanders, the sequential and bare runs, the GC timer, files."""

from __future__ import annotations

import gc
import os
import shutil
import time
from collections import Counter
from collections.abc import Awaitable, Sequence
from typing import Self, cast

from bench_bare import BareDb, Write, bare_mission, connect
from bench_definitions import SIGNALLED, Definition
from bench_loops import Loops

from mission_control.adapter_sqlite import (
    SQLitePersistenceAdapter,
    Synchronous,
    create_sqlite_persistence_adapter,
)
from mission_control.core import (
    Commander,
    MissionStatus,
    SortableIds,
    create_commander,
)
from mission_control.in_memory_commander import InMemoryPersistenceAdapter, ManualClock


def sqlite_commander(
    path: str,
    definitions: Sequence[Definition],
    *,
    synchronous: Synchronous = "NORMAL",
    clock: ManualClock | None = None,
) -> Commander:
    adapter = create_sqlite_persistence_adapter(path, synchronous=synchronous)
    return create_commander(definitions, persistence=adapter, clock=clock)


def memory_commanders(loops: Loops, definition: Definition) -> dict[str, Commander]:
    """An in-memory commander for each backend."""
    return {
        b: create_commander([definition], persistence=InMemoryPersistenceAdapter())
        for b in loops.backends
    }


def sqlite_commanders(
    loops: Loops,
    definition: Definition,
    directory: str,
    name: str,
    synchronous: Synchronous = "NORMAL",
) -> dict[str, Commander]:
    """A SQLite commander for each backend, on a database of its own (``name-backend``), as
    large as the one of a run on that backend alone."""
    return {
        b: sqlite_commander(
            os.path.join(directory, f"{name}-{b}.sqlite"), [definition], synchronous=synchronous
        )
        for b in loops.backends
    }


def transactions_of(commander: Commander) -> int:
    """Write transactions the commander's SQLite adapter has begun so far."""
    return cast(SQLitePersistenceAdapter, commander.persistence).transactions


async def sequential(commander: Commander, definition: Definition, count: int) -> float:
    """Missions per second, started and finished one after another."""
    started = time.perf_counter()
    for i in range(count):
        await commander.start(definition, {"i": i})
    return count / (time.perf_counter() - started)


async def bare_sequential(db: BareDb, writes: Sequence[Write], count: int) -> float:
    ids = SortableIds()
    started = time.perf_counter()
    for _ in range(count):
        await bare_mission(db, ids(), writes)
    return count / (time.perf_counter() - started)


async def check_completed(commander: Commander, definition: Definition, count: int) -> None:
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


def copy_database(source: str, target: str) -> str:
    """Copy a closed database (its WAL checkpointed into it first) to ``target``."""
    db = connect(source)
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


def remove_database(path: str) -> None:
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)


async def close_all(*commanders: Commander) -> None:
    for commander in commanders:
        await commander.aclose()


async def warm_up(commanders: Sequence[Commander], definition: Definition, count: int) -> None:
    for commander in commanders:
        await sequential(commander, definition, count)


async def with_gc(timer: GcTimer, work: Awaitable[float]) -> float:
    with timer:
        return await work


async def start_waiting(commander: Commander, count: int) -> list[str]:
    return [(await commander.start(SIGNALLED, {"i": i})).id for i in range(count)]
