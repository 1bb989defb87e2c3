"""The adapter itself: the schema (created on first open, migrations recorded, a newer or
foreign schema refused with nothing changed, concurrent openers migrating once) and its
connections (a pool; a session the server ended replaced for the next call)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any

import anyio
import psycopg
import pytest
from psycopg import conninfo, sql

from mission_control.adapter_postgres import (
    LISTEN_RETRY,
    SCHEMA_VERSION,
    open_postgres_persistence_adapter,
)
from mission_control.adapter_postgres._listen import Listener, channel_of
from mission_control.adapter_postgres._realtime import RealTimer
from mission_control.core import MissionSnapshot, MissionStatus, PersistenceError

pytestmark = pytest.mark.anyio

T0 = datetime(2030, 1, 1, tzinfo=UTC)

Raw = Callable[[str], AbstractContextManager[psycopg.Connection[tuple[Any, ...]]]]


def _snapshot(mission_id: str, value: str = "x") -> MissionSnapshot:
    return MissionSnapshot(
        id=mission_id,
        definition="test",
        definition_version=1,
        status=MissionStatus.RUNNING,
        current_node="work",
        input={"text": value},
        created_at=T0,
        updated_at=T0,
        revision=1,
    )


async def test_the_first_open_creates_the_schema_and_records_its_migrations(
    postgres_url: str, postgres_schema: str, raw: Raw
) -> None:
    """Opening a schema that does not exist creates it at the current version, each migration
    recorded once; opening it again changes nothing."""
    adapter = await open_postgres_persistence_adapter(postgres_url, schema=postgres_schema)
    assert adapter.schema_version == SCHEMA_VERSION
    await adapter.aclose()
    again = await open_postgres_persistence_adapter(postgres_url, schema=postgres_schema)
    await again.aclose()
    with raw(postgres_schema) as db:
        rows = db.execute("SELECT version FROM schema_migrations ORDER BY version").fetchall()
    assert [row[0] for row in rows] == list(range(1, SCHEMA_VERSION + 1))


async def test_a_newer_schema_is_refused_with_nothing_changed(
    postgres_url: str, postgres_schema: str, raw: Raw
) -> None:
    """A schema whose version is newer than the code's is refused, naming both versions, and
    what it holds is left as it was."""
    adapter = await open_postgres_persistence_adapter(postgres_url, schema=postgres_schema)
    await adapter.insert(_snapshot("m-1"), [])
    await adapter.aclose()
    newer = SCHEMA_VERSION + 1
    with raw(postgres_schema) as db:
        db.execute(
            "INSERT INTO schema_migrations (version, description) VALUES (%s, 'from the future')",
            (newer,),
        )
        before = db.execute("SELECT id, revision, snapshot FROM missions").fetchall()
    with pytest.raises(PersistenceError, match=f"schema version {newer}.*up to {SCHEMA_VERSION}"):
        await open_postgres_persistence_adapter(postgres_url, schema=postgres_schema)
    with raw(postgres_schema) as db:
        assert db.execute("SELECT id, revision, snapshot FROM missions").fetchall() == before
        versions = db.execute("SELECT max(version) FROM schema_migrations").fetchone()
    assert versions == (newer,)


async def test_a_schema_holding_other_tables_is_refused(
    postgres_url: str, postgres_schema: str, raw: Raw
) -> None:
    """A schema that holds tables of something else is refused, naming them, and no table of
    Mission Control's is created in it."""
    with raw("public") as db:
        db.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(postgres_schema)))
        db.execute(
            sql.SQL("CREATE TABLE {}.invoices (id int)").format(sql.Identifier(postgres_schema))
        )
    with pytest.raises(PersistenceError, match="not Mission Control's \\(invoices\\)"):
        await open_postgres_persistence_adapter(postgres_url, schema=postgres_schema)
    with raw(postgres_schema) as db:
        tables = db.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
            (postgres_schema,),
        ).fetchall()
    assert tables == [("invoices",)]


async def test_a_database_not_in_utf8_is_refused_naming_its_encoding(postgres_url: str) -> None:
    """Opening the adapter on a database whose encoding is not UTF8 (here LATIN1) is refused
    with an error naming that encoding, and nothing is created in it."""
    name = f"latin_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_url, autocommit=True) as db:
        db.execute(
            sql.SQL(
                "CREATE DATABASE {} ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' "
                "TEMPLATE template0"
            ).format(sql.Identifier(name))
        )
    try:
        url = conninfo.make_conninfo(postgres_url, dbname=name)
        with pytest.raises(PersistenceError, match=r"in the LATIN1 encoding.*needs a UTF8"):
            await open_postgres_persistence_adapter(url)
        with psycopg.connect(url, autocommit=True) as db:
            schemas = db.execute(
                "SELECT count(*) FROM pg_namespace WHERE nspname = 'mission_control'"
            ).fetchone()
        assert schemas == (0,)
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as db:
            db.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(name)))


