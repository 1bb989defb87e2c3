"""The database schema and its numbered, append-only migrations.

``PRAGMA user_version`` holds the number of the last migration applied: SQLite keeps it in the
file header and changes it inside the migration's transaction, so a file is never half-migrated.
``schema_migrations`` keeps a readable history of when each migration ran.
``PRAGMA application_id`` marks the file as Mission Control's, so a database that belongs to
something else is refused instead of being written into.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

import apsw

from mission_control.core import PersistenceError

from ._sqlite import Connection

APPLICATION_ID: Final = 0x4D43_5059
"""``PRAGMA application_id`` of a Mission Control database ("MCPY")."""


@dataclass(frozen=True)
class Migration:
    """One step of the schema's history. Never edit a released migration: append a new one."""

    version: int
    description: str
    statements: tuple[str, ...]
    additive: bool = False
    """It only creates tables and indexes (and fills the tables it creates, with ``INSERT INTO
    <table> SELECT``), or adds nullable columns without a default, which the reads of the code
    before it never use, or creates triggers that only insert and delete rows of a table kept
    from others (and brings that table to what they keep, with ``INSERT INTO``/``DELETE FROM``
    it), which corrects what a read finds without changing what it means: a read-only adapter
    of this code still reads a database not yet migrated to it, as the previous release's
    owner keeps it until the deploy
    (``mission-control check`` runs there before the deploy). What it creates is missing from
    such a database: reads of it must say so (or find nothing) instead of failing on the
    missing table, and read a missing column as the NULL every row would have in it (their SQL
    chosen by the schema version)."""


