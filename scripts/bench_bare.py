"""The bare (mirror) loop: the SQLite adapter's own statements and rows, written by trio and
apsw without the engine. The rows are captured from a real mission by a recording adapter."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol, Self, cast

import apsw
import trio
from bench_definitions import EPOCH, T0, Definition

from mission_control.adapter_sqlite import (
    Synchronous,
    create_sqlite_persistence_adapter,
)
from mission_control.core import (
    CancelRequest,
    JsonValue,
    MissionSnapshot,
    MissionStatus,
    Pause,
    SortableIds,
    TimelineEntry,
    create_commander,
)
from mission_control.core.storage import (
    ANY_TENANT,
    BufferedSignal,
    NewSignal,
    PersistenceAdapter,
    TenantFilter,
    clears_pause_request,
    snapshot_to_json,
    timeline_entry_to_json,
)
from mission_control.in_memory_commander import InMemoryPersistenceAdapter, ManualClock

# -- the adapter calls and rows of one mission ---------------------------------------------------


@dataclass(frozen=True)
class Write:
    """One write transaction of a mission, as the SQLite adapter stores it."""

    insert: bool
    definition: str
    version: int
    revision: int
    status: str
    due: int | None
    snapshot: str
    entries: tuple[str, ...]


def micros(when: datetime) -> int:
    return (when - EPOCH) // timedelta(microseconds=1)


def _as_write(insert: bool, snapshot: MissionSnapshot, timeline: Sequence[TimelineEntry]) -> Write:
    wait = snapshot.wait
    due = None
    if snapshot.status is MissionStatus.WAITING and wait is not None and wait.due_at is not None:
        due = micros(wait.due_at)
    return Write(
        insert=insert,
        definition=snapshot.definition,
        version=snapshot.definition_version,
        revision=snapshot.revision,
        status=snapshot.status.value,
        due=due,
        snapshot=snapshot_to_json(snapshot),
        entries=tuple(timeline_entry_to_json(entry) for entry in timeline),
    )


class RecordingAdapter:
    """A persistence adapter that counts the calls made on another one and keeps the writes."""

    def __init__(self, inner: PersistenceAdapter) -> None:
        self.inner = inner
        self.calls: Counter[str] = Counter()
        self.writes: list[Write] = []

    async def insert(
        self,
        snapshot: MissionSnapshot,
        timeline: Sequence[TimelineEntry],
        *,
        signals: Sequence[NewSignal] = (),
    ) -> MissionSnapshot | None:
        self.calls["insert"] += 1
        self.writes.append(_as_write(True, snapshot, timeline))
        return await self.inner.insert(snapshot, timeline, signals=signals)

    async def load(self, mission_id: str) -> MissionSnapshot | None:
        self.calls["load"] += 1
        return await self.inner.load(mission_id)

    async def commit(
        self,
        snapshot: MissionSnapshot,
        *,
        expected_revision: int,
        timeline: Sequence[TimelineEntry],
        consumed_signal: int | None = None,
        reopened: bool = False,
    ) -> None:
        self.calls["commit"] += 1
        self.writes.append(_as_write(False, snapshot, timeline))
        await self.inner.commit(
            snapshot,
            expected_revision=expected_revision,
            timeline=timeline,
            consumed_signal=consumed_signal,
            reopened=reopened,
        )

    async def delete_missions(self, revisions: Mapping[str, int]) -> list[str]:
        self.calls["delete_missions"] += 1
        return await self.inner.delete_missions(revisions)

    async def append_signal(
        self,
        mission_id: str,
        name: str,
        payload: JsonValue,
        received_at: datetime,
        timeline: Sequence[TimelineEntry],
    ) -> BufferedSignal:
        self.calls["append_signal"] += 1
        return await self.inner.append_signal(mission_id, name, payload, received_at, timeline)

    async def next_signal(self, mission_id: str, name: str) -> BufferedSignal | None:
        self.calls["next_signal"] += 1
        return await self.inner.next_signal(mission_id, name)

    async def request_cancel(
        self, mission_id: str, request: CancelRequest, timeline: Sequence[TimelineEntry]
    ) -> None:
        self.calls["request_cancel"] += 1
        await self.inner.request_cancel(mission_id, request, timeline)

    async def request_pause(
        self, mission_id: str, request: Pause | None, timeline: Sequence[TimelineEntry]
    ) -> None:
        self.calls["request_pause"] += 1
        await self.inner.request_pause(mission_id, request, timeline)

    async def list_missions(
        self,
        *,
        status: MissionStatus | None = None,
        definition: str | None = None,
        limit: int,
        after_id: str | None = None,
        tenant: TenantFilter = ANY_TENANT,
    ) -> list[MissionSnapshot]:
        self.calls["list_missions"] += 1
        return await self.inner.list_missions(
            status=status, definition=definition, limit=limit, after_id=after_id, tenant=tenant
        )

    async def due_missions(self, now: datetime, limit: int) -> list[str]:
        self.calls["due_missions"] += 1
        return await self.inner.due_missions(now, limit)

    async def next_due_at(self, after: datetime | None = None) -> datetime | None:
        self.calls["next_due_at"] += 1
        return await self.inner.next_due_at(after)

    async def running_missions(self, limit: int, after_id: str | None = None) -> list[str]:
        self.calls["running_missions"] += 1
        return await self.inner.running_missions(limit, after_id)

    async def timeline(self, mission_id: str) -> list[TimelineEntry]:
        self.calls["timeline"] += 1
        return await self.inner.timeline(mission_id)

    async def aclose(self) -> None:
        await self.inner.aclose()

    def stage(self) -> tuple[list[Write], dict[str, int]]:
        """The writes and calls since the last stage."""
        writes, calls = self.writes, dict(sorted(self.calls.items()))
        self.writes, self.calls = [], Counter()
        return writes, calls


class Recorder:
    """A commander on the in-memory adapter (manual clock at ``T0``) whose calls are recorded."""

    def __init__(self, definition: Definition) -> None:
        self.clock = ManualClock(T0)
        self.adapter = RecordingAdapter(InMemoryPersistenceAdapter())
        self.commander = create_commander(
            [definition], persistence=self.adapter, clock=self.clock, ids=SortableIds()
        )


def describe_writes(writes: Sequence[Write]) -> str:
    inserts = sum(1 for w in writes if w.insert)
    commits = len(writes) - inserts
    entries = "+".join(str(len(w.entries)) for w in writes)
    return f"{inserts} insert + {commits} commits, timeline entries {entries}"


Recorded = tuple[list[Write], dict[str, int]]
"""The writes and adapter calls of one stage of a mission."""


async def record_start(definition: Definition) -> Recorded:
    """The writes of starting one mission (to its end, or its first wait)."""
    recorder = Recorder(definition)
    await recorder.commander.start(definition, {"i": 0})
    return recorder.adapter.stage()


async def record_signal(definition: Definition) -> tuple[Recorded, Recorded]:
    """The writes of starting one mission waiting at ``approve``, then of signalling it."""
    recorder = Recorder(definition)
    handle = await recorder.commander.start(definition, {"i": 0})
    start = recorder.adapter.stage()
    await handle.signal("approve", {"ok": True})
    return start, recorder.adapter.stage()


async def record_timer(definition: Definition, seconds: float) -> tuple[Recorded, Recorded]:
    """The writes of starting one sleeping mission, then of advancing it once it is due."""
    recorder = Recorder(definition)
    handle = await recorder.commander.start(definition, {"i": 0})
    start = recorder.adapter.stage()
    recorder.clock.advance(seconds)
    await recorder.commander.advance(handle.id)
    return start, recorder.adapter.stage()


# -- the bare loop ------------------------------------------------------------------------------

INSERT_MISSION = (
    "INSERT INTO missions (id, definition, definition_version, status, due_at, revision, "
    "snapshot, cancel_request) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING"
)
UPDATE_MISSION = (
    "UPDATE missions SET status = ?, due_at = ?, revision = ?, snapshot = ?, "
    "cancel_request = coalesce(cancel_request, ?), "
    "pause_request = CASE WHEN ? THEN NULL ELSE pause_request END WHERE id = ? AND revision = ?"
)
# A commit of a mission that stays running with no due time sets only what changed (the
# adapter's update_mission); a row that was not running gets UPDATE_MISSION after it.
UPDATE_STILL_RUNNING = (
    "UPDATE missions SET revision = ?, snapshot = ?, cancel_request = coalesce(cancel_request, ?) "
    "WHERE id = ? AND revision = ? AND status = 'running' AND due_at IS NULL"
)
INSERT_ENTRY = "INSERT INTO timeline (mission_id, revision, position, entry) VALUES (?, ?, ?, ?)"
LOAD = "SELECT revision, snapshot, cancel_request, pause_request FROM missions WHERE id = ?"
VERSIONS_INDEX = (
    "missions INDEXED BY missions_unfinished_versions WHERE status IN ('running', 'waiting')"
)
FIRST_VERSION = (
    f"SELECT definition, definition_version FROM {VERSIONS_INDEX} "
    "ORDER BY definition, definition_version LIMIT 1"
)
# The next version: of the same definition, else the first of the next definition. (A row
# value comparison, (definition, definition_version) > (?, ?), would seek on the definition
# only and then read every mission of it.)
NEXT_VERSION = (
    f"SELECT definition, definition_version FROM {VERSIONS_INDEX} "
    "AND definition = ? AND definition_version > ? ORDER BY definition_version LIMIT 1"
)
NEXT_DEFINITION = (
    f"SELECT definition, definition_version FROM {VERSIONS_INDEX} "
    "AND definition > ? ORDER BY definition, definition_version LIMIT 1"
)
FINGERPRINTS = "SELECT definition, version, fingerprint FROM definition_versions"
DUE = "SELECT id FROM missions WHERE due_at IS NOT NULL AND due_at <= ? ORDER BY due_at, id LIMIT ?"
NEXT_DUE = "SELECT due_at FROM missions WHERE due_at IS NOT NULL ORDER BY due_at LIMIT 1"
RUNNING = (
    "SELECT id FROM missions WHERE status = 'running' AND id > ?1 "
    "UNION SELECT id FROM missions WHERE pause_request IS NOT NULL AND id > ?1 "
    "ORDER BY id LIMIT ?2"
)


class _Cursor(Protocol):
    def execute(self, statements: str, bindings: Sequence[Any] | None = None, /) -> Self: ...

    def executemany(
        self, statements: str, sequenceofbindings: Iterable[Sequence[Any]], /
    ) -> Self: ...

    def fetchall(self) -> list[tuple[Any, ...]]: ...


class _Connection(Protocol):
    def cursor(self) -> _Cursor: ...

    def changes(self) -> int: ...

    def pragma(self, name: str, value: int | str | None = None, /) -> Any: ...

    def close(self) -> None: ...


def connect(path: str) -> _Connection:
    # apsw's stubs name collections.abc.Buffer, missing before Python 3.12: keep them out.
    return cast(_Connection, apsw.Connection(path))


class BareDb:
    """trio's caller + apsw, in WAL mode, on the adapter's schema: the same statements as the
    adapter, one transaction per write, without the engine and with the JSON made beforehand."""

    def __init__(self, path: str, synchronous: Synchronous = "NORMAL") -> None:
        if not os.path.exists(path):
            create_sqlite_persistence_adapter(path).close()  # the schema, nothing else
        self.db = connect(path)
        self.db.pragma("journal_mode", "wal")
        self.db.pragma("synchronous", synchronous)
        self.cursor = self.db.cursor()

    def write(self, mission_id: str, write: Write) -> None:
        cursor = self.cursor
        cursor.execute("BEGIN IMMEDIATE")
        if write.insert:
            cursor.execute(
                INSERT_MISSION,
                (
                    mission_id,
                    write.definition,
                    write.version,
                    write.status,
                    write.due,
                    write.revision,
                    write.snapshot,
                    None,
                ),
            )
        else:
            self._update(mission_id, write)
        if self.db.changes() != 1:
            cursor.execute("ROLLBACK")
            raise RuntimeError(f"bare loop: mission {mission_id} was not written")
        cursor.executemany(
            INSERT_ENTRY, [(mission_id, write.revision, i, e) for i, e in enumerate(write.entries)]
        )
        cursor.execute("COMMIT")

    def _update(self, mission_id: str, write: Write) -> None:
        """The adapter's update_mission: only what changed for a mission still running."""
        cursor, revision = self.cursor, write.revision
        if write.status == "running" and write.due is None:
            lean = (revision, write.snapshot, None, mission_id, revision - 1)
            cursor.execute(UPDATE_STILL_RUNNING, lean)
            if self.db.changes() == 1:
                return
        status = MissionStatus(write.status)
        cursor.execute(
            UPDATE_MISSION,
            (
                write.status,
                write.due,
                revision,
                write.snapshot,
                None,
                clears_pause_request(status),
                mission_id,
                revision - 1,
            ),
        )

    def load(self, mission_id: str) -> str:
        return str(self.cursor.execute(LOAD, (mission_id,)).fetchall()[0][1])

    def close(self) -> None:
        self.db.close()


async def bare_mission(
    db: BareDb, mission_id: str, writes: Sequence[Write], *, yield_between: bool = False
) -> None:
    for i, write in enumerate(writes):
        if yield_between and i:
            await trio.lowlevel.checkpoint()
        db.write(mission_id, write)
