"""How long a mission another process submits waits for the owner to start it (docs/sqlite.md).

    uv run python scripts/submit_latency.py              # 300 starts, one at a time
    uv run python scripts/submit_latency.py --count 1000 --lost 5

An owner process (a ``SQLiteCommander`` with role "owner" and its runtime) and this process, a
submitter, share a SQLite file in a temporary directory. For each mission the submitter reads
the monotonic clock (system-wide on Linux, so both processes read the same one), starts the
mission (stored as a background start, the owner woken by its socket), and waits until the
owner has run the start node, whose output is the owner's clock reading when it ran. The
difference is the latency: the submitter's commit, the wake-up, the owner's tick and its first
read. Missions go one at a time, so none waits behind another.

``--lost N`` then stores N submissions the way a submitter killed between its commit and its
wake-up leaves them (the row, no wake-up) and reports how long the owner takes to find them:
the owner's recheck (``WAKE_RECHECK``), which backs off while nothing comes.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

import anyio

from mission_control.adapter_sqlite import SQLiteCommander
from mission_control.core import Context, MissionStatus, m
from mission_control.runtime import create_commander_runtime


def _same(raw: Any) -> Any:
    return raw


def _owner_clock(ctx: Context[Any, Any]) -> float:
    return time.monotonic()


TIMED = m.define("timed").start(parse=_same, run=_owner_clock).need_to("done", parse=_same).end()


async def serve(path: str) -> None:
    """The owner: runs missions until its standard input closes."""
    async with (
        SQLiteCommander(path, [TIMED], role="owner") as commander,
        create_commander_runtime(commander),
    ):
        print("ready", flush=True)
        await anyio.to_thread.run_sync(sys.stdin.read)


async def started_at(commander: SQLiteCommander, mission_id: str) -> float:
    while True:
        snapshot = await commander.inspect(mission_id)
        record = snapshot.nodes.get("start")
        if record is not None and isinstance(record.output, float):
            return record.output
        assert snapshot.status is not MissionStatus.FAILED, snapshot.error
        await anyio.sleep(0.0005)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def report(what: str, seconds: list[float]) -> None:
    ms = [value * 1000 for value in seconds]
    print(
        f"{what}: n={len(ms)} p50={statistics.median(ms):.2f} ms "
        f"p90={percentile(ms, 0.9):.2f} ms p99={percentile(ms, 0.99):.2f} ms "
        f"max={max(ms):.2f} ms"
    )


async def measure(owner: subprocess.Popen[str], path: str, count: int, lost: int) -> None:
    assert owner.stdout is not None
    ready = await anyio.to_thread.run_sync(owner.stdout.readline)
    assert ready.strip() == "ready", ready
    async with SQLiteCommander(path, [TIMED], role="submitter") as submitter:
        latencies: list[float] = []
        for n in range(count):
            began = time.monotonic()
            await submitter.start(TIMED, {}, id=f"m{n}")
            latencies.append(await started_at(submitter, f"m{n}") - began)
        report("submit -> owner starts the mission", latencies)
        if lost:
            found: list[float] = []
            for n in range(lost):
                await anyio.sleep(2.0 * (n + 1))  # the owner's recheck backs off meanwhile
                began = time.monotonic()
                seq = _store_without_wake(path, f"lost{n}")
                await submitter.verdict(seq)
                found.append(time.monotonic() - began)
            report("lost wake-up -> owner applies it", found)


def _store_without_wake(path: str, mission_id: str) -> int:
    """A raw start as a submitter stores it, but with no wake-up after the commit."""
    with contextlib.closing(sqlite3.connect(path)) as connection, connection:
        cursor = connection.execute(
            "INSERT INTO submissions (kind, mission_id, name, payload, submitted_at, submitted_by)"
            " VALUES ('start', ?, 'timed', '{}', '2026-01-01T00:00:00+00:00', 'latency script')",
            (mission_id,),
        )
        seq = cursor.lastrowid
    assert seq is not None
    return seq


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--lost", type=int, default=0)
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.serve:
        anyio.run(serve, arguments.serve, backend="trio")
        return
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "latency.sqlite")
        with subprocess.Popen(
            [sys.executable, __file__, "--serve", path],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        ) as owner:
            try:
                anyio.run(measure, owner, path, arguments.count, arguments.lost, backend="trio")
            finally:
                assert owner.stdin is not None
                owner.stdin.close()
                owner.wait(timeout=30)


if __name__ == "__main__":
    main()
