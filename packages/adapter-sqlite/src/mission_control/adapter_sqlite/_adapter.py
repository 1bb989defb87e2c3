"""The SQLite persistence adapter: missions, timelines, signal inboxes and cancellation requests
in one SQLite file, through apsw.

It runs on trio and asyncio alike. apsw calls take microseconds, so the async methods call apsw
inline: no thread hop, and no checkpoint inside a write (only a database locked by another
connection is waited for, on the event loop's clock: see ``_group.py``). Each method that writes
is all-or-nothing: it runs in a ``BEGIN IMMEDIATE … COMMIT`` transaction rolled back on any error,
so a failed call leaves the file as it was. Mission writes (``insert``, ``commit``) that arrive
together may share one transaction, each in a savepoint of its own (group commit, see
``_group.py``); every caller still returns only once its write is committed.
"""

from __future__ import annotations

import json
import logging
import os
import stat
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Final, Literal, Self, TypeVar

import anyio
import apsw
import attrs

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
    StoreBusyError,
    Submission,
    SubmissionState,
    TimelineEntry,
    TriggerFire,
)
from mission_control.core.lowlevel import notices_for
from mission_control.core.storage import (
    ANY_TENANT,
    BufferedSignal,
    Gate,
    Marking,
    NewSignal,
    NewSubmission,
    RevisionConflictError,
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
from ._group import GroupCommit, Transaction, when_free
from ._lock import OwnedElsewhere, Reader, WriterLock, read_header
from ._paths import check_path, record_path
from ._schema import (
    DEFINITION_STATUS_VERSION,
    JOINED_VERSION,
    NO_TENANT_VERSION,
    PAUSES_VERSION,
    TENANT_FILTERS_VERSION,
    TENANTS_VERSION,
    current_version,
    migrate,
    read_version,
)
from ._sqlite import Connection, Cursor, Row, connect
from ._wake import WakeReceiver, WakeSender, wake_path

_log = logging.getLogger("mission_control.adapter_sqlite")

Synchronous = Literal["NORMAL", "FULL"]
"""How hard SQLite pushes each commit to disk; see ``docs/sqlite.md``."""

Role = Literal["auto", "owner", "submitter"]

_Record = TypeVar("_Record")
"""What a process does with a database it shares with others; see ``docs/sqlite.md``."""

TAKEOVER_INTERVAL: Final = 0.5
"""Seconds between the tries of a process waiting to own the database (a runtime on an
``"auto"`` adapter whose database another process owns) to take it over."""

SUBMITTER_REREAD_INTERVAL: Final = 0.25
"""Seconds between re-reads of a mission ``result()`` waits for in a process that does not own
the database."""

WAKE_RECHECK: Final = (1.0, 30.0)
"""The owner looks for pending submissions whose wake-up was lost (a submitter killed between
its write and its wake-up) after this many seconds without one, doubling up to the second."""

MEMORY: Final = ":memory:"

_SQLITE_HEADER: Final = b"SQLite format 3\x00"
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)

