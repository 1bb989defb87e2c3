"""One name per database file: every process opens it by the path its owner recorded.

SQLite keeps a database's write-ahead log, and the shared-memory index of that log, next to the
name the file was opened by (symbolic links are resolved first, so a symlink leads to the same
log). Two names for one file (a hard link, a bind mount) mean two logs, and what a connection
through the other name does is wrong in every role:

- A writer would write a log of its own into the same pages: a corrupt file. The writer lock
  and its refusal of a file with more than one name (``_lock.py``) keep it out.
- A read-only connection in another process reads the main file alone: it makes an empty
  ``<name>-wal`` and a ``<name>-shm`` of its own and sees none of the commits the owner's log
  holds, only what checkpoints have copied into the file. Nothing coordinates its reads with
  the owner's checkpoints either, which copy pages into the file under it, so it may read a
  page half-way through a change (wrong rows, or "database disk image is malformed"). That is
  why the owner checkpoints right after it records its path: a process that came by another
  name finds the record in the main file and is told which name to use. A passive checkpoint
  copies what no reader still needs; a record held back by a reader's snapshot reaches the file
  at the next checkpoint, and until then such a process sees the previous record (or none, and
  is refused for want of one when the file has more than one name).
- In one process, SQLite shares one shared-memory index per file (by inode) between its
  connections, so a connection through a second name reads the first name's index against its
  own log: "disk I/O error", or frames of the wrong log. ``_lock.Reader`` refuses that case by
  the name this process writes the file under, before anything is opened.

So the owner records ``os.path.realpath`` of its name in ``store`` (key ``path``), and every
process compares its own name with the record after reading the schema version and before
writing anything: a record naming another existing path to the same file (same device and
inode) refuses it. A record naming a missing path or another file means the database was
moved or copied while closed: the owner records its new name, the others go on, unless the
missing name's log still holds commits. A process that is not the owner is also refused when
the file has more than one name and its own is not the recorded one (or there is none): it
cannot tell which name leads to the owner's log.
"""

from __future__ import annotations

import os
from typing import Final

from mission_control.core import PersistenceError

from ._sqlite import Connection

_HAS_STORE: Final = "SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'store'"
_READ: Final = "SELECT value FROM store WHERE key = 'path'"
_WRITE: Final = (
    "INSERT INTO store (key, value) VALUES ('path', ?) "
    "ON CONFLICT (key) DO UPDATE SET value = excluded.value"
)


def recorded_path(connection: Connection) -> str | None:
    """The path the owner recorded, or ``None`` (none yet, or a schema without the ``store``
    table: version 1). Reads only."""
    if not connection.execute(_HAS_STORE).fetchall():
        return None
    rows = connection.execute(_READ).fetchall()
    return str(rows[0][0]) if rows else None


def check_path(connection: Connection, given_path: str, *, owner: bool) -> None:
    """Raise :class:`PersistenceError` unless the database ``connection`` has open through
    ``given_path`` may be used by that name; ``owner``: the process that will record it
    (whose writer lock has already refused a file with more than one name).

    Call it after the schema version is read and before anything is written. Reads only.
    """
    try:
        info = os.stat(given_path)
    except OSError as error:
        raise PersistenceError(
            f"cannot open the database {given_path}: {error.strerror}"
        ) from error
    recorded = recorded_path(connection)
    here = os.path.realpath(given_path)
    there = None if recorded is None else os.path.realpath(recorded)
    if recorded is not None and there != here:
        try:
            other = os.stat(recorded)
        except OSError:
            other = None
        if other is not None and (other.st_dev, other.st_ino) == (info.st_dev, info.st_ino):
            raise PersistenceError(
                f"{given_path} is the database file its owner opened as {recorded}, reached by "
                "another name (a hard link or a bind mount): SQLite keeps the write-ahead log "
                "next to the name a file is opened by, so through this name the owner's latest "
                "commits are not seen, and writing would corrupt the file. Open it as "
                f"{recorded}; nothing was changed"
            )
        if other is None:
            _check_log_left(given_path, here, recorded)
    if owner or info.st_nlink <= 1 or there == here:
        return
    if recorded is None:
        unknown = "no owner has recorded the name it is opened by"
    else:
        unknown = (
            f"none of them is the one its owner recorded ({recorded}, which "
            f"{'is another file now' if os.path.exists(recorded) else 'no longer exists'})"
        )
    raise PersistenceError(
        f"{given_path} has {info.st_nlink} names (hard links) and {unknown}, so which name "
        "leads to its write-ahead log cannot be told (SQLite keeps the log next to the name a "
        "file is opened by). Remove the other names, then open it as the one left; nothing "
        "was changed"
    )


def _check_log_left(given_path: str, here: str, recorded: str) -> None:
    """Refuse a moved database whose former name still has a log holding commits: opened
    without it, those commits would be lost (a file renamed while open keeps its log under the
    old name, and so does one moved after its owner was killed)."""
    old = os.path.realpath(recorded)
    log = f"{old}-wal"
    try:
        size = os.stat(log).st_size
    except OSError:
        return
    if size > 0:
        raise PersistenceError(
            f"{given_path} was opened by its owner as {recorded}, which no longer exists, but "
            f"its write-ahead log {log} does, holding {size} bytes: commits that may not be in "
            f"the file (it was moved while open, or after its owner was killed). If "
            f"{given_path} is that file moved, then once no process has it open move {log} to "
            f"{here}-wal, delete {old}-shm and open it again; if it is not, delete them. Nothing "
            "was changed"
        )


def record_path(connection: Connection, realpath: str) -> bool:
    """Record ``realpath`` as the name the database is opened by, when the record is missing
    or names another path, in a transaction of its own; then checkpoint passively so that the
    record reaches the main file, where a process that came by another name reads it. Return
    whether the record was written.

    For the owner only, once it holds the writer lock and the schema has the ``store`` table,
    outside any transaction. The write waits for other writers with the connection's busy
    timeout (apsw's ``BusyError`` beyond it).
    """
    written = recorded_path(connection) != realpath
    if written:
        connection.execute("BEGIN IMMEDIATE")
        try:
            connection.execute(_WRITE, (realpath,))
            connection.execute("COMMIT")
        except BaseException:
            if not connection.get_autocommit():
                connection.execute("ROLLBACK")
            raise
    # Also when nothing was written: the record may still be in the log alone (its owner was
    # killed before a checkpoint).
    connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
    return written
