"""Tenants in the SQLite file: the mission_tenants and missions_of_no_tenant tables written and
deleted with their missions, listing one tenant, or no tenant, through its table's index, and a
database not migrated to them yet (the cross-adapter behaviour is TenantConformance's)."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import apsw
import attrs
import pytest

from mission_control.adapter_sqlite import (
    SQLiteCommander,
    SQLitePersistenceAdapter,
    create_sqlite_persistence_adapter,
)
from mission_control.adapter_sqlite import _schema as schema
from mission_control.adapter_sqlite._adapter import FEW_TENANTS_MISSIONS
from mission_control.core import (
    InvalidInputError,
    MissionNotFoundError,
    MissionSnapshot,
    MissionStatus,
    m,
)
from mission_control.core.storage import ANY_TENANT, mission_row, tenant_key
from mission_control.runtime import create_commander_runtime
from mission_control.testing import LoopClock

pytestmark = pytest.mark.anyio

Make = Callable[..., MissionSnapshot]


def _tenant_rows(path: Path) -> list[tuple[str, str]]:
    connection = apsw.Connection(str(path))
    try:
        return [
            (str(i), str(t))
            for i, t in connection.execute("SELECT id, tenant FROM mission_tenants ORDER BY id")
        ]
    finally:
        connection.close()


async def test_a_tenants_mission_has_a_row_written_and_deleted_with_it(
    db_path: Path, make_snapshot: Make
) -> None:
    """Inserting a tenant's mission writes its mission_tenants row in the same transaction (a
    mission of no tenant writes none, an insert of an existing id none either), and deleting
    the mission deletes the row."""
    acme = tenant_key("acme", "m")
    async with create_sqlite_persistence_adapter(db_path) as adapter:
        await adapter.insert(make_snapshot(acme, tenant="acme", status=MissionStatus.FAILED), [])
        await adapter.insert(make_snapshot("m", status=MissionStatus.FAILED), [])
        existing = await adapter.insert(make_snapshot(acme, tenant="other"), [])
        assert existing is not None
        assert existing.tenant == "acme"
        assert _tenant_rows(db_path) == [(acme, "acme")]
        assert await adapter.delete_missions({acme: 1, "m": 1}) == [acme, "m"]
        assert _tenant_rows(db_path) == []


async def test_listing_one_tenant_reads_its_index(db_path: Path, make_snapshot: Make) -> None:
    """A page of one tenant's missions is a range of mission_tenants_by_tenant joined to the
    missions by id (what it returns, not what is stored), also with a status filter."""
    async with create_sqlite_persistence_adapter(db_path) as adapter:
        for number in range(3):
            key = tenant_key("acme", f"m{number}")
            await adapter.insert(make_snapshot(key, tenant="acme"), [])
            await adapter.insert(make_snapshot(f"m{number}"), [])
        page = await adapter.list_missions(
            limit=2, tenant="acme", after_id=tenant_key("acme", "m0")
        )
        assert [s.id for s in page] == [tenant_key("acme", "m1"), tenant_key("acme", "m2")]
    connection = apsw.Connection(str(db_path))
    try:
        for extra in ("", " AND m.status = ?"):
            sql = (
                "EXPLAIN QUERY PLAN SELECT m.id FROM mission_tenants t JOIN missions m "
                f"ON m.id = t.id WHERE t.tenant = ? AND t.id > ?{extra} ORDER BY t.id LIMIT ?"
            )
            plan = [str(row[3]) for row in connection.execute(sql, [None] * sql.count("?"))]
            assert plan[0].startswith("SEARCH t USING COVERING INDEX mission_tenants_by_tenant")
            assert "SCAN" not in " ".join(plan)
    finally:
        connection.close()


_TRIGGERS = (
    "missions_of_no_tenant_inserted",
    "missions_of_no_tenant_deleted",
    "missions_of_no_tenant_tenant_inserted",
    "missions_of_no_tenant_tenant_deleted",
    "missions_of_no_tenant_once",
)
"""The triggers of migration 10."""


def _take_back_14(connection: apsw.Connection) -> None:
    """Undo migration 14 on ``connection``: its triggers, indexes and columns."""
    for trigger in ("mission_tenants_inserted", "mission_tenants_status"):
        connection.execute(f"DROP TRIGGER {trigger}")
    for index in ("status", "definition_status", "definition"):
        connection.execute(f"DROP INDEX mission_tenants_by_tenant_{index}")
    for column in ("status", "definition"):
        connection.execute(f"ALTER TABLE mission_tenants DROP COLUMN {column}")
    connection.execute("DELETE FROM schema_migrations WHERE version > 13")
    connection.pragma("user_version", 13)


def _take_back(path: Path, version: int, tables: list[str]) -> None:
    """Make the database at ``path`` one at schema ``version``, by dropping the ``tables`` the
    migrations after it created (and migration 9's pause_request column, migration 10's
    triggers, migration 11's index, migration 12's joined column, migration 13's index,
    migration 14's columns)."""
    connection = apsw.Connection(str(path))
    try:
        assert version < 10
        _take_back_14(connection)
        connection.execute("DROP INDEX missions_by_definition_status")
        connection.execute("ALTER TABLE submissions DROP COLUMN joined")
        for trigger in _TRIGGERS:
            connection.execute(f"DROP TRIGGER {trigger}")
        connection.execute("DROP INDEX missions_pause_requested")
        if version < 9:
            connection.execute("ALTER TABLE missions DROP COLUMN pause_request")
        for table in tables:
            connection.execute(f"DROP TABLE {table}")
        connection.execute("DELETE FROM schema_migrations WHERE version > ?", (version,))
        connection.pragma("user_version", version)
    finally:
        connection.close()


def _no_tenant_rows(path: Path) -> list[str]:
    connection = apsw.Connection(str(path))
    try:
        return [str(row[0]) for row in connection.execute("SELECT id FROM missions_of_no_tenant")]
    finally:
        connection.close()


async def test_listing_the_missions_of_no_tenant_reads_their_own_table(
    db_path: Path, make_snapshot: Make
) -> None:
    """A mission of no tenant has a missions_of_no_tenant row written and deleted with it, so
    that a page of the missions of no tenant is a range of that table's key joined to the
    missions (what it returns, however many tenants' missions sort among them)."""
    async with create_sqlite_persistence_adapter(db_path) as adapter:
        for number in range(3):
            done = make_snapshot(f"m{number}", status=MissionStatus.COMPLETED)
            await adapter.insert(done, [])
            for tenant in ("a", "m0", "m1"):  # their keys sort among the missions of no tenant
                await adapter.insert(
                    make_snapshot(tenant_key(tenant, f"m{number}"), tenant=tenant), []
                )
        assert _no_tenant_rows(db_path) == ["m0", "m1", "m2"]
        page = await adapter.list_missions(limit=2, tenant=None, after_id="m0")
        assert [s.id for s in page] == ["m1", "m2"]
        assert await adapter.delete_missions({"m1": 1}) == ["m1"]
        assert _no_tenant_rows(db_path) == ["m0", "m2"]


def _plan(path: Path, sql: str, bindings: tuple[Any, ...]) -> list[str]:
    connection = apsw.Connection(str(path))
    try:
        return [str(row[3]) for row in connection.execute(f"EXPLAIN QUERY PLAN {sql}", bindings)]
    finally:
        connection.close()


def _tracing_listings(
    path: Path, statements: list[tuple[str, tuple[Any, ...]]], **options: Any
) -> SQLitePersistenceAdapter:
    """An adapter on ``path`` that appends each listing statement it runs to ``statements``."""

    def trace(cursor: apsw.Cursor, sql: str, bindings: Any) -> bool:
        if sql.startswith("SELECT m.id"):
            statements.append((sql, tuple(bindings or ())))
        return True

    def hook(connection: apsw.Connection) -> None:
        connection.exec_trace = trace

    apsw.connection_hooks.append(hook)
    try:
        return create_sqlite_persistence_adapter(path, **options)
    finally:
        apsw.connection_hooks.remove(hook)


async def test_a_database_before_schema_13_lists_both_filters_through_the_status_index(
    db_path: Path, make_snapshot: Make
) -> None:
    """A read-only adapter on a database at schema 12 (no missions_by_definition_status) lists
    a page filtered by status and definition through the status's index, the definition
    checked row by row; once migrated, the same page is a range of the new index."""
    async with create_sqlite_persistence_adapter(db_path) as adapter:
        for number, definition in enumerate(("test", "other", "test")):
            snapshot = make_snapshot(f"m{number}", status=MissionStatus.COMPLETED)
            await adapter.insert(attrs.evolve(snapshot, definition=definition), [])
    connection = apsw.Connection(str(db_path))
    try:
        _take_back_14(connection)
        connection.execute("DROP INDEX missions_by_definition_status")
        connection.execute("DELETE FROM schema_migrations WHERE version > 12")
        connection.pragma("user_version", 12)
    finally:
        connection.close()
    for options, index in (
        ({"read_only": True}, "missions_by_status (status=?)"),
        ({}, "missions_by_definition_status (definition=? AND status=?)"),
    ):
        statements: list[tuple[str, tuple[Any, ...]]] = []
        async with _tracing_listings(db_path, statements, **options) as adapter:
            page = await adapter.list_missions(
                limit=10, status=MissionStatus.COMPLETED, definition="test"
            )
            assert [s.id for s in page] == ["m0", "m2"]
            assert _plan(db_path, *statements[-1]) == [f"SEARCH m USING INDEX {index}"]


@pytest.mark.parametrize(
    "tenants", [0, 4, FEW_TENANTS_MISSIONS], ids=["no-tenants", "few-tenants", "many-tenants"]
)
async def test_listing_with_a_status_or_definition_filter_reads_what_it_returns(
    db_path: Path, make_snapshot: Make, tenants: int
) -> None:
    """A filtered page of the missions of no tenant in a file that holds fewer than
    FEW_TENANTS_MISSIONS tenants' missions is a range of the filter's index (of both when both
    are given), each mission checked to be in missions_of_no_tenant: a few running among
    many finished are read, not every mission; in a file with more, where the missions of no
    tenant may be few among them, it is a range of missions_of_no_tenant's key, the filters
    checked row by row, as the unfiltered page always is. A page of any tenant reads the
    filter's index or the missions' key. No plan sorts, for every combination of the
    filters."""
    statements: list[tuple[str, tuple[Any, ...]]] = []
    adapter = _tracing_listings(db_path, statements)
    stored: list[tuple[str, str | None, MissionStatus, str]] = []
    for number in range(4):
        status = MissionStatus.RUNNING if number % 2 else MissionStatus.COMPLETED
        stored.append((f"m{number}", None, status, "test"))
        if number < tenants:
            stored.append((tenant_key("a", f"m{number}"), "a", status, "test"))
    # The others of that many: of another status and definition, which no filter here selects.
    stored += [
        (tenant_key("z", f"f{n:04}"), "z", MissionStatus.FAILED, "filler")
        for n in range(tenants - 4)
    ]
    plans: dict[tuple[bool, bool, bool, bool], list[str]] = {}
    async with adapter:
        for mission_id, tenant, status, definition in stored:
            snapshot = make_snapshot(mission_id, tenant=tenant, status=status)
            await adapter.insert(attrs.evolve(snapshot, definition=definition), [])
        for tenant, status, definition, after_id in itertools.product(
            (None, ANY_TENANT), (None, MissionStatus.RUNNING), (None, "test"), (None, "m0")
        ):
            page = await adapter.list_missions(
                limit=10, tenant=tenant, status=status, definition=definition, after_id=after_id
            )
            expected = sorted(
                i
                for i, t, s, d in stored
                if (tenant is ANY_TENANT or t is None)
                and status in (None, s)
                and definition in (None, d)
                and (after_id is None or i > after_id)
            )[:10]
            assert [s.id for s in page] == expected
            sql, bindings = statements[-1]
            plan = _plan(db_path, sql, bindings)
            key = (tenant is None, status is not None, definition is not None, after_id is not None)
            plans[key] = plan
    assert len(plans) == 16
    for (no_tenant, by_status, by_definition, after), plan in plans.items():
        text = " | ".join(plan)
        many = tenants >= FEW_TENANTS_MISSIONS
        if no_tenant and (many or not (by_status or by_definition)):
            first = "SEARCH n USING PRIMARY KEY (id>?)" if after else "SCAN n"
            assert plan[0] == first, text
            # Each mission found by its id (through an index that holds a filter too, perhaps).
            assert len(plan) == 2, text
            assert plan[1].startswith("SEARCH m USING "), text
            assert plan[1].endswith("id=?)"), text
        elif by_status and by_definition:
            # Both filters: a range of exactly the missions of both, whatever else is stored.
            both = "SEARCH m USING INDEX missions_by_definition_status (definition=? AND status=?"
            assert plan[0] == both + (" AND id>?)" if after else ")"), text
            member = ["SEARCH n EXISTS USING PRIMARY KEY (id=?)"] if no_tenant else []
            assert plan[1:] == member, text
        elif by_status or by_definition:
            index = "missions_by_status" if by_status else "missions_by_definition"
            assert plan[0].startswith(f"SEARCH m USING INDEX {index} ("), text
            member = ["SEARCH n EXISTS USING PRIMARY KEY (id=?)"] if no_tenant else []
            assert plan[1:] == member, text
        else:
            first = "SEARCH m" if after else "SCAN m"
            assert plan[0].startswith(f"{first} USING INDEX sqlite_autoindex_missions_1"), text
            assert len(plan) == 1, text
        assert ("id>?" in plan[0]) is after, text


async def test_the_migration_to_schema_8_finds_the_missions_of_no_tenant_stored_before(
    db_path: Path, make_snapshot: Make
) -> None:
    """A database at schema 7 is read (read-only, before the migration) with its missions of no
    tenant found row by row; the owner's migration to schema 8 gives each of them its
    missions_of_no_tenant row, and none to a tenant's mission."""
    acme = tenant_key("acme", "x")
    async with create_sqlite_persistence_adapter(db_path) as adapter:
        for mission_id in ("b", "a"):
            await adapter.insert(make_snapshot(mission_id), [])
        await adapter.insert(make_snapshot(acme, tenant="acme"), [])
    _take_back(db_path, 7, ["missions_of_no_tenant"])
    async with create_sqlite_persistence_adapter(db_path, read_only=True) as reader:
        assert reader.schema_version == 7
        assert [s.id for s in await reader.list_missions(limit=10, tenant=None)] == ["a", "b"]
    async with create_sqlite_persistence_adapter(db_path) as owner:
        assert owner.schema_version == schema.SCHEMA_VERSION
        assert _no_tenant_rows(db_path) == ["a", "b"]
        assert [s.id for s in await owner.list_missions(limit=10, tenant=None)] == ["a", "b"]
        assert [s.id for s in await owner.list_missions(limit=10, tenant="acme")] == [acme]


class _Schema7Writer:
    """schema7_writer_child.py, running: a writer of the code before schema 8."""

    def __init__(self, path: Path) -> None:
        self.child = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("schema7_writer_child.py")), str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._answer() == "ready"

    def _answer(self) -> str:
        assert self.child.stdout is not None
        # The child answers or exits (an empty line) within its busy timeout, 10 s.
        return self.child.stdout.readline().strip()

    def send(self, **command: Any) -> None:
        assert self.child.stdin is not None
        self.child.stdin.write(json.dumps(command) + "\n")
        self.child.stdin.flush()
        assert self._answer() == "done"

    def insert(self, snapshot: MissionSnapshot) -> None:
        self.send(insert=list(mission_row(snapshot, None)), tenant=snapshot.tenant)

    def close(self) -> None:
        self.child.communicate(timeout=30)
        assert self.child.returncode == 0


