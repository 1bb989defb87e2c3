"""Submitters (web workers) on PostgreSQL: processes opened with ``role="submitter"`` start,
signal, cancel and wait for missions that three runtime processes sharing the schema execute
(docs/postgres.md, submitters)."""

from __future__ import annotations

import collections
import json
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import IO, Any

import psycopg
import pytest

from mission_control.adapter_postgres import (
    PostgresPersistenceAdapter,
    open_postgres_persistence_adapter,
)
from mission_control.core import (
    ConfigurationError,
    PersistenceError,
)

HERE = Path(__file__).parent
RUNTIME = HERE / "runtime_child.py"
SUBMITTER = HERE / "submitter_child.py"
PER_SUBMITTER = 30
DEADLINE = 180.0

ReadLine = Callable[[IO[str], str, float], None]
"""conftest.py's read_line."""
Raw = Callable[[str], AbstractContextManager[psycopg.Connection[tuple[Any, ...]]]]


@pytest.mark.slow
def test_submitters_start_signal_cancel_and_wait_on_three_runtimes(
    postgres_url: str,
    postgres_schema: str,
    raw: Raw,
    tmp_path: Path,
    children: list[subprocess.Popen[str]],
    read_line: ReadLine,
) -> None:
    """Two submitter processes (trio, asyncio) start 30 missions each on a schema three runtime
    processes share, cancel every fifth and signal the others: each call returns once a
    runtime applied it, every signalled mission completes and every cancelled one is
    cancelled, each step ran once, in the runtime that owns the mission's shard, and every
    submission is applied."""
    deadline = time.monotonic() + DEADLINE
    runtimes: list[subprocess.Popen[str]] = []
    for index, backend in enumerate(["trio", "asyncio", "trio"]):
        runtime = subprocess.Popen(
            [
                sys.executable,
                str(RUNTIME),
                postgres_url,
                postgres_schema,
                f"runtime-{index}",
                "0",
                str(tmp_path),
                backend,
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        children.append(runtime)
        runtimes.append(runtime)
        if index == 0:
            time.sleep(0.5)
    for runtime in runtimes:
        assert runtime.stdout is not None
        read_line(runtime.stdout, "READY", deadline)
    (tmp_path / "go").touch()
    submitters = [
        subprocess.Popen(
            [
                sys.executable,
                str(SUBMITTER),
                postgres_url,
                postgres_schema,
                prefix,
                str(PER_SUBMITTER),
                backend,
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        for prefix, backend in (("web-a", "trio"), ("web-b", "asyncio"))
    ]
    children.extend(submitters)
    reports: list[dict[str, dict[str, str]]] = []
    for submitter in submitters:
        out, _ = submitter.communicate(timeout=max(1.0, deadline - time.monotonic()))
        assert submitter.returncode == 0, out
        reports.append(json.loads(out.strip().splitlines()[-1]))
    answered = {k: v for report in reports for k, v in report["answered"].items()}
    ended = {k: v for report in reports for k, v in report["ended"].items()}
    ids = {f"{prefix}-{n}" for prefix in ("web-a", "web-b") for n in range(PER_SUBMITTER)}
    cancelled = {mission_id for mission_id in ids if int(mission_id.rsplit("-", 1)[1]) % 5 == 0}
    assert set(ended) == ids
    assert ended == {i: "cancelled" if i in cancelled else "completed" for i in ids}
    # A signal returns once its mission is at rest: at its timer, or past it already; a
    # cancellation once applied: the mission cancelled, or asked to stop at its next boundary.
    assert {answered[i] for i in ids - cancelled} <= {"waiting", "completed"}
    assert {answered[i] for i in cancelled} <= {"cancelled", "running", "waiting"}

    runs: dict[tuple[str, str], list[int]] = collections.defaultdict(list)
    for log in tmp_path.glob("steps-*.log"):
        pid = int(log.stem.removeprefix("steps-"))
        for line in log.read_text(encoding="utf-8").splitlines():
            step, mission_id = line.split(" ", 1)
            runs[(step, mission_id)].append(pid)
    completed = ids - cancelled
    # A cancelled mission may have run its first step before its cancellation was applied.
    expected = {(step, i) for i in completed for step in ("first", "second")}
    assert expected <= set(runs) <= expected | {("first", i) for i in cancelled}
    assert all(len(pids) == 1 for pids in runs.values()), runs
    with raw(postgres_schema) as db:
        owners = dict(db.execute("SELECT shard, owner FROM shards").fetchall())
        shards = dict(db.execute("SELECT id, shard FROM missions").fetchall())
        states = db.execute("SELECT state, count(*) FROM submissions GROUP BY state").fetchall()
    pids = {runtime.pid: f"runtime-{index}" for index, runtime in enumerate(runtimes)}
    for (_, mission_id), (pid,) in runs.items():
        assert owners[shards[mission_id]] == pids[pid]
    assert len({pid for pid_list in runs.values() for pid in pid_list}) == 3
    assert states == [("applied", 2 * PER_SUBMITTER)]


@pytest.mark.anyio
async def test_a_submitter_executes_nothing_and_owns_nothing(
    postgres_url: str, postgres_schema: str
) -> None:
    """A submitter's adapter owns no mission, refuses to take ownership, to commit or to decide
    a submission, and cannot be opened sharded."""
    with pytest.raises(ConfigurationError, match="submitter owns no shards"):
        await open_postgres_persistence_adapter(
            postgres_url, schema=postgres_schema, role="submitter", sharded=True
        )
    adapter: PostgresPersistenceAdapter = await open_postgres_persistence_adapter(
        postgres_url, schema=postgres_schema, role="submitter"
    )
    async with adapter:
        assert not adapter.is_owner
        assert not adapter.owns("any")
        with pytest.raises(ConfigurationError, match="opened as a submitter"):
            await adapter.take_ownership()
        with pytest.raises(PersistenceError, match="opened as a submitter"):
            await adapter.count_failure(1)
