"""Connections that notice a peer that vanished without closing its socket.

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

import psycopg
from psycopg import conninfo as libpq
from psycopg.rows import TupleRow

KEEPALIVE_IDLE: Final = 5
KEEPALIVE_INTERVAL: Final = 2
KEEPALIVE_COUNT: Final = 3
"""Seconds idle before the first probe, seconds between probes, probes unanswered before the
connection is dead: a vanished peer is noticed within about 11 seconds."""


def connect_kept_alive(conninfo: str) -> psycopg.Connection[TupleRow]:
    """A new connection (autocommit) to ``conninfo`` with TCP keepalives on both sides."""
    db = psycopg.connect(
        libpq.make_conninfo(
            conninfo,
            keepalives=1,
            keepalives_idle=KEEPALIVE_IDLE,
            keepalives_interval=KEEPALIVE_INTERVAL,
            keepalives_count=KEEPALIVE_COUNT,
        ),
        autocommit=True,
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