async def test_a_writer_of_the_code_before_schema_8_open_across_the_migration_is_listed(
    db_path: Path, make_snapshot: Make
) -> None:
    """A process still writing a database the schema-7 way while the owner migrates it
    (missions of no tenant without their missions_of_no_tenant row, a purge that leaves it)
    has its missions of no tenant listed and its purged ones gone from that table, a tenant's
    mission kept out of it: the schema's triggers keep the table, whoever writes."""
    async with create_sqlite_persistence_adapter(db_path) as adapter:
        await adapter.insert(make_snapshot("a-early", status=MissionStatus.COMPLETED), [])
    _take_back(db_path, 7, ["missions_of_no_tenant"])
    acme = tenant_key("acme", "late")
    writer = _Schema7Writer(db_path)
    try:
        writer.insert(make_snapshot("b-before", status=MissionStatus.COMPLETED))
        async with create_sqlite_persistence_adapter(db_path) as owner:  # migrates it
            assert owner.schema_version == schema.SCHEMA_VERSION
            writer.insert(make_snapshot("c-late"))
            writer.insert(make_snapshot(acme, tenant="acme"))
            writer.send(purge="a-early")
            writer.send(purge="b-before")
            page = await owner.list_missions(limit=10, tenant=None)
            assert [s.id for s in page] == ["c-late"]
            assert [s.id for s in await owner.list_missions(limit=10, tenant="acme")] == [acme]
            assert _no_tenant_rows(db_path) == ["c-late"]
    finally:
        writer.close()


