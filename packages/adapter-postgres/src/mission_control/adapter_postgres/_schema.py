"""The database schema and its numbered, append-only migrations.

Every table lives in one PostgreSQL schema (``mission_control`` unless the adapter is given
another), so that one database can hold several applications' missions, and a test a schema of
its own. ``schema_migrations`` records each migration applied, in the transaction that applies
it: the schema version is its highest number, and a schema is never half-migrated. The
migrating transaction holds a transaction-level advisory lock first, so that processes opening
the database at once migrate it one after the other (the second finds nothing left to do).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, LiteralString

import psycopg
from psycopg import sql
from psycopg.rows import TupleRow

from mission_control.core import PersistenceError

MIGRATION_LOCK: Final = 0x4D43_5059
"""The first key of the advisory lock a migration holds ("MCPY"); the second is the schema's
name hashed by PostgreSQL."""


@dataclass(frozen=True)
class Migration:
    """One step of the schema's history. Never edit a released migration: append a new one."""

    version: int
    description: str
    statements: tuple[LiteralString, ...]


def _shard_of(column: LiteralString) -> LiteralString:
    """The definition of a generated column holding the shard of the mission id in ``column``
    (``shard_of``: migration 2 says how it is computed), for each table whose rows belong to a
    shard."""
    root = "md5(split_part(" + column + ", '/', 1))"
    return (
        "integer NOT NULL GENERATED ALWAYS AS ("
        "(get_byte(decode(" + root + ", 'hex'), 0) * 256"
        " + get_byte(decode(" + root + ", 'hex'), 1)) % 64"
        ") STORED"
    )


_SHARD_OF_ID: Final = _shard_of("id")