MIGRATIONS: Final[tuple[Migration, ...]] = (
    Migration(
        1,
        "missions, timeline and signal inbox",
        (
            """
            CREATE TABLE schema_migrations (
                version INTEGER PRIMARY KEY,
                description TEXT NOT NULL,
                applied_at TEXT NOT NULL
            ) STRICT
            """,
            # due_at (epoch microseconds) is set only while the mission waits for a due time, so
            # the partial index below holds exactly the missions a tick may have to run.
            # cancel_request lives outside the snapshot JSON: request_cancel writes it without
            # touching the snapshot or its revision.
            """
            CREATE TABLE missions (
                id TEXT PRIMARY KEY NOT NULL,
                definition TEXT NOT NULL,
                status TEXT NOT NULL,
                due_at INTEGER,
                revision INTEGER NOT NULL,
                snapshot TEXT NOT NULL,
                cancel_request TEXT
            ) STRICT
            """,
            "CREATE INDEX missions_by_status ON missions (status, id)",
            "CREATE INDEX missions_by_definition ON missions (definition, id)",
            "CREATE INDEX missions_due ON missions (due_at, id) WHERE due_at IS NOT NULL",
            # Entries are keyed by the revision they were written at and their position in that
            # write: a commit writes a revision no entry has yet, so it needs no read to number
            # its entries, and the key is also the order they were written in.
            """
            CREATE TABLE timeline (
                mission_id TEXT NOT NULL,
                revision INTEGER NOT NULL,
                position INTEGER NOT NULL,
                entry TEXT NOT NULL,
                PRIMARY KEY (mission_id, revision, position)
            ) WITHOUT ROWID, STRICT
            """,
            # AUTOINCREMENT: a consumed signal's seq is never handed out again.
            """
            CREATE TABLE inbox (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                mission_id TEXT NOT NULL,
                name TEXT NOT NULL,
                payload TEXT NOT NULL,
                received_at TEXT NOT NULL
            ) STRICT
            """,
            "CREATE INDEX inbox_by_mission ON inbox (mission_id, name, seq)",
        ),
    ),
    Migration(
        2,
        "several processes: submissions and the path the owner opened the file by",
        (
            # What the process that owns the store recorded about it (key "path": the name it
            # opened the file by, which every other process must use too).
            """
            CREATE TABLE store (
                key TEXT PRIMARY KEY NOT NULL,
                value TEXT NOT NULL
            ) WITHOUT ROWID, STRICT
            """,
            # Work another process handed to the owner: start (name: the definition, payload:
            # the input), signal (name, payload) or cancel (payload: reason and compensate).
            # The owner applies a pending one and marks it applied in the same transaction,
            # or marks it refused with the error it raised (refusal: JSON type and message);
            # failures counts applications that raised a storage error (refused after a few).
            # AUTOINCREMENT: a submission's seq is never handed out again.
            """
            CREATE TABLE submissions (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                kind TEXT NOT NULL,
                mission_id TEXT NOT NULL,
                name TEXT,
                payload TEXT NOT NULL,
                submitted_at TEXT NOT NULL,
                submitted_by TEXT NOT NULL,
                state TEXT NOT NULL DEFAULT 'pending',
                decided_at TEXT,
                refusal TEXT,
                failures INTEGER NOT NULL DEFAULT 0
            ) STRICT
            """,
            "CREATE INDEX submissions_pending ON submissions (seq) WHERE state = 'pending'",
        ),
    ),
    Migration(
        3,
        "definition versions: each mission's version, and one fingerprint per version",
        (
            # A mission keeps its version for its whole life: written by the insert only.
            "ALTER TABLE missions ADD COLUMN definition_version INTEGER NOT NULL DEFAULT 1",
            # Missions stored before: the version their snapshot holds (1 for most, left as
            # the default).
            """
            UPDATE missions SET definition_version = snapshot ->> '$.definition_version'
            WHERE snapshot ->> '$.definition_version' IS NOT 1
            """,
            # The versions unfinished missions use, found one index seek per version (the
            # start-up check), however many missions there are.
            """
            CREATE INDEX missions_unfinished_versions
            ON missions (definition, definition_version, id)
            WHERE status IN ('running', 'waiting')
            """,
            # The shape of each version (mission_control.core.fingerprint), stored when its
            # first missions start (or the first commander that knows it starts), so that a
            # version changed under the same number is found before its missions meet it.
            """
            CREATE TABLE definition_versions (
                definition TEXT NOT NULL,
                version INTEGER NOT NULL,
                fingerprint TEXT NOT NULL,
                recorded_at TEXT NOT NULL,
                PRIMARY KEY (definition, version)
            ) WITHOUT ROWID, STRICT
            """,
        ),
    ),
    Migration(
        4,
        "schedules: missions started on a timetable, with the record of their last fire",
        (
            # The document is the core's schedule codec (mission_control.core.storage).
            # next_fire_at (epoch microseconds) is NULL while the schedule is paused, so the
            # partial index holds exactly the schedules a tick may have to fire. Purging
            # missions never touches this table: a schedule's last fire outlives its mission.
            """
            CREATE TABLE schedules (
                id TEXT PRIMARY KEY NOT NULL,
                next_fire_at INTEGER,
                revision INTEGER NOT NULL,
                document TEXT NOT NULL
            ) STRICT
            """,
            "CREATE INDEX schedules_due ON schedules (next_fire_at, id) "
            "WHERE next_fire_at IS NOT NULL",
        ),
        additive=True,
    ),
    Migration(
        5,
        "fired triggers, kept for replay",
        (
            # The document is the core's trigger codec (mission_control.core.storage). Purging
            # missions never touches this table: a fire can be replayed after its missions went.
            """
            CREATE TABLE trigger_fires (
                id TEXT PRIMARY KEY NOT NULL,
                name TEXT NOT NULL,
                document TEXT NOT NULL
            ) STRICT
            """,
            "CREATE INDEX trigger_fires_by_name ON trigger_fires (name, id)",
        ),
        additive=True,
    ),
    Migration(
        6,
        "tenants: the missions that belong to a tenant, indexed by tenant",
        (
            # One row per mission of a tenant, written with the mission and deleted with it; a
            # mission without one (every mission stored before) is in no tenant. A table of its
            # own rather than a column of missions: no write of a mission of no tenant touches
            # it, and the release before reads a database migrated to it.
            """
            CREATE TABLE mission_tenants (
                id TEXT PRIMARY KEY NOT NULL,
                tenant TEXT NOT NULL
            ) WITHOUT ROWID, STRICT
            """,
            "CREATE INDEX mission_tenants_by_tenant ON mission_tenants (tenant, id)",
        ),
        additive=True,
    ),
    Migration(
        7,
        "concurrency keys: each key's slots and queue",
        (
            # The document is the core's gate codec (mission_control.core.storage): the
            # missions holding the key's slots and those waiting for one, in start order.
            # Changed only by compare-and-set on revision.
            """
            CREATE TABLE concurrency_gates (
                key TEXT PRIMARY KEY NOT NULL,
                revision INTEGER NOT NULL,
                document TEXT NOT NULL
            ) STRICT
            """,
        ),
        additive=True,
    ),
    Migration(
        8,
        "the missions of no tenant, indexed",
        (
            # One row per mission of no tenant, written with the mission and deleted with it:
            # with mission_tenants, every mission has a row in one of the two, so that a page of
            # the missions of no tenant is a range of this table's key, whatever the tenants'
            # missions around them (no row-by-row check that a mission has no tenant).
            """
            CREATE TABLE missions_of_no_tenant (
                id TEXT PRIMARY KEY NOT NULL
            ) WITHOUT ROWID, STRICT
            """,
            """
            INSERT INTO missions_of_no_tenant (id)
            SELECT id FROM missions m
            WHERE NOT EXISTS (SELECT 1 FROM mission_tenants t WHERE t.id = m.id)
            """,
        ),
        additive=True,
    ),
    Migration(
        9,
        "pause requests: a pause asked for while a mission's function runs",
        (
            # Like cancel_request, outside the snapshot JSON: request_pause writes it without
            # touching the snapshot or its revision, a commit that pauses or ends the mission
            # clears it in its UPDATE, and a process taking the mission up after a crash
            # applies it. A column rather than a table: every load reads it, and a join there
            # costs the runtime's ticks several percent. Before it, every mission has none.
            "ALTER TABLE missions ADD COLUMN pause_request TEXT",
        ),
        additive=True,
    ),
    Migration(
        10,
        "the missions of no tenant kept by the database, whoever writes",
        (
            # Triggers keep missions_of_no_tenant exact (a row for each mission without a
            # mission_tenants row) in the writes of every process, a writer of code from before
            # schema 8 included: one still open while the owner migrates the file writes its
            # missions without knowing the table, which must list them all the same.
            """
            CREATE TRIGGER missions_of_no_tenant_inserted AFTER INSERT ON missions
            WHEN NOT EXISTS (SELECT 1 FROM mission_tenants t WHERE t.id = NEW.id)
            BEGIN INSERT INTO missions_of_no_tenant (id) VALUES (NEW.id); END
            """,
            """
            CREATE TRIGGER missions_of_no_tenant_deleted AFTER DELETE ON missions
            BEGIN DELETE FROM missions_of_no_tenant WHERE id = OLD.id; END
            """,
            # A tenant's mission is inserted, then its tenant's row: that row takes it out.
            """
            CREATE TRIGGER missions_of_no_tenant_tenant_inserted AFTER INSERT ON mission_tenants
            BEGIN DELETE FROM missions_of_no_tenant WHERE id = NEW.id; END
            """,
            """
            CREATE TRIGGER missions_of_no_tenant_tenant_deleted AFTER DELETE ON mission_tenants
            WHEN EXISTS (SELECT 1 FROM missions m WHERE m.id = OLD.id)
            BEGIN INSERT INTO missions_of_no_tenant (id) VALUES (OLD.id); END
            """,
            # The code of schemas 8 and 9 inserts the row itself after its mission's, which the
            # first trigger wrote already: skipped, instead of failing its start.
            """
            CREATE TRIGGER missions_of_no_tenant_once BEFORE INSERT ON missions_of_no_tenant
            WHEN EXISTS (SELECT 1 FROM missions_of_no_tenant n WHERE n.id = NEW.id)
            BEGIN SELECT RAISE(IGNORE); END
            """,
            # What a writer of the code before schema 8, open across migration 8, left wrong:
            # the missions it inserted have no row, those it purged kept theirs.
            """
            INSERT INTO missions_of_no_tenant (id)
            SELECT id FROM missions m
            WHERE NOT EXISTS (SELECT 1 FROM mission_tenants t WHERE t.id = m.id)
            AND NOT EXISTS (SELECT 1 FROM missions_of_no_tenant n WHERE n.id = m.id)
            """,
            """
            DELETE FROM missions_of_no_tenant
            WHERE NOT EXISTS (SELECT 1 FROM missions m WHERE m.id = missions_of_no_tenant.id)
            OR EXISTS (SELECT 1 FROM mission_tenants t WHERE t.id = missions_of_no_tenant.id)
            """,
        ),
        additive=True,
    ),
    Migration(
        11,
        "the missions with a pause request, indexed",
        (
            # Few at any time (a request lives from the pause to the next node boundary): the
            # running query reads them with the running missions, so that one a process left
            # waiting with its request not applied (it stopped between the two writes of a
            # pause) is paused by the next process's tick.
            "CREATE INDEX missions_pause_requested ON missions (id) "
            "WHERE pause_request IS NOT NULL",
        ),
        additive=True,
    ),
    Migration(
        12,
        "the mission a submitted start joined",
        (
            # Set when the owner decides a start of a joining singleton whose key a mission
            # held (no mission of its own stored): that mission's key, which its verdict gives
            # then and later, whatever holds the key by then. Every other submission has none.
            "ALTER TABLE submissions ADD COLUMN joined TEXT",
        ),
        additive=True,
    ),
    Migration(
        13,
        "the missions of a definition and status, indexed",
        (
            # A page filtered by both is one range of it, however many missions of that status
            # have other definitions (a rare definition among many completed missions) or of
            # that definition other statuses. One more entry moved per change of status.
            "CREATE INDEX missions_by_definition_status ON missions (definition, status, id)",
        ),
        additive=True,
    ),
    Migration(
        14,
        "the missions of a tenant and status or definition, indexed",
        (
            # A copy of each tenant's mission's status and definition beside its tenant, so
            # that a tenant's page filtered by them is one range of an index (not the tenant's
            # whole range, each mission checked row by row). Kept by triggers, so that a writer
            # of the code before, which inserts (id, tenant) and updates missions.status only,
            # keeps them right too.
            "ALTER TABLE mission_tenants ADD COLUMN status TEXT",
            "ALTER TABLE mission_tenants ADD COLUMN definition TEXT",
            """
            UPDATE mission_tenants SET (status, definition) = (
                SELECT m.status, m.definition FROM missions m WHERE m.id = mission_tenants.id
            )
            """,
            # The mission's row is inserted before its tenant's (and its definition never
            # changes): the tenant's row copies both when it is inserted.
            """
            CREATE TRIGGER mission_tenants_inserted AFTER INSERT ON mission_tenants
            BEGIN
                UPDATE mission_tenants SET (status, definition) = (
                    SELECT m.status, m.definition FROM missions m WHERE m.id = NEW.id
                ) WHERE id = NEW.id;
            END
            """,
            # One seek of mission_tenants' key: a mission of no tenant finds no row to update.
            """
            CREATE TRIGGER mission_tenants_status AFTER UPDATE OF status ON missions
            WHEN NEW.status IS NOT OLD.status
            BEGIN UPDATE mission_tenants SET (status) = (NEW.status) WHERE id = NEW.id; END
            """,
            "CREATE INDEX mission_tenants_by_tenant_status ON mission_tenants (tenant, status, id)",
            # Both filters: one range. The definition alone: a range in id order (the first
            # would give it ordered by status, then id, which a page would have to sort).
            "CREATE INDEX mission_tenants_by_tenant_definition_status "
            "ON mission_tenants (tenant, definition, status, id)",
            "CREATE INDEX mission_tenants_by_tenant_definition "
            "ON mission_tenants (tenant, definition, id)",
        ),
        additive=True,
    ),
)