async def test_the_migration_to_schema_10_repairs_the_missions_of_no_tenant(
    db_path: Path, make_snapshot: Make
) -> None:
    """A database at schema 9 whose missions_of_no_tenant a writer of the code before schema 8
    left wrong (a mission of no tenant without its row, a purged mission's row kept, a row
    for a tenant's mission) gets it exact from the migration to schema 10."""
    acme = tenant_key("acme", "t")
    async with create_sqlite_persistence_adapter(db_path) as adapter:
        for mission_id in ("kept", "missing", "purged"):
            await adapter.insert(make_snapshot(mission_id), [])
        await adapter.insert(make_snapshot(acme, tenant="acme"), [])
    _take_back(db_path, 9, [])
    with apsw.Connection(str(db_path)) as connection:
        connection.execute("DELETE FROM missions_of_no_tenant WHERE id = 'missing'")
        connection.execute("DELETE FROM missions WHERE id = 'purged'")
        connection.execute("INSERT INTO missions_of_no_tenant (id) VALUES (?)", (acme,))
    assert _no_tenant_rows(db_path) == [acme, "kept", "purged"]
    async with create_sqlite_persistence_adapter(db_path) as owner:
        assert owner.schema_version == schema.SCHEMA_VERSION
        assert _no_tenant_rows(db_path) == ["kept", "missing"]
        page = await owner.list_missions(limit=10, tenant=None)
        assert [s.id for s in page] == ["kept", "missing"]