MIGRATIONS: Final[tuple[Migration, ...]] = (
    Migration(
        1,
        "missions, timeline, signal inbox and definition versions",
        (
            # due_at is set only while the mission waits for a due time, so the partial index
            # below holds exactly the missions a tick may have to run: the due query reads
            # what it returns. cancel_request lives outside the snapshot: request_cancel writes
            # it without touching the snapshot or its revision.
            """
            CREATE TABLE missions (
                id text PRIMARY KEY,
                definition text NOT NULL,
                definition_version integer NOT NULL,
                status text NOT NULL,
                due_at timestamptz,
                revision bigint NOT NULL,
                snapshot jsonb NOT NULL,
                cancel_request jsonb
            )
            """,
            "CREATE INDEX missions_by_status ON missions (status, id)",
            "CREATE INDEX missions_by_definition ON missions (definition, id)",
            "CREATE INDEX missions_due ON missions (due_at, id) WHERE due_at IS NOT NULL",
            # The versions unfinished missions use, one index seek per version.
            """
            CREATE INDEX missions_unfinished_versions
            ON missions (definition, definition_version, id)
            WHERE status IN ('running', 'waiting')
            """,
            # Entries are keyed by the revision they were written at and their position in that
            # write: a commit writes a revision no entry has yet, so it needs no read to number
            # its entries, and the key is also the order they were written in.
            """
            CREATE TABLE timeline (
                mission_id text NOT NULL,
                revision bigint NOT NULL,
                position integer NOT NULL,
                entry jsonb NOT NULL,
                PRIMARY KEY (mission_id, revision, position)
            )
            """,
            # An identity is never handed out again: a consumed signal's seq stays unique.
            """
            CREATE TABLE inbox (
                seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                mission_id text NOT NULL,
                name text NOT NULL,
                payload jsonb NOT NULL,
                received_at timestamptz NOT NULL
            )
            """,
            "CREATE INDEX inbox_by_mission ON inbox (mission_id, name, seq)",
            """
            CREATE TABLE definition_versions (
                definition text NOT NULL,
                version integer NOT NULL,
                fingerprint text NOT NULL,
                recorded_at timestamptz NOT NULL,
                PRIMARY KEY (definition, version)
            )
            """,
        ),
    ),
    Migration(
        2,
        "shards: each mission's shard, the shards' ownership epochs, per-shard indexes",
        (
            # A function of the id alone (_shards.shard_of computes the same in Python): the
            # first two bytes of the MD5 of its part before the first "/", modulo the fixed
            # number of shards, 64. A child mission's id is its parent's and "/" and its node:
            # a family of missions lives in one shard, run by one runtime.
            "ALTER TABLE missions ADD COLUMN shard " + _SHARD_OF_ID,
            # A runtime's due and running queries ask for the shards it owns.
            """
            CREATE INDEX missions_due_by_shard ON missions (shard, due_at, id)
            WHERE due_at IS NOT NULL
            """,
            "CREATE INDEX missions_running_by_shard ON missions (shard, id) "
            "WHERE status = 'running'",
            # The ownership epoch of each shard, raised by each runtime that takes the shard
            # over; every write for a mission of the shard checks it (docs/postgres.md).
            """
            CREATE TABLE shards (
                shard integer PRIMARY KEY,
                epoch bigint NOT NULL DEFAULT 0,
                owner text,
                taken_at timestamptz
            )
            """,
            "INSERT INTO shards (shard) SELECT generate_series(0, 63)",
        ),
    ),
    Migration(
        3,
        "tenants: the tenant of each mission, indexed for listing one tenant's missions",
        (
            # NULL: no tenant, as every mission stored before has. Set at insert, never changed.
            "ALTER TABLE missions ADD COLUMN tenant text",
            "CREATE INDEX missions_by_tenant ON missions (tenant, id)",
        ),
    ),
    Migration(
        4,
        "concurrency keys: each key's slots and queue",
        (
            # The document is the core's gate codec (mission_control.core.storage): the
            # missions holding the key's slots and those waiting for one, in start order.
            # Changed only by compare-and-set on revision, which holds the limit across every
            # runtime sharing the database.
            """
            CREATE TABLE concurrency_gates (
                key text PRIMARY KEY,
                revision bigint NOT NULL,
                document text NOT NULL
            )
            """,
        ),
    ),
    Migration(
        5,
        "submissions: work for the runtime that owns a mission's shard",
        (
            # shard: the mission's shard, the same function of its id as missions.shard, so
            # that a runtime reads the submissions of its own shards. A submission is marked
            # applied in the transaction of the write that applies it.
            """
            CREATE TABLE submissions (
                seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                kind text NOT NULL,
                mission_id text NOT NULL,
                shard """
            + _shard_of("mission_id")
            + """,
                name text,
                payload jsonb NOT NULL,
                submitted_at timestamptz NOT NULL,
                submitted_by text NOT NULL,
                state text NOT NULL DEFAULT 'pending',
                decided_at timestamptz,
                refusal jsonb,
                failures integer NOT NULL DEFAULT 0
            )
            """,
            # The pending ones only: what a runtime's look for work reads is what is pending.
            "CREATE INDEX submissions_pending ON submissions (shard, seq) WHERE state = 'pending'",
            # A purge's range: the decided ones, by when.
            """
            CREATE INDEX submissions_decided ON submissions (decided_at)
            WHERE state <> 'pending'
            """,
        ),
    ),
    Migration(
        6,
        "pause requests: a pause asked for while a mission's function runs",
        (
            # Like cancel_request, outside the snapshot document: request_pause writes it
            # without touching the snapshot or its revision, a commit that pauses or ends the
            # mission clears it, and the runtime taking the mission up after a crash (or its
            # shard over) applies it.
            "ALTER TABLE missions ADD COLUMN pause_request jsonb",
        ),
    ),
    Migration(
        7,
        "schedules, each in the shard of its id, and fired triggers",
        (
            # The document is the core's schedule codec (mission_control.core.storage).
            # next_fire_at is NULL while the schedule is paused, so the partial indexes hold
            # exactly the schedules a tick may have to fire. A schedule is fired by the owner
            # of its id's shard (docs/postgres.md), whose due query reads
            # schedules_due_by_shard. Purging missions never touches this table: a schedule's
            # last fire outlives its mission.
            """
            CREATE TABLE schedules (
                id text PRIMARY KEY,
                next_fire_at timestamptz,
                revision bigint NOT NULL,
                document jsonb NOT NULL
            )
            """,
            "ALTER TABLE schedules ADD COLUMN shard " + _SHARD_OF_ID,
            "CREATE INDEX schedules_due ON schedules (next_fire_at, id) "
            "WHERE next_fire_at IS NOT NULL",
            "CREATE INDEX schedules_due_by_shard ON schedules (shard, next_fire_at, id) "
            "WHERE next_fire_at IS NOT NULL",
            # The document is the core's trigger codec. Purging missions never touches this
            # table: a fire can be replayed after its missions went.
            """
            CREATE TABLE trigger_fires (
                id text PRIMARY KEY,
                name text NOT NULL,
                document jsonb NOT NULL
            )
            """,
            "CREATE INDEX trigger_fires_by_name ON trigger_fires (name, id)",
        ),
    ),
    Migration(
        8,
        "the missions with a pause request, indexed by shard",
        (
            # Few at any time (a request lives from the pause to the next node boundary): the
            # running queries read them with the running missions, so that one a runtime left
            # waiting with its request not applied (it stopped between the two writes of a
            # pause) is paused by the next runtime that owns its shard.
            "CREATE INDEX missions_pause_requested_by_shard ON missions (shard, id) "
            "WHERE pause_request IS NOT NULL",
        ),
    ),
    Migration(
        9,
        "the mission a submitted start joined",
        (
            # Set when a runtime decides a start of a joining singleton whose key a mission
            # held (no mission of its own stored): that mission's key, which its verdict gives
            # then and later, whatever holds the key by then. Every other submission has none.
            "ALTER TABLE submissions ADD COLUMN joined text",
        ),
    ),
)

