"""The PostgreSQL persistence adapter: missions, timelines, signal inboxes and cancellation
requests in one PostgreSQL schema, through psycopg 3.

psycopg's asynchronous connection runs on asyncio only, and the adapter runs on trio too: it
drives synchronous connections from AnyIO's worker threads instead, on both loops alike. Each
call is one hop to a worker thread, which takes an idle connection (or opens one), runs the
call's statements (a write: its whole transaction) and gives the connection back; a capacity
limiter as large as the pool (``connections``) bounds the threads. A caller cancelled
meanwhile still waits for the thread to finish, so a transaction is never abandoned half-done:
it commits or rolls back in full. What a hop costs is measured in docs/postgres.md.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Final, Literal, LiteralString, Self, TypeVar

import anyio
import anyio.to_thread
import attrs
import psycopg
from psycopg import sql
from psycopg.rows import TupleRow

from mission_control.core import (
    CancelRequest,
    ConfigurationError,
    JsonValue,
    MissionSnapshot,
    MissionStatus,
    Pause,
    PersistenceError,
    Refusal,
    Schedule,
    SortableIds,
    Submission,
    SubmissionState,
    TimelineEntry,
    TriggerFire,
)
from mission_control.core.lowlevel import Notices, notices_for
from mission_control.core.storage import (
    ANY_TENANT,
    BufferedSignal,
    Gate,
    Marking,
    NewSignal,
    NewSubmission,
    RevisionConflictError,
    SubmissionDecidedError,
    TenantFilter,
    applying_submission,
    cancel_request_to_json,
    check_commit_revision,
    check_gate_revision,
    check_schedule_revision,
    clears_pause_request,
    corrupt,
    gate_from_json,
    gate_to_json,
    mission_row,
    mission_update,
    pause_to_json,
    readable_submissions,
    records_from_json,
    refusal_to_json,
    revision_conflict,
    schedule_from_json,
    schedule_to_json,
    signal_payload_json,
    stored_snapshot_from_json,
    submission_mark,
    timeline_entry_from_json,
    timeline_rows,
    trigger_from_json,
    trigger_to_json,
)

from . import _submissions as submissions
from ._connections import open_connection
from ._listen import (
    NOTIFY,
    Listener,
    channel_of,
    due_notice,
    ended_notice,
    submitted_notice,
)
from ._realtime import RealTimer
from ._schema import migrate
from ._shards import (
    REBALANCE_INTERVAL,
    SHARDS,
    ShardLostError,
    ShardOwner,
    shard_of,
)

_log = logging.getLogger("mission_control.adapter_postgres")

_LONG_AGO: Final = datetime.min.replace(tzinfo=UTC)

WAKE_RECHECK: Final = (1.0, 30.0)
"""A listening runtime looks for work another process stored for it (submissions, and missions
due in its shards) whose notice it may have missed after this many seconds without a notice,
doubling up to the second; every first one while it cannot listen."""

REREAD_INTERVAL: Final = (0.25, 10.0)
"""Seconds between re-reads of a mission ``result()`` waits for, on an adapter where another
process may end it (a sharded runtime's, a submitter's): the first while no
:meth:`PostgresPersistenceAdapter.listen` runs, the second while one does (its notice of the
end wakes the waiters at once; the re-read covers a notice lost while its connection was
replaced)."""

Role = Literal["runtime", "submitter"]
"""What a process does with the schema: a runtime executes missions (all of them, or those of
its shards when sharded); a submitter (a web worker) executes none and hands its starts,
signals, cancellations and retries to the runtimes."""

LISTEN_RETRY: Final = 1.0
"""Seconds before a listener whose connection was lost connects again."""

DEFAULT_SCHEMA: Final = "mission_control"
"""The PostgreSQL schema the adapter keeps its tables in unless given another."""

Connection = psycopg.Connection[TupleRow]
_T = TypeVar("_T")

_INSERT_MISSION: Final = (
    "INSERT INTO missions (id, definition, definition_version, status, due_at, revision, "
    "snapshot, cancel_request, tenant) VALUES (%s, %s, %s, %s, %s, %s, %s::jsonb, %s::jsonb, %s) "
    "ON CONFLICT (id) DO NOTHING"
)
# The revision in the WHERE clause is the compare-and-set; coalesce keeps a stored cancellation
# request, which nothing but request_cancel (or the first snapshot carrying one) may write; the
# pause request is request_pause's, cleared by a commit that pauses or ends the mission (the
# parameter before the id: core.storage.clears_pause_request).
_UPDATE_MISSION: Final = (
    "UPDATE missions SET status = %s, due_at = %s, revision = %s, snapshot = %s::jsonb, "
    "cancel_request = coalesce(cancel_request, %s::jsonb), "
    "pause_request = CASE WHEN %s THEN NULL ELSE pause_request END "
    "WHERE id = %s AND revision = %s"
)
# A retry's commit: the snapshot's cancellation request replaces the stored one (None clears it).
_REOPEN_MISSION: Final = (
    "UPDATE missions SET status = %s, due_at = %s, revision = %s, snapshot = %s::jsonb, "
    "cancel_request = %s::jsonb, pause_request = CASE WHEN %s THEN NULL ELSE pause_request END "
    "WHERE id = %s AND revision = %s"
)
# A commit's compare-and-set on a sharded adapter carries the shard's fence: it updates the row
# only while the shard's epoch is still the one this runtime took (FOR SHARE: a runtime taking the
# shard over waits for this transaction, or this one sees its new epoch and updates nothing).
_FENCED: Final = " AND EXISTS (SELECT FROM shards WHERE shard = %s AND epoch = %s FOR SHARE)"
_UPDATE_MISSION_FENCED: Final = _UPDATE_MISSION + _FENCED
_REOPEN_MISSION_FENCED: Final = _REOPEN_MISSION + _FENCED
_INSERT_ENTRY: Final = (
    "INSERT INTO timeline (mission_id, revision, position, entry) VALUES (%s, %s, %s, %s::jsonb)"
)
_NEXT_POSITION: Final = (
    "SELECT coalesce(max(position) + 1, 0) FROM timeline WHERE mission_id = %s AND revision = %s"
)
_DELETE_SIGNAL: Final = "DELETE FROM inbox WHERE seq = %s AND mission_id = %s"
_INSERT_SIGNAL: Final = (
    "INSERT INTO inbox (mission_id, name, payload, received_at) "
    "VALUES (%s, %s, %s::jsonb, %s) RETURNING seq"
)
_REVISION: Final = "SELECT revision FROM missions WHERE id = %s"
# Locks the mission's row: writes that number their timeline entries after the stored ones
# (signals, cancellation requests) wait for one another.
_REVISION_FOR_UPDATE: Final = "SELECT revision FROM missions WHERE id = %s FOR UPDATE"
_LOAD: Final = (
    "SELECT revision, snapshot::text, cancel_request::text, pause_request::text FROM missions "
    "WHERE id = %s"
)
_REQUEST_CANCEL: Final = (
    "UPDATE missions SET cancel_request = coalesce(cancel_request, %s::jsonb) WHERE id = %s"
)
_STATUS_FOR_UPDATE: Final = "SELECT revision, status FROM missions WHERE id = %s FOR UPDATE"
_REQUEST_PAUSE: Final = "UPDATE missions SET pause_request = %s::jsonb WHERE id = %s"
_NEXT_SIGNAL: Final = (
    "SELECT seq, payload::text, received_at FROM inbox WHERE mission_id = %s AND name = %s "
    "ORDER BY seq LIMIT 1"
)
# ``due_at IS NOT NULL`` matches the partial index missions_due: the query reads what it returns.
_DUE: Final = (
    "SELECT id FROM missions WHERE due_at IS NOT NULL AND due_at <= %s ORDER BY due_at, id LIMIT %s"
)
_NEXT_DUE: Final = "SELECT due_at FROM missions WHERE due_at IS NOT NULL ORDER BY due_at LIMIT 1"
_NEXT_DUE_AFTER: Final = (
    "SELECT due_at FROM missions WHERE due_at IS NOT NULL AND due_at > %s ORDER BY due_at LIMIT 1"
)
# The running missions and those with a pause request, each part limited (the first of their
# union are among the first of each): parameters after, limit, after, limit, limit.
_RUNNING: Final = (
    "(SELECT id FROM missions WHERE status = 'running' AND id > %s ORDER BY id LIMIT %s) "
    "UNION (SELECT id FROM missions WHERE pause_request IS NOT NULL AND id > %s "
    "ORDER BY id LIMIT %s) ORDER BY id LIMIT %s"
)
# A runtime's queries on the shards it owns (the indexes missions_due_by_shard and
# missions_running_by_shard): what they read is what the shards hold that they return.
_DUE_ON: Final = (
    "SELECT id FROM missions WHERE shard = ANY(%s) AND due_at IS NOT NULL AND due_at <= %s "
    "ORDER BY due_at, id LIMIT %s"
)
_NEXT_DUE_ON: Final = (
    "SELECT due_at FROM missions WHERE shard = ANY(%s) AND due_at IS NOT NULL "
    "ORDER BY due_at LIMIT 1"
)
_NEXT_DUE_AFTER_ON: Final = (
    "SELECT due_at FROM missions WHERE shard = ANY(%s) AND due_at IS NOT NULL AND due_at > %s "
    "ORDER BY due_at LIMIT 1"
)
_RUNNING_ON: Final = (
    "(SELECT id FROM missions WHERE shard = ANY(%s) AND status = 'running' AND id > %s "
    "ORDER BY id LIMIT %s) UNION (SELECT id FROM missions WHERE shard = ANY(%s) "
    "AND pause_request IS NOT NULL AND id > %s ORDER BY id LIMIT %s) ORDER BY id LIMIT %s"
)
# FOR SHARE orders the write against a new owner's raise of the epoch (see _shards.py).
_EPOCH: Final = "SELECT epoch FROM shards WHERE shard = %s FOR SHARE"
_TIMELINE: Final = (
    "SELECT entry::text FROM timeline WHERE mission_id = %s ORDER BY revision, position"
)
# The partial index missions_unfinished_versions, with its condition word for word: each query
# is one seek to the next (definition, version), or to one version's first ids.
_UNFINISHED: Final = "missions WHERE status IN ('running', 'waiting')"
_FIRST_VERSION: Final = (
    f"SELECT definition, definition_version FROM {_UNFINISHED} "
    "ORDER BY definition, definition_version LIMIT 1"
)
_NEXT_VERSION: Final = (
    f"SELECT definition, definition_version FROM {_UNFINISHED} "
    "AND (definition, definition_version) > (%s, %s) "
    "ORDER BY definition, definition_version LIMIT 1"
)
_ON_VERSION: Final = (
    f"SELECT id FROM {_UNFINISHED} AND definition = %s AND definition_version = %s "
    "ORDER BY id LIMIT %s"
)
# Paused missions have not ended either; outside the partial index above (whose condition a
# migration would have to change), they are found through missions_by_status: reading them
# costs what there are, a few an operator paused.
_PAUSED_VERSIONS: Final = (
    "SELECT DISTINCT definition, definition_version FROM missions WHERE status = 'paused'"
)
_PAUSED_ON_VERSION: Final = (
    "SELECT id FROM missions WHERE status = 'paused' AND definition = %s "
    "AND definition_version = %s ORDER BY id LIMIT %s"
)
_LOAD_GATE: Final = "SELECT revision, document FROM concurrency_gates WHERE key = %s"
_INSERT_GATE: Final = (
    "INSERT INTO concurrency_gates (key, revision, document) VALUES (%s, %s, %s) "
    "ON CONFLICT (key) DO NOTHING"
)
_UPDATE_GATE: Final = (
    "UPDATE concurrency_gates SET revision = %s, document = %s WHERE key = %s AND revision = %s"
)
_FINGERPRINTS: Final = "SELECT definition, version, fingerprint FROM definition_versions"
_RECORD_FINGERPRINT: Final = (
    "INSERT INTO definition_versions (definition, version, fingerprint, recorded_at) "
    "VALUES (%s, %s, %s, %s) ON CONFLICT (definition, version) DO UPDATE SET "
    "fingerprint = excluded.fingerprint, recorded_at = excluded.recorded_at"
)
# A compare-and-delete: a mission retried (or otherwise changed) since it was read stays.
_DELETE_MISSION: Final = (
    "DELETE FROM missions WHERE id = %s AND revision = %s "
    "AND status IN ('completed', 'failed', 'cancelled', 'compensated') RETURNING id"
)
_DELETE_TIMELINE: Final = "DELETE FROM timeline WHERE mission_id = ANY(%s)"
_INSERT_SCHEDULE: Final = (
    "INSERT INTO schedules (id, next_fire_at, revision, document) VALUES (%s, %s, %s, %s::jsonb) "
    "ON CONFLICT (id) DO NOTHING"
)
_LOAD_SCHEDULE: Final = "SELECT document::text FROM schedules WHERE id = %s"
_UPDATE_SCHEDULE: Final = (
    "UPDATE schedules SET next_fire_at = %s, revision = %s, document = %s::jsonb "
    "WHERE id = %s AND revision = %s"
)
_DELETE_SCHEDULE: Final = "DELETE FROM schedules WHERE id = %s"
_LIST_SCHEDULES: Final = "SELECT document::text FROM schedules WHERE id > %s ORDER BY id LIMIT %s"
# ``next_fire_at IS NOT NULL`` matches the partial indexes schedules_due and
# schedules_due_by_shard: the queries read what they return.
_DUE_SCHEDULES: Final = (
    "SELECT document::text FROM schedules WHERE next_fire_at IS NOT NULL "
    "AND next_fire_at <= %s ORDER BY next_fire_at, id LIMIT %s"
)
_NEXT_SCHEDULE: Final = (
    "SELECT next_fire_at FROM schedules WHERE next_fire_at IS NOT NULL "
    "ORDER BY next_fire_at LIMIT 1"
)
_NEXT_SCHEDULE_AFTER: Final = (
    "SELECT next_fire_at FROM schedules WHERE next_fire_at IS NOT NULL AND next_fire_at > %s "
    "ORDER BY next_fire_at LIMIT 1"
)
_DUE_SCHEDULES_ON: Final = (
    "SELECT document::text FROM schedules WHERE shard = ANY(%s) AND next_fire_at IS NOT NULL "
    "AND next_fire_at <= %s ORDER BY next_fire_at, id LIMIT %s"
)
_NEXT_SCHEDULE_ON: Final = (
    "SELECT next_fire_at FROM schedules WHERE shard = ANY(%s) AND next_fire_at IS NOT NULL "
    "ORDER BY next_fire_at LIMIT 1"
)
_NEXT_SCHEDULE_AFTER_ON: Final = (
    "SELECT next_fire_at FROM schedules WHERE shard = ANY(%s) AND next_fire_at IS NOT NULL "
    "AND next_fire_at > %s ORDER BY next_fire_at LIMIT 1"
)
_RECORD_TRIGGER: Final = (
    "INSERT INTO trigger_fires (id, name, document) VALUES (%s, %s, %s::jsonb) "
    "ON CONFLICT (id) DO NOTHING"
)
_LOAD_TRIGGER: Final = "SELECT document::text FROM trigger_fires WHERE id = %s"
_LIST_TRIGGERS: Final = (
    "SELECT document::text FROM trigger_fires WHERE id > %s ORDER BY id LIMIT %s"
)
_LIST_TRIGGERS_NAMED: Final = (
    "SELECT document::text FROM trigger_fires WHERE name = %s AND id > %s ORDER BY id LIMIT %s"
)
_DELETE_INBOX: Final = "DELETE FROM inbox WHERE mission_id = ANY(%s)"


def _aware(when: datetime, what: str) -> datetime:
    if when.utcoffset() is None:
        raise ValueError(f"{what} must be a timezone-aware datetime, got naive {when!r}")
    return when


def _schema_name(schema: object) -> str:
    if not isinstance(schema, str) or not schema or "\x00" in schema:
        raise ConfigurationError(f"schema must be a non-empty str, got {schema!r}")
    return schema


@attrs.define
class _Quiet:
    """Since when (``time.monotonic()``) a listening runtime heard no notice nor looked at the
    store, and whether a notice came since its recheck last read this."""

    since: float
    reset: bool = False

    def heard(self, at: float) -> None:
        self.since = at
        self.reset = True


class PostgresPersistenceAdapter:
    """Stores missions in a PostgreSQL database, for ``create_commander(persistence=...)``.

    Open one with :func:`open_postgres_persistence_adapter`, which connects, checks the schema
    (a newer one is refused) and migrates it. Close it with :meth:`aclose` (or ``async with``).
    It works on trio and asyncio alike: see the module's docstring and ``docs/postgres.md``.
    """

    keeps_given_values = False

    def __init__(
        self,
        connection: Connection,
        *,
        schema: str,
        schema_version: int,
        shards: ShardOwner | None = None,
        conninfo: str | None = None,
        connections: int = 1,
        wake_recheck: tuple[float, float] = WAKE_RECHECK,
        role: Role = "runtime",
    ) -> None:
        """Use :func:`open_postgres_persistence_adapter`: it makes the connection this takes
        over (set up, migrated, in autocommit mode), and the shard owner of a sharded one. With
        ``conninfo``, up to ``connections`` calls run at once, each on a connection of its own
        (opened when first needed), and a connection found lost is replaced for the next call."""
        self._idle = [connection]
        self._pool_lock = threading.Lock()
        self._conninfo = conninfo
        self._schema = schema
        self._schema_version = schema_version
        self._connections = connections if conninfo is not None else 1
        self._limiter = anyio.CapacityLimiter(self._connections)
        self._shards = shards
        self._shard_limiter = anyio.CapacityLimiter(1)
        self._ids = SortableIds()
        self._closed = False
        self._channel = channel_of(schema)
        self._listening = 0
        self._wake_recheck = wake_recheck
        self._rebalance_rounds = 0
        self._rechecks = 0
        self._role: Role = role

    # -- properties ----------------------------------------------------------------------------

    @property
    def schema(self) -> str:
        """The PostgreSQL schema holding the tables."""
        return self._schema

    @property
    def schema_version(self) -> int:
        """The schema version of the open database."""
        return self._schema_version

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def role(self) -> Role:
        """``"runtime"`` or ``"submitter"`` (see :func:`open_postgres_persistence_adapter`)."""
        return self._role

    @property
    def sharded(self) -> bool:
        """Whether this adapter executes only the missions of the shards it owns."""
        return self._shards is not None

    @property
    def owned_shards(self) -> dict[int, int]:
        """The shards this adapter owns, each with the ownership epoch it took it at (empty
        when it is not sharded)."""
        return {} if self._shards is None else dict(self._shards.owned)

    @property
    def rebalance_rounds(self) -> int:
        """How many rounds of the spreading rule this adapter has run (:meth:`rebalance`): one
        at its opening, then about one per ``REBALANCE_INTERVAL`` of real time while a runtime
        keeps its shards (for operators; a virtual clock does not add rounds)."""
        return self._rebalance_rounds

    @property
    def rechecks(self) -> int:
        """How many times a listening runtime looked at the store for work whose notice it may
        have missed (``WAKE_RECHECK``, real seconds without a notice; for operators: a count
        growing faster than that says the notices do not arrive)."""
        return self._rechecks

    # -- shards ----------------------------------------------------------------------------

    async def rebalance(self) -> None:
        """One round of the spreading rule (``docs/postgres.md``): check the lock connection
        (reconnecting when it was lost, its shards forgotten), release the shards drained in
        the previous round, drain those over this runtime's share, take free ones up to it."""
        owner = self._sharded("rebalance shards")
        before = set(owner.owned)
        self._rebalance_rounds += 1
        await anyio.to_thread.run_sync(
            self._call_shards, owner.rebalance_round, limiter=self._shard_limiter
        )
        if set(owner.owned) - before:
            # Shards taken over may hold missions due long ago, and missions their last owner
            # left running: the runtime ticks at once (its ticks resume running missions too).
            notices_for(self).due(_LONG_AGO)

    def new_mission_id(self) -> str:
        """A new mission id (sortable, as the commander's own) in one of the shards this
        adapter owns, so that a mission started here runs here: give it to the commander,
        ``create_commander(..., persistence=adapter, ids=adapter.new_mission_id)``. With ``n``
        runtimes, about ``n`` ids are drawn per id returned. An unsharded adapter returns the
        first one drawn."""
        owner = self._shards
        while True:
            mission_id = self._ids()
            if owner is None or shard_of(mission_id) in owner.serving:
                return mission_id
            if not owner.serving:
                raise ShardLostError(
                    "this runtime owns no shard right now: it cannot start a mission here"
                )

    def owns(self, mission_id: str) -> bool:
        """Whether this adapter's runtime executes the mission ``mission_id``: always when it is
        not sharded; else when the mission's shard is one it owns and is not draining (see
        ``docs/postgres.md``). A commander on it stores a start of a mission it does not own for
        that mission's owner, and hands it that mission's signals, cancellations and retries as
        submissions (``mission_control.core.storage.MissionOwnership``)."""
        if self._role == "submitter":
            return False
        owner = self._shards
        return owner is None or shard_of(mission_id) in owner.serving_set

    @property
    def lock_backend_pid(self) -> int | None:
        """The server process of the lock connection of a sharded adapter."""
        return None if self._shards is None else self._shards.backend_pid

    async def keep_ownership(self) -> None:
        """What a runtime on this adapter runs beside its ticks (``MissionOwnership``): on a
        sharded adapter, :meth:`keep_shards`; on any other, nothing, until cancelled."""
        if self._shards is None:
            await anyio.sleep_forever()
        else:
            await self.keep_shards()

    async def keep_shards(self) -> None:
        """Run :meth:`rebalance` every ``REBALANCE_INTERVAL`` seconds of real time (timed by
        the server, not by the event loop's clock, which may be a test's virtual one), until
        cancelled (a runtime does, through :meth:`keep_ownership`)."""
        assert self._conninfo is not None
        timer = RealTimer(self._conninfo)
        try:
            while True:
                try:
                    await self.rebalance()
                except PersistenceError as error:
                    _log.warning("rebalancing the shards failed: %s", error)
                await timer.sleep(REBALANCE_INTERVAL)
        finally:
            timer.close()

    def _serving(self, action: str) -> list[int] | None:
        """The shards a sharded adapter's queries cover (``None`` when not sharded)."""
        if self._closed:
            raise PersistenceError(f"cannot {action}: the PostgreSQL adapter is closed")
        return None if self._shards is None else self._shards.serving

    def _check_runtime(self, action: str) -> None:
        if self._role == "submitter":
            raise PersistenceError(
                f"cannot {action}: this adapter was opened as a submitter, which executes no "
                "mission (the runtimes apply what it submits; see docs/postgres.md)"
            )

    def _sharded(self, action: str) -> ShardOwner:
        if self._closed:
            raise PersistenceError(f"cannot {action}: the PostgreSQL adapter is closed")
        if self._shards is None:
            raise ConfigurationError(
                f"cannot {action}: the adapter was opened without sharded=True"
            )
        return self._shards

    @staticmethod
    def _call_shards(work: Callable[[], None]) -> None:
        try:
            work()
        except psycopg.Error as error:
            raise PersistenceError(
                f"rebalancing shards failed on PostgreSQL: {type(error).__name__}: {error}"
            ) from error

    def _fence(self, mission_id: str) -> tuple[int, int] | None:
        """The shard of ``mission_id`` and the epoch this adapter owns it at (``None`` when not
        sharded); :class:`ShardLostError` when it does not own it."""
        owner = self._shards
        if owner is None or self._closed:
            return None
        shard = shard_of(mission_id)
        epoch = owner.owned.get(shard)
        if epoch is None:
            raise ShardLostError(
                f"mission {mission_id!r} is in shard {shard}, which this runtime does not own "
                f"(it owns {len(owner.owned)} of {SHARDS}); nothing was stored"
            )
        return shard, epoch

    def _check_fence(self, db: Connection, mission_id: str, fence: tuple[int, int]) -> None:
        shard, epoch = fence
        row = db.execute(_EPOCH, (shard,)).fetchone()
        if row is not None and int(row[0]) == epoch:
            return
        if self._shards is not None:
            self._shards.lost(shard)
        raise ShardLostError(
            f"mission {mission_id!r} is in shard {shard}, which another runtime took over "
            f"(epoch {None if row is None else row[0]}, this one owned it at {epoch}); nothing "
            "was stored"
        )

    # -- helpers -------------------------------------------------------------------------------

    async def _run(self, work: Callable[[Connection], _T], action: str) -> _T:
        """``work(connection)`` in a worker thread; a database error as
        :class:`PersistenceError` naming ``action``."""
        if self._closed:
            raise PersistenceError(f"cannot {action}: the PostgreSQL adapter is closed")
        return await anyio.to_thread.run_sync(self._call, work, action, limiter=self._limiter)

    def _call(self, work: Callable[[Connection], _T], action: str) -> _T:
        # The limiter lets at most as many threads in as there are connections.
        with self._pool_lock:
            db = self._idle.pop() if self._idle else None
        try:
            if db is None:
                assert self._conninfo is not None
                db = self._connect(self._conninfo)
            return work(db)
        except psycopg.Error as error:
            raise PersistenceError(
                f"{action} failed on PostgreSQL: {type(error).__name__}: {error}"
            ) from error
        finally:
            if db is not None:
                if db.broken and self._conninfo is not None:
                    # Lost (the server restarted, or ended the session): the call that found it
                    # failed (whether its transaction committed, the engine's compare-and-set
                    # finds out); the next one gets a new session.
                    db.close()
                else:
                    with self._pool_lock:
                        self._idle.append(db)

    def _connect(self, conninfo: str) -> Connection:
        db = open_connection(conninfo)
        try:
            _set_up(db, self._schema)
            version = _version(db)
        except BaseException:
            db.close()
            raise
        if version != self._schema_version:
            db.close()
            raise PersistenceError(
                f"the PostgreSQL schema {self._schema!r} is at version {version} now, not "
                f"{self._schema_version} as when this adapter opened it: open a new adapter"
            )
        return db

    @property
    def backend_pids(self) -> list[int]:
        """The server processes of the adapter's idle connections (what
        ``pg_terminate_backend`` ends)."""
        with self._pool_lock:
            return [db.info.backend_pid for db in self._idle]

    @property
    def connections(self) -> int:
        """How many calls may run at once, each on a connection of its own."""
        return self._connections

    async def _write(
        self,
        work: Callable[[Connection], _T],
        action: str,
        fenced: str | None = None,
        *,
        marks: bool = False,
    ) -> _T:
        """``work(connection)`` in one transaction, rolled back when it raises; on a sharded
        adapter, a write ``fenced`` by a mission id checks first, in the same transaction, that
        this adapter still owns the mission's shard. A write that ``marks`` (one that may apply
        a submission) marks the submission the calling task applies (:func:`submission_mark`)
        applied in the same transaction (:class:`SubmissionDecidedError`, nothing stored, when
        it is no longer pending)."""
        if marks:
            with submission_mark() as mark:
                return await self._write_marked(work, action, fenced, mark)
        return await self._write_marked(work, action, fenced, None)

    async def _write_marked(
        self,
        work: Callable[[Connection], _T],
        action: str,
        fenced: str | None,
        mark: tuple[datetime, int] | None,
    ) -> _T:
        fence = None if fenced is None else self._fence(fenced)

        def transaction(db: Connection) -> _T:
            with db.transaction():
                if fence is not None:
                    assert fenced is not None
                    self._check_fence(db, fenced, fence)
                if mark is not None:
                    with db.cursor() as cursor:
                        cursor.execute(submissions.MARK_APPLIED, mark)
                        if cursor.rowcount != 1:
                            raise SubmissionDecidedError(
                                f"submission {mark[1]} is no longer pending"
                            )
                return work(db)

        return await self._run(transaction, action)

    async def _rows(
        self, query: LiteralString, params: Sequence[Any], action: str
    ) -> list[TupleRow]:
        return await self._run(lambda db: db.execute(query, params).fetchall(), action)

    @property
    def _store(self) -> str:
        return f"PostgreSQL schema {self._schema!r}"

    def _decode(
        self, mission_id: str, revision: int, text: str, cancel: str | None, pause: str | None
    ) -> MissionSnapshot:
        return stored_snapshot_from_json(
            text, cancel, pause, mission_id=mission_id, revision=revision, store=self._store
        )

    @staticmethod
    def _due(snapshot: MissionSnapshot) -> datetime | None:
        """The mission's due time, checked to be timezone-aware."""
        due_at = snapshot.due_at
        if due_at is not None:
            _aware(due_at, f"due time of mission {snapshot.id!r}")
        return due_at

    @staticmethod
    def _revision(db: Connection, mission_id: str, action: str) -> int:
        row = db.execute(_REVISION_FOR_UPDATE, (mission_id,)).fetchone()
        if row is None:
            raise PersistenceError(f"{action} unknown mission {mission_id!r}")
        return int(row[0])

    @staticmethod
    def _append_entries(
        db: Connection, mission_id: str, revision: int, timeline: Sequence[TimelineEntry]
    ) -> None:
        """Append entries outside a commit, after those written at the current revision."""
        if not timeline:
            return
        row = db.execute(_NEXT_POSITION, (mission_id, revision)).fetchone()
        start = 0 if row is None else int(row[0])
        with db.cursor() as cursor:
            cursor.executemany(_INSERT_ENTRY, timeline_rows(mission_id, revision, timeline, start))

    # -- the PersistenceAdapter protocol -------------------------------------------------------

    async def insert(
        self,
        snapshot: MissionSnapshot,
        timeline: Sequence[TimelineEntry],
        *,
        signals: Sequence[NewSignal] = (),
    ) -> MissionSnapshot | None:
        """Store a new mission, with ``signals`` in its inbox; when its id exists already, store
        nothing and return it."""
        return await self._insert(snapshot, timeline, signals, None)

    async def _insert(
        self,
        snapshot: MissionSnapshot,
        timeline: Sequence[TimelineEntry],
        signals: Sequence[NewSignal],
        holding: tuple[Gate, int] | None,
    ) -> MissionSnapshot | None:
        """:meth:`insert`; with ``holding`` (a gate and its expected revision), the gate is
        compare-and-set in the same transaction (see :meth:`insert_holding`)."""
        mission_id = snapshot.id
        # The tenant last: a column of PostgreSQL's row (SQLite keeps it in a table of its own).
        due = self._due(snapshot)
        row = (*mission_row(snapshot, due), snapshot.tenant)
        entries = timeline_rows(mission_id, snapshot.revision, timeline)
        inbox = [
            (
                mission_id,
                s.name,
                signal_payload_json(mission_id, s.name, s.payload),
                _aware(s.received_at, "received_at"),
            )
            for s in signals
        ]

        # A mission stored waiting for its start, in a shard another runtime owns, is that
        # runtime's to run: nothing of this one's is at stake, so no ownership is checked, and
        # the owner is told when it is due. A mission stored running must be in a shard this
        # one owns.
        elsewhere = snapshot.status is MissionStatus.WAITING and not self.owns(mission_id)
        if not elsewhere:
            self._check_runtime(f"insert mission {mission_id!r} to run it here")
        fenced = None if elsewhere else mission_id
        notice = None if not elsewhere or due is None else due_notice(shard_of(mission_id), due)

        def write(db: Connection) -> bool:
            with db.cursor() as cursor:
                cursor.execute(_INSERT_MISSION, row)
                if cursor.rowcount != 1:
                    return False
                if entries:
                    cursor.executemany(_INSERT_ENTRY, entries)
                for signal in inbox:
                    cursor.execute(_INSERT_SIGNAL, signal)
                if notice is not None:
                    cursor.execute(NOTIFY, (self._channel, notice))
            if holding is not None:
                # Raising rolls the insert back with the rest of the transaction.
                self._write_gate(db, *holding)
            return True

        if await self._write(write, f"inserting mission {mission_id!r}", fenced, marks=True):
            return None
        return await self.load(mission_id)

    async def load(self, mission_id: str) -> MissionSnapshot | None:
        """The stored mission, or ``None``; :class:`PersistenceError` when its row is corrupt."""
        rows = await self._rows(_LOAD, (mission_id,), f"loading mission {mission_id!r}")
        if not rows:
            return None
        revision, text, cancel, pause = rows[0]
        return self._decode(mission_id, int(revision), str(text), cancel, pause)

    async def commit(
        self,
        snapshot: MissionSnapshot,
        *,
        expected_revision: int,
        timeline: Sequence[TimelineEntry],
        consumed_signal: int | None = None,
        reopened: bool = False,
    ) -> None:
        """Compare-and-set the mission to ``snapshot``, append ``timeline`` and delete the
        consumed signal, in one transaction; :class:`RevisionConflictError` stores nothing.
        ``reopened`` (a retry) replaces the stored cancellation request by the snapshot's."""
        mission_id = snapshot.id
        self._check_runtime(f"commit mission {mission_id!r}")
        check_commit_revision(snapshot, expected_revision)
        update = mission_update(snapshot, self._due(snapshot), expected_revision)
        entries = timeline_rows(mission_id, snapshot.revision, timeline)
        # Whoever waits for its result, in any process, is told it ended.
        ended = ended_notice(mission_id) if snapshot.is_terminal else None

        fence = self._fence(mission_id)
        if fence is None:
            statement = _REOPEN_MISSION if reopened else _UPDATE_MISSION
            params: tuple[Any, ...] = update
        else:
            statement = _REOPEN_MISSION_FENCED if reopened else _UPDATE_MISSION_FENCED
            params = (*update, *fence)

        def write(db: Connection, mark: tuple[datetime, int] | None) -> None:
            with db.transaction(), db.cursor() as cursor:
                marked = True
                if mark is not None:
                    cursor.execute(submissions.MARK_APPLIED, mark)
                    marked = cursor.rowcount == 1
                cursor.execute(statement, params)
                updated = cursor.rowcount == 1
                if not updated and fence is not None:
                    # Refused by the fence, or by the revision: the fence's error first, as
                    # for every other fenced write.
                    self._check_fence(db, mission_id, fence)
                if not marked:
                    assert mark is not None
                    raise SubmissionDecidedError(f"submission {mark[1]} is no longer pending")
                if not updated:
                    raise self._conflict(db, mission_id, expected_revision)
                if consumed_signal is not None:
                    cursor.execute(_DELETE_SIGNAL, (consumed_signal, mission_id))
                    if cursor.rowcount != 1:
                        raise RevisionConflictError(
                            f"mission {mission_id!r} has no buffered signal {consumed_signal}"
                        )
                if entries:
                    cursor.executemany(_INSERT_ENTRY, entries)
                if ended is not None:
                    cursor.execute(NOTIFY, (self._channel, ended))

        with submission_mark() as mark:
            await self._run(lambda db: write(db, mark), f"committing mission {mission_id!r}")

    @staticmethod
    def _conflict(db: Connection, mission_id: str, expected_revision: int) -> Exception:
        row = db.execute(_REVISION, (mission_id,)).fetchone()
        return revision_conflict(mission_id, None if row is None else row[0], expected_revision)

    async def append_signal(
        self,
        mission_id: str,
        name: str,
        payload: JsonValue,
        received_at: datetime,
        timeline: Sequence[TimelineEntry],
    ) -> BufferedSignal:
        """Buffer a signal for the mission (one transaction)."""
        self._check_runtime(f"buffer signal {name!r} for mission {mission_id!r}")
        row = (
            mission_id,
            name,
            signal_payload_json(mission_id, name, payload),
            _aware(received_at, "received_at"),
        )

        def write(db: Connection) -> int:
            revision = self._revision(db, mission_id, "cannot buffer a signal for")
            inserted = db.execute(_INSERT_SIGNAL, row).fetchone()
            assert inserted is not None
            self._append_entries(db, mission_id, revision, timeline)
            return int(inserted[0])

        seq = await self._write(
            write,
            f"buffering signal {name!r} for mission {mission_id!r}",
            mission_id,
            marks=True,
        )
        return BufferedSignal(seq, name, payload, received_at)

    async def next_signal(self, mission_id: str, name: str) -> BufferedSignal | None:
        """The oldest buffered signal called ``name`` for the mission, if any."""
        rows = await self._rows(
            _NEXT_SIGNAL, (mission_id, name), f"reading signal {name!r} of mission {mission_id!r}"
        )
        if not rows:
            return None
        seq, payload, received_at = rows[0]
        try:
            return BufferedSignal(int(seq), name, _json_value(payload), received_at)
        except Exception as error:
            raise corrupt(mission_id, self._store, f"signal {seq} ({name!r})", error) from error

    async def request_cancel(
        self, mission_id: str, request: CancelRequest, timeline: Sequence[TimelineEntry]
    ) -> None:
        """Record a cancellation request (the first one stands) without changing the revision."""
        self._check_runtime(f"request the cancellation of mission {mission_id!r}")
        request_text = cancel_request_to_json(request)

        def write(db: Connection) -> None:
            revision = self._revision(db, mission_id, "cannot cancel")
            db.execute(_REQUEST_CANCEL, (request_text, mission_id))
            self._append_entries(db, mission_id, revision, timeline)

        await self._write(
            write,
            f"requesting cancellation of mission {mission_id!r}",
            mission_id,
            marks=True,
        )

    async def request_pause(
        self, mission_id: str, request: Pause | None, timeline: Sequence[TimelineEntry]
    ) -> None:
        """Record a pause request (``None``: withdraw it) without changing the revision, unless
        the mission is paused or finished."""
        self._check_runtime(f"request a pause of mission {mission_id!r}")
        request_text = None if request is None else pause_to_json(request)

        def write(db: Connection) -> None:
            row = db.execute(_STATUS_FOR_UPDATE, (mission_id,)).fetchone()
            if row is None:
                raise PersistenceError(f"cannot pause unknown mission {mission_id!r}")
            if clears_pause_request(MissionStatus(row[1])):
                return  # paused or ended: nothing is left to request
            db.execute(_REQUEST_PAUSE, (request_text, mission_id))
            self._append_entries(db, mission_id, int(row[0]), timeline)

        await self._write(
            write,
            f"requesting a pause of mission {mission_id!r}",
            mission_id,
            marks=True,
        )

    async def list_missions(
        self,
        *,
        status: MissionStatus | None = None,
        definition: str | None = None,
        limit: int,
        after_id: str | None = None,
        tenant: TenantFilter = ANY_TENANT,
    ) -> list[MissionSnapshot]:
        """At most ``limit`` missions ordered by id, optionally filtered, starting after
        ``after_id``: a range scan of an index, which reads the rows it passes until ``limit``
        match.

        Raises :class:`PersistenceError` naming the first listed mission whose row is corrupt.
        """
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise ValueError(f"limit must be a whole number >= 0, got {limit!r}")
        if self._closed:
            raise PersistenceError("cannot list missions: the PostgreSQL adapter is closed")
        if limit == 0:
            return []
        clauses: list[sql.Composable] = []
        params: list[Any] = []
        if status is not None:
            clauses.append(sql.SQL("status = %s"))
            params.append(MissionStatus(status).value)
        if definition is not None:
            clauses.append(sql.SQL("definition = %s"))
            params.append(definition)
        if tenant is None:
            clauses.append(sql.SQL("tenant IS NULL"))
        elif tenant is not ANY_TENANT:
            clauses.append(sql.SQL("tenant = %s"))
            params.append(tenant)
        if after_id is not None:
            clauses.append(sql.SQL("id > %s"))
            params.append(after_id)
        query = sql.SQL(
            "SELECT id, revision, snapshot::text, cancel_request::text, pause_request::text "
            "FROM missions"
        )
        if clauses:
            query = sql.SQL("{} WHERE {}").format(query, sql.SQL(" AND ").join(clauses))
        query = sql.SQL("{} ORDER BY id LIMIT %s").format(query)
        params.append(limit)
        rows = await self._run(lambda db: db.execute(query, params).fetchall(), "listing missions")
        return [self._decode(str(i), int(r), str(t), c, p) for i, r, t, c, p in rows]

    async def due_missions(self, now: datetime, limit: int) -> list[str]:
        """Ids of missions due at or before ``now``, earliest first: one range of the
        missions_due index."""
        if limit <= 0:
            return []
        now = _aware(now, "now")
        action = "querying due missions"
        serving = self._serving(action)
        if serving is None:
            rows = await self._rows(_DUE, (now, limit), action)
        elif not serving:
            return []
        else:
            rows = await self._rows(_DUE_ON, (serving, now, limit), action)
        return [str(row[0]) for row in rows]

    async def next_due_at(self, after: datetime | None = None) -> datetime | None:
        """The earliest due time of any mission (later than ``after`` if given): one seek in
        the missions_due index."""
        action = "querying the next due time"
        serving = self._serving(action)
        if serving is not None:
            if not serving:
                return None
            if after is None:
                rows = await self._rows(_NEXT_DUE_ON, (serving,), action)
            else:
                rows = await self._rows(
                    _NEXT_DUE_AFTER_ON, (serving, _aware(after, "after")), action
                )
        elif after is None:
            rows = await self._rows(_NEXT_DUE, (), action)
        else:
            rows = await self._rows(_NEXT_DUE_AFTER, (_aware(after, "after"),), action)
        return _utc(rows[0][0]) if rows else None

    async def running_missions(self, limit: int, after_id: str | None = None) -> list[str]:
        """Ids of missions stored as running or with a pause request, by id."""
        if limit <= 0:
            return []
        serving = self._serving("query running missions")
        after = after_id or ""  # no id is empty
        if serving is not None:
            if not serving:
                return []
            part = (serving, after, limit)
            rows = await self._rows(_RUNNING_ON, (*part, *part, limit), "querying running missions")
        else:
            rows = await self._rows(
                _RUNNING, (after, limit, after, limit, limit), "querying running missions"
            )
        return [str(row[0]) for row in rows]

    async def timeline(self, mission_id: str) -> list[TimelineEntry]:
        """The mission's timeline in the order it was written."""
        rows = await self._rows(
            _TIMELINE, (mission_id,), f"reading the timeline of mission {mission_id!r}"
        )
        try:
            return [timeline_entry_from_json(str(row[0])) for row in rows]
        except Exception as error:
            raise corrupt(mission_id, self._store, "timeline", error) from error

    async def delete_missions(self, revisions: Mapping[str, int]) -> list[str]:
        """Delete the finished missions of ``revisions`` still at their revision, with their
        timelines and inboxes, in one transaction; return the ids deleted."""
        if self._closed:
            raise PersistenceError("cannot delete missions: the PostgreSQL adapter is closed")
        if not revisions:
            return []
        rows = list(revisions.items())

        def write(db: Connection) -> list[str]:
            deleted: list[str] = []
            for mission_id, revision in rows:
                if db.execute(_DELETE_MISSION, (mission_id, revision)).fetchone() is not None:
                    deleted.append(mission_id)
            if deleted:
                db.execute(_DELETE_TIMELINE, (deleted,))
                db.execute(_DELETE_INBOX, (deleted,))
            return deleted

        return await self._write(write, f"deleting {len(rows)} missions")

    # -- concurrency keys (ConcurrencyStore) --------------------------------------------------

    async def load_gate(self, key: str) -> Gate | None:
        rows = await self._rows(_LOAD_GATE, (key,), f"loading concurrency key {key!r}")
        if not rows:
            return None
        try:
            return gate_from_json(str(rows[0][1]), int(rows[0][0]))
        except Exception as error:
            raise PersistenceError(
                f"concurrency key {key!r} in {self._store} cannot be read: its stored gate is "
                f"corrupt ({type(error).__name__}: {error})"
            ) from error

    async def save_gate(self, gate: Gate, *, expected_revision: int) -> None:
        """Compare-and-set the gate (``expected_revision`` 0: none is stored yet);
        :class:`RevisionConflictError` stores nothing."""
        check_gate_revision(gate, expected_revision)
        await self._write(
            lambda db: self._write_gate(db, gate, expected_revision),
            f"changing concurrency key {gate.key!r}",
        )

    async def insert_holding(
        self,
        snapshot: MissionSnapshot,
        timeline: Sequence[TimelineEntry],
        gate: Gate,
        *,
        expected_revision: int,
    ) -> MissionSnapshot | None:
        """Store a new mission and compare-and-set its key's gate to ``gate`` in one
        transaction: the mission stored when its id is taken (nothing stored), and
        :class:`RevisionConflictError` (nothing stored) when the gate changed."""
        check_gate_revision(gate, expected_revision)
        return await self._insert(snapshot, timeline, (), (gate, expected_revision))

    @staticmethod
    def _write_gate(db: Connection, gate: Gate, expected_revision: int) -> None:
        document = gate_to_json(gate)
        if expected_revision == 0:
            changed = db.execute(_INSERT_GATE, (gate.key, gate.revision, document))
        else:
            changed = db.execute(
                _UPDATE_GATE, (gate.revision, document, gate.key, expected_revision)
            )
        if changed.rowcount != 1:
            raise RevisionConflictError(
                f"concurrency key {gate.key!r} is not stored at revision {expected_revision}"
            )

    # -- definition versions (DefinitionVersionStore) ------------------------------------------

    async def versions_in_use(self) -> list[tuple[str, int]]:
        """The (definition, version) of the missions that have not ended: one seek in the
        missions_unfinished_versions index per version, whatever the number of missions."""

        def read(db: Connection) -> list[tuple[str, int]]:
            found: list[tuple[str, int]] = []
            row = db.execute(_FIRST_VERSION).fetchone()
            while row is not None:
                found.append((str(row[0]), int(row[1])))
                row = db.execute(_NEXT_VERSION, found[-1]).fetchone()
            paused = db.execute(_PAUSED_VERSIONS).fetchall()
            return sorted({*found, *((str(row[0]), int(row[1])) for row in paused)})

        return await self._run(read, "reading the versions in use")

    async def missions_on_version(self, definition: str, version: int, limit: int) -> list[str]:
        """The ids of up to ``limit`` unfinished missions on ``version`` of ``definition``."""
        if limit <= 0:
            return []
        action = f"reading the missions on version {version} of {definition!r}"
        rows = await self._rows(_ON_VERSION, (definition, version, limit), action)
        paused = await self._rows(_PAUSED_ON_VERSION, (definition, version, limit), action)
        return sorted(str(row[0]) for row in [*rows, *paused])[:limit]

    async def fingerprints(self) -> dict[tuple[str, int], str]:
        """Every stored fingerprint, by (definition, version)."""
        rows = await self._rows(_FINGERPRINTS, (), "reading the definition fingerprints")
        return {(str(row[0]), int(row[1])): str(row[2]) for row in rows}

    async def record_fingerprints(self, fingerprints: Mapping[tuple[str, int], str]) -> None:
        """Store ``fingerprints`` (one transaction), each replacing the one of its version."""
        at = datetime.now(UTC)
        rows = [(name, version, text, at) for (name, version), text in fingerprints.items()]
        if not rows:
            if self._closed:
                raise PersistenceError(
                    "cannot record definition fingerprints: the PostgreSQL adapter is closed"
                )
            return

        def write(db: Connection) -> None:
            with db.cursor() as cursor:
                cursor.executemany(_RECORD_FINGERPRINT, rows)

        await self._write(write, "recording definition fingerprints")

    # -- several processes: submissions and ownership (SubmissionStore) ----------------------

    @property
    def is_owner(self) -> bool:
        """Whether this adapter executes missions (a runtime's, not a submitter's): those of
        every shard when it is not sharded, else those of the shards it owns (:meth:`owns`)."""
        return self._role == "runtime"

    async def submit(self, submission: NewSubmission) -> Submission:
        """Store ``submission`` for the runtime that owns its mission and tell that runtime
        (one transaction)."""
        row = submissions.submission_row(submission)
        notice = submitted_notice(shard_of(submission.mission_id))

        def write(db: Connection) -> int:
            found = db.execute(submissions.INSERT, row).fetchone()
            assert found is not None
            db.execute(NOTIFY, (self._channel, notice))
            return int(found[0])

        seq = await self._write(
            write, f"submitting a {submission.kind} for mission {submission.mission_id!r}"
        )
        return Submission(**attrs.asdict(submission, recurse=False), seq=seq)

    async def load_submission(self, seq: int) -> Submission | None:
        """The submission numbered ``seq``, if it is stored."""
        rows = await self._rows(submissions.LOAD, (seq,), f"reading submission {seq}")
        return submissions.submission_from_row(rows[0]) if rows else None

    async def pending_submissions(self, limit: int) -> list[Submission]:
        """At most ``limit`` pending submissions (of the missions of the shards this adapter
        serves, when it is sharded), oldest first. One this version cannot read (a kind a newer
        version wrote, a damaged row) is left out and refused, saying so: the others never wait
        behind it."""
        action = "reading pending submissions"
        serving = self._serving(action)
        if serving is None:
            rows = await self._rows(submissions.PENDING, (limit,), action)
        elif not serving:
            return []
        else:
            rows = await self._rows(submissions.PENDING_ON, (serving, limit), action)
        return await readable_submissions(self, rows, submissions.submission_from_row)

    def applying(self, seq: int, decided_at: datetime) -> AbstractContextManager[Marking]:
        """Inside the block, the calling task's first write marks submission ``seq`` applied
        in its own transaction."""
        return applying_submission(seq, decided_at)

    async def decide_submission(
        self,
        seq: int,
        state: SubmissionState,
        refusal: Refusal | None,
        decided_at: datetime,
        *,
        overriding: bool = False,
        joined: str | None = None,
    ) -> None:
        """Mark a pending submission applied (a start that ``joined`` a mission: with its key)
        or refused (with ``refusal``); with ``overriding``, refuse one its own application
        marked applied. On a sharded adapter the decision is fenced as the mission's writes
        are: a runtime that lost the mission's shard decides nothing (:class:`ShardLostError`)."""
        self._check_runtime(f"decide submission {seq}")
        at = submissions.decided_at(decided_at)
        params: tuple[Any, ...]
        if state is SubmissionState.REFUSED:
            text = refusal_to_json(refusal or Refusal("SubmissionRefusedError", ""))
            statement, params = submissions.REFUSE, (at, text, seq, overriding)
        elif joined is not None:
            statement, params = submissions.APPLY_JOINED, (at, joined, seq)
        else:
            statement, params = submissions.MARK_APPLIED, (at, seq)

        def write(db: Connection) -> None:
            with db.transaction():
                row = db.execute(submissions.MISSION_OF, (seq,)).fetchone()
                if row is None:
                    return
                mission_id = str(row[0])
                fence = self._fence(mission_id)
                if fence is not None:
                    self._check_fence(db, mission_id, fence)
                db.execute(statement, params)

        await self._run(write, f"deciding submission {seq}")

    async def count_failure(self, seq: int) -> int:
        """Count one more application of the submission that raised; return the count."""
        self._check_runtime(f"count a failure of submission {seq}")
        rows = await self._rows(
            submissions.COUNT_FAILURE, (seq,), f"counting a failure of submission {seq}"
        )
        return int(rows[0][0]) if rows else 0

    async def purge_submissions(
        self, decided_before: datetime, limit: int, *, dry_run: bool = False
    ) -> int:
        """Delete up to ``limit`` submissions decided before ``decided_before``, oldest first,
        in one transaction, and return how many; with ``dry_run``, count every one there is
        and delete none."""
        before = _aware(decided_before, "decided_before")
        if dry_run:
            rows = await self._rows(
                submissions.COUNT_DECIDED, (before,), "counting decided submissions"
            )
            return int(rows[0][0])

        def delete(db: Connection) -> int:
            with db.cursor() as cursor:
                cursor.execute(submissions.PURGE, (before, limit))
                return cursor.rowcount

        return await self._write(delete, "purging decided submissions")

    async def take_ownership(self) -> None:
        """Return at once: a runtime's adapter executes the missions of the shards it owns
        (:meth:`owns`), which :meth:`keep_shards` keeps up to date. A submitter's never
        executes any: :class:`ConfigurationError`."""
        self._serving("take ownership")
        if self._role == "submitter":
            raise ConfigurationError(
                "this PostgreSQL adapter was opened as a submitter: it never executes missions "
                '(open it with role="runtime" for a runtime)'
            )

    async def watch_submissions(self, wake: Callable[[], None]) -> None:
        """Call ``wake()`` now, then whenever another process stored work for this runtime:
        :meth:`listen` with ``wake``. Runs until cancelled."""
        self._serving("watch for submissions")
        self._check_runtime("watch for submissions")
        await self.listen(wake)

    async def listen(self, wake: Callable[[], None] | None = None) -> None:
        """Hear what other processes write (``docs/postgres.md``, wake-ups), until cancelled,
        on a connection of its own read without a thread: a mission that ended wakes this
        process's ``result()`` waiters at once; with ``wake`` (a runtime's, given by
        :meth:`watch_submissions`), a submission for a mission this adapter owns calls
        ``wake()`` and a mission stored due in its shards is a due notice (its runtime ticks by
        then), and when no notice came for a while (``WAKE_RECHECK``, real seconds, timed by
        the server: a virtual clock does not make it look more often), or while the connection
        is being replaced (``LISTEN_RETRY``), the runtime looks at the store itself."""
        self._serving("listen")
        assert self._conninfo is not None
        notices = notices_for(self)
        quiet = _Quiet(time.monotonic())
        async with anyio.create_task_group() as group:
            if wake is not None:
                group.start_soon(self._recheck, wake, notices, quiet)
            timer = RealTimer(self._conninfo)
            try:
                while True:
                    listener = Listener(self._conninfo, self._channel)
                    try:
                        try:
                            await listener.open()
                        except psycopg.Error as error:
                            _log.warning(
                                "cannot listen for notices (%s): again in %g s",
                                error,
                                LISTEN_RETRY,
                            )
                            await timer.sleep(LISTEN_RETRY)
                            continue
                        self._listened(+1)
                        if wake is not None:
                            # Whatever was stored before this connection listened (notices sent
                            # before reach nobody here).
                            wake()
                        try:
                            while True:
                                found = await listener.wait()
                                if found:
                                    quiet.heard(time.monotonic())
                                    self._heard(found, wake, notices)
                        finally:
                            self._listened(-1)
                    except psycopg.OperationalError as error:
                        _log.warning(
                            "the notice listener lost its connection (%s): connecting again",
                            error,
                        )
                        await timer.sleep(LISTEN_RETRY)
                    finally:
                        listener.close()
            finally:
                timer.close()
                group.cancel_scope.cancel()

    async def _recheck(self, wake: Callable[[], None], notices: Notices, quiet: _Quiet) -> None:
        """A listening runtime's looks at the store (:meth:`_look`) after ``WAKE_RECHECK`` real
        seconds without a notice, doubling while the looks find nothing, every first one while
        the listener is not connected."""
        assert self._conninfo is not None
        first, last = self._wake_recheck
        idle = first
        timer = RealTimer(self._conninfo)
        try:
            while True:
                if quiet.reset:
                    quiet.reset = False
                    idle = first
                left = quiet.since + idle - time.monotonic()
                if left > 0:
                    await timer.sleep(left)
                    continue
                found = await self._look(wake, notices)
                quiet.since = time.monotonic()
                idle = first if found or not self.listening else min(idle * 2, last)
        finally:
            timer.close()

    @property
    def listening(self) -> bool:
        """Whether a :meth:`listen` of this adapter hears notices now (its connection is up)."""
        return self._listening > 0

    def _listened(self, change: int) -> None:
        self._listening += change
        if self._shards is not None or self._role == "submitter":
            slow, fast = REREAD_INTERVAL[1], REREAD_INTERVAL[0]
            notices_for(self).reread_interval = slow if self._listening else fast

    def _heard(self, found: list[str], wake: Callable[[], None] | None, notices: Notices) -> None:
        """Raise what the notices ``found`` say into this process's notice hub."""
        serving = None if self._shards is None else self._shards.serving_set
        woken = False
        for payload in found:
            kind, _, rest = payload.partition(" ")
            if kind == "e":
                notices.ended(rest)
            elif wake is None:
                continue
            elif kind == "s":
                if serving is None or int(rest) in serving:
                    woken = True
            elif kind == "d":
                shard, _, when = rest.partition(" ")
                if serving is None or int(shard) in serving:
                    notices.due(datetime.fromisoformat(when))
        if woken:
            assert wake is not None
            wake()

    async def _look(self, wake: Callable[[], None], notices: Notices) -> bool:
        """A runtime's look at the store for work whose notice it may have missed: whether it
        found any (a pending submission: ``wake()``; a due mission: a due notice, which reaches
        the runtime only when earlier than its next tick)."""
        self._rechecks += 1
        found = False
        try:
            if await self._any_pending():
                found = True
                wake()
            due = await self.next_due_at()
        except PersistenceError as error:
            _log.warning("looking for work stored for this runtime failed: %s", error)
            return False
        if due is not None:
            notices.due(due)
        return found

    async def _any_pending(self) -> bool:
        action = "looking for submissions"
        serving = self._serving(action)
        if serving is None:
            rows = await self._rows(submissions.ANY_PENDING, (), action)
        elif not serving:
            return False
        else:
            rows = await self._rows(submissions.ANY_PENDING_ON, (serving,), action)
        return bool(rows)

    # -- schedules (ScheduleStore) -------------------------------------------------------------

    def _schedules_from(self, rows: Sequence[TupleRow]) -> list[Schedule]:
        return records_from_json(
            (str(r[0]) for r in rows), schedule_from_json, "a schedule", self._store
        )

    @staticmethod
    def _schedule_row(schedule: Schedule) -> tuple[datetime | None, int, str]:
        fire = schedule.next_fire_at
        if fire is not None:
            _aware(fire, f"next fire of schedule {schedule.id!r}")
        return fire, schedule.revision, schedule_to_json(schedule)

    def _schedule_notice(self, schedule: Schedule) -> str | None:
        """The notice that wakes the runtime firing ``schedule`` (the owner of its shard) for
        its next slot, sent in the write's transaction: ``None`` when it has none (paused), or
        when this adapter fires it itself (its commander arms its own runtime)."""
        fire = schedule.next_fire_at
        if fire is None or self.owns(schedule.id):
            return None
        return due_notice(shard_of(schedule.id), fire)

    async def insert_schedule(self, schedule: Schedule) -> Schedule | None:
        """Store a new schedule; when its id exists, store nothing and return the stored one."""
        due, revision, document = self._schedule_row(schedule)
        row = (schedule.id, due, revision, document)
        notice = self._schedule_notice(schedule)

        def write(db: Connection) -> bool:
            if db.execute(_INSERT_SCHEDULE, row).rowcount != 1:
                return False
            if notice is not None:
                db.execute(NOTIFY, (self._channel, notice))
            return True

        if await self._write(write, f"storing schedule {schedule.id!r}"):
            return None
        return await self.load_schedule(schedule.id)

    async def load_schedule(self, schedule_id: str) -> Schedule | None:
        rows = await self._rows(_LOAD_SCHEDULE, (schedule_id,), f"loading schedule {schedule_id!r}")
        return self._schedules_from(rows)[0] if rows else None

    async def commit_schedule(self, schedule: Schedule, *, expected_revision: int) -> None:
        """Compare-and-set the schedule; :class:`RevisionConflictError` stores nothing. On a
        sharded adapter that owns the schedule's shard, the write is also fenced by the shard's
        epoch (a fire recorded by a runtime that lost the shard is refused); on one that does
        not, it is the compare-and-set alone (a change made by the application)."""
        check_schedule_revision(schedule, expected_revision)
        due, revision, document = self._schedule_row(schedule)
        row = (due, revision, document, schedule.id, expected_revision)
        notice = self._schedule_notice(schedule)

        def write(db: Connection) -> None:
            if db.execute(_UPDATE_SCHEDULE, row).rowcount != 1:
                raise RevisionConflictError(
                    f"schedule {schedule.id!r} is not stored at revision {expected_revision}"
                )
            if notice is not None:
                db.execute(NOTIFY, (self._channel, notice))

        owner = self._shards
        fenced = owner is not None and shard_of(schedule.id) in owner.owned
        await self._write(
            write, f"changing schedule {schedule.id!r}", schedule.id if fenced else None
        )

    async def delete_schedule(self, schedule_id: str) -> bool:
        def write(db: Connection) -> bool:
            return db.execute(_DELETE_SCHEDULE, (schedule_id,)).rowcount == 1

        return await self._write(write, f"deleting schedule {schedule_id!r}")

    async def list_schedules(self, *, limit: int, after_id: str | None = None) -> list[Schedule]:
        if self._closed:
            raise PersistenceError("cannot list schedules: the PostgreSQL adapter is closed")
        if limit <= 0:
            return []
        rows = await self._rows(_LIST_SCHEDULES, (after_id or "", limit), "listing schedules")
        return self._schedules_from(rows)

    async def due_schedules(self, now: datetime, limit: int) -> list[Schedule]:
        """The schedules due at ``now``, earliest first: one range of the schedules_due index
        (on a sharded adapter, of schedules_due_by_shard for each shard it serves)."""
        action = "querying due schedules"
        serving = self._serving(action)
        if limit <= 0 or serving == []:
            return []
        now = _aware(now, "now")
        if serving is None:
            rows = await self._rows(_DUE_SCHEDULES, (now, limit), action)
        else:
            rows = await self._rows(_DUE_SCHEDULES_ON, (serving, now, limit), action)
        return self._schedules_from(rows)

    async def next_schedule_at(self, after: datetime | None = None) -> datetime | None:
        """The earliest next slot of the schedules (later than ``after`` if given) this adapter
        fires: one seek in the schedules_due index."""
        action = "querying the next schedule"
        serving = self._serving(action)
        if serving == []:
            return None
        if serving is None:
            if after is None:
                rows = await self._rows(_NEXT_SCHEDULE, (), action)
            else:
                rows = await self._rows(_NEXT_SCHEDULE_AFTER, (_aware(after, "after"),), action)
        elif after is None:
            rows = await self._rows(_NEXT_SCHEDULE_ON, (serving,), action)
        else:
            rows = await self._rows(
                _NEXT_SCHEDULE_AFTER_ON, (serving, _aware(after, "after")), action
            )
        return _utc(rows[0][0]) if rows else None

    # -- fired triggers (TriggerStore) ---------------------------------------------------------

    def _fires_from(self, rows: Sequence[TupleRow]) -> list[TriggerFire]:
        return records_from_json(
            (str(r[0]) for r in rows), trigger_from_json, "a fired trigger", self._store
        )

    async def record_trigger(self, fire: TriggerFire) -> TriggerFire | None:
        """Record a fire; when its id exists, store nothing and return the stored one."""
        row = (fire.id, fire.name, trigger_to_json(fire))

        def write(db: Connection) -> bool:
            return db.execute(_RECORD_TRIGGER, row).rowcount == 1

        if await self._write(write, f"recording fire {fire.id!r}"):
            return None
        return await self.load_trigger(fire.id)

    async def load_trigger(self, fire_id: str) -> TriggerFire | None:
        rows = await self._rows(_LOAD_TRIGGER, (fire_id,), f"loading fire {fire_id!r}")
        return self._fires_from(rows)[0] if rows else None

    async def list_triggers(
        self, *, name: str | None = None, limit: int, after_id: str | None = None
    ) -> list[TriggerFire]:
        if self._closed:
            raise PersistenceError("cannot list fired triggers: the PostgreSQL adapter is closed")
        if limit <= 0:
            return []
        if name is None:
            rows = await self._rows(
                _LIST_TRIGGERS, (after_id or "", limit), "listing fired triggers"
            )
        else:
            rows = await self._rows(
                _LIST_TRIGGERS_NAMED, (name, after_id or "", limit), "listing fired triggers"
            )
        return self._fires_from(rows)

    # -- lifecycle -----------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close the connection. Idempotent."""
        if self._closed:
            return
        self._closed = True
        # The limiters wait for a call still running in a worker thread.
        if self._shards is not None:
            async with self._shard_limiter:
                await anyio.to_thread.run_sync(self._shards.close)
        # Every token: no call is still running in a worker thread.
        tokens = [object() for _ in range(self._connections)]
        for token in tokens:
            await self._limiter.acquire_on_behalf_of(token)
        try:
            with self._pool_lock:
                idle, self._idle = self._idle, []
            for db in idle:
                await anyio.to_thread.run_sync(db.close)
        finally:
            for token in tokens:
                self._limiter.release_on_behalf_of(token)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<PostgresPersistenceAdapter schema={self._schema!r} {state}>"


