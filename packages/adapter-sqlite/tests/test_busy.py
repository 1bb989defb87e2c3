"""Waiting for another connection's lock never freezes the event loop: the adapter retries on
the event loop's clock, so other tasks run while it waits, and it gives up after ``busy_timeout``.

The lock is held by a real second SQLite connection. The waits are on the loop's clock, which
is virtual (trio's and asyncio's alike, see the root conftest) and moves as soon as every task is
blocked: nothing here sleeps for real.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import apsw
import pytest

from mission_control.adapter_sqlite import (
    SQLitePersistenceAdapter,
    create_sqlite_persistence_adapter,
)
from mission_control.core import CancelRequest, MissionSnapshot, PersistenceError

pytestmark = pytest.mark.anyio

Make = Callable[..., MissionSnapshot]
Dump = Callable[[Path], dict[str, list[tuple[Any, ...]]]]


class Intruder:
    """Another connection to the database, holding its write lock until :meth:`release`."""

    def __init__(self, path: Path) -> None:
        self.connection = apsw.Connection(str(path))
        self.connection.execute("BEGIN IMMEDIATE")
        self.released_at: float | None = None

    def release(self) -> None:
        self.released_at = anyio.current_time()
        self.connection.close()


async def release_later(intruder: Intruder, ticks: list[float]) -> None:
    """Another task of the program: it runs ten times on the loop's clock while the adapter waits,
    then lets go of the lock."""
    for _ in range(10):
        await anyio.sleep(0.1)
        ticks.append(anyio.current_time())
    intruder.release()


async def test_a_write_waits_for_a_lock_without_freezing_the_loop(
    db_path: Path, make_snapshot: Make
) -> None:
    """A write that finds the database locked by another connection lets the other tasks run
    while it waits, and is stored once the lock is released: an insert, a commit, a signal and
    a cancellation request, alone or several at once."""
    async with create_sqlite_persistence_adapter(db_path, busy_timeout=3) as adapter:
        await adapter.insert(make_snapshot("m"), [])

        async def blocked(write: Callable[[], Any]) -> None:
            intruder = Intruder(db_path)
            ticks: list[float] = []
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(release_later, intruder, ticks)
                await write()
                assert intruder.released_at is not None
                assert len(ticks) == 10

        await blocked(
            lambda: adapter.commit(make_snapshot("m", revision=2), expected_revision=1, timeline=[])
        )
        await blocked(lambda: adapter.insert(make_snapshot("n"), []))
        await blocked(
            lambda: adapter.append_signal("m", "go", None, make_snapshot("m").created_at, [])
        )
        await blocked(
            lambda: adapter.request_cancel("m", CancelRequest(make_snapshot("m").created_at), [])
        )

        async def together() -> None:
            async with anyio.create_task_group() as tasks:
                for name in ("a", "b", "c"):
                    tasks.start_soon(adapter.insert, make_snapshot(name), [])

        await blocked(together)
        assert [s.id for s in await adapter.list_missions(limit=100)] == ["a", "b", "c", "m", "n"]
        loaded = await adapter.load("m")
        assert loaded is not None
        assert loaded.revision == 2
        assert loaded.cancel_request is not None
        assert await adapter.next_signal("m", "go") is not None


async def test_a_lock_held_past_busy_timeout_fails_the_write_after_waiting_on_the_loop(
    db_path: Path, make_snapshot: Make, dump: Dump
) -> None:
    """When the lock is held past ``busy_timeout``, the write raises ``PersistenceError`` naming
    the timeout once that much of the loop's time has passed, other tasks having run meanwhile, and
    nothing is stored: a write alone, a signal, or a group of writes sharing a transaction."""
    adapter: SQLitePersistenceAdapter
    async with create_sqlite_persistence_adapter(db_path, busy_timeout=2) as adapter:
        await adapter.insert(make_snapshot("m"), [])
        before = dump(db_path)
        intruder = Intruder(db_path)
        ticks: list[float] = []

        async def tick() -> None:
            while True:
                await anyio.sleep(0.1)
                ticks.append(anyio.current_time())

        started = anyio.current_time()
        try:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(tick)
                with pytest.raises(PersistenceError, match="busy_timeout=2 s"):
                    await adapter.commit(
                        make_snapshot("m", revision=2), expected_revision=1, timeline=[]
                    )
                with pytest.raises(PersistenceError, match="busy_timeout=2 s"):
                    await adapter.append_signal("m", "go", None, make_snapshot("m").created_at, [])
                refused: list[str] = []

                async def insert(name: str) -> None:
                    try:
                        await adapter.insert(make_snapshot(name), [])
                    except PersistenceError as error:
                        refused.append(f"{name}: {error}")

                async with anyio.create_task_group() as group:
                    for name in ("a", "b", "c"):
                        group.start_soon(insert, name)
                assert len(refused) == 3
                assert all("busy_timeout=2 s" in line for line in refused), refused
                tasks.cancel_scope.cancel()
        finally:
            intruder.release()
        assert anyio.current_time() - started >= 2
        assert len(ticks) >= 3 * 19
        assert dump(db_path) == before
        await adapter.commit(make_snapshot("m", revision=2), expected_revision=1, timeline=[])