TENANTS_VERSION: Final = 6
"""The schema version that keeps missions' tenants (a database behind it has none)."""
NO_TENANT_VERSION: Final = 8
"""The schema version that keeps the missions of no tenant in a table of their own (behind it,
they are the missions without a tenant's row)."""

JOINED_VERSION: Final = 12
"""The schema version that keeps the mission a submitted start joined (a database behind it
has none)."""

DEFINITION_STATUS_VERSION: Final = 13
"""The schema version that indexes the missions by definition and status (a database behind it
lists them by status, the definition checked row by row)."""

TENANT_FILTERS_VERSION: Final = 14
"""The schema version that copies each tenant's mission's status and definition beside its
tenant, indexed (a database behind it lists a tenant's filtered page from the tenant's range,
the filters checked row by row)."""

PAUSES_VERSION: Final = 9
"""The schema version that keeps pause requests (a database behind it has none)."""

SCHEMA_VERSION: Final = MIGRATIONS[-1].version
"""The schema version this code writes (the number of its last migration)."""


_CREATES = ("CREATE TABLE ", "CREATE INDEX ", "CREATE UNIQUE INDEX ")
_WRITES = re.compile(r"\b(?:INSERT INTO|DELETE FROM)\s+(\w+)", re.IGNORECASE)
"""The tables a trigger's body writes."""
_UPDATES = re.compile(r"\b(?:UPDATE|REPLACE)\b", re.IGNORECASE)
_SETS = re.compile(r"\bUPDATE\s+(\w+)\s+SET\s+(?:\(([\w\s,]+)\)|(\w+))\s*=", re.IGNORECASE)
"""An update and the columns it sets (``SET (a, b) = ...`` or ``SET a = ...``)."""
_ADDS_COLUMN = re.compile(r"ALTER TABLE \S+ ADD COLUMN \S+ \S+")
"""A nullable column without a default (what follows its type would be a constraint)."""


