"""A runtime on PostgreSQL under a virtual clock (an application's own tests): the shard upkeep
and the listener's looks at the store are timed by real time, so that a virtual week costs what
it costs on SQLite, not a database round trip per virtual second (docs/testing.md)."""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable

import anyio
import anyio.to_thread
import psycopg
import pytest

from mission_control.adapter_postgres import (
    REBALANCE_INTERVAL,
    WAKE_RECHECK,
    open_postgres_persistence_adapter,
)
from mission_control.adapter_postgres._realtime import LONGEST_SLEEP
from mission_control.core import MissionStatus, create_commander, m
from mission_control.runtime import create_commander_runtime
from mission_control.testing import LoopClock

pytestmark = pytest.mark.anyio

WEEK = 7 * 86_400

SLEEPER = m.define("sleeper").start(parse=dict).sleep("a-week", WEEK).end(output=lambda _: "up")

_SLEEPING = (
    "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
    "AND query LIKE 'SELECT pg_sleep%' AND pid <> pg_backend_pid() "
    "AND datname = current_database()"
)

REAL_BOUND = 60.0
"""Real seconds the virtual week may take (a few on this machine): far more than that means the
upkeep follows the virtual clock (a round per virtual second would take hours)."""


async def test_a_runtime_sleeping_a_virtual_week_keeps_its_shards_by_real_time(
    postgres_url: str, postgres_schema: str
) -> None:
    """A sharded runtime under a virtual clock gets through a mission's week-long sleep making
    about one round of shard upkeep per real second and a few looks at the store, not one per
    virtual second."""
    adapter = await open_postgres_persistence_adapter(
        postgres_url, schema=postgres_schema, sharded=True
    )
    try:
        commander = create_commander(
            [SLEEPER], persistence=adapter, clock=LoopClock(), ids=adapter.new_mission_id
        )
        status: list[MissionStatus] = []
        started = time.monotonic()

        async def sleep_a_week() -> None:
            async with create_commander_runtime(commander):
                handle = await commander.start(SLEEPER, {})
                for _ in range(8):
                    await anyio.sleep(86_400)
                    status.append((await handle.inspect()).status)
                    if status[-1] is MissionStatus.COMPLETED:
                        return

        in_time = await _within_real_time(sleep_a_week, REAL_BOUND)
        elapsed = time.monotonic() - started
    finally:
        await adapter.aclose()
    counts = f"{adapter.rebalance_rounds} rounds, {adapter.rechecks} rechecks in {elapsed:.1f} s"
    assert in_time, f"a virtual week took more than {REAL_BOUND} real seconds: {counts}"
    assert status[-1:] == [MissionStatus.COMPLETED], counts
    assert adapter.rebalance_rounds <= elapsed / REBALANCE_INTERVAL + 2, counts
    assert adapter.rebalance_rounds >= 2, counts  # the opening's and the upkeep's first
    assert adapter.rechecks <= elapsed / WAKE_RECHECK[0] + 2, counts
    # The server's sleeps end soon after the runtime stopped: no session is left behind.
    assert await anyio.to_thread.run_sync(_sleeping, postgres_url, LONGEST_SLEEP + 5) == 0


async def _within_real_time(work: Callable[[], Awaitable[None]], seconds: float) -> bool:
    """Run ``work()``, cancelled after ``seconds`` real seconds (a watchdog in a worker thread:
    the event loop's clock is virtual); whether it finished in time."""
    done = threading.Event()
    expired = False

    async def watch() -> None:
        nonlocal expired
        if not await anyio.to_thread.run_sync(done.wait, seconds, abandon_on_cancel=True):
            expired = True
            group.cancel_scope.cancel()

    async with anyio.create_task_group() as group:
        group.start_soon(watch)
        try:
            await work()
        finally:
            done.set()
    return not expired


def _sleeping(url: str, seconds: float) -> int:
    """How many sessions still run a sleep on the server after ``seconds`` real seconds (or as
    soon as none does)."""
    deadline = time.monotonic() + seconds
    with psycopg.connect(url, autocommit=True) as db:
        while True:
            row = db.execute(_SLEEPING).fetchone()
            assert row is not None
            if row[0] == 0 or time.monotonic() > deadline:
                return int(row[0])
            time.sleep(0.05)
