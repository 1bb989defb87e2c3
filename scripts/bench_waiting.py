"""The database of 100,000 waiting missions that scenarios (5), (6) and (8) share."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from bench_bare import (
    INSERT_ENTRY,
    INSERT_MISSION,
    Recorder,
    Write,
    connect,
    micros,
)
from bench_definitions import PARKED, T0
from bench_loops import Config, Loops

from mission_control.adapter_sqlite import (
    create_sqlite_persistence_adapter,
)
from mission_control.core import (
    SortableIds,
)
from mission_control.core.storage import (
    snapshot_from_json,
)
from mission_control.runtime import CommanderRuntime


@dataclass
class WaitingDb:
    """A SQLite file of ``waiting`` missions of :data:`PARKED` (half waiting for a signal, half
    for a timer a day away) plus batches of ``due`` missions whose timers come due one second
    apart: batch ``b`` is due at ``clock_for(b)`` and no earlier batch is left waiting by then."""

    path: str
    waiting: int
    due: int
    batches: int
    tick_writes: list[Write]
    build_seconds: float
    taken: int = 0

    def take_batch(self) -> int:
        if self.taken >= self.batches:
            raise RuntimeError("the waiting database has no due batch left")
        self.taken += 1
        return self.taken - 1

    @staticmethod
    def due_time(batch: int, index: int) -> datetime:
        return T0 + timedelta(seconds=batch + 1, microseconds=index)

    @staticmethod
    def clock_for(batch: int) -> datetime:
        return T0 + timedelta(seconds=batch + 1.5)


async def build_waiting_db(path: str, waiting: int, due: int, batches: int) -> WaitingDb:
    began = time.perf_counter()
    recorder = Recorder(PARKED)
    handle = await recorder.commander.start(PARKED, {"i": 0})
    signal_writes, _ = recorder.adapter.stage()
    await handle.signal("approve", {"ok": True})
    timer_writes, _ = recorder.adapter.stage()
    recorder.clock.advance(timedelta(days=1))
    await recorder.commander.advance(handle.id)
    tick_writes, _ = recorder.adapter.stage()
    template_id = handle.id
    template_due = (T0 + timedelta(days=1)).isoformat()
    # Rows of the template missions, with the id (and the due time) to put in.
    at_signal = signal_writes
    at_timer = signal_writes + timer_writes
    if at_timer[-1].due is None or template_due not in at_timer[-1].snapshot:
        raise RuntimeError("the timer template does not hold its due time")

    ids = SortableIds()
    missions: list[tuple[Any, ...]] = []
    entries: list[tuple[Any, ...]] = []

    def add(template: list[Write], due_at: datetime | None) -> None:
        mission_id = ids()
        iso = due_at.isoformat() if due_at is not None else None
        for write in template:
            for position, entry in enumerate(write.entries):
                text = entry.replace(template_due, iso) if iso is not None else entry
                entries.append((mission_id, write.revision, position, text))
        last = template[-1]
        text = last.snapshot.replace(template_id, mission_id)
        if iso is not None:
            text = text.replace(template_due, iso)
        due_column = micros(due_at) if due_at is not None else None
        missions.append(
            (
                mission_id,
                last.definition,
                last.version,
                last.status,
                due_column,
                last.revision,
                text,
                None,
            )
        )

    in_signal = waiting // 2
    for _ in range(in_signal):
        add(at_signal, None)
    for i in range(waiting - in_signal - due):
        add(at_timer, T0 + timedelta(days=1, milliseconds=i))
    for batch in range(batches):
        for i in range(due):
            add(at_timer, WaitingDb.due_time(batch, i))
    create_sqlite_persistence_adapter(path).close()
    db = connect(path)
    try:
        cursor = db.cursor()
        cursor.execute("BEGIN IMMEDIATE")
        cursor.executemany(INSERT_MISSION, missions)
        cursor.executemany(INSERT_ENTRY, entries)
        cursor.execute("COMMIT")
        db.pragma("wal_checkpoint", "TRUNCATE")
    finally:
        db.close()
    # The rows must read back as what the engine wrote.
    check = snapshot_from_json(str(missions[-1][6]))
    if check.due_at != WaitingDb.due_time(batches - 1, due - 1) or check.id != missions[-1][0]:
        raise RuntimeError("the bulk-built rows do not read back as their templates")
    return WaitingDb(
        path=path,
        waiting=waiting,
        due=due,
        batches=batches,
        tick_writes=tick_writes,
        build_seconds=time.perf_counter() - began,
    )


class Shared:
    """What several scenarios use: the temporary directory and the waiting database."""

    def __init__(self, cfg: Config, directory: str, loops: Loops, rss_runs: int) -> None:
        self.cfg = cfg
        self.directory = directory
        self.loops = loops
        self.waiting_db: WaitingDb | None = None
        self.rss_runs = rss_runs

    def database(self) -> WaitingDb:
        if self.waiting_db is None:
            cfg = self.cfg
            # Batches for each backend's runs of (5) (a tick, by hand), its profile and its
            # runs of (8); the bare loop takes the first batches of a copy of its own.
            batches = len(self.loops.backends) * (2 * cfg.repeat + 1 + self.rss_runs)
            path = os.path.join(self.directory, "waiting.sqlite")
            self.waiting_db = self.loops.reference(
                build_waiting_db, path, cfg.waiting, cfg.due, batches
            )
        return self.waiting_db


async def settled(runtime: CommanderRuntime) -> None:
    """Wait until no tick runs that the measurement did not ask for.

    On SQLite, the owner's first look for submissions made before its wake-up socket existed
    asks for a tick right after the startup one; a tick that began before the clock moved
    would advance the batch the measured tick is meant to find. ``tick()`` waits for it, then
    runs one of its own (nothing is due yet).
    """
    await runtime.tick()