SCHEMA_VERSION: Final = MIGRATIONS[-1].version
"""The schema version this code writes (the number of its last migration)."""


def check_migrations(migrations: Sequence[Migration]) -> None:
    for expected, migration in enumerate(migrations, start=1):
        if migration.version != expected:
            raise AssertionError(
                f"migration {migration.version} is at position {expected}: "
                "migrations are numbered 1, 2, 3, … without gaps"
            )


def migrate(
    connection: psycopg.Connection[TupleRow],
    schema: str,
    migrations: Sequence[Migration] = MIGRATIONS,
) -> int:
    """Bring ``schema`` to the last version of ``migrations`` (the current one unless a test
    gives fewer) in one transaction, creating it when it does not exist; return the version it
    was at. A newer schema, or a schema holding other tables, is refused with nothing changed."""
    check_migrations(migrations)
    latest = migrations[-1].version
    name = sql.Identifier(schema)
    with connection.transaction():
        connection.execute(
            "SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (MIGRATION_LOCK, schema)
        )
        found = _found_version(connection, schema)
        if found > latest:
            raise PersistenceError(
                f"the PostgreSQL schema {schema!r} has schema version {found}, written by a "
                f"newer mission-control-adapter-postgres; this version knows schema versions up "
                f"to {latest}. Upgrade mission-control-adapter-postgres to open it (nothing was "
                "changed)"
            )
        if found == latest:
            return found
        connection.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(name))
        connection.execute(sql.SQL("SET LOCAL search_path TO {}").format(name))
        if found == 0:
            connection.execute(
                """
                CREATE TABLE schema_migrations (
                    version integer PRIMARY KEY,
                    description text NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now()
                )
                """
            )
        for migration in migrations[found:]:
            try:
                for statement in migration.statements:
                    connection.execute(statement)
            except psycopg.Error as error:
                raise PersistenceError(
                    f"migrating the PostgreSQL schema {schema!r} from version {found} to "
                    f"{latest} failed in migration {migration.version} "
                    f"({migration.description}): {error}; nothing was changed"
                ) from error
            connection.execute(
                "INSERT INTO schema_migrations (version, description) VALUES (%s, %s)",
                (migration.version, migration.description),
            )
    return found


def _found_version(connection: psycopg.Connection[TupleRow], schema: str) -> int:
    """The version of ``schema``: 0 when it does not exist or is empty."""
    tables = [
        str(row[0])
        for row in connection.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s "
            "ORDER BY table_name",
            (schema,),
        ).fetchall()
    ]
    if not tables:
        return 0
    if "schema_migrations" not in tables:
        names = ", ".join(tables[:5])
        raise PersistenceError(
            f"the PostgreSQL schema {schema!r} holds tables that are not Mission Control's "
            f"({names}); give the adapter a schema of its own (nothing was changed)"
        )
    row = connection.execute(
        sql.SQL("SELECT coalesce(max(version), 0) FROM {}.schema_migrations").format(
            sql.Identifier(schema)
        )
    ).fetchone()
    assert row is not None
    return int(row[0])