async def test_the_missions_of_no_tenant_follow_every_write_of_the_tenant_rows(
    db_path: Path, make_snapshot: Make
) -> None:
    """Whatever writes the tables, missions_of_no_tenant holds exactly the missions without a
    mission_tenants row: a tenant's row deleted puts its mission among them, one inserted
    takes it out, and a row the code of schemas 8 and 9 writes itself after the trigger's is
    skipped, not refused."""
    async with create_sqlite_persistence_adapter(db_path) as adapter:
        await adapter.insert(make_snapshot("m"), [])
        await adapter.insert(make_snapshot("t", tenant="acme"), [])
        assert _no_tenant_rows(db_path) == ["m"]
    connection = apsw.Connection(str(db_path))  # each statement its own transaction
    try:
        connection.execute("DELETE FROM mission_tenants WHERE id = 't'")
        assert _no_tenant_rows(db_path) == ["m", "t"]
        connection.execute("INSERT INTO mission_tenants (id, tenant) VALUES ('m', 'acme')")
        assert _no_tenant_rows(db_path) == ["t"]
        connection.execute("INSERT INTO missions_of_no_tenant (id) VALUES ('t')")
        assert _no_tenant_rows(db_path) == ["t"]
    finally:
        connection.close()


async def test_a_database_before_tenants_is_read_as_having_none(
    db_path: Path, make_snapshot: Make
) -> None:
    """A read-only open of a database at schema 5 (before mission_tenants) lists every mission
    as a mission of no tenant and none of any tenant, and changes nothing."""
    async with create_sqlite_persistence_adapter(db_path) as adapter:
        await adapter.insert(make_snapshot("m"), [])
    _take_back(db_path, 5, ["mission_tenants", "concurrency_gates", "missions_of_no_tenant"])
    async with create_sqlite_persistence_adapter(db_path, read_only=True) as reader:
        assert reader.schema_version == 5
        assert [s.id for s in await reader.list_missions(limit=10, tenant=None)] == ["m"]
        assert await reader.list_missions(limit=10, tenant="acme") == []
    async with create_sqlite_persistence_adapter(db_path) as owner:
        assert owner.schema_version == schema.SCHEMA_VERSION  # migrated, tenants and all
        assert [s.id for s in await owner.list_missions(limit=10, tenant=None)] == ["m"]


