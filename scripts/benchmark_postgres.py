"""PostgreSQL benchmark: missions per second with 1 and 3 runtime processes, and a runtime
tick's cost, on trio and asyncio (docs/postgres.md has the figures and the server's settings).

    uv run python scripts/benchmark_postgres.py URL            # every figure (minutes)
    uv run python scripts/benchmark_postgres.py URL --quick    # small counts: a smoke run
    uv run python scripts/benchmark_postgres.py URL --missions 1000 --rounds 1 --backends trio

- *missions/s*: each runtime process opens a sharded adapter on a fresh schema, and starts its
  part of the missions (3 steps each, run inline by ``start``) from 8 tasks; the figure is the
  missions of every process divided by the time from the common go to the last one done.
- *tick*: 10,000 missions waiting on timers of which 100 are due; the cost of the runtime tick
  that runs the 100 (each its timer and a step), per due mission.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import anyio
import psycopg
from psycopg import sql

from mission_control.adapter_postgres import open_postgres_persistence_adapter
from mission_control.core import Context, create_commander, m
from mission_control.in_memory_commander import ManualClock
from mission_control.runtime import create_commander_runtime

TASKS = 8


def _step(ctx: Context[Any, Any]) -> int:
    return len(ctx.mission_id)


THREE_STEPS = (
    m.define("three").start(parse=dict).step("a", _step).step("b", _step).step("c", _step).end()
)
NAP = m.define("nap").start(parse=dict).sleep("nap", 60).step("after", _step).end()
LONG_NAP = m.define("long-nap").start(parse=dict).sleep("nap", 86_400).end()


def _drop(url: str, schema: str) -> None:
    with psycopg.connect(url, autocommit=True) as db:
        db.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


async def _runtime_process(url: str, schema: str, count: int, go: Path) -> None:
    """One runtime process of the missions/s figure: prints READY, waits for ``go``, starts
    ``count`` missions, prints the time it finished."""
    adapter = await open_postgres_persistence_adapter(url, schema=schema, sharded=True)
    async with (
        adapter,
        create_commander([THREE_STEPS], persistence=adapter, ids=adapter.new_mission_id) as cmd,
        anyio.create_task_group() as tasks,
    ):
        tasks.start_soon(adapter.keep_shards)
        print("READY", flush=True)
        while not await anyio.Path(go).exists():  # noqa: ASYNC110 (another process decides)
            await anyio.sleep(0.005)

        async def starts(n: int) -> None:
            for _ in range(n):
                await cmd.start(THREE_STEPS, {})

        async with anyio.create_task_group() as group:
            for task in range(TASKS):
                group.start_soon(starts, count // TASKS + (task < count % TASKS))
        print(f"DONE {time.time()!r}", flush=True)
        tasks.cancel_scope.cancel()


def missions_per_second(url: str, runtimes: int, missions: int, backend: str) -> float:
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory() as directory:
        go = Path(directory) / "go"
        children = [
            subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    url,
                    "--runtime",
                    schema,
                    str(missions // runtimes),
                    str(go),
                    "--backends",
                    backend,
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(runtimes)
        ]
        try:
            for child in children:
                assert child.stdout is not None
                assert child.stdout.readline().strip() == "READY"
            # Every runtime holds its share before the clock starts (a round per second).
            time.sleep(2.5 if runtimes > 1 else 0)
            began = time.time()
            go.touch()
            ends: list[float] = []
            for child in children:
                assert child.stdout is not None
                ends.append(float(child.stdout.readline().split()[1]))
                child.stdout.close()
                child.wait()
        finally:
            for child in children:
                if child.poll() is None:
                    child.kill()
                    child.wait()
            _drop(url, schema)
    return (missions // runtimes) * runtimes / (max(ends) - began)


async def tick_cost(url: str, waiting: int, due: int) -> float:
    """Seconds per due mission of a tick over ``waiting`` missions of which ``due`` are due."""
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    clock = ManualClock()
    report: Any = None
    spent = 0.0
    try:
        adapter = await open_postgres_persistence_adapter(url, schema=schema)
        async with (
            adapter,
            create_commander([NAP, LONG_NAP], persistence=adapter, clock=clock) as commander,
        ):
            for _ in range(due):
                await commander.start(NAP, {})
            template = await commander.start(LONG_NAP, {})
            # The rest are copies of one waiting mission, written by the server.
            with psycopg.connect(url, autocommit=True) as db:
                db.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
                db.execute(
                    "INSERT INTO missions (id, definition, definition_version, status, due_at, "
                    "revision, snapshot) SELECT 'w-' || n, definition, definition_version, "
                    "status, due_at, revision, jsonb_set(snapshot, '{id}', to_jsonb('w-' || n)) "
                    "FROM missions, generate_series(1, %s) AS n WHERE id = %s",
                    (waiting - due - 1, template.id),
                )
                db.execute("ANALYZE missions")
            async with create_commander_runtime(commander, auto_schedule=False) as runtime:
                # Once its listener is connected the runtime looks for what was stored before:
                # that look's tick runs (finding nothing due) before the clock moves.
                while not adapter.listening:  # noqa: ASYNC110 (a thread connects it)
                    await anyio.sleep(0.01)
                await runtime.tick()
                clock.advance(120)
                began = time.perf_counter()
                report = await runtime.tick()
                spent = time.perf_counter() - began
            if report.advanced != due or report.completed != due:
                raise AssertionError(f"the tick did not run the {due} due missions: {report}")
        return spent / due
    finally:
        _drop(url, schema)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="PostgreSQL benchmark (docs/postgres.md)")
    parser.add_argument("url")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--backends", nargs="+", default=["trio", "asyncio"])
    parser.add_argument("--missions", type=int, help="missions per missions/s run (3,000)")
    parser.add_argument("--rounds", type=int, help="runs per figure, the median kept (3)")
    parser.add_argument("--runtime", nargs=3, metavar=("SCHEMA", "COUNT", "GO"))
    args = parser.parse_args(argv)
    if args.runtime is not None:
        schema, count, go = args.runtime
        anyio.run(
            _runtime_process, args.url, schema, int(count), Path(go), backend=args.backends[0]
        )
        return 0
    missions = args.missions or (300 if args.quick else 3000)
    rounds = args.rounds or (1 if args.quick else 3)
    waiting = 1000 if args.quick else 10_000
    results: dict[str, dict[str, float]] = {}
    for backend in args.backends:
        figures: dict[str, float] = {}
        for runtimes in (1, 3):
            figures[f"missions/s, {runtimes} runtime(s)"] = statistics.median(
                missions_per_second(args.url, runtimes, missions, backend) for _ in range(rounds)
            )
        figures["tick, ms per due mission"] = 1000 * statistics.median(
            anyio.run(tick_cost, args.url, waiting, 100, backend=backend) for _ in range(rounds)
        )
        results[backend] = figures
    with psycopg.connect(args.url) as db:
        settings = dict(
            db.execute(
                "SELECT name, current_setting(name) FROM pg_settings WHERE name IN "
                "('server_version', 'shared_buffers', 'fsync', 'synchronous_commit', "
                "'max_connections')"
            ).fetchall()
        )
    print(json.dumps({"results": results, "settings": settings}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