async def test_any_unicode_is_stored_whatever_client_encoding_the_environment_asks(
    postgres_url: str, postgres_schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With PGCLIENTENCODING=LATIN1 in the environment, a mission whose id and input are not
    Latin-1 is stored and read back as it was: the adapter's connections speak UTF8."""
    monkeypatch.setenv("PGCLIENTENCODING", "LATIN1")
    async with await open_postgres_persistence_adapter(
        postgres_url, schema=postgres_schema, sharded=True
    ) as adapter:
        mission = _snapshot("日本-1", "東京 café")
        assert await adapter.insert(mission, []) is None
        assert await adapter.load("日本-1") == mission


async def test_processes_opening_a_new_schema_at_once_migrate_it_once(
    postgres_url: str, postgres_schema: str, raw: Raw
) -> None:
    """Several adapters opening a schema that does not exist yet, at the same time, all open it:
    one migrates it, the others wait for it and find it at the current version."""
    opened: list[int] = []

    async def open_one() -> None:
        adapter = await open_postgres_persistence_adapter(postgres_url, schema=postgres_schema)
        opened.append(adapter.schema_version)
        await adapter.aclose()

    async with anyio.create_task_group() as group:
        for _ in range(4):
            group.start_soon(open_one)
    assert opened == [SCHEMA_VERSION] * 4
    with raw(postgres_schema) as db:
        rows = db.execute("SELECT count(*) FROM schema_migrations").fetchone()
    assert rows == (SCHEMA_VERSION,)


async def test_a_server_that_cannot_be_reached_raises_persistence_error(
    postgres_schema: str,
) -> None:
    """A connection string naming no server raises PersistenceError saying it could not
    connect."""
    with pytest.raises(PersistenceError, match="cannot connect to PostgreSQL"):
        await open_postgres_persistence_adapter(
            "postgresql://nobody@/none?host=/nonexistent-socket-dir&connect_timeout=2",
            schema=postgres_schema,
        )


async def test_a_string_holding_nul_is_refused_with_nothing_stored(
    postgres_url: str, postgres_schema: str
) -> None:
    """JSONB cannot hold U+0000 in a string: a mission whose input holds one is refused with a
    PersistenceError naming the mission, and nothing of it is stored."""
    async with await open_postgres_persistence_adapter(
        postgres_url, schema=postgres_schema
    ) as adapter:
        with pytest.raises(PersistenceError, match="inserting mission 'm-1'"):
            await adapter.insert(_snapshot("m-1", "a\x00b"), [])
        assert await adapter.load("m-1") is None
        assert await adapter.list_missions(limit=10) == []


async def test_a_session_the_server_ended_is_replaced_for_the_next_call(
    postgres_url: str, postgres_schema: str, raw: Raw
) -> None:
    """After pg_terminate_backend ends the adapter's session, the next call raises
    PersistenceError and the one after it runs on a new session, which finds what was
    stored."""
    async with await open_postgres_persistence_adapter(
        postgres_url, schema=postgres_schema
    ) as adapter:
        await adapter.insert(_snapshot("m-1"), [])
        (ended,) = adapter.backend_pids
        with raw(postgres_schema) as db:
            db.execute("SELECT pg_terminate_backend(%s)", (ended,))
            with anyio.fail_after(10):
                # The server decides when its process has gone: polled.
                while db.execute(  # noqa: ASYNC110
                    "SELECT 1 FROM pg_stat_activity WHERE pid = %s", (ended,)
                ).fetchone():
                    await anyio.sleep(0.01)
        with pytest.raises(PersistenceError, match="loading mission 'm-1' failed"):
            await adapter.load("m-1")
        assert await adapter.load("m-1") == _snapshot("m-1")
        assert ended not in adapter.backend_pids
        await adapter.insert(_snapshot("m-2"), [])
        assert [m.id for m in await adapter.list_missions(limit=10)] == ["m-1", "m-2"]


async def test_calls_at_once_run_on_connections_of_their_own(
    postgres_url: str, postgres_schema: str
) -> None:
    """Inserts made at once by many tasks run on up to ``connections`` sessions at once, and
    every one is stored."""
    async with await open_postgres_persistence_adapter(
        postgres_url, schema=postgres_schema, connections=3
    ) as adapter:
        async with anyio.create_task_group() as tasks:
            for n in range(30):
                tasks.start_soon(adapter.insert, _snapshot(f"m-{n:02}"), [])
        assert 1 < len(adapter.backend_pids) <= 3
        listed = await adapter.list_missions(limit=100)
    assert [m.id for m in listed] == [f"m-{n:02}" for n in range(30)]


async def test_the_listeners_connection_keeps_tcp_alive(
    postgres_url: str, postgres_schema: str
) -> None:
    """The notice listener's connection asks libpq for TCP keepalives (first probe after 5 idle
    seconds, then every 2, dead after 3 unanswered), so that a wait for notices from a server
    that vanished ends within about 11 seconds."""
    listener = Listener(postgres_url, channel_of(postgres_schema))
    await listener.open()
    try:
        parameters = listener.parameters
    finally:
        listener.close()
    # libpq leaves out a parameter at its default: keepalives are on unless turned off.
    assert parameters.get("keepalives", "1") == "1"
    idle, interval, count = (
        int(parameters[f"keepalives_{name}"]) for name in ("idle", "interval", "count")
    )
    assert (idle, interval, count) == (5, 2, 3)


def _sessions(raw: Raw, schema: str, query_like: str, *, terminate: bool = False) -> list[int]:
    """The process ids of the server's sessions whose last query is like ``query_like``, ended
    first (pg_terminate_backend) with ``terminate``."""
    ending = ", pg_terminate_backend(pid)" if terminate else ""
    with raw(schema) as db:
        rows = db.execute(
            f"SELECT pid{ending} FROM pg_stat_activity "
            "WHERE query LIKE %s AND pid <> pg_backend_pid()",
            (query_like,),
        ).fetchall()
    return [int(row[0]) for row in rows]


@pytest.mark.real_time
async def test_a_listener_whose_session_the_server_ended_listens_again(
    postgres_url: str, postgres_schema: str, raw: Raw
) -> None:
    """adapter.listen() whose LISTEN session the server ends (pg_terminate_backend, as a
    restart or a failover does) stays up and listens again on a new session, after
    LISTEN_RETRY."""
    listen = f"LISTEN %{channel_of(postgres_schema)}%"
    async with (
        await open_postgres_persistence_adapter(postgres_url, schema=postgres_schema) as adapter,
        anyio.create_task_group() as tasks,
    ):
        tasks.start_soon(adapter.listen)
        with anyio.fail_after(10):
            while not adapter.listening:  # noqa: ASYNC110 (it connects in a worker thread)
                await anyio.sleep(0.01)
        (ended,) = _sessions(raw, postgres_schema, listen, terminate=True)
        with anyio.fail_after(LISTEN_RETRY + 10):
            # Polled: the listener finds its session gone, waits, and connects again.
            while not (  # noqa: ASYNC110 (another process, the server, decides)
                adapter.listening and _sessions(raw, postgres_schema, listen) not in ([], [ended])
            ):
                await anyio.sleep(0.05)
        tasks.cancel_scope.cancel()


@pytest.mark.real_time
async def test_a_timer_whose_sleeps_the_server_refuses_waits_them_in_real_time(
    postgres_url: str, postgres_schema: str
) -> None:
    """A RealTimer whose every pg_sleep the server refuses at once (as for a role that may not
    run it) waits each sleep out in real time, instead of returning at once to be asked again
    (a runtime's shard round and a new session each time, dozens a second)."""
    with psycopg.connect(postgres_url, autocommit=True) as db:
        schema = sql.Identifier(postgres_schema)
        db.execute(sql.SQL("CREATE SCHEMA {}").format(schema))
        # Found before pg_catalog's by a session whose search_path puts that schema first.
        db.execute(
            sql.SQL(
                "CREATE FUNCTION {}.pg_sleep(double precision) RETURNS void LANGUAGE plpgsql "
                "AS $$ BEGIN RAISE EXCEPTION 'no sleeping here'; END $$"
            ).format(schema)
        )
    refusing = conninfo.make_conninfo(
        postgres_url, options=f"-c search_path={postgres_schema},pg_catalog"
    )
    timer = RealTimer(refusing)
    try:
        began = time.monotonic()
        for _ in range(3):
            await timer.sleep(0.3)
        assert time.monotonic() - began >= 0.85
    finally:
        timer.close()