def _json_value(text: object) -> JsonValue:
    value: JsonValue = json.loads(str(text))
    return value


def _utc(value: object) -> datetime:
    assert isinstance(value, datetime)
    return value.astimezone(UTC)


async def open_postgres_persistence_adapter(
    conninfo: str,
    *,
    schema: str = DEFAULT_SCHEMA,
    sharded: bool = False,
    name: str | None = None,
    connections: int = 4,
    wake_recheck: tuple[float, float] = WAKE_RECHECK,
    role: Role = "runtime",
) -> PostgresPersistenceAdapter:
    """Connect to the PostgreSQL database ``conninfo`` names (a libpq connection string or
    URI) and open the Mission Control tables in ``schema``, creating and migrating them when
    needed.

    With ``sharded`` (a runtime among several, see ``docs/postgres.md``; being built), the
    adapter also opens a lock connection, takes its share of the shards (one round of the
    spreading rule) and from then on returns due and running missions of its shards only, and
    refuses writes for missions of other shards (:class:`ShardLostError`); call
    :meth:`~PostgresPersistenceAdapter.keep_shards` in a task to follow runtimes joining and
    leaving. ``name`` (recorded as the owner of the shards it takes) defaults to the host name
    and process id. ``connections`` (default 4) is how many calls may run at once, each on a
    connection of its own (opened when first needed): missions that move at once commit at once.
    ``role="submitter"`` opens it for a process that executes no mission (a web worker): every
    start is stored waiting for its start, every signal, cancellation and retry is a submission,
    for the runtime that owns the mission (``docs/postgres.md``, submitters); its ``result()``
    waits re-read the mission (``REREAD_INTERVAL``), or are woken at once while
    :meth:`~PostgresPersistenceAdapter.listen` runs in a task. It cannot be ``sharded``.
    ``wake_recheck`` (seconds: the first, doubled up to the second) is how long a runtime
    listening for notices goes without one before it looks at the store itself for work stored
    for it (``WAKE_RECHECK``).

    Raises :class:`PersistenceError` when the server cannot be reached, when ``schema`` holds
    tables that are not Mission Control's, or a schema written by a newer version (nothing is
    changed then).
    """
    if not isinstance(conninfo, str):
        raise ConfigurationError(f"conninfo must be a str, got {conninfo!r}")
    if isinstance(connections, bool) or not isinstance(connections, int) or connections < 1:
        raise ConfigurationError(f"connections must be a whole number >= 1, got {connections!r}")
    if (
        not isinstance(wake_recheck, tuple)
        or len(wake_recheck) != 2  # pyright: ignore[reportUnnecessaryComparison]
        or not all(isinstance(x, int | float) and x > 0 for x in wake_recheck)
        or wake_recheck[0] > wake_recheck[1]
    ):
        raise ConfigurationError(
            f"wake_recheck must be (first, last) seconds, 0 < first <= last, got {wake_recheck!r}"
        )
    schema_name = _schema_name(schema)
    if role not in ("runtime", "submitter"):
        raise ConfigurationError(f"role must be 'runtime' or 'submitter', got {role!r}")
    if sharded and role == "submitter":
        raise ConfigurationError("a submitter owns no shards: it cannot be opened sharded=True")

    def connect() -> tuple[Connection, int]:
        try:
            db = open_connection(conninfo)
        except psycopg.Error as error:
            raise PersistenceError(f"cannot connect to PostgreSQL: {error}") from error
        try:
            _check_encoding(db)
            try:
                migrate(db, schema_name)
            except psycopg.Error as error:
                raise PersistenceError(
                    f"cannot open the PostgreSQL schema {schema_name!r}: {error}"
                ) from error
            _set_up(db, schema_name)
            return db, _version(db)
        except BaseException:
            db.close()
            raise

    db, version = await anyio.to_thread.run_sync(connect)
    shards = None
    if sharded:
        shards = ShardOwner(conninfo, schema_name, name or _default_name())
    adapter = PostgresPersistenceAdapter(
        db,
        schema=schema_name,
        schema_version=version,
        shards=shards,
        conninfo=conninfo,
        connections=connections,
        wake_recheck=(float(wake_recheck[0]), float(wake_recheck[1])),
        role=role,
    )
    if role == "submitter":
        notices_for(adapter).reread_interval = REREAD_INTERVAL[0]
    if shards is not None:
        notices_for(adapter).reread_interval = REREAD_INTERVAL[0]
        try:
            await adapter.rebalance()
        except BaseException:
            await adapter.aclose()
            raise
    return adapter


def _check_encoding(db: Connection) -> None:
    """Refuse a database whose encoding is not UTF8: ids, names and JSON documents are any
    Unicode text, which another encoding cannot store (or, in SQL_ASCII, stores unchecked)."""
    row = db.execute("SHOW server_encoding").fetchone()
    encoding = None if row is None else str(row[0])
    if encoding != "UTF8":
        raise PersistenceError(
            f"the PostgreSQL database is in the {encoding} encoding: Mission Control needs a "
            "UTF8 database (ids, names and documents are any Unicode text); create one with "
            "CREATE DATABASE ... ENCODING 'UTF8' (nothing was created in this one)"
        )


def _set_up(db: Connection, schema: str) -> None:
    """Set a new session up: UTC times, the schema's tables first on the search path."""
    db.execute("SET TIME ZONE 'UTC'")
    db.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))


def _version(db: Connection) -> int:
    row = db.execute("SELECT max(version) FROM schema_migrations").fetchone()
    assert row is not None
    return int(row[0])


def _default_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
