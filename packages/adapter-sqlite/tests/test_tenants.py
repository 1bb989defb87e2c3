"""Tenants in the SQLite file: the mission_tenants table written and deleted with its missions,
listing one tenant through its index, and a database not migrated to it yet read as having none
(the cross-adapter behaviour is TenantConformance's)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import apsw
import pytest

from mission_control.adapter_sqlite import _schema as schema
from mission_control.adapter_sqlite import create_sqlite_persistence_adapter
from mission_control.core import MissionSnapshot, MissionStatus
from mission_control.core.storage import tenant_key

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


async def test_a_database_before_tenants_is_read_as_having_none(
    db_path: Path, make_snapshot: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read-only open of a database at schema 5 (before mission_tenants) lists every mission
    as a mission of no tenant and none of any tenant, and changes nothing."""
    with monkeypatch.context() as patch:
        patch.setattr(schema, "MIGRATIONS", schema.MIGRATIONS[:5])
        async with create_sqlite_persistence_adapter(db_path) as adapter:
            await adapter.insert(make_snapshot("m"), [])
    async with create_sqlite_persistence_adapter(db_path, read_only=True) as reader:
        assert reader.schema_version == 5
        assert [s.id for s in await reader.list_missions(limit=10, tenant=None)] == ["m"]
        assert await reader.list_missions(limit=10, tenant="acme") == []
    async with create_sqlite_persistence_adapter(db_path) as owner:
        assert owner.schema_version == schema.SCHEMA_VERSION  # migrated, tenants and all
        assert [s.id for s in await owner.list_missions(limit=10, tenant=None)] == ["m"]
