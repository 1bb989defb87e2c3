"""Shards and their owners: which runtime executes which missions (docs/postgres.md, design).

A mission's shard is a function of its id (:func:`shard_of`, the same as the generated column
``missions.shard``). A runtime owns a shard while it holds the shard's session-level advisory
lock on its lock connection, a connection of its own that does nothing else: PostgreSQL lets the
lock go when that session ends (the process died, the server ended the session). Taking a lock
raises the shard's ownership epoch in the same transaction; the adapter's writes for a mission of
the shard check that epoch in theirs (``FOR SHARE``), so that a runtime that lost its lock
without knowing it yet commits nothing once another one took the shard over.

Runtimes spread the shards among them by the rule of :meth:`ShardOwner.rebalance`: each counts
the live runtimes through their member locks and keeps ``ceil(SHARDS / n)`` shards, releasing
its excess (drained first: no due query returns them for a round) and taking free ones.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import zlib
from collections.abc import Iterable, Mapping
from typing import Final

import psycopg
from psycopg import sql
from psycopg.rows import TupleRow

from mission_control.core import PersistenceError

from ._connections import connect_kept_alive

_log = logging.getLogger("mission_control.adapter_postgres")

SHARDS: Final = 64
"""How many shards a schema's missions are spread over: fixed (the generated column
``missions.shard`` holds it)."""

REBALANCE_INTERVAL: Final = 1.0
"""Seconds between a runtime's rounds of the spreading rule: a shard freed by a runtime that
left is taken over within this (plus the round's own queries) of PostgreSQL letting it go."""

Connection = psycopg.Connection[TupleRow]


class ShardLostError(PersistenceError):
    """A write for a mission of a shard this runtime no longer owns: another runtime took it
    over (its ownership epoch moved on). Nothing was stored; the new owner runs the mission."""


def shard_of(mission_id: str) -> int:
    """The shard of the mission ``mission_id``: the first two bytes of the MD5 of its id's part
    before the first ``/`` (UTF-8), modulo :data:`SHARDS`, as the generated column
    ``missions.shard`` computes it. A child mission (its id is its parent's, ``/``, its node)
    is in its parent's shard."""
    root = mission_id.split("/", 1)[0]
    digest = hashlib.md5(root.encode(), usedforsecurity=False).digest()
    return (digest[0] * 256 + digest[1]) % SHARDS


def lock_class(schema: str, kind: str) -> int:
    """The first key (a signed 32-bit number) of the advisory locks of ``kind`` ("shard",
    "member") for ``schema``: schemas sharing a database do not share locks."""
    value = zlib.crc32(f"mission-control:{schema}:{kind}".encode())
    return value - 2**32 if value >= 2**31 else value


_MEMBERS: Final = (
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
    "AND classid::int = %s AND objsubid = 2"
)
_HELD: Final = (
    "SELECT objid::int FROM pg_locks WHERE locktype = 'advisory' AND granted "
    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
    "AND classid::int = %s AND objsubid = 2"
)
_TRY_LOCK: Final = "SELECT pg_try_advisory_lock(%s, %s)"
_TRY_LOCKS: Final = (
    "SELECT shard FROM unnest(%s::int[]) AS wanted (shard) WHERE pg_try_advisory_lock(%s, shard)"
)
_UNLOCK: Final = "SELECT pg_advisory_unlock(%s, %s)"
_UNLOCK_UNOWNED: Final = (
    "SELECT pg_advisory_unlock(%s, objid::int) FROM pg_locks WHERE locktype = 'advisory' "
    "AND granted AND pid = pg_backend_pid() AND classid::int = %s AND objsubid = 2 "
    "AND objid::int = ANY(%s::int[])"
)
_RAISE_EPOCHS: Final = (
    "UPDATE shards SET epoch = epoch + 1, owner = %s, taken_at = now() "
    "WHERE shard = ANY(%s::int[]) RETURNING shard, epoch"
)


class ShardOwner:
    """The shards one runtime owns, through the advisory locks of its lock connection.

    Its methods block (they run in a worker thread of the adapter); the adapter serializes
    them. ``owned`` maps each shard owned to the epoch taken with it; ``serving`` is what the
    runtime's queries cover (the owned shards but those draining before their release).
    """

    def __init__(self, conninfo: str, schema: str, name: str) -> None:
        self._conninfo = conninfo
        self._schema = schema
        self._name = name
        self._shard_class = lock_class(schema, "shard")
        self._member_class = lock_class(schema, "member")
        # Changed only by the thread of a round (the adapter runs one at a time), each change
        # published as new copies that the event loop and the writes' threads read. A write that
        # finds a shard lost only adds it to _lost, which the next round takes.
        self._owned: dict[int, int] = {}
        self._lost: set[int] = set()
        self._draining: set[int] = set()
        self.owned: Mapping[int, int] = {}
        """The shards owned, each with the epoch it was taken at (a copy, replaced on change)."""
        self._serving: tuple[int, ...] = ()
        self._serving_set: frozenset[int] = frozenset()
        self.slot: int | None = None
        self._db: Connection | None = None

    @property
    def name(self) -> str:
        return self._name

    @property
    def backend_pid(self) -> int | None:
        """The server process of the lock connection (what ``pg_terminate_backend`` ends)."""
        return None if self._db is None else self._db.info.backend_pid

    def connect(self) -> None:
        """Open the lock connection (a new session: no lock held yet)."""
        # Kept alive: the server ends the session of a runtime whose machine vanished (and lets
        # its shards go) within about 11 seconds.
        db = connect_kept_alive(self._conninfo)
        try:
            db.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(self._schema)))
        except BaseException:
            db.close()
            raise
        self._db = db

    def close(self) -> None:
        """Close the lock connection: PostgreSQL lets every lock of its session go."""
        db, self._db = self._db, None
        self._owned.clear()
        self._draining.clear()
        self._publish()
        self.slot = None
        if db is not None:
            db.close()

    def rebalance_round(self) -> None:
        """:meth:`check` the lock connection (a new one when it was lost), then
        :meth:`rebalance`."""
        if self._db is None or not self.check():
            self.close()
            self.connect()
        self.rebalance()

    @property
    def _conn(self) -> Connection:
        assert self._db is not None, "the lock connection is not open"
        return self._db

    @property
    def serving(self) -> list[int]:
        """The shards the runtime's queries cover: those owned but the draining ones."""
        return list(self._serving)

    @property
    def serving_set(self) -> frozenset[int]:
        """:attr:`serving` as a set (the same copy until the next change)."""
        return self._serving_set

    def _publish(self) -> None:
        self.owned = dict(self._owned)
        self._serving = tuple(sorted(set(self._owned) - self._draining))
        self._serving_set = frozenset(self._serving)

    def join(self) -> None:
        """Take the lowest free member slot (a lock counted by every runtime)."""
        slot = 0
        while True:
            row = self._conn.execute(_TRY_LOCK, (self._member_class, slot)).fetchone()
            if row is not None and row[0]:
                self.slot = slot
                return
            slot += 1

    def members(self) -> int:
        row = self._conn.execute(_MEMBERS, (self._member_class,)).fetchone()
        return max(1, 0 if row is None else int(row[0]))

    def rebalance(self) -> None:
        """One round of the spreading rule: release the shards drained since the last round,
        drain the excess over ``ceil(SHARDS / n)``, take free shards up to it."""
        if self.slot is None:
            self.join()
        lost, self._lost = self._lost, set()
        for shard in lost:
            self._owned.pop(shard, None)
        for shard in sorted(self._draining):
            self._release(shard)
        self._draining.clear()
        self._publish()
        members = self.members()
        share = math.ceil(SHARDS / members)
        owned = sorted(self._owned)
        if len(owned) > share:
            self._draining.update(owned[share:])
            self._publish()
            return
        if len(owned) == share:
            return
        held = {int(row[0]) for row in self._conn.execute(_HELD, (self._shard_class,)).fetchall()}
        assert self.slot is not None
        start = (self.slot * SHARDS // members) % SHARDS
        free = [shard for shard in _from(start) if shard not in held]
        while len(self._owned) < share and free:
            # As many as are missing, in one transaction of two statements (a runtime opening
            # alone takes all 64 shards: one round trip per shard took about 0.3 s); a shard
            # another runtime locked since _HELD is skipped and the next free one tried.
            wanted, free = free[: share - len(self._owned)], free[share - len(self._owned) :]
            self._take(wanted)

    def _take(self, shards: list[int]) -> None:
        try:
            with self._conn.transaction():
                rows = self._conn.execute(_TRY_LOCKS, (shards, self._shard_class)).fetchall()
                locked = [int(row[0]) for row in rows]
                if not locked:
                    return
                raised = self._conn.execute(_RAISE_EPOCHS, (self._name, locked)).fetchall()
        except BaseException:
            # The advisory locks are the session's: the rollback keeps them. Held and owned by
            # nobody (the raise failed: a lock_timeout while an old owner's commit holds a
            # shard's row, say), no runtime would ever take those shards.
            with contextlib.suppress(psycopg.Error):
                self._conn.execute(_UNLOCK_UNOWNED, (self._shard_class, self._shard_class, shards))
            raise
        assert len(raised) == len(locked)
        for shard, epoch in sorted((int(row[0]), int(row[1])) for row in raised):
            self._owned[shard] = epoch
            _log.info("%s took shard %d at epoch %d", self._name, shard, epoch)
        self._publish()

    def _release(self, shard: int) -> None:
        if self._owned.pop(shard, None) is not None:
            self._conn.execute(_UNLOCK, (self._shard_class, shard))
            _log.info("%s released shard %d", self._name, shard)

    def lost(self, shard: int) -> None:
        """``shard`` is another runtime's now (a write found its epoch moved on): the next round
        forgets it. (Meanwhile each write for it is refused by the same check.)"""
        self._lost.add(shard)

    def check(self) -> bool:
        """Whether the lock connection still holds its session; when it does not, every shard
        is forgotten (PostgreSQL let the locks go with the session)."""
        try:
            self._conn.execute("SELECT 1").fetchone()
        except psycopg.OperationalError:
            if self._owned:
                _log.warning(
                    "%s lost its lock connection: the shards %s are no longer its own",
                    self._name,
                    sorted(self._owned),
                )
            self._owned.clear()
            self._draining.clear()
            self._publish()
            self.slot = None
            return False
        return True


def _from(start: int) -> Iterable[int]:
    return ((start + offset) % SHARDS for offset in range(SHARDS))
