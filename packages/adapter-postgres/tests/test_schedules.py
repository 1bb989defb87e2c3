"""Schedules and fired triggers on PostgreSQL beyond the conformance suite: the migration that
adds them to a schema of version 5, the due query reading only its index range, corrupt
documents named. Which runtime fires a schedule when several share a schema is in
test_shards.py."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from mission_control.adapter_postgres import (
    SCHEMA_VERSION,
    SHARDS,
    open_postgres_persistence_adapter,
    shard_of,
)
from mission_control.adapter_postgres._schema import MIGRATIONS, migrate
from mission_control.core import PersistenceError, Schedule, TriggerFire
from mission_control.core.storage import schedule_to_json

pytestmark = pytest.mark.anyio

T0 = datetime(2030, 1, 1, tzinfo=UTC)

Raw = Callable[[str], AbstractContextManager[psycopg.Connection[tuple[Any, ...]]]]
MakeSchedule = Callable[[str, datetime | None], Schedule]


async def test_a_schema_at_version_6_gets_empty_schedule_and_trigger_tables_its_missions_kept(
    postgres_url: str, postgres_schema: str, raw: Raw, make_schedule: MakeSchedule
) -> None:
    """Migrating a schema of version 6 that holds a mission adds the schedules and
    trigger_fires tables (empty), records migration 7, and leaves the mission as it was."""
    with raw("public") as db:
        migrate(db, postgres_schema, MIGRATIONS[:6])
    with raw(postgres_schema) as db:
        db.execute(
            "INSERT INTO missions (id, definition, definition_version, status, revision, "
            "snapshot) VALUES ('old-1', 'test', 1, 'running', 1, '{\"a\": 1}')"
        )
        before = db.execute("SELECT * FROM missions").fetchall()
    async with await open_postgres_persistence_adapter(
        postgres_url, schema=postgres_schema
    ) as adapter:
        assert adapter.schema_version == SCHEMA_VERSION
        assert await adapter.list_schedules(limit=10) == []
        assert await adapter.list_triggers(limit=10) == []
        await adapter.insert_schedule(make_schedule("nightly", T0))
    with raw(postgres_schema) as db:
        assert db.execute("SELECT * FROM missions").fetchall() == before
        versions = db.execute("SELECT version FROM schema_migrations ORDER BY version").fetchall()
        assert versions == [(version,) for version in range(1, SCHEMA_VERSION + 1)]
        assert db.execute("SELECT shard FROM schedules").fetchall() == [(shard_of("nightly"),)]


async def test_the_due_schedules_query_reads_only_the_due_rows_of_its_index(
    postgres_url: str, postgres_schema: str, raw: Raw, make_schedule: MakeSchedule
) -> None:
    """Among 3,000 schedules (2,000 paused, 997 due later), the due query reads the
    schedules_due index and fetches only the 3 due rows (EXPLAIN ANALYZE), and a sharded
    adapter's (half of the shards) reads one of the two partial indexes and fetches no more than
    those 3; due_schedules returns them, earliest first, and next_schedule_at the earliest
    slot."""
    schedules = [
        make_schedule(f"s-{n:04}", None if n < 2000 else T0 + timedelta(minutes=n - 2000))
        for n in range(3000)
    ]
    now = T0 + timedelta(minutes=2)
    async with await open_postgres_persistence_adapter(
        postgres_url, schema=postgres_schema
    ) as adapter:
        with raw(postgres_schema) as db:
            with db.cursor() as cursor:
                cursor.executemany(
                    "INSERT INTO schedules (id, next_fire_at, revision, document) "
                    "VALUES (%s, %s, 1, %s::jsonb)",
                    [(s.id, s.next_fire_at, schedule_to_json(s)) for s in schedules],
                )
            db.execute("ANALYZE schedules")
            plans = {
                ("schedules_due",): db.execute(
                    "EXPLAIN (ANALYZE, FORMAT JSON) SELECT document::text FROM schedules "
                    "WHERE next_fire_at IS NOT NULL AND next_fire_at <= %s "
                    "ORDER BY next_fire_at, id LIMIT 100",
                    (now,),
                ).fetchone(),
                ("schedules_due", "schedules_due_by_shard"): db.execute(
                    "EXPLAIN (ANALYZE, FORMAT JSON) SELECT document::text FROM schedules "
                    "WHERE shard = ANY(%s) AND next_fire_at IS NOT NULL AND next_fire_at <= %s "
                    "ORDER BY next_fire_at, id LIMIT 100",
                    (list(range(0, SHARDS, 2)), now),
                ).fetchone(),
            }
        assert await adapter.due_schedules(now, 100) == schedules[2000:2003]
        assert await adapter.next_schedule_at() == T0
    for indexes, found in plans.items():
        assert found is not None
        (scan,) = _scans(found[0][0]["Plan"])
        assert scan["Index Name"] in indexes
        assert scan["Actual Rows"] <= 3
        assert scan.get("Rows Removed by Filter", 0) + scan["Actual Rows"] <= 3


async def test_a_corrupt_schedule_or_fire_document_is_named_in_a_persistence_error(
    postgres_url: str, postgres_schema: str, raw: Raw, make_schedule: MakeSchedule
) -> None:
    """A stored schedule or fired trigger whose document the codec cannot read makes the call
    that reads it raise PersistenceError saying which record is corrupt, with nothing changed."""
    async with await open_postgres_persistence_adapter(
        postgres_url, schema=postgres_schema
    ) as adapter:
        await adapter.insert_schedule(make_schedule("nightly", T0))
        fire = TriggerFire("f-1", "deploy.failed", {"service": "api"}, T0, ("f-1:page",))
        assert await adapter.record_trigger(fire) is None
        with raw(postgres_schema) as db:
            db.execute("UPDATE schedules SET document = '{\"format\": 1}'::jsonb")
            db.execute("UPDATE trigger_fires SET document = '[1]'::jsonb")
        with pytest.raises(PersistenceError, match=r"a schedule in PostgreSQL schema .* corrupt"):
            await adapter.load_schedule("nightly")
        with pytest.raises(PersistenceError, match=r"a schedule .* corrupt"):
            await adapter.due_schedules(T0, 10)
        with pytest.raises(PersistenceError, match=r"a fired trigger .* corrupt"):
            await adapter.list_triggers(limit=10)
        with raw(postgres_schema) as db:
            assert db.execute("SELECT document FROM trigger_fires").fetchall() == [([1],)]


def _scans(plan: dict[str, Any]) -> Any:
    """The scans of a plan (its nodes that read a table or an index)."""
    if "Scan" in plan["Node Type"]:
        yield plan
    for child in plan.get("Plans", []):
        yield from _scans(child)