def _parse_order(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict) or "item" not in raw:
        raise ValueError("an order needs an item")
    return dict(raw)  # pyright: ignore[reportUnknownArgumentType]


ORDER = (
    m.define("order")
    .start(parse=_parse_order)
    .need_to("approve", parse=str)
    .end(lambda ctx: ctx.events["approve"].output)
)


async def test_submitters_start_signal_and_cancel_within_their_tenant(db_path: Path) -> None:
    """A submitter's starts, signals, cancellations and retries keep their tenant (a raw
    start without the definitions too) and return the caller's ids, and one for another
    tenant's mission is refused as not found with nothing submitted."""
    clock = LoopClock()
    async with (
        SQLiteCommander(db_path, [ORDER], clock=clock, role="owner") as owner,
        create_commander_runtime(owner),
        SQLiteCommander(db_path, [ORDER], clock=clock, role="submitter") as submitter,
        SQLiteCommander(db_path, [], clock=clock, role="submitter") as raw,
    ):
        handle = await submitter.start(ORDER, {"item": "tea"}, id="o1", tenant="acme")
        await submitter.start(ORDER, {"item": "jam"}, id="o1", tenant="beta")
        assert (handle.id, handle.tenant) == ("o1", "acme")
        with anyio.fail_after(10):
            done = await submitter.signal("o1", "approve", "ada", tenant="acme")
        assert (done.id, done.tenant, done.status) == ("o1", "acme", MissionStatus.COMPLETED)
        submitted = await raw.submit_start("order", {"item": "pie"}, id="o2", tenant="beta")
        with anyio.fail_after(10):
            started = await raw.verdict(submitted)
        assert (started.id, started.tenant) == ("o2", "beta")
        before = await owner.list(tenant="beta")
        for call in (
            lambda: submitter.signal("o2", "approve", "eve", tenant="acme"),
            lambda: submitter.cancel("o1", tenant="gamma"),
            lambda: raw.cancel("o2"),
            lambda: submitter.retry("o1", tenant="delta"),
        ):
            with pytest.raises(MissionNotFoundError):
                await call()
        assert await owner.list(tenant="beta") == before
        with anyio.fail_after(10):
            cancelled = await raw.cancel("o2", "no pie", tenant="beta")
            retried = await submitter.retry("o2", tenant="beta")
        assert (cancelled.status, cancelled.id) == (MissionStatus.CANCELLED, "o2")
        assert (retried.status, retried.id, retried.tenant) == (
            MissionStatus.WAITING,
            "o2",
            "beta",
        )
        kinds = [row[0] for row in _rows(db_path, "SELECT kind FROM submissions ORDER BY seq")]
        assert kinds == ["signal", "start", "cancel", "retry"]