_INSERT_MISSION: Final = (
    "INSERT INTO missions (id, definition, definition_version, status, due_at, revision, "
    "snapshot, cancel_request) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING"
)
# The revision in the WHERE clause is the compare-and-set; coalesce keeps a stored cancellation
# request, which nothing but request_cancel (or the first snapshot carrying one) may write. The
# pause request is request_pause's: a commit that pauses or ends the mission clears it (the
# parameter before the id: core.storage.clears_pause_request), any other keeps it.
_UPDATE_MISSION: Final = (
    "UPDATE missions SET status = ?, due_at = ?, revision = ?, snapshot = ?, "
    "cancel_request = coalesce(cancel_request, ?), "
    "pause_request = CASE WHEN ? THEN NULL ELSE pause_request END WHERE id = ? AND revision = ?"
)
# A commit that leaves the mission running with no due time (a step after a step: the commonest)
# sets only what changed: SQLite rewrites the index entries of every column an UPDATE sets, even
# to the value it had (missions_by_status, missions_unfinished_versions: three pages written
# instead of one). Its WHERE clause holds the row to that status and due time already; a row
# that was not running (a signal or a resume wakes it) gets _UPDATE_MISSION, which writes the
# same row (a running mission keeps its pause request, as CASE WHEN 0 does).
_UPDATE_STILL_RUNNING: Final = (
    "UPDATE missions SET revision = ?, snapshot = ?, cancel_request = coalesce(cancel_request, ?) "
    "WHERE id = ? AND revision = ? AND status = 'running' AND due_at IS NULL"
)
# A retry's commit: the snapshot's cancellation request replaces the stored one (None clears it).
_REOPEN_MISSION: Final = (
    "UPDATE missions SET status = ?, due_at = ?, revision = ?, snapshot = ?, "
    "cancel_request = ?, pause_request = CASE WHEN ? THEN NULL ELSE pause_request END "
    "WHERE id = ? AND revision = ?"
)
_INSERT_ENTRY: Final = (
    "INSERT INTO timeline (mission_id, revision, position, entry) VALUES (?, ?, ?, ?)"
)
_NEXT_POSITION: Final = (
    "SELECT coalesce(max(position) + 1, 0) FROM timeline WHERE mission_id = ? AND revision = ?"
)
_DELETE_SIGNAL: Final = "DELETE FROM inbox WHERE seq = ? AND mission_id = ?"
_INSERT_SIGNAL: Final = (
    "INSERT INTO inbox (mission_id, name, payload, received_at) VALUES (?, ?, ?, ?)"
)
_REVISION: Final = "SELECT revision FROM missions WHERE id = ?"
_LOAD: Final = "SELECT revision, snapshot, cancel_request, pause_request FROM missions WHERE id = ?"
# (A read-only adapter may read a database from before pause requests: none has one.)
_LOAD_BEFORE_PAUSES: Final = (
    "SELECT revision, snapshot, cancel_request, NULL FROM missions WHERE id = ?"
)
_REQUEST_CANCEL: Final = (
    "UPDATE missions SET cancel_request = coalesce(cancel_request, ?) WHERE id = ?"
)
_STATUS: Final = "SELECT revision, status FROM missions WHERE id = ?"
_REQUEST_PAUSE: Final = "UPDATE missions SET pause_request = ? WHERE id = ?"
_NEXT_SIGNAL: Final = (
    "SELECT seq, payload, received_at FROM inbox WHERE mission_id = ? AND name = ? "
    "ORDER BY seq LIMIT 1"
)
# ``due_at IS NOT NULL`` lets SQLite use the partial index missions_due.
_DUE: Final = (
    "SELECT id FROM missions WHERE due_at IS NOT NULL AND due_at <= ? ORDER BY due_at, id LIMIT ?"
)
_NEXT_DUE: Final = "SELECT due_at FROM missions WHERE due_at IS NOT NULL ORDER BY due_at LIMIT 1"
_NEXT_DUE_AFTER: Final = (
    "SELECT due_at FROM missions WHERE due_at IS NOT NULL AND due_at > ? ORDER BY due_at LIMIT 1"
)
_RUNNING_BEFORE_PAUSES: Final = (
    "SELECT id FROM missions WHERE status = 'running' ORDER BY id LIMIT ?"
)
_RUNNING_AFTER_BEFORE_PAUSES: Final = (
    "SELECT id FROM missions WHERE status = 'running' AND id > ? ORDER BY id LIMIT ?"
)
# The running missions and those with a pause request (the indexes missions_by_status and
# missions_pause_requested, merged in id order); from the start, after "" (no id is empty).
_RUNNING: Final = (
    "SELECT id FROM missions WHERE status = 'running' AND id > ?1 "
    "UNION SELECT id FROM missions WHERE pause_request IS NOT NULL AND id > ?1 "
    "ORDER BY id LIMIT ?2"
)
_TIMELINE: Final = "SELECT entry FROM timeline WHERE mission_id = ? ORDER BY revision, position"
# The partial index missions_unfinished_versions, named (the planner prefers missions_by_status
# otherwise), with its condition word for word: each query is one seek to the next (definition,
# version), or to one version's first ids.
_UNFINISHED: Final = (
    "missions INDEXED BY missions_unfinished_versions WHERE status IN ('running', 'waiting')"
)
_FIRST_VERSION: Final = (
    f"SELECT definition, definition_version FROM {_UNFINISHED} "
    "ORDER BY definition, definition_version LIMIT 1"
)
# The next version: of the same definition, else the first of the next definition. (A row
# value comparison, (definition, definition_version) > (?, ?), would seek on the definition
# only and then read every mission of it.)
_NEXT_VERSION: Final = (
    f"SELECT definition, definition_version FROM {_UNFINISHED} "
    "AND definition = ? AND definition_version > ? ORDER BY definition_version LIMIT 1"
)
_NEXT_DEFINITION: Final = (
    f"SELECT definition, definition_version FROM {_UNFINISHED} "
    "AND definition > ? ORDER BY definition, definition_version LIMIT 1"
)
_ON_VERSION: Final = (
    f"SELECT id FROM {_UNFINISHED} AND definition = ? AND definition_version = ? "
    "ORDER BY id LIMIT ?"
)
# Paused missions have not ended either; outside the partial index above (whose condition a
# migration would have to change, and which releases before pause read), they are found through
# missions_by_status: reading them costs what there are, a few an operator paused.
_PAUSED_VERSIONS: Final = (
    "SELECT DISTINCT definition, definition_version FROM missions INDEXED BY missions_by_status "
    "WHERE status = 'paused'"
)
_PAUSED_ON_VERSION: Final = (
    "SELECT id FROM missions INDEXED BY missions_by_status WHERE status = 'paused' "
    "AND definition = ? AND definition_version = ? ORDER BY id LIMIT ?"
)
_FINGERPRINTS: Final = "SELECT definition, version, fingerprint FROM definition_versions"
_INSERT_SCHEDULE: Final = (
    "INSERT INTO schedules (id, next_fire_at, revision, document) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (id) DO NOTHING"
)
_RECORD_TRIGGER: Final = (
    "INSERT INTO trigger_fires (id, name, document) VALUES (?, ?, ?) ON CONFLICT (id) DO NOTHING"
)
_LOAD_TRIGGER: Final = "SELECT document FROM trigger_fires WHERE id = ?"
_LIST_TRIGGERS: Final = "SELECT document FROM trigger_fires WHERE id > ? ORDER BY id LIMIT ?"
_LIST_TRIGGERS_NAMED: Final = (
    "SELECT document FROM trigger_fires WHERE name = ? AND id > ? ORDER BY id LIMIT ?"
)
_LOAD_GATE: Final = "SELECT revision, document FROM concurrency_gates WHERE key = ?"
_INSERT_GATE: Final = (
    "INSERT INTO concurrency_gates (key, revision, document) VALUES (?, ?, ?) "
    "ON CONFLICT (key) DO NOTHING"
)
_UPDATE_GATE: Final = (
    "UPDATE concurrency_gates SET revision = ?, document = ? WHERE key = ? AND revision = ?"
)
_LOAD_SCHEDULE: Final = "SELECT document FROM schedules WHERE id = ?"
_UPDATE_SCHEDULE: Final = (
    "UPDATE schedules SET next_fire_at = ?, revision = ?, document = ? "
    "WHERE id = ? AND revision = ?"
)
_DELETE_SCHEDULE: Final = "DELETE FROM schedules WHERE id = ?"
_LIST_SCHEDULES: Final = "SELECT document FROM schedules WHERE id > ? ORDER BY id LIMIT ?"
_DUE_SCHEDULES: Final = (
    "SELECT document FROM schedules WHERE next_fire_at IS NOT NULL AND next_fire_at <= ? "
    "ORDER BY next_fire_at, id LIMIT ?"
)
_NEXT_SCHEDULE: Final = (
    "SELECT next_fire_at FROM schedules WHERE next_fire_at IS NOT NULL "
    "ORDER BY next_fire_at LIMIT 1"
)
_NEXT_SCHEDULE_AFTER: Final = (
    "SELECT next_fire_at FROM schedules WHERE next_fire_at IS NOT NULL AND next_fire_at > ? "
    "ORDER BY next_fire_at LIMIT 1"
)
_RECORD_FINGERPRINT: Final = (
    "INSERT INTO definition_versions (definition, version, fingerprint, recorded_at) "
    "VALUES (?, ?, ?, ?) ON CONFLICT (definition, version) DO UPDATE SET "
    "fingerprint = excluded.fingerprint, recorded_at = excluded.recorded_at"
)
# A compare-and-delete: a mission retried (or otherwise changed) since it was read stays.
_DELETE_MISSION: Final = (
    "DELETE FROM missions WHERE id = ? AND revision = ? "
    "AND status IN ('completed', 'failed', 'cancelled', 'compensated') RETURNING id"
)
_DELETE_TIMELINE: Final = "DELETE FROM timeline WHERE mission_id = ?"
_DELETE_INBOX: Final = "DELETE FROM inbox WHERE mission_id = ?"
_INSERT_TENANT: Final = "INSERT INTO mission_tenants (id, tenant) VALUES (?, ?)"
_DELETE_TENANT: Final = "DELETE FROM mission_tenants WHERE id = ?"
# What a listing reads of each mission (after _LISTED or _LISTED_BEFORE_PAUSES).
_LISTED: Final = "SELECT m.id, m.revision, m.snapshot, m.cancel_request, m.pause_request"
_LISTED_BEFORE_PAUSES: Final = "SELECT m.id, m.revision, m.snapshot, m.cancel_request, NULL"
# The missions of one tenant: a range of mission_tenants_by_tenant, each joined to its row.
_TENANT_MISSIONS: Final = (
    " FROM mission_tenants t JOIN missions m ON m.id = t.id WHERE t.tenant = ?"
)
# The missions of no tenant: a range of missions_of_no_tenant's key, each joined to its row
# (CROSS JOIN keeps that order of the loops, which the planner would not choose).
_NO_TENANT_MISSIONS: Final = " FROM missions_of_no_tenant n CROSS JOIN missions m ON m.id = n.id"
# With a status or definition filter in a file with few tenants' missions, a range of that
# filter's index instead, each mission checked to be in missions_of_no_tenant (the check keeps
# the page exact, and it passes over at most those few): there the filtered page (the running
# ones among many finished) reads what it returns, where missions_of_no_tenant's range would
# read every mission. In a file with many tenants' missions, the missions of no tenant may be
# few among them: their own range, filters checked row by row. (With many of both, one of the
# two shapes reads more than it returns.)
_IN_NO_TENANT: Final = "EXISTS (SELECT 1 FROM missions_of_no_tenant n WHERE n.id = m.id)"
FEW_TENANTS_MISSIONS: Final = 1000
"""Up to this many tenants' missions in a file, a filtered page of the missions of no tenant
reads the filter's index (what _TENANTS_MISSIONS counts: at most this many index entries)."""
_TENANTS_MISSIONS: Final = (
    f"SELECT count(*) FROM (SELECT 1 FROM mission_tenants LIMIT {FEW_TENANTS_MISSIONS})"
)
# The same in a database read before it was migrated to keep them (read-only): row by row.
_NO_TENANT: Final = "NOT EXISTS (SELECT 1 FROM mission_tenants t WHERE t.id = m.id)"


def update_mission(cursor: Cursor, db: Connection, update: tuple[Any, ...], reopened: bool) -> bool:
    """Compare-and-set the mission's row with the parameters of ``mission_update``; whether it
    was at the expected revision. The row written is :func:`update_mission_plainly`'s (a test
    holds them to it); a mission still running is updated without setting what did not change."""
    status, due, revision, text, cancel, _, mission_id, expected = update
    if not reopened and status == "running" and due is None:
        cursor.execute(_UPDATE_STILL_RUNNING, (revision, text, cancel, mission_id, expected))
        if db.changes() == 1:
            return True
    return update_mission_plainly(cursor, db, update, reopened)


def update_mission_plainly(
    cursor: Cursor, db: Connection, update: tuple[Any, ...], reopened: bool
) -> bool:
    """:func:`update_mission` as one statement that sets every column (the reference)."""
    cursor.execute(_REOPEN_MISSION if reopened else _UPDATE_MISSION, update)
    return db.changes() == 1


def _micros(when: datetime, what: str) -> int:
    if when.utcoffset() is None:
        raise ValueError(f"{what} must be a timezone-aware datetime, got naive {when!r}")
    return (when - _EPOCH) // _MICROSECOND


def _from_micros(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value)


def _inbox_row(
    mission_id: str, name: str, payload: JsonValue, received_at: datetime
) -> tuple[str, str, str, str]:
    """A buffered signal's row, made before its transaction begins."""
    return (
        mission_id,
        name,
        signal_payload_json(mission_id, name, payload),
        received_at.isoformat(),
    )


