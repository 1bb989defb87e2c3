"""The adapter's connections: every one in autocommit mode and in the UTF8 client encoding, and
those that wait long on the server kept alive.

The client encoding is the adapter's, not the environment's: ids, names and documents are any
Unicode text, and a ``PGCLIENTENCODING`` (or ``client_encoding`` in the conninfo) of another
encoding would refuse or mangle what the database, in UTF8, can hold.

A runtime's lock connection, its listener and the connections timing its upkeep each wait on the
server for long stretches without sending anything. When the other machine vanishes (power,
network), nothing arrives on the socket and nothing says so: without keepalives such a wait
never ends. TCP keepalives on both sides end it: the client's kernel declares the connection
dead after ``KEEPALIVE_IDLE + KEEPALIVE_COUNT * KEEPALIVE_INTERVAL`` seconds (11) without an
answer to its probes (the wait then sees its socket fail and connects again), and the server
ends the session of a vanished client as fast (letting its advisory locks go). Over a Unix
socket, where a vanished peer is a closed socket, both are ignored.
"""

from __future__ import annotations

from typing import Final

import anyio
import psycopg
from psycopg import conninfo as libpq
from psycopg.rows import TupleRow

KEEPALIVE_IDLE: Final = 5
KEEPALIVE_INTERVAL: Final = 2
KEEPALIVE_COUNT: Final = 3
"""Seconds idle before the first probe, seconds between probes, probes unanswered before the
connection is dead: a vanished peer is noticed within about 11 seconds."""


def open_connection(conninfo: str) -> psycopg.Connection[TupleRow]:
    """A new connection to ``conninfo``, in autocommit mode and the UTF8 client encoding."""
    return psycopg.connect(conninfo, autocommit=True, client_encoding="UTF8")


def connect_kept_alive(conninfo: str) -> psycopg.Connection[TupleRow]:
    """A new connection as :func:`open_connection` makes, with TCP keepalives on both sides."""
    db = open_connection(
        libpq.make_conninfo(
            conninfo,
            keepalives=1,
            keepalives_idle=KEEPALIVE_IDLE,
            keepalives_interval=KEEPALIVE_INTERVAL,
            keepalives_count=KEEPALIVE_COUNT,
        )
    )
    try:
        for setting, value in (
            ("tcp_keepalives_idle", KEEPALIVE_IDLE),
            ("tcp_keepalives_interval", KEEPALIVE_INTERVAL),
            ("tcp_keepalives_count", KEEPALIVE_COUNT),
        ):
            db.execute("SELECT set_config(%s, %s, false)", (setting, str(value)))
    except BaseException:
        db.close()
        raise
    return db


def close_waited_on(db: psycopg.Connection[TupleRow]) -> None:
    """Close ``db``, whose socket a task of this process may be waiting on (``anyio``'s
    ``wait_readable``/``wait_writable``: they raise ``ClosedResourceError`` instead of waiting on
    a closed descriptor). Never raises: once libpq dropped a lost connection's socket (a server
    restart, ``pg_terminate_backend``, a failover), nobody waits on it and only closing is left,
    which a caller's ``finally`` must get to without an error of its own."""
    try:
        socket = db.pgconn.socket
    except psycopg.OperationalError:
        pass  # "the connection is lost": libpq closed the descriptor already
    else:
        anyio.notify_closing(socket)
    db.close()