def check_migrations(migrations: Sequence[Migration]) -> None:
    for expected, migration in enumerate(migrations, start=1):
        if migration.version != expected:
            raise AssertionError(
                f"migration {migration.version} is at position {expected}: "
                "migrations are numbered 1, 2, 3, … without gaps"
            )
        created = {
            words[2].lower()
            for words in (statement.split() for statement in migration.statements)
            if " ".join(words[:2]).upper() == "CREATE TABLE"
        }
        triggers = [
            statement
            for statement in migration.statements
            if " ".join(statement.split()).upper().startswith("CREATE TRIGGER ")
            and _UPDATES.search(" ".join(statement.split()).upper().partition(" BEGIN ")[2]) is None
        ]
        added = {
            (words[2].lower(), words[5].lower())
            for words in (statement.split() for statement in migration.statements)
            if _ADDS_COLUMN.fullmatch(" ".join(words).upper()) is not None
        }
        filled = [statement for statement in migration.statements if _sets_only(statement, added)]
        kept = {table.lower() for trigger in triggers for table in _WRITES.findall(trigger)}
        changes = [
            statement
            for statement in migration.statements
            if not " ".join(statement.split()).upper().startswith(_CREATES)
            and statement not in triggers
            and not _fills(statement, created)
            and not _keeps(statement, kept)
            and statement not in filled
            and _ADDS_COLUMN.fullmatch(" ".join(statement.split()).upper()) is None
        ]
        if migration.additive and changes:
            raise AssertionError(
                f"migration {migration.version} is marked additive but does more than create "
                f"tables and indexes or add nullable columns: {' '.join(changes[0].split())}"
            )