def _database_path(path: str | os.PathLike[str]) -> str:
    try:
        text = os.fspath(path)
    except TypeError:
        raise ConfigurationError(f"path must be a str or os.PathLike, got {path!r}") from None
    if not isinstance(text, str) or not text:
        raise ConfigurationError(f"path must be a non-empty str path, got {path!r}")
    return text


def _synchronous(value: str) -> Synchronous:
    mode = value.upper() if isinstance(value, str) else None
    if mode == "NORMAL":
        return "NORMAL"
    if mode == "FULL":
        return "FULL"
    raise ConfigurationError(f'synchronous must be "NORMAL" or "FULL", got {value!r}')


# This process's id, kept up to date across forks: an adapter compares it with the process
# that opened it on every call, which os.getpid() (a system call) would make dearer.
_this_process = [os.getpid()]


def _forked_child() -> None:
    _this_process[0] = os.getpid()


os.register_at_fork(after_in_child=_forked_child)


def _role(value: object) -> Role:
    match value:
        case "auto":
            return "auto"
        case "owner":
            return "owner"
        case "submitter":
            return "submitter"
        case _:
            raise ConfigurationError(f'role must be "auto", "owner" or "submitter", got {value!r}')


def _busy_timeout_ms(seconds: float) -> int:
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not seconds >= 0:
        raise ConfigurationError(f"busy_timeout must be seconds >= 0, got {seconds!r}")
    return min(round(seconds * 1000), 2**31 - 1)


