"""Numbered migrations recorded in the file: a fresh database gets the whole schema, an older
one is migrated in one transaction, and a newer or foreign one is refused untouched."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import apsw
import pytest

from mission_control.adapter_sqlite import SCHEMA_VERSION, create_sqlite_persistence_adapter
from mission_control.adapter_sqlite import _schema as schema
from mission_control.core import MissionSnapshot, MissionStatus, PersistenceError

pytestmark = pytest.mark.anyio

Make = Callable[..., MissionSnapshot]
Dump = Callable[[Path], dict[str, list[tuple[Any, ...]]]]


def raw(path: Path) -> apsw.Connection:
    return apsw.Connection(str(path))


def extra_migration(*statements: str) -> tuple[schema.Migration, ...]:
    return (*schema.MIGRATIONS, schema.Migration(SCHEMA_VERSION + 1, "test", statements))


async def test_a_fresh_database_gets_the_current_schema(db_path: Path) -> None:
    """Opening a new file creates every table and index, records each migration, and stamps
    the file with the schema version and Mission Control's application id."""
    async with create_sqlite_persistence_adapter(db_path) as adapter:
        assert adapter.schema_version == SCHEMA_VERSION
    connection = raw(db_path)
    assert connection.pragma("user_version") == SCHEMA_VERSION
    assert connection.pragma("application_id") == schema.APPLICATION_ID
    names = {row[0] for row in connection.execute("SELECT name FROM sqlite_schema")}
    assert {"missions", "timeline", "inbox", "schema_migrations", "missions_due"} <= names
    recorded = [row[0] for row in connection.execute("SELECT version FROM schema_migrations")]
    assert recorded == list(range(1, SCHEMA_VERSION + 1))


async def test_reopening_a_current_database_changes_nothing(
    db_path: Path, make_snapshot: Make, dump: Dump
) -> None:
    """A database already at the current version is opened without any migration write."""
    async with create_sqlite_persistence_adapter(db_path) as adapter:
        await adapter.insert(make_snapshot("m"), [])
    before = dump(db_path)
    async with create_sqlite_persistence_adapter(db_path):
        pass
    assert dump(db_path) == before


