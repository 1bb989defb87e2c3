"""LISTEN/NOTIFY: what a write tells the other processes on the schema, and how they hear it.

A write that another process must hear about sends a notice on the schema's channel in its own
transaction (``pg_notify``: delivered when, and only if, the write commits): a mission stored
due in a shard its writer does not own (``d <shard> <due time>``: that shard's owner ticks by
then), a submission (``s <shard>``: that shard's owner applies it), and a mission that ended
(``e <mission id>``: whoever waits for its result). Notices are hints: a process also looks at
the store now and then, so a notice lost while a listener reconnects delays work, never loses
it.

A listener is a connection of its own that only listens, read without a thread: the event loop
waits for its socket to become readable (``anyio.wait_readable``, on trio and asyncio alike),
then psycopg's libpq wrapper reads what arrived without blocking.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Final

import anyio
import anyio.to_thread
import psycopg
from psycopg import sql
from psycopg.rows import TupleRow

from ._connections import close_waited_on, connect_kept_alive

NOTIFY: Final = "SELECT pg_notify(%s, %s)"

_MAX_PAYLOAD: Final = 7900
"""PostgreSQL refuses a notice's payload of 8,000 bytes or more: an ended mission whose id is
that long is not announced (its waiters find its end by re-reading it)."""


def channel_of(schema: str) -> str:
    """The channel of ``schema``'s notices (an identifier of fixed length, whatever the
    schema's name)."""
    return "mission_control_" + hashlib.md5(schema.encode(), usedforsecurity=False).hexdigest()


def due_notice(shard: int, when: datetime) -> str:
    return f"d {shard} {when.isoformat()}"


def submitted_notice(shard: int) -> str:
    return f"s {shard}"


def ended_notice(mission_id: str) -> str | None:
    notice = f"e {mission_id}"
    return notice if len(notice.encode()) < _MAX_PAYLOAD else None


class Listener:
    """A connection listening on one channel. :meth:`open` and :meth:`close` run in the event
    loop's task (the connection is made in a worker thread); :meth:`wait` reads notices."""

    def __init__(self, conninfo: str, channel: str) -> None:
        self._conninfo = conninfo
        self._channel = channel
        self._db: psycopg.Connection[TupleRow] | None = None

    async def open(self) -> None:
        """Connect and LISTEN; raises ``psycopg.Error`` when the server cannot be reached."""

        def connect() -> None:
            # Kept alive: a wait for notices from a server that vanished ends within about 11
            # seconds, and the listener connects again.
            db = connect_kept_alive(self._conninfo)
            # Kept at once: a caller cancelled meanwhile still closes it.
            self._db = db
            db.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))

        await anyio.to_thread.run_sync(connect)

    async def wait(self) -> list[str]:
        """The payloads of the notices that arrived (those that came together; perhaps none,
        when the server sent something else), once some did. Raises
        ``psycopg.OperationalError`` when the connection was lost."""
        db = self._db
        assert db is not None, "the listener is not open"
        pgconn = db.pgconn
        found = _drain(pgconn)
        if not found:
            await anyio.wait_readable(pgconn.socket)
            # Readable: what arrived is read without blocking (a closed socket raises).
            pgconn.consume_input()
            found = _drain(pgconn)
        return found

    @property
    def parameters(self) -> dict[str, str]:
        """The libpq parameters of its connection that are not the defaults (empty when not
        open)."""
        return {} if self._db is None else self._db.info.get_parameters()

    def close(self) -> None:
        """Close the connection, also a lost one; never raises."""
        db, self._db = self._db, None
        if db is not None:
            close_waited_on(db)


def _drain(pgconn: psycopg.pq.abc.PGconn) -> list[str]:
    found: list[str] = []
    while (notice := pgconn.notifies()) is not None:
        found.append(notice.extra.decode())
    return found
