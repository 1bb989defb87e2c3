"""Waits of real time for the adapter's upkeep, whatever the event loop's clock says.

A runtime's shard upkeep (a round of the spreading rule every ``REBALANCE_INTERVAL``) and its
listener's look at the store (``WAKE_RECHECK``) follow events of the real world: a runtime that
died, a notice that was lost. Timed by the event loop's clock, they would run once per virtual
second under a virtual clock (an application's own tests on PostgreSQL), a database round trip
each: a virtual week would cost some 600,000 of them. So they wait on the server instead: a
:class:`RealTimer` sends ``SELECT pg_sleep(s)`` on a connection of its own without waiting, and
the event loop waits for the connection's socket to become readable (``anyio.wait_readable``, no
thread, as the listener reads its notices). The server answers after ``s`` real seconds; to a
virtual clock the task is waiting for I/O, so the clock jumps on meanwhile.
"""

from __future__ import annotations

import logging
import time
from typing import Final

import anyio
import anyio.to_thread
import psycopg
from psycopg import pq
from psycopg.rows import TupleRow

from ._connections import close_waited_on, connect_kept_alive

_log = logging.getLogger("mission_control.adapter_postgres")

_SLEEP: Final = b"SELECT pg_sleep($1)"

LONGEST_SLEEP: Final = 1.0
"""Seconds of the longest sleep asked of the server at once (a longer wait is several): the
server notices that the client closed the connection only when the sleep ends, so a timer closed
(a runtime stopping) leaves its session behind for at most this long."""


class RealTimer:
    """Sleeps of real time, timed by the server on a connection of this timer's own (opened at
    the first sleep, again after it was lost). A sleep the server does not time (no connection
    can be made, the session is lost, the role may not run ``pg_sleep``) is waited in real time
    in a worker thread instead: never asked again at once, which would make its caller's loop
    spin."""

    def __init__(self, conninfo: str) -> None:
        self._conninfo = conninfo
        self._db: psycopg.Connection[TupleRow] | None = None

    async def sleep(self, seconds: float) -> None:
        """Return after ``seconds`` real seconds, or sooner when the connection was lost (at
        the end of the ``LONGEST_SLEEP`` under way: the caller's next step finds out what else
        was lost); cancellable."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if not await self._sleep_once(min(left, LONGEST_SLEEP)):
                return

    async def _sleep_once(self, seconds: float) -> bool:
        """One sleep on the server: whether it went well (when not, it was waited out in real
        time)."""
        began = time.monotonic()
        db = self._db
        if db is None:
            try:
                db = await anyio.to_thread.run_sync(self._connect)
            except psycopg.Error as error:
                _log.warning("no connection to time a wait (%s): waited in real time", error)
                await _in_real_time(began + seconds - time.monotonic())
                return False
        pgconn = db.pgconn
        finished = False
        try:
            pgconn.send_query_params(_SLEEP, [repr(float(seconds)).encode()])
            while pgconn.flush():
                await anyio.wait_writable(pgconn.socket)
            while True:
                pgconn.consume_input()
                if not pgconn.is_busy():
                    break
                await anyio.wait_readable(pgconn.socket)
            failed = b""
            while (result := pgconn.get_result()) is not None:
                if result.status != pq.ExecStatus.TUPLES_OK:
                    failed = result.error_message or b"failed"
            if failed:
                # The session ended by the server (a restart, pg_terminate_backend) answers so.
                text = failed.decode(errors="replace").strip()
                _log.warning("a wait timed by the server failed: %s", text)
            else:
                finished = True
        except psycopg.Error as error:
            _log.warning("the connection timing a wait was lost: %s", error)
        finally:
            if not finished:
                # Lost, or cancelled with the sleep still running on the server: this connection
                # is of no more use, and the next sleep opens another.
                self.close()
        if not finished:
            await _in_real_time(began + seconds - time.monotonic())
        return finished

    def _connect(self) -> psycopg.Connection[TupleRow]:
        # Kept alive: a sleep on a server that vanished ends within about 11 seconds of its end.
        db = connect_kept_alive(self._conninfo)
        self._db = db
        # A statement_timeout set for the application's role would cut every sleep short.
        db.execute("SET statement_timeout = 0")
        return db

    def close(self) -> None:
        """Close the connection, also a lost one, never raising (a sleep running on it returns
        at once; the server's session ends when that sleep does, within ``LONGEST_SLEEP``)."""
        db, self._db = self._db, None
        if db is not None:
            close_waited_on(db)


async def _in_real_time(seconds: float) -> None:
    """Wait ``seconds`` of real time, whatever the event loop's clock (a worker thread's
    sleep; cancellable: the thread is left to finish its sleep)."""
    if seconds > 0:
        await anyio.to_thread.run_sync(time.sleep, seconds, abandon_on_cancel=True)
