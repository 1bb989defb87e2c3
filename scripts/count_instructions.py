"""Instructions per mission, counted by valgrind's callgrind (the figures in docs/performance.md).

    uv run python scripts/count_instructions.py                  # every path
    uv run python scripts/count_instructions.py --path memory    # one (repeat for more)
    uv run python scripts/count_instructions.py --backend trio --backend asyncio --path inflight

    uv run python scripts/count_instructions.py --statements     # SQL per mission, no valgrind

Each path runs twice under ``valgrind --tool=callgrind`` in a child process, once with 1 mission
and once with 1,001 after the same warm-up, with ``PYTHONHASHSEED=0``; the difference divided by
1,000 is the count per mission. Counts do not depend on what else the machine is doing (a run
to run spread of about 1% remains, from memory layout), so they compare commits where timings
cannot. Needs valgrind on the PATH. ``--backend`` names the event loops to count on (default:
trio; several are counted one after another, path by path).

``--statements`` runs the ``sqlite`` and ``tick`` paths in this process instead, with apsw's exec
trace on the adapter's connections, and prints the statements per mission by kind: what the
SQLite side of a mission is, counted.

Paths:

- ``memory``: start a 3-step mission to its end, in memory (2,000 finished missions stored);
- ``sqlite``: the same on a SQLite file (NORMAL);
- ``signal``: start a mission that waits for a signal, then signal it (all concurrently), in
  memory;
- ``tick``: start a mission that sleeps, then move it with a runtime tick (100 a tick), on a
  SQLite file with 2,000 other missions waiting;
- ``postgres``: start a 3-step mission to its end on PostgreSQL (200 finished missions stored,
  a schema of its own; 200 missions counted, not 1,000: each waits on the server), counting
  this process only: the engine, the adapter, psycopg and libpq, not the server. The server is
  ``--postgres-url``'s, else ``MISSION_CONTROL_POSTGRES_URL``'s, else one started for the count
  by ``start_local_server()``; without any, the path is skipped with the reason.

Counted only when named, to compare the event loops where the SQLite adapter groups commits:

- ``signal-sqlite``: ``signal``'s missions on a SQLite file with 2,000 others waiting (the shape of
  the benchmark's scenario 3);
- ``inflight``: 3-step missions started all at once, each in a task of its own, on a SQLite file
  (scenario 2's shape).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Coroutine, Sequence
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import apsw
import trio

from mission_control.adapter_postgres import (
    NoLocalServerError,
    open_postgres_persistence_adapter,
    start_local_server,
)
from mission_control.adapter_sqlite import create_sqlite_persistence_adapter
from mission_control.core import Context, create_commander, m
from mission_control.core.storage import PersistenceAdapter
from mission_control.in_memory_commander import InMemoryPersistenceAdapter, ManualClock
from mission_control.runtime import create_commander_runtime

PATHS = ("memory", "sqlite", "signal", "tick", "postgres")
GROUPED = ("signal-sqlite", "inflight")
"""Paths whose writes the SQLite adapter groups: after a warm-up of concurrent starts."""
MISSIONS = 1000
WARM_UP = 2000
FEWER = {"postgres": 200}
"""Missions counted and warm-up missions of the paths that take both from here, for time."""


def _same(raw: object) -> object:
    return raw


def _one(ctx: Context[Any, Any]) -> int:
    return 1


def _begun(ctx: Context[Any, Any]) -> dict[str, bool]:
    return {"ok": True}


THREE_STEPS = (
    m.define("three-steps")
    .start(parse=_same, run=_begun)
    .step("a", _one)
    .step("b", _one)
    .step("c", _one)
    .end()
)
SIGNALLED = (
    m.define("signalled").start(parse=_same).need_to("go", parse=_same).step("w", _one).end()
)
SLEEPER = (
    m.define("sleeper").start(parse=_same).sleep("nap", timedelta(days=1)).step("w", _one).end()
)


async def _store(path: str, where: str) -> PersistenceAdapter:
    """The path's adapter; ``where`` is a directory for SQLite, a server's URL for PostgreSQL."""
    if path in ("memory", "signal"):
        return InMemoryPersistenceAdapter()
    if path == "postgres":
        # A schema of its own per run: the counts of 1 and of 1,001 missions start alike.
        return await open_postgres_persistence_adapter(where, schema=f"count_{uuid.uuid4().hex}")
    return create_sqlite_persistence_adapter(os.path.join(where, "missions.sqlite"))


async def run(path: str, missions: int, where: str) -> None:
    """The measured work: ``missions`` missions along ``path``, after the same warm-up."""
    clock = ManualClock()
    definitions = [THREE_STEPS, SIGNALLED, SLEEPER]
    store = await _store(path, where)
    async with create_commander(definitions, persistence=store, clock=clock) as commander:
        warm = SIGNALLED if path in ("tick", "signal-sqlite") else THREE_STEPS
        for number in range(FEWER.get(path, WARM_UP)):
            await commander.start(warm, {"n": number})
        if path in GROUPED:
            await _all_at_once(
                [partial(commander.start, THREE_STEPS, {"n": n}) for n in range(200)]
            )
        if path in ("memory", "sqlite", "postgres"):
            for number in range(missions):
                await commander.start(THREE_STEPS, {"n": number})
        elif path in ("signal", "signal-sqlite"):
            handles = [await commander.start(SIGNALLED, {"n": n}) for n in range(missions)]
            await _all_at_once([partial(handle.signal, "go", {"ok": True}) for handle in handles])
        elif path == "inflight":
            starts = [partial(commander.start, THREE_STEPS, {"n": n}) for n in range(missions)]
            await _all_at_once(starts)
        else:
            for number in range(missions):
                await commander.start(SLEEPER, {"n": number})
            clock.advance(timedelta(days=2))
            # Ticks only when asked: the runtime's own follow-ups would race this loop.
            runtime = create_commander_runtime(
                commander, max_missions_per_tick=100, auto_schedule=False
            )
            async with runtime:
                while await commander.due_missions(1):
                    await runtime.tick()


async def _all_at_once(calls: Sequence[Callable[[], Coroutine[Any, Any, object]]]) -> None:
    """Every call, each in a task of its own."""
    async with anyio.create_task_group() as tasks:
        for call in calls:
            tasks.start_soon(call)


def _instructions(path: str, missions: int, server: str | None, backend: str) -> int:
    with tempfile.TemporaryDirectory(prefix="mission-control-count-") as directory:
        out = os.path.join(directory, "callgrind.out")
        subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={out}",
                sys.executable,
                __file__,
                "--child",
                path,
                str(missions),
                server if path == "postgres" and server is not None else directory,
                backend,
            ],
            check=True,
            capture_output=True,
            env={**os.environ, "PYTHONHASHSEED": "0"},
        )
        found = re.search(r"^summary:\s+(\d+)", Path(out).read_text(), re.MULTILINE)
        assert found is not None, "callgrind wrote no summary"
        return int(found.group(1))


class _Statements:
    """The statements run by every connection opened while installed, by their first words."""

    def __init__(self) -> None:
        self.counting = False
        self.kinds: collections.Counter[str] = collections.Counter()

    def trace(self, cursor: apsw.Cursor, sql: str, bindings: Any) -> bool:
        if self.counting:
            self.kinds[" ".join(sql.split()[:3])] += 1
        return True

    def hook(self, connection: apsw.Connection) -> None:
        connection.exec_trace = self.trace


def count_statements(path: str) -> None:
    """Print what ``path`` runs per mission on SQLite: 1 + MISSIONS missions traced, minus 1."""
    found: dict[int, collections.Counter[str]] = {}
    for missions in (1, 1 + MISSIONS):
        statements = _Statements()
        apsw.connection_hooks.append(statements.hook)
        try:
            with tempfile.TemporaryDirectory(prefix="mission-control-count-") as directory:
                trio.run(_counted, path, missions, directory, statements)
        finally:
            apsw.connection_hooks.remove(statements.hook)
        found[missions] = statements.kinds
    few, many = found[1], found[1 + MISSIONS]
    print(f"{path}: {(many.total() - few.total()) / MISSIONS:.2f} statements per mission")
    for kind in sorted(many, key=lambda kind: -(many[kind] - few[kind])):
        if many[kind] - few[kind] >= MISSIONS / 200:
            print(f"  {(many[kind] - few[kind]) / MISSIONS:6.2f}  {kind}")


async def _counted(path: str, missions: int, directory: str, statements: _Statements) -> None:
    statements.counting = True
    await run(path, missions, directory)


def main() -> None:
    parser = argparse.ArgumentParser(description="Instructions per mission, by callgrind.")
    parser.add_argument(
        "--path",
        action="append",
        choices=PATHS + GROUPED,
        help="a path (default: all but " + " and ".join(GROUPED) + ")",
    )
    parser.add_argument(
        "--backend",
        action="append",
        choices=("trio", "asyncio"),
        help="an event loop to count on (default: trio)",
    )
    parser.add_argument(
        "--statements", action="store_true", help="SQL statements per mission, without valgrind"
    )
    parser.add_argument(
        "--postgres-url",
        help="the server of the postgres path (default: MISSION_CONTROL_POSTGRES_URL, else one "
        "started for the count)",
    )
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.child is not None:
        path, missions, where, backend = arguments.child
        anyio.run(run, path, int(missions), where, backend=backend)
        return
    if arguments.statements:
        for path in arguments.path or ("sqlite", "tick"):
            count_statements(path)
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is needed (Debian: apt install valgrind)")
    paths = arguments.path or PATHS
    with contextlib.ExitStack() as stack:
        server = None
        if "postgres" in paths:
            server = _postgres_server(arguments.postgres_url, stack)
        for path in paths:
            if path == "postgres" and server is None:
                continue
            counted = FEWER.get(path, MISSIONS)
            for backend in arguments.backend or ("trio",):
                per_mission = (
                    _instructions(path, 1 + counted, server, backend)
                    - _instructions(path, 1, server, backend)
                ) / counted
                on = "" if arguments.backend is None else f" {backend:8s}"
                print(
                    f"{path:8s}{on} {per_mission / 1e6:.3f} M instructions per mission",
                    flush=True,
                )


def _postgres_server(url: str | None, stack: contextlib.ExitStack) -> str | None:
    """The URL of the server to count the postgres path on, or ``None`` (said why) when there
    is none: a server started here is stopped when ``stack`` closes."""
    url = url or os.environ.get("MISSION_CONTROL_POSTGRES_URL")
    if url:
        return url
    try:
        server = start_local_server()
    except NoLocalServerError as error:
        print(f"postgres skipped: no server ({error})", flush=True)
        return None
    stack.callback(server.stop)
    return server.url


if __name__ == "__main__":
    main()