async def test_an_older_database_is_migrated_keeping_its_missions(
    db_path: Path, make_snapshot: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database written before a new migration existed is migrated on open, in one
    transaction, and its missions are still there."""
    async with create_sqlite_persistence_adapter(db_path) as adapter:
        await adapter.insert(make_snapshot("m"), [])

    monkeypatch.setattr(
        schema,
        "MIGRATIONS",
        extra_migration(
            "ALTER TABLE missions ADD COLUMN tenant TEXT",
            "CREATE INDEX missions_by_tenant ON missions (tenant, id)",
        ),
    )
    async with create_sqlite_persistence_adapter(db_path) as adapter:
        assert adapter.schema_version == SCHEMA_VERSION + 1
        assert await adapter.load("m") == make_snapshot("m")
    connection = raw(db_path)
    assert connection.pragma("user_version") == SCHEMA_VERSION + 1
    columns = [row[1] for row in connection.execute("PRAGMA table_info(missions)")]
    assert "tenant" in columns
    recorded = [row[0] for row in connection.execute("SELECT version FROM schema_migrations")]
    assert recorded == list(range(1, SCHEMA_VERSION + 2))


async def test_a_failing_migration_changes_nothing(
    db_path: Path, make_snapshot: Make, dump: Dump, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When a migration fails part-way, its earlier statements are rolled back with it, the
    error names the file, and the database still opens with the code it was written by."""
    async with create_sqlite_persistence_adapter(db_path) as adapter:
        await adapter.insert(make_snapshot("m"), [])
    before = dump(db_path)

    with monkeypatch.context() as patch:
        patch.setattr(
            schema,
            "MIGRATIONS",
            extra_migration("ALTER TABLE missions ADD COLUMN tenant TEXT", "THIS IS NOT SQL"),
        )
        with pytest.raises(PersistenceError) as raised:
            create_sqlite_persistence_adapter(db_path)
    message = str(raised.value)
    assert str(db_path) in message
    assert f"failed in migration {SCHEMA_VERSION + 1} (test)" in message
    assert dump(db_path) == before
    async with create_sqlite_persistence_adapter(db_path) as adapter:
        assert await adapter.load("m") == make_snapshot("m")


@pytest.mark.parametrize("read_only", [False, True])
async def test_a_database_from_a_newer_version_is_refused_untouched(
    db_path: Path, make_snapshot: Make, read_only: bool
) -> None:
    """A file whose schema version is newer than this code raises ``PersistenceError`` naming
    both versions, and not one byte of it changes."""
    async with create_sqlite_persistence_adapter(db_path) as adapter:
        await adapter.insert(make_snapshot("m"), [])
    connection = raw(db_path)
    connection.pragma("user_version", SCHEMA_VERSION + 41)
    connection.close()
    content = await anyio.Path(db_path).read_bytes()

    with pytest.raises(PersistenceError) as raised:
        create_sqlite_persistence_adapter(db_path, read_only=read_only)
    message = str(raised.value)
    assert f"schema version {SCHEMA_VERSION + 41}" in message
    assert f"up to {SCHEMA_VERSION}" in message
    assert str(db_path) in message
    assert await anyio.Path(db_path).read_bytes() == content


async def test_read_only_refuses_a_database_behind_a_migration_that_changes_reads(
    db_path: Path, dump: Dump, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Read-only inspection of a database older than a migration that changes what the code
    reads is refused, naming that migration and who migrates it, instead of misreading it."""
    create_sqlite_persistence_adapter(db_path).close()
    before = dump(db_path)
    monkeypatch.setattr(
        schema, "MIGRATIONS", extra_migration("ALTER TABLE missions ADD COLUMN tenant TEXT")
    )
    with pytest.raises(PersistenceError) as raised:
        create_sqlite_persistence_adapter(db_path, read_only=True)
    message = str(raised.value)
    assert f"has schema version {SCHEMA_VERSION}, and this code reads schema version " in message
    assert f"(migration {SCHEMA_VERSION + 1}, 'test', changes what it reads)" in message
    assert "The owner of this release migrates it when it opens the database" in message
    assert dump(db_path) == before


async def test_read_only_reads_a_database_behind_additive_migrations(
    db_path: Path, make_snapshot: Make, dump: Dump, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database the previous release's owner keeps (a schema version behind, the migrations
    since only creating tables) is read read-only by the new code, as ``mission-control
    check`` does before the deploy: its missions and fingerprints, with nothing written."""
    async with create_sqlite_persistence_adapter(db_path) as adapter:
        await adapter.insert(make_snapshot("m", status=MissionStatus.WAITING), [])
        await adapter.record_fingerprints({("test", 1): "1:abc"})
    before = dump(db_path)
    monkeypatch.setattr(
        schema,
        "MIGRATIONS",
        (
            *schema.MIGRATIONS,
            schema.Migration(
                SCHEMA_VERSION + 1,
                "one table",
                ("CREATE TABLE later (id TEXT PRIMARY KEY) STRICT",),
                additive=True,
            ),
            schema.Migration(
                SCHEMA_VERSION + 2,
                "its index",
                ("\n  create index later_by_id\n ON later (id)",),
                additive=True,
            ),
        ),
    )
    async with create_sqlite_persistence_adapter(db_path, read_only=True) as reader:
        assert reader.schema_version == SCHEMA_VERSION
        assert await reader.load("m") == make_snapshot("m", status=MissionStatus.WAITING)
        assert [s.id for s in await reader.list_missions(limit=10)] == ["m"]
        assert await reader.versions_in_use() == [("test", 1)]
        assert await reader.fingerprints() == {("test", 1): "1:abc"}
    assert dump(db_path) == before
    # Writers still need it migrated: the owner migrates it, a submitter refuses it.
    with pytest.raises(PersistenceError, match="only the process that owns the database"):
        create_sqlite_persistence_adapter(db_path, role="submitter")
    assert dump(db_path) == before


async def test_read_only_reads_what_later_migrations_create_as_empty(
    db_path: Path, make_snapshot: Make, dump: Dump
) -> None:
    """On a database at schema 3 (the release before schedules and triggers, made here by
    taking back what migrations 4, 5, 9 and 11 created), a read-only adapter of this code reads
    the missions (with no pause request), and no schedule and no fired trigger, instead of
    failing on their tables and columns."""
    async with create_sqlite_persistence_adapter(db_path) as adapter:
        await adapter.insert(make_snapshot("m", status=MissionStatus.WAITING), [])
    connection = raw(db_path)
    connection.execute("DROP INDEX missions_pause_requested")
    connection.execute("ALTER TABLE missions DROP COLUMN pause_request")
    for table in ("schedules", "trigger_fires"):
        connection.execute(f"DROP TABLE {table}")
    connection.execute("DELETE FROM schema_migrations WHERE version > 3")
    connection.pragma("user_version", 3)
    connection.close()
    before = dump(db_path)
    assert all(m.additive for m in schema.MIGRATIONS[3:])
    async with create_sqlite_persistence_adapter(db_path, read_only=True) as reader:
        assert reader.schema_version == 3
        assert await reader.load("m") == make_snapshot("m", status=MissionStatus.WAITING)
        assert [s.id for s in await reader.list_missions(limit=10)] == ["m"]
        assert await reader.list_schedules(limit=10) == []
        assert await reader.load_schedule("s") is None
        assert await reader.next_schedule_at() is None
        assert await reader.list_triggers(limit=10) == []
        assert await reader.load_trigger("f") is None
    assert dump(db_path) == before


def _refused_with(migration: schema.Migration, *sneaky: str) -> None:
    """Assert that ``check_migrations`` refuses ``migration`` with each ``sneaky`` statement
    added, as not additive."""
    for statement in sneaky:
        changing = dataclasses.replace(migration, statements=(*migration.statements, statement))
        with pytest.raises(AssertionError, match="marked additive but does more"):
            schema.check_migrations((*schema.MIGRATIONS, changing))


def test_a_migration_marked_additive_may_only_create_tables_and_indexes_or_add_columns() -> None:
    """``check_migrations`` refuses an additive migration that changes anything else than
    creating (and filling) tables and indexes, adding a nullable column without a default
    (which every row reads as NULL, as before it) or creating triggers that only insert and
    delete rows of a table (and bringing that table to what they keep), so that no reader of
    the release before it misreads a database migrated by it."""
    for sneaky in (
        "ALTER TABLE missions ADD COLUMN tenant TEXT NOT NULL DEFAULT 'x'",
        "ALTER TABLE missions ADD COLUMN tenant TEXT DEFAULT 'x'",
        "ALTER TABLE missions RENAME COLUMN status TO state",
        "UPDATE missions SET status = 'failed'",
    ):
        changing = schema.Migration(
            SCHEMA_VERSION + 1,
            "sneaky",
            ("CREATE TABLE later (id TEXT)", "ALTER TABLE later ADD COLUMN kept TEXT", sneaky),
            additive=True,
        )
        with pytest.raises(AssertionError, match="marked additive but does more"):
            schema.check_migrations((*schema.MIGRATIONS, changing))
    adding = schema.Migration(
        SCHEMA_VERSION + 1, "a column", ("alter  table missions\n add column tenant text",), True
    )
    schema.check_migrations((*schema.MIGRATIONS, adding))
    # Filling a table it creates is additive; filling one the code before reads is not.
    filling = schema.Migration(
        SCHEMA_VERSION + 1,
        "fills",
        (
            "CREATE TABLE later (id TEXT)",
            "INSERT INTO later (id) SELECT id FROM missions",
            "INSERT INTO missions_of_no_tenant (id) SELECT id FROM missions",
        ),
        additive=True,
    )
    with pytest.raises(AssertionError, match=r"does more.*INSERT INTO missions_of_no_tenant"):
        schema.check_migrations((*schema.MIGRATIONS, filling))
    schema.check_migrations(
        (*schema.MIGRATIONS, dataclasses.replace(filling, statements=filling.statements[:2]))
    )
    # Triggers that insert into and delete from a table, and bringing that table to what they
    # keep, are additive; a trigger that updates a table is not, nor writing one no trigger
    # keeps.
    keeping = schema.Migration(
        SCHEMA_VERSION + 1,
        "keeps",
        (
            "CREATE TABLE later (id TEXT)",
            "CREATE TRIGGER kept AFTER INSERT ON missions BEGIN "
            "INSERT INTO kept_ids (id) VALUES (NEW.id); DELETE FROM later WHERE id = NEW.id; END",
            "INSERT INTO kept_ids (id) SELECT id FROM missions",
            "DELETE FROM kept_ids WHERE id = 'x'",
        ),
        additive=True,
    )
    schema.check_migrations((*schema.MIGRATIONS, keeping))
    _refused_with(
        keeping,
        "CREATE TRIGGER t AFTER INSERT ON missions BEGIN UPDATE missions SET status = 'x'; END",
        "DELETE FROM missions WHERE id = 'x'",
        "INSERT INTO missions_of_no_tenant (id) SELECT id FROM missions",
    )
    assert schema.readable_from(schema.MIGRATIONS) == 3


def test_a_migration_marked_additive_may_update_only_the_columns_it_adds() -> None:
    """``check_migrations`` accepts in an additive migration the updates, and triggers whose
    body only updates, of columns it adds (which no reader of the release before reads), and
    refuses one that also sets another column or also writes another table."""
    setting = schema.Migration(
        SCHEMA_VERSION + 1,
        "sets",
        (
            "ALTER TABLE mission_tenants ADD COLUMN copy TEXT",
            "ALTER TABLE mission_tenants ADD COLUMN other TEXT",
            "UPDATE mission_tenants SET (copy, other) = (SELECT 'a', 'b')",
            "CREATE TRIGGER t AFTER UPDATE OF status ON missions BEGIN "
            "UPDATE mission_tenants SET copy = NEW.status WHERE id = NEW.id; END",
        ),
        additive=True,
    )
    schema.check_migrations((*schema.MIGRATIONS, setting))
    _refused_with(
        setting,
        "UPDATE mission_tenants SET (copy, tenant) = (SELECT 'a', 'b')",
        "UPDATE missions SET copy = 'a'",
        "CREATE TRIGGER u AFTER INSERT ON missions BEGIN "
        "UPDATE mission_tenants SET copy = 'a'; UPDATE missions SET status = 'x'; END",
        "CREATE TRIGGER u AFTER INSERT ON missions BEGIN "
        "UPDATE mission_tenants SET copy = 'a'; DELETE FROM missions; END",
    )


def test_a_database_of_another_application_is_refused_untouched(db_path: Path, dump: Dump) -> None:
    """A SQLite file with someone else's tables, or another application id, is not written
    into: opening it raises ``PersistenceError`` and it stays as it was."""
    connection = raw(db_path)
    connection.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    connection.execute("INSERT INTO users (name) VALUES ('ada')")
    connection.close()
    before = dump(db_path)
    with pytest.raises(PersistenceError, match=r"not a Mission Control one.*users"):
        create_sqlite_persistence_adapter(db_path)
    assert dump(db_path) == before

    connection = raw(db_path)
    connection.execute("DROP TABLE users")
    connection.pragma("application_id", 0x12345678)
    connection.close()
    with pytest.raises(PersistenceError, match="another application"):
        create_sqlite_persistence_adapter(db_path)


def test_an_empty_database_cannot_be_inspected_read_only(db_path: Path) -> None:
    """Read-only opening of a file with no Mission Control schema yet says so."""
    db_path.touch()
    with pytest.raises(PersistenceError, match="empty database"):
        create_sqlite_persistence_adapter(db_path, read_only=True)


def test_migrations_are_numbered_without_gaps() -> None:
    """The migration list is numbered 1, 2, 3, … and its last number is ``SCHEMA_VERSION``."""
    schema.check_migrations(schema.MIGRATIONS)
    assert schema.MIGRATIONS[-1].version == SCHEMA_VERSION
    with pytest.raises(AssertionError, match="without gaps"):
        schema.check_migrations((schema.Migration(2, "two", ()),))