async def test_submissions_and_verdicts_are_read_within_their_tenant(db_path: Path) -> None:
    """A submission is handed out with the caller's id and tenant, read back and waited on
    within that tenant, and refused from no tenant or another one with the message a missing
    submission gets."""
    clock = LoopClock()
    async with (
        SQLiteCommander(db_path, [ORDER], clock=clock, role="owner") as owner,
        create_commander_runtime(owner),
        SQLiteCommander(db_path, [ORDER], clock=clock, role="submitter") as submitter,
    ):
        submitted = await submitter.submit_start(ORDER, {"item": "tea"}, id="o1", tenant="acme")
        assert (submitted.mission_id, submitted.tenant) == ("o1", "acme")
        with anyio.fail_after(10):
            started = await submitter.verdict(submitted)
        assert (started.id, started.tenant) == ("o1", "acme")
        signalled = await submitter.submit_signal("o1", "approve", "ada", tenant="acme")
        assert (signalled.mission_id, signalled.tenant) == ("o1", "acme")
        read = await submitter.submission(signalled.seq, tenant="acme")
        assert (read.seq, read.mission_id, read.tenant) == (signalled.seq, "o1", "acme")
        with anyio.fail_after(10):
            done = await submitter.verdict(signalled.seq, tenant="acme", at_rest=True)
        assert (done.id, done.status) == ("o1", MissionStatus.COMPLETED)

        missing = signalled.seq + 100
        for tenant in (None, "beta"):
            texts: set[str] = set()
            for seq in (missing, submitted.seq, signalled.seq):
                for call in (submitter.submission, submitter.verdict):
                    with pytest.raises(InvalidInputError) as error:
                        await call(seq, tenant=tenant)
                    texts.add(str(error.value).replace(str(seq), "N"))
            assert len(texts) == 1, texts


