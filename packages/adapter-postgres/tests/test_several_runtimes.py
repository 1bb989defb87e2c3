"""Three runtime processes on one PostgreSQL schema: they spread the shards, each executes its
part of 2,000 missions with signals and timers, and when one is SIGKILLed mid-run the others
take its shards over within the stated bound and finish every mission, nothing executed twice
but the steps the killed one had in flight."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import IO, Any

import psycopg
import pytest

from mission_control.adapter_postgres import REBALANCE_INTERVAL

CHILD = Path(__file__).with_name("runtime_child.py")
MISSIONS = 2000
RUNTIMES = 3
CONCURRENCY = 8
"""runtime_child.py's max_concurrency: the most steps the killed runtime can have had in flight."""
TAKEOVER_BOUND = REBALANCE_INTERVAL + 1.0
"""Seconds within which survivors own every shard of a killed runtime (docs/postgres.md: one
round of the rule after PostgreSQL let the locks go, which a SIGKILL does at once), with a
second of slack for this loaded machine."""
DEADLINE = 240.0

ReadLine = Callable[[IO[str], str, float], None]
"""conftest.py's read_line."""
Raw = Callable[[str], AbstractContextManager[psycopg.Connection[tuple[Any, ...]]]]


@pytest.mark.slow
def test_three_runtimes_share_missions_and_survive_one_killed(
    postgres_url: str,
    postgres_schema: str,
    raw: Raw,
    tmp_path: Path,
    children: list[subprocess.Popen[str]],
    read_line: ReadLine,
) -> None:
    """Three runtimes (trio, asyncio, trio) each own about a third of the shards and execute at
    least 20% of 2,000 missions; one SIGKILLed after every mission started has each of its
    shards taken over within TAKEOVER_BOUND seconds, every mission completes, and the only
    steps that ran twice are at most CONCURRENCY of the killed runtime's, once more each."""
    deadline = time.monotonic() + DEADLINE
    per_child = -(-MISSIONS // RUNTIMES)
    backends = ["trio", "asyncio", "trio"]
    for index, backend in enumerate(backends):
        children.append(
            subprocess.Popen(
                [
                    sys.executable,
                    str(CHILD),
                    postgres_url,
                    postgres_schema,
                    f"runtime-{index}",
                    str(per_child),
                    str(tmp_path),
                    backend,
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
        )
        # One after the other, so that each opens while the others already run.
        if index == 0:
            time.sleep(0.5)
    for child in children:
        assert child.stdout is not None
        read_line(child.stdout, "READY", deadline)
    with raw(postgres_schema) as db:
        owners = dict(db.execute("SELECT shard, owner FROM shards").fetchall())
    assert sorted(collections.Counter(owners.values()).values()) in ([21, 21, 22], [20, 22, 22])
    (tmp_path / "go").touch()
    for child in children:
        assert child.stdout is not None
        read_line(child.stdout, "STARTED", deadline)

    victim = children[1]
    victim_shards = {shard for shard, owner in owners.items() if owner == "runtime-1"}
    victim.send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    victim.wait()
    with raw(postgres_schema) as db:
        while True:
            rows = db.execute(
                "SELECT count(*) FROM shards WHERE shard = ANY(%s) AND owner = 'runtime-1'",
                (sorted(victim_shards),),
            ).fetchone()
            taken_after = time.monotonic() - killed_at
            if rows == (0,):
                break
            assert taken_after < TAKEOVER_BOUND, "the killed runtime's shards were not taken over"
            time.sleep(0.02)
        while True:
            left = db.execute(
                "SELECT count(*) FROM missions WHERE status <> 'completed'"
            ).fetchone()
            if left == (0,):
                break
            assert time.monotonic() < deadline, f"{left} missions did not complete"
            time.sleep(0.2)
        total = db.execute("SELECT count(*) FROM missions").fetchone()
    assert total == (per_child * RUNTIMES,)

    runs: dict[tuple[str, str], list[int]] = collections.defaultdict(list)
    executed: dict[int, set[str]] = collections.defaultdict(set)
    for log in tmp_path.glob("steps-*.log"):
        pid = int(log.stem.removeprefix("steps-"))
        for line in log.read_text(encoding="utf-8").splitlines():
            step, mission_id = line.split(" ", 1)
            runs[(step, mission_id)].append(pid)
            executed[pid].add(mission_id)
    assert {step for step, _ in runs} == {"first", "second"}
    assert len(runs) == 2 * per_child * RUNTIMES
    assert set(executed) == {child.pid for child in children}
    for pid, missions in executed.items():
        assert len(missions) >= 0.2 * MISSIONS, f"process {pid} executed {len(missions)}"
    twice = {key: pids for key, pids in runs.items() if len(pids) > 1}
    assert len(twice) <= CONCURRENCY
    # Each ran once in the killed runtime (in flight when it died) and once in its successor.
    assert all(len(pids) == 2 and victim.pid in pids for pids in twice.values()), twice
    print(f"takeover after {taken_after:.2f} s; steps run twice: {len(twice)}")
    for child in children:
        if child is not victim:
            assert child.poll() is None, "a surviving runtime ended"
            os.kill(child.pid, signal.SIGTERM)


KEYS_CHILD = Path(__file__).with_name("keys_runtime_child.py")


def most_at_once(intervals: list[tuple[float, float]]) -> int:
    """The most intervals open at one time (one ending when another begins: not both open)."""
    events = sorted([(end, -1) for _, end in intervals] + [(begin, 1) for begin, _ in intervals])
    most = now = 0
    for _, change in events:
        now += change
        most = max(most, now)
    return most


@pytest.mark.slow
def test_a_concurrency_limit_holds_across_three_runtimes(
    postgres_url: str,
    postgres_schema: str,
    raw: Raw,
    tmp_path: Path,
    children: list[subprocess.Popen[str]],
    read_line: ReadLine,
) -> None:
    """Three runtime processes each start 10 missions of one concurrency key with limit 2 at
    the same moment, each executing its own: all 30 complete, each process ran its 10, and
    never more than 2 of their steps ran at once across the processes. Then each starts a
    refusing singleton with one key at the same moment: one start gets through, the two others
    are refused and store nothing."""
    deadline = time.monotonic() + DEADLINE
    for index in range(RUNTIMES):
        children.append(
            subprocess.Popen(
                [
                    sys.executable,
                    str(KEYS_CHILD),
                    postgres_url,
                    postgres_schema,
                    f"runtime-{index}",
                    "10",
                    str(tmp_path),
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
        )
    for child in children:
        assert child.stdout is not None
        read_line(child.stdout, "READY", deadline)
    (tmp_path / "go").touch()
    for child in children:
        assert child.stdout is not None
        read_line(child.stdout, "DONE", deadline)
    with raw(postgres_schema) as db:
        statuses = db.execute("SELECT status, count(*) FROM missions GROUP BY status").fetchall()
    assert statuses == [("completed", 30)]
    (tmp_path / "race").touch()
    outcomes: list[str] = []
    for child in children:
        assert child.stdout is not None
        outcomes.append(child.stdout.readline().strip())
    assert sorted(outcomes) == ["REFUSED", "REFUSED", "STARTED"]
    with raw(postgres_schema) as db:
        singles = db.execute("SELECT count(*) FROM missions WHERE definition = 'single'").fetchone()
    assert singles == (1,)

    opened: dict[str, float] = {}
    intervals: list[tuple[float, float]] = []
    by_process: dict[int, set[str]] = collections.defaultdict(set)
    for log in tmp_path.glob("steps-*.log"):
        for line in log.read_text(encoding="utf-8").splitlines():
            event, mission_id, at = line.split(" ")
            by_process[int(log.stem.removeprefix("steps-"))].add(mission_id)
            if event == "enter":
                opened[mission_id] = float(at)
            else:
                intervals.append((opened.pop(mission_id), float(at)))
    assert sorted(len(missions) for missions in by_process.values()) == [10, 10, 10]
    assert len(intervals) == 30
    assert not opened
    assert most_at_once(intervals) == 2
