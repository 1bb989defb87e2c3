"""A connection the server ended: the call that finds it lost fails, the next one runs on a new
session."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any

import anyio
import psycopg
import pytest

from mission_control.adapter_postgres import open_postgres_persistence_adapter
from mission_control.core import MissionSnapshot, MissionStatus, PersistenceError

pytestmark = pytest.mark.anyio

Raw = Callable[[str], AbstractContextManager[psycopg.Connection[tuple[Any, ...]]]]
T0 = datetime(2030, 1, 1, tzinfo=UTC)


def _snapshot(mission_id: str) -> MissionSnapshot:
    return MissionSnapshot(
        id=mission_id,
        definition="test",
        definition_version=1,
        status=MissionStatus.RUNNING,
        current_node="work",
        input={"n": 1},
        created_at=T0,
        updated_at=T0,
        revision=1,
    )


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