def _sets_only(statement: str, added: set[tuple[str, str]]) -> bool:
    """Whether every update in ``statement`` (one, or a trigger's body) sets only columns its
    migration adds (which no code before reads): what it writes changes no read of before."""
    text = " ".join(statement.split())
    if text.upper().startswith("CREATE TRIGGER "):
        text = text.upper().partition(" BEGIN ")[2]
    updates = _UPDATES.findall(text)
    sets = _SETS.findall(text)
    return (
        bool(updates)
        and len(updates) == len(sets)
        and not _WRITES.findall(text)
        and all(
            (table.lower(), name.strip().lower()) in added
            for table, columns, column in sets
            for name in (columns.split(",") if columns else [column])
        )
    )


def _keeps(statement: str, kept: set[str]) -> bool:
    """Whether ``statement`` only adds rows to, or deletes rows of, a table the triggers of its
    migration keep (``INSERT INTO <table> ... SELECT`` or ``DELETE FROM <table>``)."""
    words = statement.split()
    verb = " ".join(words[:2]).upper()
    return (
        len(words) > 3
        and words[2].lower() in kept
        and (
            (verb == "INSERT INTO" and "SELECT" in (word.upper() for word in words[3:]))
            or verb == "DELETE FROM"
        )
    )


def _fills(statement: str, created: set[str]) -> bool:
    """Whether ``statement`` fills one of the tables its migration creates from what is
    stored (``INSERT INTO <table> ... SELECT``)."""
    words = statement.split()
    return (
        len(words) > 3
        and " ".join(words[:2]).upper() == "INSERT INTO"
        and words[2].lower() in created
        and "SELECT" in (word.upper() for word in words[3:])
    )


