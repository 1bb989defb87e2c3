"""What the PostgreSQL adapter's worker-thread hop costs: one mission load, timed as a plain
synchronous psycopg query and through the adapter (a hop to an AnyIO worker thread and back)
on trio and on asyncio.

    uv run python scripts/postgres_hop_cost.py postgresql://postgres@/postgres?host=/run/pg

Prints microseconds per load (the median of 5 rounds of 2,000 loads each). docs/postgres.md
quotes its figures.
"""

from __future__ import annotations

import statistics
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import anyio
import psycopg
from psycopg import sql

from mission_control.adapter_postgres import open_postgres_persistence_adapter
from mission_control.core import MissionSnapshot, MissionStatus

ROUNDS = 5
LOADS = 2000


def _snapshot() -> MissionSnapshot:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    return MissionSnapshot(
        id="m-1",
        definition="bench",
        definition_version=1,
        status=MissionStatus.RUNNING,
        current_node="work",
        input={"n": 1},
        created_at=now,
        updated_at=now,
        revision=1,
    )


def _median_us(timings: list[float]) -> float:
    return statistics.median(timings) / LOADS * 1e6


async def _through_adapter(url: str, schema: str) -> float:
    adapter = await open_postgres_persistence_adapter(url, schema=schema)
    try:
        if await adapter.load("m-1") is None:
            await adapter.insert(_snapshot(), [])
        timings: list[float] = []
        for _ in range(ROUNDS):
            started = time.perf_counter()
            for _ in range(LOADS):
                await adapter.load("m-1")
            timings.append(time.perf_counter() - started)
        return _median_us(timings)
    finally:
        await adapter.aclose()


def _direct(url: str, schema: str) -> float:
    with psycopg.connect(url, autocommit=True) as db:
        db.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        query = "SELECT revision, snapshot::text, cancel_request::text FROM missions WHERE id = %s"
        timings: list[float] = []
        for _ in range(ROUNDS):
            started = time.perf_counter()
            for _ in range(LOADS):
                db.execute(query, ("m-1",)).fetchall()
            timings.append(time.perf_counter() - started)
        return _median_us(timings)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    url = argv[1]
    schema = f"hop_{uuid.uuid4().hex[:8]}"
    results: dict[str, float] = {}
    try:

        def on(backend: str) -> Callable[[], float]:
            return lambda: anyio.run(_through_adapter, url, schema, backend=backend)

        results["trio, through the adapter"] = on("trio")()
        results["asyncio, through the adapter"] = on("asyncio")()
        results["synchronous psycopg, same query"] = _direct(url, schema)
    finally:
        with psycopg.connect(url, autocommit=True) as db:
            db.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
    for name, micros in results.items():
        print(f"{name:34} {micros:8.1f} µs per load")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
