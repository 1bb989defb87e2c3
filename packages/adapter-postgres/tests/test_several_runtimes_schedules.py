"""Schedules with two runtime processes on one PostgreSQL schema: each fires the schedules of
its shards, and when the one holding a schedule is SIGKILLed the other takes its shards over
and fires on, every slot fired exactly once (docs/postgres.md, "Schedules and triggers")."""

from __future__ import annotations

import collections
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import psycopg
import pytest

from mission_control.adapter_postgres import REBALANCE_INTERVAL, shard_of

CHILD = Path(__file__).with_name("schedule_child.py")
SCHEDULES = 6
"""Schedules ``s0`` to ``s5``: their shards fall on both sides of the two runtimes' split."""
CONCURRENCY = 8
"""schedule_child.py's max_concurrency: the most steps the killed runtime can have had in
flight."""
TAKEOVER_BOUND = REBALANCE_INTERVAL + 1.0
"""Seconds within which the survivor owns every shard of the killed runtime (docs/postgres.md),
with a second of slack for this loaded machine."""
AFTER = timedelta(seconds=3)
"""How long the survivor fires alone before the slots are checked."""
DEADLINE = 180.0

ReadLine = Callable[[IO[str], str, float], None]
"""conftest.py's read_line."""
Raw = Callable[[str], AbstractContextManager[psycopg.Connection[tuple[Any, ...]]]]
Db = psycopg.Connection[tuple[Any, ...]]


def _slot(mission_id: str) -> tuple[str, datetime]:
    """The schedule and the slot of a slot's mission, ``<schedule>@<slot>``."""
    schedule, slot = mission_id.split("@")
    return schedule, datetime.strptime(slot, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


@pytest.mark.slow
def test_two_runtimes_fire_every_slot_once_when_a_schedules_holder_is_killed(
    postgres_url: str,
    postgres_schema: str,
    raw: Raw,
    tmp_path: Path,
    children: list[subprocess.Popen[str]],
    read_line: ReadLine,
) -> None:
    """Two runtimes (trio, asyncio) each fire the one-second schedules of their own shards;
    the holder of ``s0`` SIGKILLed, the other owns its shards within TAKEOVER_BOUND and fires
    on: every schedule has a mission for every slot from its first to the end, each run once
    but at most CONCURRENCY in flight in the killed runtime, and each schedule's count of fires
    is the number of its missions up to its last fire."""
    deadline = time.monotonic() + DEADLINE
    anchor = datetime.now(UTC).replace(microsecond=0)
    for index, backend in enumerate(["trio", "asyncio"]):
        child = subprocess.Popen(
            [
                sys.executable,
                str(CHILD),
                postgres_url,
                postgres_schema,
                f"runtime-{index}",
                str(SCHEDULES),
                anchor.isoformat(),
                str(tmp_path),
                backend,
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        children.append(child)
        # One after the other: the first owns every shard, then spreads them with the second.
        assert child.stdout is not None
        read_line(child.stdout, "READY", deadline)
    with raw(postgres_schema) as db:
        owners = dict(db.execute("SELECT shard, owner FROM shards").fetchall())
    holders = {f"s{n}": owners[shard_of(f"s{n}")] for n in range(SCHEDULES)}
    assert set(holders.values()) == {"runtime-0", "runtime-1"}, holders
    victim_name = holders["s0"]
    victim = children[int(victim_name.removeprefix("runtime-"))]
    survivor = children[1 - children.index(victim)]
    victim_shards = sorted(shard for shard, owner in owners.items() if owner == victim_name)

    def fired(db: Db, after: datetime) -> bool:
        """Whether every schedule has fired a slot later than ``after``."""
        latest = db.execute(
            "SELECT min((document->>'last_fire_at')::timestamptz) FROM schedules"
        ).fetchone()
        assert latest is not None
        return latest[0] is not None and latest[0] > after

    with raw(postgres_schema) as db:
        # Both runtimes fire for a while (another process decides when: polled).
        both_fired = datetime.now(UTC) + timedelta(seconds=2)
        while not fired(db, both_fired):
            assert time.monotonic() < deadline, "the schedules did not fire"
            time.sleep(0.1)
        victim.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        victim.wait()
        while db.execute(
            "SELECT count(*) FROM shards WHERE shard = ANY(%s) AND owner = %s",
            (victim_shards, victim_name),
        ).fetchone() != (0,):
            assert time.monotonic() - killed_at < TAKEOVER_BOUND, "no takeover in time"
            time.sleep(0.02)
        taken_after = time.monotonic() - killed_at
        end = datetime.now(UTC) + AFTER
        while True:
            rows = db.execute("SELECT id, status FROM missions").fetchall()
            pending = [i for i, status in rows if status != "completed" and _slot(i)[1] <= end]
            if fired(db, end) and not pending:
                break
            assert time.monotonic() < deadline, f"slots up to the end not completed: {pending}"
            time.sleep(0.2)
        records = db.execute(
            "SELECT id, (document->>'fires')::int, (document->>'last_fire_at')::timestamptz, "
            "(document->>'created_at')::timestamptz FROM schedules"
        ).fetchall()
    survivor.send_signal(signal.SIGTERM)
    survivor.wait(timeout=30)

    slots: dict[str, list[datetime]] = collections.defaultdict(list)
    for mission_id, _ in rows:
        schedule, slot = _slot(mission_id)
        slots[schedule].append(slot)
    assert set(slots) == {f"s{n}" for n in range(SCHEDULES)}
    second = timedelta(seconds=1)
    for schedule, fires, last_fire_at, created_at in records:
        fired_slots = sorted(slots[schedule])
        # The first slot is the first one after the schedule was created, and none is missing
        # from there to the end.
        first = created_at.replace(microsecond=0) + second
        upto = [slot for slot in fired_slots if slot <= end]
        assert upto == [first + n * second for n in range(len(upto))], schedule
        assert upto[-1] > end - second, f"{schedule} missed its last slots"
        assert fires == sum(slot <= last_fire_at for slot in fired_slots), schedule

    runs: dict[str, list[int]] = collections.defaultdict(list)
    for log in tmp_path.glob("steps-*.log"):
        pid = int(log.stem.removeprefix("steps-"))
        for mission_id in log.read_text(encoding="utf-8").splitlines():
            runs[mission_id].append(pid)
    assert {i for i, _ in rows if _slot(i)[1] <= end} <= set(runs)
    twice = {mission_id: pids for mission_id, pids in runs.items() if len(pids) > 1}
    assert len(twice) <= CONCURRENCY
    # Each ran in the killed runtime (in flight when it died), then in the survivor.
    assert all(sorted(pids) == sorted([victim.pid, survivor.pid]) for pids in twice.values())
    print(f"takeover after {taken_after:.2f} s; {len(rows)} slots; run twice: {len(twice)}")