def readable_from(migrations: Sequence[Migration]) -> int:
    """The oldest schema version a read-only adapter reads: the migrations after it are all
    additive."""
    oldest = migrations[-1].version
    while oldest > 1 and migrations[oldest - 1].additive:
        oldest -= 1
    return oldest


def read_version(connection: Connection, path: str, *, read_only: bool) -> int:
    """The schema version of the open database, after checking it is Mission Control's and not
    newer than this code. Reads only."""
    application_id = int(connection.pragma("application_id"))
    version = int(connection.pragma("user_version"))
    if application_id == APPLICATION_ID:
        latest = current_version()
        if version > latest:
            raise PersistenceError(
                f"{path} has schema version {version}, written by a newer "
                f"mission-control-adapter-sqlite; this version knows schema versions up to "
                f"{latest}. Upgrade mission-control-adapter-sqlite to open it (nothing was changed)"
            )
        oldest = readable_from(MIGRATIONS)
        if read_only and version < oldest:
            readable = f"{oldest}" if oldest == latest else f"{oldest} to {latest}"
            needed = MIGRATIONS[oldest - 1]
            raise PersistenceError(
                f"{path} has schema version {version}, and this code reads schema version "
                f"{readable} (migration {needed.version}, {needed.description!r}, changes what "
                "it reads). The owner of this release migrates it when it opens the database "
                "(or open it for writing once); until then inspect it with the release whose "
                "owner keeps it (nothing was changed)"
            )
        return version
    if application_id != 0:
        raise PersistenceError(
            f"{path} is a SQLite database of another application (application_id "
            f"{application_id:#x}), not a Mission Control database; nothing was changed"
        )
    tables = connection.execute(
        "SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name LIMIT 5"
    ).fetchall()
    if tables or version != 0:
        names = ", ".join(str(row[0]) for row in tables)
        raise PersistenceError(
            f"{path} is a SQLite database but not a Mission Control one (tables: {names or 'none'}"
            f", user_version {version}); nothing was changed"
        )
    if read_only:
        raise PersistenceError(
            f"{path} is an empty database, not a Mission Control one: open it for writing to "
            "create the schema"
        )
    return 0


def current_version() -> int:
    # Looked up at call time so that tests can extend the migrations.
    return MIGRATIONS[-1].version


def migrate(connection: Connection, path: str) -> int:
    """Bring the database to the current schema version in one transaction; return the version
    it was at. A database at the current version is left untouched."""
    migrations = MIGRATIONS
    check_migrations(migrations)
    connection.execute("BEGIN IMMEDIATE")
    try:
        # Read again inside the transaction: the version read before it is a hint only.
        found = read_version(connection, path, read_only=False)
        _apply(connection, path, migrations, found)
        connection.execute("COMMIT")
    except BaseException:
        if not connection.get_autocommit():
            connection.execute("ROLLBACK")
        raise
    return found


def _apply(connection: Connection, path: str, migrations: Sequence[Migration], found: int) -> None:
    latest = migrations[-1].version
    if found >= latest:
        return
    if found == 0:
        connection.pragma("application_id", APPLICATION_ID)
    applied_at = datetime.now(UTC).isoformat()
    for migration in migrations[found:]:
        try:
            for statement in migration.statements:
                connection.execute(statement)
        except apsw.Error as error:
            raise PersistenceError(
                f"migrating {path} from schema version {found} to {latest} failed in migration "
                f"{migration.version} ({migration.description}): {error}; nothing was changed"
            ) from error
        connection.execute(
            "INSERT INTO schema_migrations (version, description, applied_at) VALUES (?, ?, ?)",
            (migration.version, migration.description, applied_at),
        )
    connection.pragma("user_version", latest)
