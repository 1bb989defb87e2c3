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
import os
import stat
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Final, Literal, Self

import apsw
import attrs

from mission_control.core import (
    CancelRequest,
    ConfigurationError,
    JsonValue,
    MissionSnapshot,
    MissionStatus,
    PersistenceError,
    TimelineEntry,
)
from mission_control.core.lowlevel import notices_for
from mission_control.core.storage import (
    BufferedSignal,
    NewSignal,
    RevisionConflictError,
    cancel_request_from_json,
    cancel_request_to_json,
    snapshot_from_json,
    snapshot_to_json,
    timeline_entry_from_json,
    timeline_entry_to_json,
    value_to_json,
)

from ._group import GroupCommit, Transaction, when_free
from ._lock import Reader, WriterLock, read_header
from ._paths import check_path, record_path
from ._schema import current_version, migrate, read_version
from ._sqlite import Connection, Row, connect

Synchronous = Literal["NORMAL", "FULL"]
"""How hard SQLite pushes each commit to disk; see ``docs/sqlite.md``."""

MEMORY: Final = ":memory:"

_SQLITE_HEADER: Final = b"SQLite format 3\x00"
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)

_INSERT_MISSION: Final = (
    "INSERT INTO missions (id, definition, status, due_at, revision, snapshot, cancel_request) "
    "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING"
)
# The revision in the WHERE clause is the compare-and-set; coalesce keeps a stored cancellation
# request, which nothing but request_cancel (or the first snapshot carrying one) may write.
_UPDATE_MISSION: Final = (
    "UPDATE missions SET status = ?, due_at = ?, revision = ?, snapshot = ?, "
    "cancel_request = coalesce(cancel_request, ?) WHERE id = ? AND revision = ?"
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
_LOAD: Final = "SELECT revision, snapshot, cancel_request FROM missions WHERE id = ?"
_REQUEST_CANCEL: Final = (
    "UPDATE missions SET cancel_request = coalesce(cancel_request, ?) WHERE id = ?"
)
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
_RUNNING: Final = "SELECT id FROM missions WHERE status = 'running' ORDER BY id LIMIT ?"
_RUNNING_AFTER: Final = (
    "SELECT id FROM missions WHERE status = 'running' AND id > ? ORDER BY id LIMIT ?"
)
_TIMELINE: Final = "SELECT entry FROM timeline WHERE mission_id = ? ORDER BY revision, position"


def _micros(when: datetime, what: str) -> int:
    if when.utcoffset() is None:
        raise ValueError(f"{what} must be a timezone-aware datetime, got naive {when!r}")
    return (when - _EPOCH) // _MICROSECOND


def _from_micros(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value)


def _inbox_row(
    mission_id: str, name: str, payload: JsonValue, received_at: datetime
) -> tuple[str, str, str, str]:
    """A buffered signal's row, made before its transaction begins (a payload that cannot be
    written raises then, with nothing stored)."""
    try:
        payload_text = value_to_json(payload)
    except (TypeError, ValueError) as error:
        raise PersistenceError(
            f"signal {name!r} for mission {mission_id!r}: its payload cannot be stored as JSON "
            f"({error})"
        ) from error
    return (mission_id, name, payload_text, received_at.isoformat())


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
    ) -> None:
        self._path = _database_path(path)
        self._synchronous: Synchronous = _synchronous(synchronous)
        timeout_ms = _busy_timeout_ms(busy_timeout)
        self._busy_timeout = float(busy_timeout)
        self._read_only = bool(read_only)
        self._closed = True
        self._lock: WriterLock | None = None
        self._reader: Reader | None = None
        memory = self._path == MEMORY
        if memory and self._read_only:
            raise ConfigurationError("an in-memory database cannot be opened read-only")
        if not memory:
            _check_file(self._path, self._read_only)
            if self._read_only:
                self._reader = Reader(self._path)
            else:
                self._lock = WriterLock.acquire(self._path, os.path.realpath(self._path) + ".lock")
        try:
            self._db, self._schema_version = self._connect(timeout_ms, memory)
        except BaseException:
            self._release()
            raise
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
                self._lock.claim(path)
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
        if not memory:
            check_path(db, path, owner=not self._read_only)
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
            migrate(db, path)
            version = current_version()
        if not memory:
            record_path(db, os.path.realpath(path))
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
    def busy_timeout(self) -> float:
        """Seconds a call waits for a lock another connection holds, on the event loop's clock."""
        return self._busy_timeout

    @property
    def schema_version(self) -> int:
        """The schema version of the open database."""
        return self._schema_version

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

    def _check_writable(self, action: str) -> None:
        if self._closed:
            raise PersistenceError(f"the SQLite adapter for {self._path} is closed")
        if self._read_only:
            raise PersistenceError(f"cannot {action}: {self._path} is open read-only")

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
        return PersistenceError(
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

    def _corrupt(self, mission_id: str, what: str, error: BaseException) -> PersistenceError:
        return PersistenceError(
            f"mission {mission_id!r} in {self._path} cannot be read: its stored {what} is "
            f"corrupt ({type(error).__name__}: {error}); other missions are not affected"
        )

    def _decode(
        self, mission_id: str, revision: int, text: str, cancel: str | None
    ) -> MissionSnapshot:
        try:
            snapshot = snapshot_from_json(text)
            if cancel is not None:
                snapshot = attrs.evolve(snapshot, cancel_request=cancel_request_from_json(cancel))
        except Exception as error:
            raise self._corrupt(mission_id, "snapshot", error) from error
        if snapshot.id != mission_id or snapshot.revision != revision:
            raise PersistenceError(
                f"mission {mission_id!r} in {self._path} cannot be read: its stored snapshot "
                f"says id {snapshot.id!r} at revision {snapshot.revision}, its row says "
                f"revision {revision}; other missions are not affected"
            )
        return snapshot

    @staticmethod
    def _encode(snapshot: MissionSnapshot) -> tuple[int | None, str, str | None]:
        """The mission's due time, its snapshot JSON without the cancellation request, and the
        cancellation request's JSON."""
        due_at = snapshot.due_at
        due = None if due_at is None else _micros(due_at, f"due time of mission {snapshot.id!r}")
        request = snapshot.cancel_request
        if request is None:
            return due, snapshot_to_json(snapshot), None
        # The request is stored in its own column only, so that one source of truth remains.
        text = snapshot_to_json(attrs.evolve(snapshot, cancel_request=None))
        return due, text, cancel_request_to_json(request)

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
        cursor.executemany(
            _INSERT_ENTRY,
            [
                (mission_id, revision, start + i, timeline_entry_to_json(entry))
                for i, entry in enumerate(timeline)
            ],
        )

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
        revision = snapshot.revision
        due, text, cancel = self._encode(snapshot)
        row = (mission_id, snapshot.definition, str(snapshot.status), due, revision, text, cancel)
        entries = [
            (mission_id, revision, i, timeline_entry_to_json(entry))
            for i, entry in enumerate(timeline)
        ]
        inbox = (
            [_inbox_row(mission_id, s.name, s.payload, s.received_at) for s in signals]
            if signals
            else []
        )
        inserted = await self._group.run(
            lambda: self._write_insert(row, entries, inbox), f"inserting mission {mission_id!r}"
        )
        if inserted:
            return None
        return await self.load(mission_id)

    def _write_insert(
        self, row: tuple[Any, ...], entries: list[tuple[Any, ...]], inbox: list[tuple[Any, ...]]
    ) -> bool:
        self._cursor.execute(_INSERT_MISSION, row)
        if self._db.changes() != 1:
            return False
        if entries:
            self._cursor.executemany(_INSERT_ENTRY, entries)
        if inbox:
            self._cursor.executemany(_INSERT_SIGNAL, inbox)
        return True

    async def load(self, mission_id: str) -> MissionSnapshot | None:
        """The stored mission, or ``None``; :class:`PersistenceError` when its row is corrupt."""
        self._check_open()
        params = (mission_id,)
        try:
            rows = self._cursor.execute(_LOAD, params).fetchall()
        except apsw.Error as error:
            rows = await self._rows_when_free(
                error, _LOAD, params, f"loading mission {mission_id!r}"
            )
        if not rows:
            return None
        revision, text, cancel = rows[0]
        return self._decode(mission_id, revision, text, cancel)

    async def commit(
        self,
        snapshot: MissionSnapshot,
        *,
        expected_revision: int,
        timeline: Sequence[TimelineEntry],
        consumed_signal: int | None = None,
    ) -> None:
        """Compare-and-set the mission to ``snapshot``, append ``timeline`` and delete the
        consumed signal, in one transaction; :class:`RevisionConflictError` stores nothing."""
        self._check_writable("commit a mission")
        mission_id = snapshot.id
        revision = snapshot.revision
        if revision != expected_revision + 1:
            raise RevisionConflictError(
                f"mission {mission_id!r}: a commit expecting revision {expected_revision} must "
                f"carry revision {expected_revision + 1}, not {revision}"
            )
        due, text, cancel = self._encode(snapshot)
        update = (str(snapshot.status), due, revision, text, cancel, mission_id, expected_revision)
        entries = [
            (mission_id, revision, i, timeline_entry_to_json(entry))
            for i, entry in enumerate(timeline)
        ]
        await self._group.run(
            lambda: self._write_commit(update, entries, consumed_signal),
            f"committing mission {mission_id!r}",
        )

    def _write_commit(
        self, update: tuple[Any, ...], entries: list[tuple[Any, ...]], consumed_signal: int | None
    ) -> None:
        cursor = self._cursor
        cursor.execute(_UPDATE_MISSION, update)
        mission_id: str = update[5]
        if self._db.changes() != 1:
            raise self._conflict(mission_id, update[6])
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
        if not rows:
            return RevisionConflictError(f"mission {mission_id!r} does not exist")
        return RevisionConflictError(
            f"mission {mission_id!r} is at revision {rows[0][0]}, the commit expected "
            f"{expected_revision}"
        )

    async def append_signal(
        self,
        mission_id: str,
        name: str,
        payload: JsonValue,
        received_at: datetime,
        timeline: Sequence[TimelineEntry],
    ) -> BufferedSignal:
        """Buffer a signal for the mission (one transaction)."""
        self._check_writable("buffer a signal")
        row = _inbox_row(mission_id, name, payload, received_at)
        seq = await self._group.run_alone(
            lambda: self._write_signal(row, timeline),
            f"buffering signal {name!r} for mission {mission_id!r}",
        )
        return BufferedSignal(seq, name, payload, received_at)

    def _write_signal(self, row: tuple[Any, ...], timeline: Sequence[TimelineEntry]) -> int:
        mission_id: str = row[0]
        revision = self._revision(mission_id, "cannot buffer a signal for")
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
            raise self._corrupt(mission_id, f"signal {seq} ({name!r})", error) from error

    async def request_cancel(
        self, mission_id: str, request: CancelRequest, timeline: Sequence[TimelineEntry]
    ) -> None:
        """Record a cancellation request (the first one stands) without changing the revision."""
        self._check_writable("request cancellation")
        request_text = cancel_request_to_json(request)
        await self._group.run_alone(
            lambda: self._write_cancel(mission_id, request_text, timeline),
            f"requesting cancellation of mission {mission_id!r}",
        )

    def _write_cancel(
        self, mission_id: str, request_text: str, timeline: Sequence[TimelineEntry]
    ) -> None:
        revision = self._revision(mission_id, "cannot cancel")
        self._cursor.execute(_REQUEST_CANCEL, (request_text, mission_id))
        self._append_entries(mission_id, revision, timeline)

    async def list_missions(
        self,
        *,
        status: MissionStatus | None = None,
        definition: str | None = None,
        limit: int,
        after_id: str | None = None,
    ) -> list[MissionSnapshot]:
        """At most ``limit`` missions ordered by id, optionally filtered, starting after
        ``after_id``: a range scan of one index (one of the two when both filters are given,
        the other checked row by row), which reads the rows it passes until ``limit`` match.

        Raises :class:`PersistenceError` naming the first listed mission whose row is corrupt.
        """
        self._check_open()
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise ValueError(f"limit must be a whole number >= 0, got {limit!r}")
        if limit == 0:
            return []
        clauses: list[str] = []
        params: list[Any] = []
        if status is not None:
            clauses.append("status = ?")
            params.append(MissionStatus(status).value)
        if definition is not None:
            clauses.append("definition = ?")
            params.append(definition)
        if after_id is not None:
            clauses.append("id > ?")
            params.append(after_id)
        sql = "SELECT id, revision, snapshot, cancel_request FROM missions"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY id LIMIT ?"
        params.append(limit)
        try:
            rows = self._cursor.execute(sql, params).fetchall()
        except apsw.Error as error:
            rows = await self._rows_when_free(error, sql, params, "listing missions")
        return [self._decode(*row) for row in rows]

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
        """Ids of missions stored as running, by id."""
        self._check_open()
        if limit <= 0:
            return []
        sql, params = (
            (_RUNNING, (limit,)) if after_id is None else (_RUNNING_AFTER, (after_id, limit))
        )
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
            raise self._corrupt(mission_id, "timeline", error) from error

    async def aclose(self) -> None:
        """Close the database and release it for another writer. Idempotent."""
        self.close()

    # -- lifecycle -----------------------------------------------------------------------------

    def close(self) -> None:
        """:meth:`aclose` for synchronous code (cleanup paths, ``atexit``)."""
        if self._closed:
            return
        self._closed = True
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
        state = "closed" if self._closed else ("read-only" if self._read_only else "open")
        return f"<SQLitePersistenceAdapter {self._path!r} {state}>"


def create_sqlite_persistence_adapter(
    path: str | os.PathLike[str],
    *,
    synchronous: Synchronous = "NORMAL",
    busy_timeout: float = 5.0,
    read_only: bool = False,
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

    Raises :class:`PersistenceError` when another adapter has the database open for writing, when
    the file is not a Mission Control database, or was written by a newer version.
    """
    return SQLitePersistenceAdapter(
        path, synchronous=synchronous, busy_timeout=busy_timeout, read_only=read_only
    )