def _check_file(path: str, read_only: bool) -> None:
    """Refuse what is plainly not a database before anything is created next to it."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        if read_only:
            raise PersistenceError(f"there is no database at {path} to open read-only") from None
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            raise PersistenceError(
                f"cannot create the database {path}: the directory {parent} does not exist"
            ) from None
        return
    except OSError as error:
        raise PersistenceError(f"cannot open the database {path}: {error.strerror}") from error
    if stat.S_ISDIR(info.st_mode):
        raise PersistenceError(f"{path} is a directory, not a database file")
    if info.st_size == 0:
        return
    try:
        header = read_header(path, len(_SQLITE_HEADER))
    except OSError as error:
        raise PersistenceError(f"cannot read the database {path}: {error.strerror}") from error
    if header != _SQLITE_HEADER:
        raise PersistenceError(
            f"{path} is not a SQLite database (it does not start with the SQLite header); "
            "nothing was changed"
        )


READ_ONLY_REREAD_INTERVAL: Final = 1.0
"""Seconds between re-reads of a mission ``result()`` waits for on a read-only adapter."""


class _NoSharedMemory(Exception):
    """The read-only database cannot be read through SQLite's shared memory; read it
    immutable."""


class SQLitePersistenceAdapter:
    """Stores missions in one SQLite file (WAL mode), for ``create_commander(persistence=...)``.

    Make one with :func:`create_sqlite_persistence_adapter`. One adapter at a time may open a
    database for writing (another one fails fast with :class:`PersistenceError`); any number may
    open it with ``read_only=True`` to inspect it, also from other processes while the owner runs.
    Close it with :meth:`aclose` (or ``async with``), which releases the database.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: Synchronous = "NORMAL",
        busy_timeout: float = 5.0,
        read_only: bool = False,
        role: Role = "auto",
    ) -> None:
        self._path = _database_path(path)
        self._synchronous: Synchronous = _synchronous(synchronous)
        timeout_ms = _busy_timeout_ms(busy_timeout)
        self._busy_timeout = float(busy_timeout)
        self._read_only = bool(read_only)
        self._role: Role = _role(role)
        self._closed = True
        self._lock: WriterLock | None = None
        self._reader: Reader | None = None
        self._wake_sender: WakeSender | None = None
        self._unheard = False
        memory = self._path == MEMORY
        if memory and self._read_only:
            raise ConfigurationError("an in-memory database cannot be opened read-only")
        if memory and self._role == "submitter":
            raise ConfigurationError("an in-memory database has no other process to submit to")
        self._pid = _this_process[0]
        self._realpath = os.path.realpath(self._path)
        self._lock_path = self._realpath + ".lock"
        if not memory:
            _check_file(self._path, self._read_only)
            if not self._read_only and self._role != "submitter":
                try:
                    self._lock = WriterLock.acquire(self._path, self._lock_path)
                except OwnedElsewhere:
                    if self._role == "owner":
                        raise
            if self._lock is None:
                # Registered as a user of the file all the same (see _lock.py).
                self._reader = Reader(self._path)
        try:
            self._db, self._schema_version = self._connect(timeout_ms, memory)
        except BaseException:
            self._release()
            raise
        self._owner = memory or self._lock is not None
        # Open from here on: close() (and __del__) close the connection, then release the file.
        self._closed = False
        try:
            # SQLite no longer waits for another connection's lock (it would wait in C,
            # freezing the event loop): the calls below retry on the loop's clock instead.
            self._db.set_busy_timeout(0)
            self._cursor = self._db.cursor()
            self._transaction = Transaction(self._db, self._cursor)
            self._group = GroupCommit(
                self._db, self._cursor, self._transaction, self._failure, self._busy_timeout
            )
        except BaseException:
            self.close()
            raise
        if self._read_only:
            # Another process writes this database, and no notice of its writes reaches this
            # one: result() re-reads the missions it waits for instead.
            notices_for(self).reread_interval = READ_ONLY_REREAD_INTERVAL
        elif not self._owner:
            notices_for(self).reread_interval = SUBMITTER_REREAD_INTERVAL
            self._wake_sender = WakeSender(wake_path(self._realpath))

    def _connect(self, timeout_ms: int, memory: bool) -> tuple[Connection, int]:
        try:
            return self._open(timeout_ms, memory, immutable=False)
        except _NoSharedMemory:
            return self._open(timeout_ms, memory, immutable=True)

    def _open(self, timeout_ms: int, memory: bool, *, immutable: bool) -> tuple[Connection, int]:
        path = self._path
        try:
            db = connect(path, read_only=self._read_only, immutable=immutable)
        except apsw.Error as error:
            raise PersistenceError(f"cannot open the database {path}: {error}") from error
        try:
            if self._lock is not None:
                self._claim(path)
            version = self._prepare(db, timeout_ms, memory)
        except (apsw.ReadOnlyError, apsw.CantOpenError) as error:
            db.close()
            if not self._read_only or immutable:
                raise PersistenceError(f"cannot open the database {path}: {error}") from error
            # A WAL database is read through its -shm file, which SQLite could neither open nor
            # create: the directory (or the medium) is read-only.
            self._check_no_log(error)
            raise _NoSharedMemory from error
        except apsw.NotADBError as error:
            db.close()
            raise PersistenceError(
                f"{path} is not a SQLite database ({error}); nothing was changed"
            ) from error
        except apsw.Error as error:
            db.close()
            raise PersistenceError(f"cannot open the database {path}: {error}") from error
        except BaseException:
            db.close()
            raise
        return db, version

    def _claim(self, path: str) -> None:
        """Lock the file SQLite has just opened; an ``"auto"`` adapter whose file another
        process owns goes on as a submitter."""
        lock = self._lock
        assert lock is not None
        try:
            lock.claim(path)
        except OwnedElsewhere:
            if self._role == "owner":
                raise
            self._lock = None
            lock.release()
            self._reader = Reader(path)

    def _check_no_log(self, error: apsw.Error) -> None:
        """Refuse to read the file alone while its write-ahead log holds commits that are not
        in it yet."""
        log = os.path.realpath(self._path) + "-wal"
        try:
            size = os.stat(log).st_size
        except FileNotFoundError:
            return
        except OSError as stat_error:
            raise PersistenceError(
                f"cannot open the database {self._path}: {error}; and its write-ahead log {log} "
                f"cannot be examined: {stat_error.strerror}"
            ) from error
        if size > 0:
            raise PersistenceError(
                f"cannot open the database {self._path} read-only: SQLite cannot create the "
                f"shared-memory file it needs to read the write-ahead log {log} (the directory "
                "is read-only), and that log holds commits that are not in the database file "
                "yet. Open it for writing once where it can be written (which folds the log into "
                "the file), or copy the database with its -wal file to a writable directory"
            ) from error

    def _prepare(self, db: Connection, timeout_ms: int, memory: bool) -> int:
        """Check the open database, set it up for this connection and migrate it; return its
        schema version. Nothing is written before the version check has passed."""
        path = self._path
        db.set_busy_timeout(timeout_ms)
        if not self._read_only and db.readonly("main"):
            # SQLite falls back to read-only when it may not write the file.
            raise PersistenceError(
                f"{path} cannot be written (check the permissions of the file and its "
                "directory); open it with read_only=True to inspect it"
            )
        version = read_version(db, path, read_only=self._read_only)
        owner = self._lock is not None
        if not memory:
            check_path(db, path, owner=owner)
        if self._read_only:
            return version
        if not memory:
            mode = str(db.pragma("journal_mode", "wal")).lower()
            if mode != "wal":
                raise PersistenceError(
                    f"{path} cannot use write-ahead logging (journal mode stayed {mode!r}); "
                    "keep it on a local file system"
                )
        db.pragma("synchronous", self._synchronous)
        if version < current_version():
            if not owner and version > 0:
                # The owner may run older code that reads the schema it opened.
                raise PersistenceError(
                    f"{path} has schema version {version} and this code needs "
                    f"{current_version()}: only the process that owns the database migrates "
                    "it; upgrade and restart the owner first (nothing was changed)"
                )
            migrate(db, path)
            version = current_version()
        if owner:
            record_path(db, self._realpath)
        return version

    # -- properties ----------------------------------------------------------------------------

    @property
    def path(self) -> str:
        """The database file as it was given."""
        return self._path

    @property
    def read_only(self) -> bool:
        return self._read_only

    @property
    def synchronous(self) -> Synchronous:
        return self._synchronous

    @property
    def role(self) -> Role:
        """The role it was opened with (``read_only`` aside)."""
        return self._role

    @property
    def is_owner(self) -> bool:
        """Whether this adapter owns the database: it alone executes missions; the others
        (submitters) hand it work. Turns true when :meth:`take_ownership` succeeds; false in a
        process forked from the one that opened it."""
        return self._owner and self._pid == _this_process[0]

    @property
    def busy_timeout(self) -> float:
        """Seconds a call waits for a lock another connection holds, on the event loop's clock."""
        return self._busy_timeout

    @property
    def schema_version(self) -> int:
        """The schema version of the open database."""
        return self._schema_version

    @property
    def _keeps_joined(self) -> bool:
        return self._schema_version >= JOINED_VERSION

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def transactions(self) -> int:
        """How many write transactions this adapter has begun. Mission writes that arrive
        together share one (group commit), so under concurrency this grows slower than the
        number of writes."""
        return self._transaction.begun

    # -- helpers -------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise PersistenceError(f"the SQLite adapter for {self._path} is closed")
        if self._pid != _this_process[0]:
            raise self._forked()

    def _forked(self) -> PersistenceError:
        return PersistenceError(
            f"the SQLite adapter for {self._path} was opened by process {self._pid}, before "
            "this process was forked from it: a SQLite connection must not cross a fork. Open "
            "the database in each process after the fork (a web worker: in its lifespan, not "
            "at import)"
        )

    def _check_writable(self, action: str) -> None:
        self._check_open()
        if self._read_only:
            raise PersistenceError(f"cannot {action}: {self._path} is open read-only")

    def _check_owner(self, action: str) -> None:
        self._check_writable(action)
        if not self._owner:
            raise PersistenceError(
                f"cannot {action}: another process owns {self._path} and executes its "
                "missions; this one submits work to it (see docs/sqlite.md, several processes)"
            )

    def _woke_owner(self) -> None:
        """Tell the owner a write of this submitter is there for it (the store stays the
        source of truth: a lost wake-up is found by the owner's recheck)."""
        sender = self._wake_sender
        if sender is not None and not self._owner and not sender.send() and not self._unheard:
            self._unheard = True
            _log.warning(
                "no owner of %s listens for wake-ups: what this process submits waits in the "
                "store until an owner's runtime takes it (logged once)",
                self._path,
            )

    def _failure(self, action: str, error: apsw.Error) -> PersistenceError:
        hint = ""
        if isinstance(error, apsw.BusyError | apsw.LockedError):
            hint = (
                f"; another connection kept the database locked for longer than "
                f"busy_timeout={self._busy_timeout:g} s"
            )
        elif isinstance(error, apsw.FullError):
            hint = "; the disk is full"
        elif isinstance(error, apsw.ReadOnlyError):
            hint = "; the file or its directory is not writable"
        elif isinstance(error, apsw.CorruptError | apsw.NotADBError):
            hint = "; the database file is damaged (see docs/sqlite.md, recovering from errors)"
        failure = StoreBusyError if isinstance(error, apsw.BusyError | apsw.LockedError) else None
        return (failure or PersistenceError)(
            f"{action} failed on {self._path}: {type(error).__name__}: {error}{hint}"
        )

    async def _rows_when_free(
        self, error: apsw.Error, sql: str, params: Sequence[Any], action: str
    ) -> list[Row]:
        """The rows of ``sql``, whose first run raised ``error``: run again while the database is
        busy (see ``when_free``); any other error as :class:`PersistenceError`."""
        if isinstance(error, apsw.BusyError):
            try:
                return await when_free(
                    lambda: self._cursor.execute(sql, params).fetchall(),
                    self._busy_timeout,
                    error,
                )
            except apsw.Error as again:
                error = again
        raise self._failure(action, error) from error

    def _decode(
        self, mission_id: str, revision: int, text: str, cancel: str | None, pause: str | None
    ) -> MissionSnapshot:
        return stored_snapshot_from_json(
            text, cancel, pause, mission_id=mission_id, revision=revision, store=self._path
        )

    @staticmethod
    def _due(snapshot: MissionSnapshot) -> int | None:
        """The mission's due time as stored (epoch microseconds)."""
        due_at = snapshot.due_at
        return None if due_at is None else _micros(due_at, f"due time of mission {snapshot.id!r}")

    def _revision(self, mission_id: str, action: str) -> int:
        rows = self._cursor.execute(_REVISION, (mission_id,)).fetchall()
        if not rows:
            raise PersistenceError(f"{action} unknown mission {mission_id!r}")
        return int(rows[0][0])

    def _append_entries(
        self, mission_id: str, revision: int, timeline: Sequence[TimelineEntry]
    ) -> None:
        """Append entries outside a commit, after those written at the current revision."""
        if not timeline:
            return
        cursor = self._cursor
        start = int(cursor.execute(_NEXT_POSITION, (mission_id, revision)).fetchall()[0][0])
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
        self._check_writable("insert a mission")
        mission_id = snapshot.id
        row, entries = self._insert_parts(snapshot, timeline)
        inbox = (
            [_inbox_row(mission_id, s.name, s.payload, s.received_at) for s in signals]
            if signals
            else []
        )
        tenant = snapshot.tenant
        with submission_mark() as mark:
            inserted = await self._group.run(
                lambda: self._write_insert(row, entries, inbox, mark, tenant),
                f"inserting mission {mission_id!r}",
            )
        if inserted:
            self._woke_owner()
            return None
        return await self.load(mission_id)

    def _insert_parts(
        self, snapshot: MissionSnapshot, timeline: Sequence[TimelineEntry]
    ) -> tuple[tuple[Any, ...], list[tuple[Any, ...]]]:
        """The mission row and timeline rows of a new mission."""
        row = mission_row(snapshot, self._due(snapshot))
        return row, timeline_rows(snapshot.id, snapshot.revision, timeline)

    def _write_insert(
        self,
        row: tuple[Any, ...],
        entries: list[tuple[Any, ...]],
        inbox: list[tuple[Any, ...]],
        mark: tuple[datetime, int] | None,
        tenant: str | None,
    ) -> bool:
        if mark is not None:
            submissions.mark_applied(self._cursor, self._db, mark)
        self._cursor.execute(_INSERT_MISSION, row)
        if self._db.changes() != 1:
            return False
        # A mission of no tenant gets its missions_of_no_tenant row from the schema's trigger.
        if tenant is not None:
            self._cursor.execute(_INSERT_TENANT, (row[0], tenant))
        if entries:
            self._cursor.executemany(_INSERT_ENTRY, entries)
        if inbox:
            self._cursor.executemany(_INSERT_SIGNAL, inbox)
        return True

    async def load(self, mission_id: str) -> MissionSnapshot | None:
        """The stored mission, or ``None``; :class:`PersistenceError` when its row is corrupt."""
        self._check_open()
        params = (mission_id,)
        sql = _LOAD if self._schema_version >= PAUSES_VERSION else _LOAD_BEFORE_PAUSES
        try:
            rows = self._cursor.execute(sql, params).fetchall()
        except apsw.Error as error:
            rows = await self._rows_when_free(error, sql, params, f"loading mission {mission_id!r}")
        if not rows:
            return None
        revision, text, cancel, pause = rows[0]
        return self._decode(mission_id, revision, text, cancel, pause)

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
        self._check_owner("commit a mission")
        mission_id = snapshot.id
        check_commit_revision(snapshot, expected_revision)
        update = mission_update(snapshot, self._due(snapshot), expected_revision)
        entries = timeline_rows(mission_id, snapshot.revision, timeline)
        with submission_mark() as mark:
            await self._group.run(
                lambda: self._write_commit(update, entries, consumed_signal, mark, reopened),
                f"committing mission {mission_id!r}",
            )

    def _write_commit(
        self,
        update: tuple[Any, ...],
        entries: list[tuple[Any, ...]],
        consumed_signal: int | None,
        mark: tuple[datetime, int] | None,
        reopened: bool = False,
    ) -> None:
        cursor = self._cursor
        if mark is not None:
            submissions.mark_applied(cursor, self._db, mark)
        mission_id: str = update[6]
        if not update_mission(cursor, self._db, update, reopened):
            raise self._conflict(mission_id, update[7])
        if consumed_signal is not None:
            cursor.execute(_DELETE_SIGNAL, (consumed_signal, mission_id))
            if self._db.changes() != 1:
                raise RevisionConflictError(
                    f"mission {mission_id!r} has no buffered signal {consumed_signal}"
                )
        if len(entries) == 1:
            cursor.execute(_INSERT_ENTRY, entries[0])
        elif entries:
            cursor.executemany(_INSERT_ENTRY, entries)

    def _conflict(self, mission_id: str, expected_revision: int) -> RevisionConflictError:
        rows = self._cursor.execute(_REVISION, (mission_id,)).fetchall()
        return revision_conflict(mission_id, rows[0][0] if rows else None, expected_revision)

    async def append_signal(
        self,
        mission_id: str,
        name: str,
        payload: JsonValue,
        received_at: datetime,
        timeline: Sequence[TimelineEntry],
    ) -> BufferedSignal:
        """Buffer a signal for the mission (one transaction)."""
        self._check_owner("buffer a signal")
        row = _inbox_row(mission_id, name, payload, received_at)
        with submission_mark() as mark:
            seq = await self._group.run_alone(
                lambda: self._write_signal(row, timeline, mark),
                f"buffering signal {name!r} for mission {mission_id!r}",
            )
        return BufferedSignal(seq, name, payload, received_at)

    def _write_signal(
        self,
        row: tuple[Any, ...],
        timeline: Sequence[TimelineEntry],
        mark: tuple[datetime, int] | None,
    ) -> int:
        mission_id: str = row[0]
        revision = self._revision(mission_id, "cannot buffer a signal for")
        if mark is not None:
            submissions.mark_applied(self._cursor, self._db, mark)
        self._cursor.execute(_INSERT_SIGNAL, row)
        seq = self._db.last_insert_rowid()
        self._append_entries(mission_id, revision, timeline)
        return seq

    async def next_signal(self, mission_id: str, name: str) -> BufferedSignal | None:
        """The oldest buffered signal called ``name`` for the mission, if any."""
        self._check_open()
        params = (mission_id, name)
        try:
            rows = self._cursor.execute(_NEXT_SIGNAL, params).fetchall()
        except apsw.Error as error:
            rows = await self._rows_when_free(
                error, _NEXT_SIGNAL, params, f"reading signal {name!r} of mission {mission_id!r}"
            )
        if not rows:
            return None
        seq, payload, received_at = rows[0]
        try:
            return BufferedSignal(
                seq, name, json.loads(payload), datetime.fromisoformat(received_at)
            )
        except Exception as error:
            raise corrupt(mission_id, self._path, f"signal {seq} ({name!r})", error) from error

    async def request_cancel(
        self, mission_id: str, request: CancelRequest, timeline: Sequence[TimelineEntry]
    ) -> None:
        """Record a cancellation request (the first one stands) without changing the revision."""
        self._check_owner("request cancellation")
        request_text = cancel_request_to_json(request)
        with submission_mark() as mark:
            await self._group.run_alone(
                lambda: self._write_cancel(mission_id, request_text, timeline, mark),
                f"requesting cancellation of mission {mission_id!r}",
            )

    def _write_cancel(
        self,
        mission_id: str,
        request_text: str,
        timeline: Sequence[TimelineEntry],
        mark: tuple[datetime, int] | None,
    ) -> None:
        revision = self._revision(mission_id, "cannot cancel")
        if mark is not None:
            submissions.mark_applied(self._cursor, self._db, mark)
        self._cursor.execute(_REQUEST_CANCEL, (request_text, mission_id))
        self._append_entries(mission_id, revision, timeline)

    async def request_pause(
        self, mission_id: str, request: Pause | None, timeline: Sequence[TimelineEntry]
    ) -> None:
        """Record a pause request (``None``: withdraw it) without changing the revision, unless
        the mission is paused or finished."""
        self._check_owner("request a pause")
        request_text = None if request is None else pause_to_json(request)
        with submission_mark() as mark:
            await self._group.run_alone(
                lambda: self._write_pause(mission_id, request_text, timeline, mark),
                f"requesting a pause of mission {mission_id!r}",
            )

    def _write_pause(
        self,
        mission_id: str,
        request_text: str | None,
        timeline: Sequence[TimelineEntry],
        mark: tuple[datetime, int] | None,
    ) -> None:
        rows = self._cursor.execute(_STATUS, (mission_id,)).fetchall()
        if not rows:
            raise PersistenceError(f"cannot pause unknown mission {mission_id!r}")
        if mark is not None:
            submissions.mark_applied(self._cursor, self._db, mark)
        revision, status = rows[0]
        if clears_pause_request(MissionStatus(status)):
            return  # paused or ended: nothing is left to request
        self._cursor.execute(_REQUEST_PAUSE, (request_text, mission_id))
        self._append_entries(mission_id, int(revision), timeline)

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
        ``after_id``: a range scan of one index (``missions_by_definition_status`` when both
        filters are given), which reads the rows it passes until ``limit`` match.
        One tenant's missions are a range of ``mission_tenants_by_tenant`` (with a filter, of
        ``mission_tenants_by_tenant_status``, ``_definition_status`` or ``_definition``), the
        missions of no tenant a range of ``missions_of_no_tenant`` (filters checked row by
        row), or, with a status or definition filter in a file that holds fewer than
        ``FEW_TENANTS_MISSIONS`` tenants' missions, a range of that filter's index, each checked
        row by row to be in
        ``missions_of_no_tenant`` (in a database read before it was migrated to keep them, to
        have no row in ``mission_tenants``).

        Raises :class:`PersistenceError` naming the first listed mission whose row is corrupt.
        """
        self._check_open()
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise ValueError(f"limit must be a whole number >= 0, got {limit!r}")
        if limit == 0:
            return []
        clauses: list[str] = []
        params: list[Any] = []
        if self._schema_version < TENANTS_VERSION:
            # A database read before it is migrated to keep tenants: no mission has one.
            if isinstance(tenant, str):
                return []
            tenant = ANY_TENANT
        listed = _LISTED if self._schema_version >= PAUSES_VERSION else _LISTED_BEFORE_PAUSES
        if isinstance(tenant, str):
            sql = listed + _TENANT_MISSIONS
            params.append(tenant)
            if after_id is not None:
                clauses.append("t.id > ?")
                params.append(after_id)
            order = "t.id"
        elif (
            tenant is None
            and self._schema_version >= NO_TENANT_VERSION
            and (
                (status is None and definition is None)
                or await self._tenants_missions() >= FEW_TENANTS_MISSIONS
            )
        ):
            sql = listed + _NO_TENANT_MISSIONS
            if after_id is not None:
                clauses.append("n.id > ?")
                params.append(after_id)
            order = "n.id"
        else:
            sql = listed + " FROM missions m"
            if tenant is None:
                in_no_tenant = self._schema_version >= NO_TENANT_VERSION
                clauses.append(_IN_NO_TENANT if in_no_tenant else _NO_TENANT)
            if after_id is not None:
                clauses.append("m.id > ?")
                params.append(after_id)
            order = "m.id"
        # A tenant's page filtered reads the copies beside its tenant: one range of
        # mission_tenants_by_tenant_status, _definition_status or _definition. A database read
        # before it was migrated to keep them checks the missions' row by row.
        filters = (
            "t"
            if isinstance(tenant, str) and self._schema_version >= TENANT_FILTERS_VERSION
            else "m"
        )
        if status is not None:
            clauses.append(f"{filters}.status = ?")
            params.append(MissionStatus(status).value)
        if definition is not None and filters == "t":
            clauses.append("t.definition = ?")
            params.append(definition)
        elif definition is not None:
            # With a status too, missions_by_definition_status is read: a range of exactly the
            # missions of both. A database read before it was migrated to have that index reads
            # the status's instead (the unary + keeps the planner off the definition's, which it
            # would take without statistics): the running, waiting, paused or failed missions
            # are few, and a definition is often all of them.
            plain = status is None or self._schema_version >= DEFINITION_STATUS_VERSION
            clauses.append("m.definition = ?" if plain else "+m.definition = ?")
            params.append(definition)
        if clauses:
            sql += (" AND " if isinstance(tenant, str) else " WHERE ") + " AND ".join(clauses)
        sql += f" ORDER BY {order} LIMIT ?"
        params.append(limit)
        try:
            rows = self._cursor.execute(sql, params).fetchall()
        except apsw.Error as error:
            rows = await self._rows_when_free(error, sql, params, "listing missions")
        return [self._decode(*row) for row in rows]

    async def _tenants_missions(self) -> int:
        """How many tenants' missions the file holds, counted up to FEW_TENANTS_MISSIONS."""
        rows = await self._read(_TENANTS_MISSIONS, (), "listing missions")
        return int(rows[0][0]) if rows else 0

    async def due_missions(self, now: datetime, limit: int) -> list[str]:
        """Ids of waiting missions due at or before ``now``, earliest first."""
        self._check_open()
        if limit <= 0:
            return []
        params = (_micros(now, "now"), limit)
        try:
            rows = self._cursor.execute(_DUE, params).fetchall()
        except apsw.Error as error:
            rows = await self._rows_when_free(error, _DUE, params, "querying due missions")
        return [row[0] for row in rows]

    async def next_due_at(self, after: datetime | None = None) -> datetime | None:
        """The earliest due time of any waiting mission (later than ``after`` if given): one
        seek in the missions_due index."""
        self._check_open()
        sql, params = (
            (_NEXT_DUE, ()) if after is None else (_NEXT_DUE_AFTER, (_micros(after, "after"),))
        )
        try:
            rows = self._cursor.execute(sql, params).fetchall()
        except apsw.Error as error:
            rows = await self._rows_when_free(error, sql, params, "querying the next due time")
        return _from_micros(rows[0][0]) if rows else None

    async def running_missions(self, limit: int, after_id: str | None = None) -> list[str]:
        """Ids of missions stored as running or with a pause request, by id."""
        self._check_open()
        if limit <= 0:
            return []
        if self._schema_version >= PAUSES_VERSION:
            sql, params = _RUNNING, (after_id or "", limit)
        elif after_id is None:
            sql, params = _RUNNING_BEFORE_PAUSES, (limit,)
        else:
            sql, params = _RUNNING_AFTER_BEFORE_PAUSES, (after_id, limit)
        try:
            rows = self._cursor.execute(sql, params).fetchall()
        except apsw.Error as error:
            rows = await self._rows_when_free(error, sql, params, "querying running missions")
        return [row[0] for row in rows]

    async def timeline(self, mission_id: str) -> list[TimelineEntry]:
        """The mission's timeline in the order it was written."""
        self._check_open()
        params = (mission_id,)
        try:
            rows = self._cursor.execute(_TIMELINE, params).fetchall()
        except apsw.Error as error:
            rows = await self._rows_when_free(
                error, _TIMELINE, params, f"reading the timeline of mission {mission_id!r}"
            )
        try:
            return [timeline_entry_from_json(row[0]) for row in rows]
        except Exception as error:
            raise corrupt(mission_id, self._path, "timeline", error) from error

    async def delete_missions(self, revisions: Mapping[str, int]) -> list[str]:
        """Delete the finished missions of ``revisions`` still at their revision, with their
        timelines and inboxes, in one transaction; return the ids deleted."""
        self._check_writable("delete missions")
        if not revisions:
            return []
        rows = list(revisions.items())
        return await self._group.run_alone(
            lambda: self._write_deletes(rows), f"deleting {len(rows)} missions"
        )

    def _write_deletes(self, rows: list[tuple[str, int]]) -> list[str]:
        cursor = self._cursor
        deleted: list[str] = []
        for mission_id, revision in rows:
            if cursor.execute(_DELETE_MISSION, (mission_id, revision)).fetchall():
                deleted.append(mission_id)
        if deleted:
            ids = [(mission_id,) for mission_id in deleted]
            cursor.executemany(_DELETE_TIMELINE, ids)
            cursor.executemany(_DELETE_INBOX, ids)
            cursor.executemany(_DELETE_TENANT, ids)
        return deleted

    # -- definition versions (DefinitionVersionStore) ------------------------------------------

    async def versions_in_use(self) -> list[tuple[str, int]]:
        """The (definition, version) of the missions that have not ended: one seek in the
        missions_unfinished_versions index per version, whatever the number of missions (and
        the paused missions' versions)."""
        self._check_open()
        action = "reading the versions in use"
        found: list[tuple[str, int]] = []
        rows = await self._read(_FIRST_VERSION, (), action)
        while rows:
            found.append((str(rows[0][0]), int(rows[0][1])))
            rows = await self._read(_NEXT_VERSION, found[-1], action) or await self._read(
                _NEXT_DEFINITION, (found[-1][0],), action
            )
        paused = await self._read(_PAUSED_VERSIONS, (), action)
        return sorted({*found, *((str(row[0]), int(row[1])) for row in paused)})

    async def missions_on_version(self, definition: str, version: int, limit: int) -> list[str]:
        """The ids of up to ``limit`` unfinished missions on ``version`` of ``definition``."""
        self._check_open()
        if limit <= 0:
            return []
        action = f"reading the missions on version {version} of {definition!r}"
        rows = await self._read(_ON_VERSION, (definition, version, limit), action)
        paused = await self._read(_PAUSED_ON_VERSION, (definition, version, limit), action)
        return sorted(str(row[0]) for row in [*rows, *paused])[:limit]

    async def fingerprints(self) -> dict[tuple[str, int], str]:
        """Every stored fingerprint, by (definition, version)."""
        self._check_open()
        rows = await self._read(_FINGERPRINTS, (), "reading the definition fingerprints")
        return {(str(row[0]), int(row[1])): str(row[2]) for row in rows}

    async def record_fingerprints(self, fingerprints: Mapping[tuple[str, int], str]) -> None:
        """Store ``fingerprints`` (one transaction), each replacing the one of its version."""
        self._check_owner("record definition fingerprints")
        at = datetime.now(UTC).isoformat()
        rows = [(name, version, text, at) for (name, version), text in fingerprints.items()]
        if not rows:
            return
        await self._group.run_alone(
            lambda: self._cursor.executemany(_RECORD_FINGERPRINT, rows),
            "recording definition fingerprints",
        )

    # -- concurrency keys (ConcurrencyStore) --------------------------------------------------

    async def load_gate(self, key: str) -> Gate | None:
        self._check_open()
        rows = await self._read(_LOAD_GATE, (key,), f"loading concurrency key {key!r}")
        if not rows:
            return None
        try:
            return gate_from_json(str(rows[0][1]), int(rows[0][0]))
        except Exception as error:
            raise PersistenceError(
                f"concurrency key {key!r} in {self._path} cannot be read: its stored gate is "
                f"corrupt ({type(error).__name__}: {error})"
            ) from error

    async def save_gate(self, gate: Gate, *, expected_revision: int) -> None:
        """Compare-and-set the gate (``expected_revision`` 0: none is stored yet);
        :class:`RevisionConflictError` stores nothing."""
        self._check_writable("change a concurrency key")
        check_gate_revision(gate, expected_revision)
        document = gate_to_json(gate)

        await self._group.run_alone(
            lambda: self._write_gate(gate, document, expected_revision),
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
        self._check_writable("insert a mission")
        mission_id = snapshot.id
        check_gate_revision(gate, expected_revision)
        row, entries = self._insert_parts(snapshot, timeline)
        document = gate_to_json(gate)
        tenant = snapshot.tenant

        def write(mark: tuple[datetime, int] | None) -> bool:
            if not self._write_insert(row, entries, [], mark, tenant):
                return False
            # Raising undoes the insert too (the write runs in a savepoint of its own).
            self._write_gate(gate, document, expected_revision)
            return True

        with submission_mark() as mark:
            inserted = await self._group.run(
                lambda: write(mark), f"inserting mission {mission_id!r}"
            )
        if inserted:
            self._woke_owner()
            return None
        return await self.load(mission_id)

    def _write_gate(self, gate: Gate, document: str, expected_revision: int) -> None:
        if expected_revision == 0:
            self._cursor.execute(_INSERT_GATE, (gate.key, gate.revision, document))
        else:
            self._cursor.execute(
                _UPDATE_GATE, (gate.revision, document, gate.key, expected_revision)
            )
        if self._db.changes() != 1:
            raise RevisionConflictError(
                f"concurrency key {gate.key!r} is not stored at revision {expected_revision}"
            )

    # -- schedules (ScheduleStore) -------------------------------------------------------------

    @staticmethod
    def _schedule_row(schedule: Schedule) -> tuple[int | None, int, str]:
        fire = schedule.next_fire_at
        due = None if fire is None else _micros(fire, f"next fire of schedule {schedule.id!r}")
        return due, schedule.revision, schedule_to_json(schedule)

    def _schedules_from(self, rows: list[Row]) -> list[Schedule]:
        return records_from_json(
            (str(r[0]) for r in rows), schedule_from_json, "a schedule", self._path
        )

    async def insert_schedule(self, schedule: Schedule) -> Schedule | None:
        """Store a new schedule; when its id exists, store nothing and return the stored one."""
        self._check_writable("store a schedule")
        due, revision, document = self._schedule_row(schedule)
        row = (schedule.id, due, revision, document)

        def write() -> bool:
            self._cursor.execute(_INSERT_SCHEDULE, row)
            return self._db.changes() == 1

        if await self._group.run_alone(write, f"storing schedule {schedule.id!r}"):
            self._woke_owner()
            return None
        return await self.load_schedule(schedule.id)

    async def load_schedule(self, schedule_id: str) -> Schedule | None:
        self._check_open()
        rows = await self._read(_LOAD_SCHEDULE, (schedule_id,), f"loading schedule {schedule_id!r}")
        return self._schedules_from(rows)[0] if rows else None

    async def commit_schedule(self, schedule: Schedule, *, expected_revision: int) -> None:
        """Compare-and-set the schedule; :class:`RevisionConflictError` stores nothing."""
        self._check_writable("change a schedule")
        check_schedule_revision(schedule, expected_revision)
        due, revision, document = self._schedule_row(schedule)
        row = (due, revision, document, schedule.id, expected_revision)

        def write() -> None:
            self._cursor.execute(_UPDATE_SCHEDULE, row)
            if self._db.changes() != 1:
                raise RevisionConflictError(
                    f"schedule {schedule.id!r} is not stored at revision {expected_revision}"
                )

        await self._group.run_alone(write, f"changing schedule {schedule.id!r}")
        self._woke_owner()

    async def delete_schedule(self, schedule_id: str) -> bool:
        self._check_writable("delete a schedule")

        def write() -> bool:
            self._cursor.execute(_DELETE_SCHEDULE, (schedule_id,))
            return self._db.changes() == 1

        return await self._group.run_alone(write, f"deleting schedule {schedule_id!r}")

    async def list_schedules(self, *, limit: int, after_id: str | None = None) -> list[Schedule]:
        self._check_open()
        if limit <= 0:
            return []
        rows = await self._read(_LIST_SCHEDULES, (after_id or "", limit), "listing schedules")
        return self._schedules_from(rows)

    async def due_schedules(self, now: datetime, limit: int) -> list[Schedule]:
        """The schedules due at ``now``, earliest first: one range of the schedules_due index."""
        self._check_open()
        if limit <= 0:
            return []
        params = (_micros(now, "now"), limit)
        return self._schedules_from(
            await self._read(_DUE_SCHEDULES, params, "querying due schedules")
        )

    async def next_schedule_at(self, after: datetime | None = None) -> datetime | None:
        self._check_open()
        sql, params = (
            (_NEXT_SCHEDULE, ())
            if after is None
            else (_NEXT_SCHEDULE_AFTER, (_micros(after, "after"),))
        )
        rows = await self._read(sql, params, "querying the next schedule")
        return _from_micros(rows[0][0]) if rows else None

    # -- fired triggers (TriggerStore) ---------------------------------------------------------

    def _fires_from(self, rows: list[Row]) -> list[TriggerFire]:
        return records_from_json(
            (str(r[0]) for r in rows), trigger_from_json, "a fired trigger", self._path
        )

    async def record_trigger(self, fire: TriggerFire) -> TriggerFire | None:
        """Record a fire; when its id exists, store nothing and return the stored one."""
        self._check_writable("record a fired trigger")
        row = (fire.id, fire.name, trigger_to_json(fire))

        def write() -> bool:
            self._cursor.execute(_RECORD_TRIGGER, row)
            return self._db.changes() == 1

        if await self._group.run_alone(write, f"recording fire {fire.id!r}"):
            return None
        return await self.load_trigger(fire.id)

    async def load_trigger(self, fire_id: str) -> TriggerFire | None:
        self._check_open()
        rows = await self._read(_LOAD_TRIGGER, (fire_id,), f"loading fire {fire_id!r}")
        return self._fires_from(rows)[0] if rows else None

    async def list_triggers(
        self, *, name: str | None = None, limit: int, after_id: str | None = None
    ) -> list[TriggerFire]:
        self._check_open()
        if limit <= 0:
            return []
        sql, params = (
            (_LIST_TRIGGERS, (after_id or "", limit))
            if name is None
            else (_LIST_TRIGGERS_NAMED, (name, after_id or "", limit))
        )
        return self._fires_from(await self._read(sql, params, "listing fired triggers"))

    # -- several processes: submissions and ownership (SubmissionStore) ----------------------

    async def submit(self, submission: NewSubmission) -> Submission:
        """Store ``submission`` for the owner (one transaction) and wake the owner."""
        self._check_writable("submit work")
        row = submissions.submission_row(submission)
        seq = await self._group.run_alone(
            lambda: self._write_submission(row),
            f"submitting a {submission.kind} for mission {submission.mission_id!r}",
        )
        self._woke_owner()
        return Submission(**attrs.asdict(submission, recurse=False), seq=seq)

    def _write_submission(self, row: tuple[Any, ...]) -> int:
        self._cursor.execute(submissions.INSERT, row)
        return self._db.last_insert_rowid()

    async def load_submission(self, seq: int) -> Submission | None:
        """The submission numbered ``seq``, if it is stored."""
        self._check_open()
        sql = submissions.LOAD if self._keeps_joined else submissions.LOAD_BEFORE_JOINED
        rows = await self._read(sql, (seq,), f"reading submission {seq}")
        return submissions.submission_from_row(rows[0]) if rows else None

    async def pending_submissions(self, limit: int) -> list[Submission]:
        """At most ``limit`` pending submissions, oldest first. One this version cannot read
        (a kind a newer version wrote, a damaged row) is left out, and refused by the owner,
        saying so: the others never wait behind it."""
        self._check_open()
        sql = submissions.PENDING if self._keeps_joined else submissions.PENDING_BEFORE_JOINED
        rows = await self._read(sql, (limit,), "reading pending submissions")
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
        marked applied."""
        self._check_owner("decide a submission")
        at = decided_at.isoformat()
        params: tuple[Any, ...]
        if state is SubmissionState.REFUSED:
            text = refusal_to_json(refusal or Refusal("SubmissionRefusedError", ""))
            sql, params = submissions.REFUSE, (at, text, seq, overriding)
        elif joined is not None:
            sql, params = submissions.APPLY_JOINED, (at, joined, seq)
        else:
            sql, params = submissions.MARK_APPLIED, (at, seq)
        await self._group.run_alone(
            lambda: self._cursor.execute(sql, params), f"deciding submission {seq}"
        )

    async def purge_submissions(
        self, decided_before: datetime, limit: int, *, dry_run: bool = False
    ) -> int:
        """Delete up to ``limit`` submissions decided before ``decided_before``, oldest first,
        in one transaction, and return how many; with ``dry_run``, count every one there is
        and delete none."""
        before = decided_before.isoformat()
        if dry_run:
            self._check_open()
            rows = await self._read(
                submissions.COUNT_DECIDED, (before,), "counting decided submissions"
            )
            return int(rows[0][0])
        self._check_writable("purge submissions")

        def delete() -> int:
            self._cursor.execute(submissions.PURGE, (before, limit))
            return self._db.changes()

        return await self._group.run_alone(delete, "purging decided submissions")

    async def count_failure(self, seq: int) -> int:
        """Count one more application of the submission that raised; return the count."""
        self._check_owner("count a failed submission")
        rows = await self._group.run_alone(
            lambda: self._cursor.execute(submissions.COUNT_FAILURE, (seq,)).fetchall(),
            f"counting a failure of submission {seq}",
        )
        return int(rows[0][0]) if rows else 0

    async def take_ownership(self) -> None:
        """Return once this adapter owns the database, trying every ``TAKEOVER_INTERVAL``
        seconds while another process (or adapter) does. Never two owners at once: the
        owner's locks are the kernel's, let go when it closes the database or dies."""
        # Polled: the kernel tells nobody when a lock is let go (a blocking flock would need
        # a thread of its own), and the wait is off every request's path.
        while True:
            if self._try_to_own():
                return
            await anyio.sleep(TAKEOVER_INTERVAL)

    def _try_to_own(self) -> bool:
        self._check_open()
        if self._owner:
            return True
        if self._read_only or self._role == "submitter":
            raise ConfigurationError(
                f"{self._path} is open {'read-only' if self._read_only else 'as a submitter'}: "
                'it never owns the database (open it with role="auto" to take over when its '
                "owner goes away)"
            )
        try:
            lock = WriterLock.acquire(self._path, self._lock_path)
        except OwnedElsewhere:
            return False
        try:
            lock.claim(self._path)
            # The previous owner may have run other code: the schema is checked (a newer one
            # refused) and migrated as an opening owner's is.
            self._schema_version = self._migrate_as_owner()
        except OwnedElsewhere:
            lock.release()
            return False
        except BaseException:
            lock.release()
            raise
        self._lock = lock
        if self._reader is not None:
            self._reader.release()
            self._reader = None
        self._owner = True
        self._record_path()
        notices_for(self).reread_interval = None
        _log.info("took ownership of %s", self._path)
        return True

    def _migrate_as_owner(self) -> int:
        db = self._db
        db.set_busy_timeout(_busy_timeout_ms(self._busy_timeout))
        try:
            version = read_version(db, self._path, read_only=False)
            if version < current_version():
                migrate(db, self._path)
                version = current_version()
        finally:
            db.set_busy_timeout(0)
        return version

    def _record_path(self) -> None:
        """Record the name this new owner opened the file by (see ``_paths.py``), waiting for
        a reader's lock as long as ``busy_timeout`` allows (the takeover is off every request's
        path, so the wait blocks nothing that matters)."""
        self._db.set_busy_timeout(_busy_timeout_ms(self._busy_timeout))
        try:
            record_path(self._db, self._realpath)
        except apsw.Error as error:
            # The previous owner's record stands; the name is the same unless the file moved.
            _log.warning("could not record the path of %s: %s", self._path, error)
        finally:
            self._db.set_busy_timeout(0)

    async def watch_submissions(self, wake: Callable[[], None]) -> None:
        """As the owner, call ``wake()`` now and whenever another process submits work (its
        wake-up datagram arrives); when none came for a while, look for pending submissions
        in the store (``WAKE_RECHECK``). Runs until cancelled."""
        self._check_owner("watch for submissions")
        path = wake_path(self._realpath)
        try:
            receiver: WakeReceiver | None = WakeReceiver.bind(path)
        except OSError as error:
            _log.warning(
                "cannot listen for wake-ups at %s (%s): submissions are found every %g s",
                path,
                error,
                WAKE_RECHECK[0],
            )
            receiver = None
        first, last = WAKE_RECHECK
        try:
            # Whatever was submitted before the socket was there.
            wake()
            idle = first
            while True:
                woken = False
                with anyio.move_on_after(idle if receiver is not None else first):
                    if receiver is not None:
                        await receiver.wait()
                        woken = True
                    else:
                        await anyio.sleep_forever()
                if woken or await self._any_pending():
                    idle = first
                    wake()
                else:
                    idle = min(idle * 2, last)
        finally:
            if receiver is not None:
                receiver.close()

    async def _any_pending(self) -> bool:
        return bool(await self._read(submissions.ANY_PENDING, (), "looking for submissions"))

    async def _read(self, sql: str, params: Sequence[Any], action: str) -> list[Row]:
        try:
            return self._cursor.execute(sql, params).fetchall()
        except apsw.Error as error:
            if self._not_created_yet(error):
                return []
            return await self._rows_when_free(error, sql, params, action)

    def _not_created_yet(self, error: apsw.Error) -> bool:
        """Whether ``error`` reads a table a later migration creates, from a database not
        migrated to it yet (read-only opens read one when the migrations since are additive):
        the table reads as empty there."""
        return (
            self._read_only
            and self._schema_version < current_version()
            and isinstance(error, apsw.SQLError)
            and "no such table" in str(error)
        )

    async def aclose(self) -> None:
        """Close the database and release it for another writer. Idempotent."""
        self.close()

    # -- lifecycle -----------------------------------------------------------------------------

    def close(self) -> None:
        """:meth:`aclose` for synchronous code (cleanup paths, ``atexit``)."""
        if self._closed:
            return
        self._closed = True
        if self._wake_sender is not None:
            self._wake_sender.close()
        try:
            self._db.close()
        finally:
            self._release()

    def __del__(self) -> None:
        # An adapter dropped without aclose() must not keep its database locked until exit,
        # and must close its connection before it releases the file: the guard's locks and
        # descriptors have no finalizers of their own, since a garbage collection runs those
        # in no set order, and one run before the connection closes would drop the locks
        # SQLite holds and let another writer in while this connection still writes.
        if not getattr(self, "_closed", True):
            self.close()

    def _release(self) -> None:
        """Release the file, once the connection is closed."""
        if self._lock is not None:
            self._lock.release()
        if self._reader is not None:
            self._reader.release()

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
        state = (
            "closed"
            if self._closed
            else "read-only"
            if self._read_only
            else "owner"
            if self._owner
            else "submitter"
        )
        return f"<SQLitePersistenceAdapter {self._path!r} {state}>"


def create_sqlite_persistence_adapter(
    path: str | os.PathLike[str],
    *,
    synchronous: Synchronous = "NORMAL",
    busy_timeout: float = 5.0,
    read_only: bool = False,
    role: Role = "auto",
) -> SQLitePersistenceAdapter:
    """Open (creating and migrating when needed) the Mission Control database at ``path``.

    - ``synchronous``: ``"NORMAL"`` (default) makes each commit durable against a crash of the
      process; ``"FULL"`` also against power loss, at the cost of an fsync per commit.
    - ``busy_timeout``: seconds to wait for a lock another connection holds (a checkpoint, an
      inspector) before failing with :class:`PersistenceError`; calls wait on the event loop's
      clock, so the loop runs meanwhile.
    - ``read_only``: inspect a database another process may own, also on read-only media or in
      a read-only directory; every write raises :class:`PersistenceError`. ``result()`` and
      ``wait_for_completion()`` on such an adapter re-read the mission every
      ``READ_ONLY_REREAD_INTERVAL`` seconds (1 s), so they return at most that long after the
      owner ended it (set ``notices_for(adapter).reread_interval`` to change it).
    - ``role``: what this process does when other processes use the database too (see
      ``docs/sqlite.md``): ``"owner"`` executes its missions and is refused when another
      adapter owns it already; ``"submitter"`` never executes missions: it hands its starts,
      signals and cancellations to the owner; ``"auto"`` (the default) owns the database when
      nobody else does, and submits otherwise (a runtime on it takes over when the owner goes
      away).

    Raises :class:`PersistenceError` when another adapter owns the database and ``role`` is
    ``"owner"``, when the file is not a Mission Control database, or was written by a newer
    version.
    """
    return SQLitePersistenceAdapter(
        path, synchronous=synchronous, busy_timeout=busy_timeout, read_only=read_only, role=role
    )