async def test_a_submitted_start_with_an_empty_id_is_refused_storing_nothing(
    db_path: Path,
) -> None:
    """submit_start with the id "" raises InvalidInputError, of no tenant as of a tenant, and
    stores no submission."""
    async with SQLiteCommander(db_path, [ORDER], role="submitter") as submitter:
        for tenant in (None, "acme"):
            with pytest.raises(InvalidInputError):
                await submitter.submit_start(ORDER, {"item": "tea"}, id="", tenant=tenant)
    assert _rows(db_path, "SELECT seq FROM submissions") == []


def _rows(db_path: Path, sql: str) -> list[tuple[Any, ...]]:
    with apsw.Connection(str(db_path), flags=apsw.SQLITE_OPEN_READONLY) as connection:
        return [tuple(row) for row in connection.execute(sql)]


def _tenant_filters(path: Path) -> list[tuple[str, str | None, str | None]]:
    """Each mission_tenants row's copies of its mission's status and definition."""
    connection = apsw.Connection(str(path))
    try:
        sql = "SELECT id, status, definition FROM mission_tenants ORDER BY id"
        return [(str(i), s, d) for i, s, d in connection.execute(sql)]
    finally:
        connection.close()


def _missions_filters(path: Path) -> list[tuple[str, str | None, str | None]]:
    """What _tenant_filters should hold: each tenant's mission's own status and definition."""
    connection = apsw.Connection(str(path))
    try:
        sql = (
            "SELECT t.id, m.status, m.definition FROM mission_tenants t "
            "JOIN missions m ON m.id = t.id ORDER BY t.id"
        )
        return [(str(i), s, d) for i, s, d in connection.execute(sql)]
    finally:
        connection.close()


_MIXED = [
    (tenant_key(tenant, f"m{number}"), tenant, status, definition)
    for number, (tenant, status, definition) in enumerate(
        itertools.product(
            ("acme", "other"),
            (MissionStatus.RUNNING, MissionStatus.COMPLETED, MissionStatus.FAILED),
            ("test", "other"),
        )
    )
] + [(f"n{number}", None, MissionStatus.RUNNING, "test") for number in range(2)]
"""Missions of two tenants (and of none) of every combination of three statuses and two
definitions."""

_SHAPES = list(
    itertools.product(
        (None, MissionStatus.RUNNING), (None, "test"), (None, tenant_key("acme", "m1"))
    )
)
"""The filter shapes of a tenant's page: status, definition and after_id, each given or not."""


async def _store_mixed(adapter: SQLitePersistenceAdapter, make_snapshot: Make) -> None:
    for mission_id, tenant, status, definition in _MIXED:
        snapshot = make_snapshot(mission_id, tenant=tenant, status=status, definition=definition)
        await adapter.insert(snapshot, [])


def _expected(status: MissionStatus | None, definition: str | None, after: str | None) -> list[str]:
    return sorted(
        i
        for i, t, s, d in _MIXED
        if t == "acme" and status in (None, s) and definition in (None, d) and (after or "") < i
    )


async def test_a_tenants_filtered_page_is_one_range_of_its_index(
    db_path: Path, make_snapshot: Make
) -> None:
    """A page of one tenant filtered by status, definition or both is one range of
    mission_tenants_by_tenant_status, _definition or _definition_status (no sort), giving what
    the filters select."""
    statements: list[tuple[str, tuple[Any, ...]]] = []
    async with _tracing_listings(db_path, statements) as adapter:
        await _store_mixed(adapter, make_snapshot)
        for status, definition, after in _SHAPES:
            page = await adapter.list_missions(
                limit=10, tenant="acme", status=status, definition=definition, after_id=after
            )
            assert [s.id for s in page] == _expected(status, definition, after)
            index = {
                (False, False): "mission_tenants_by_tenant ",
                (True, False): "mission_tenants_by_tenant_status ",
                (False, True): "mission_tenants_by_tenant_definition ",
                (True, True): "mission_tenants_by_tenant_definition_status ",
            }[(status is not None, definition is not None)]
            plan = _plan(db_path, *statements[-1])
            assert plan[0].startswith(f"SEARCH t USING COVERING INDEX {index}")
            assert not any("SCAN" in step or "TEMP B-TREE" in step for step in plan)


async def test_the_migration_to_schema_14_copies_the_tenants_missions_filters(
    db_path: Path, make_snapshot: Make
) -> None:
    """A database at schema 13 read only lists a tenant's filtered pages from the tenant's range
    (the filters checked on the missions); migrated, its mission_tenants rows hold their
    missions' status and definition and every page is the same."""
    async with create_sqlite_persistence_adapter(db_path) as adapter:
        await _store_mixed(adapter, make_snapshot)
    connection = apsw.Connection(str(db_path))
    try:
        _take_back_14(connection)
    finally:
        connection.close()
    pages: dict[bool, list[list[str]]] = {}
    for read_only in (True, False):
        statements: list[tuple[str, tuple[Any, ...]]] = []
        async with _tracing_listings(db_path, statements, read_only=read_only) as adapter:
            assert adapter.schema_version == (13 if read_only else schema.SCHEMA_VERSION)
            pages[read_only] = []
            for status, definition, after in _SHAPES:
                page = await adapter.list_missions(
                    limit=10, tenant="acme", status=status, definition=definition, after_id=after
                )
                pages[read_only].append([s.id for s in page])
                if read_only:
                    plan = _plan(db_path, *statements[-1])
                    assert plan[0].startswith("SEARCH t USING COVERING INDEX mission_tenants_by_t")
                    assert "mission_tenants_by_tenant (tenant=?" in plan[0]
    assert pages[True] == pages[False] == [_expected(*shape) for shape in _SHAPES]
    assert _tenant_filters(db_path) == _missions_filters(db_path)
    assert {s for _, s, _ in _tenant_filters(db_path)} == {"running", "completed", "failed"}


async def test_the_writes_of_the_code_before_schema_14_keep_the_copies_right(
    db_path: Path, make_snapshot: Make
) -> None:
    """A writer of the code before schema 14 (its own connection, its statements: a mission's
    row, then its mission_tenants (id, tenant) row, then updates of missions.status) leaves
    each tenant's row the status and definition of its mission, and a tenant's filtered page
    lists it."""
    async with create_sqlite_persistence_adapter(db_path) as adapter:
        await _store_mixed(adapter, make_snapshot)
    insert_mission = (
        "INSERT INTO missions (id, definition, definition_version, status, due_at, revision, "
        "snapshot, cancel_request) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING"
    )
    written = tenant_key("acme", "old")
    row = list(mission_row(make_snapshot(written, tenant="acme", definition="rare"), None))
    connection = apsw.Connection(str(db_path))
    try:
        with connection:
            connection.execute(insert_mission, row)
            connection.execute(
                "INSERT INTO mission_tenants (id, tenant) VALUES (?, ?)", (written, "acme")
            )
        assert (written, "running", "rare") in _tenant_filters(db_path)
        for mission_id, tenant, definition in (
            (written, "acme", "rare"),
            ("n0", None, "test"),
            (tenant_key("acme", "m0"), "acme", "test"),
        ):
            paused = make_snapshot(
                mission_id,
                tenant=tenant,
                definition=definition,
                status=MissionStatus.PAUSED,
                revision=2,
            )
            _, _, _, status, _, revision, document, _ = mission_row(paused, None)
            connection.execute(
                "UPDATE missions SET status = ?, revision = ?, snapshot = ? WHERE id = ?",
                (status, revision, document, mission_id),
            )
    finally:
        connection.close()
    assert _tenant_filters(db_path) == _missions_filters(db_path)
    async with create_sqlite_persistence_adapter(db_path) as adapter:
        page = await adapter.list_missions(limit=10, tenant="acme", status=MissionStatus.PAUSED)
        assert [s.id for s in page] == [tenant_key("acme", "m0"), written]
        page = await adapter.list_missions(limit=10, tenant="acme", definition="rare")
        assert [s.id for s in page] == [written]
