"""Missions stored by 0.1.0 keep working after the upgrade: ``fixtures/v010.sqlite`` was written
by the 0.1.0 release (``fixtures/make_v010_fixture.py``, run against ``ec4e9fb``, lists what it
holds) and is opened here with today's code, on a copy.

The test asserts only what users see (statuses, outputs, timelines, what the steps ran with), so
that it holds whatever today's code stores the missions as once it has rewritten them.
"""

from __future__ import annotations

import importlib.util
import shutil
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import pytest

from mission_control.adapter_sqlite import SQLiteCommander, create_sqlite_persistence_adapter
from mission_control.core import (
    Context,
    DefinitionVersionError,
    MissionSnapshot,
    MissionStatus,
    NodeStatus,
    TimelineEntry,
    TimelineKind,
    fingerprint,
    m,
)
from mission_control.runtime import create_commander_runtime
from mission_control.testing import LoopClock

pytestmark = pytest.mark.anyio

FIXTURES = Path(__file__).with_name("fixtures")
FIXTURE = FIXTURES / "v010.sqlite"


def _load_flow() -> ModuleType:
    # By path: the generator imports the same file under 0.1.0, where this package's tests are
    # not importable.
    spec = importlib.util.spec_from_file_location("v010_flow", FIXTURES / "v010_flow.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


flow_module = _load_flow()
BEGAN: datetime = flow_module.BEGAN
LEFT_AT: datetime = flow_module.LEFT_AT

Ran = tuple[str, str, int, str]
"""A step run: mission id, node, attempt and idempotency key."""

STORED_STATUSES = {
    "buffered": MissionStatus.WAITING,
    "completed": MissionStatus.COMPLETED,
    "delayed": MissionStatus.WAITING,
    "mid-retry": MissionStatus.WAITING,
    "mid-step": MissionStatus.RUNNING,
    "need-to": MissionStatus.WAITING,
    "sleeping": MissionStatus.WAITING,
}
"""What 0.1.0 left each mission as."""

APPROVERS = {
    "buffered": "early",  # buffered by 0.1.0 before the mission reached its need_to
    "completed": "ada",
    "delayed": "today",
    "mid-retry": "grace",
    "mid-step": "linus",
    "need-to": "today",
    "sleeping": "today",
}
"""Who approved each mission: the names before ``today`` are in signals 0.1.0 stored."""

SHIPPED_ON_ATTEMPT = {mission_id: 1 for mission_id in APPROVERS} | {"mid-retry": 2}


def kinds(entries: Sequence[TimelineEntry]) -> list[tuple[TimelineKind, str | None]]:
    return [(entry.kind, entry.node) for entry in entries]


def is_subsequence(
    wanted: Sequence[tuple[TimelineKind, str | None]], entries: Sequence[TimelineEntry]
) -> bool:
    remaining = iter(kinds(entries))
    return all(item in remaining for item in wanted)


def at(entries: Sequence[TimelineEntry], kind: TimelineKind, node: str) -> list[datetime]:
    return [entry.at for entry in entries if entry.kind is kind and entry.node == node]


async def sleep_until(clock: LoopClock, when: datetime) -> None:
    await anyio.sleep((when - clock.now()).total_seconds())


async def test_missions_stored_by_0_1_0_complete_on_todays_engine(tmp_path: Path) -> None:
    """Every mission in a database 0.1.0 wrote (waiting for a signal, sleeping, mid-retry,
    mid-step after a SIGKILL, a buffered signal, a delayed start, completed) completes on today's
    engine with the outputs and timeline 0.1.0 would have given it, and the interrupted step
    runs again once, with the idempotency key 0.1.0 gave it."""
    db = tmp_path / "v010.sqlite"
    shutil.copyfile(FIXTURE, db)
    ran: list[Ran] = []

    def record(ctx: Context[Any, Any]) -> None:
        ran.append((ctx.mission_id, ctx.node, ctx.attempt, ctx.idempotency_key))

    flow = flow_module.upgrade_flow(record)
    clock = LoopClock(LEFT_AT)
    async with SQLiteCommander(db, [flow], clock=clock) as commander:
        stored = {snapshot.id: snapshot for snapshot in await commander.list()}
        assert {mission_id: s.status for mission_id, s in stored.items()} == STORED_STATUSES
        stored_timelines = {
            mission_id: await commander.timeline(mission_id) for mission_id in stored
        }
        assert kinds(stored_timelines["mid-step"]) == [
            (TimelineKind.MISSION_STARTED, "start"),
            (TimelineKind.STEP_COMPLETED, "start"),
            (TimelineKind.STEP_STARTED, "charge"),
            (TimelineKind.STEP_COMPLETED, "charge"),
            (TimelineKind.WAIT_STARTED, "cool-off"),
            (TimelineKind.TIMER_FIRED, "cool-off"),
            (TimelineKind.WAIT_STARTED, "approve"),
            (TimelineKind.SIGNAL_RECEIVED, "approve"),
            (TimelineKind.STEP_STARTED, "ship"),
        ]

        async with create_commander_runtime(commander):
            with anyio.fail_after(timedelta(hours=2).total_seconds()):
                await commander.signal("need-to", "approve", {"by": "today"})
                # Past the timers 0.1.0 set: the runtime has done all that was due by then.
                await sleep_until(clock, BEGAN + timedelta(minutes=21))
                assert (await commander.inspect("buffered")).status is MissionStatus.COMPLETED
                await commander.signal("sleeping", "approve", {"by": "today"})
                await sleep_until(clock, BEGAN + timedelta(hours=1, minutes=11))
                await commander.signal("delayed", "approve", {"by": "today"})
                final = {mission_id: await commander.result(mission_id) for mission_id in stored}
        timelines = {mission_id: await commander.timeline(mission_id) for mission_id in stored}

    for mission_id, snapshot in final.items():
        assert_completed(snapshot)
        # What 0.1.0 wrote reads back unchanged, and today's engine carried on after it.
        old = stored_timelines[mission_id]
        assert timelines[mission_id][: len(old)] == old, mission_id
        assert timelines[mission_id][-1].kind is TimelineKind.MISSION_COMPLETED, mission_id

    # Only the steps 0.1.0 had not finished ran: no charge ran twice, and the interrupted ship
    # ran once more with the key 0.1.0 gave it.
    assert Counter((m, node) for m, node, _, _ in ran) == Counter(
        [
            ("mid-step", "ship"),
            ("mid-retry", "ship"),
            ("need-to", "ship"),
            ("buffered", "ship"),
            ("sleeping", "ship"),
            ("delayed", "charge"),
            ("delayed", "ship"),
        ]
    )
    for mission_id, node, attempt, key in ran:
        assert key == f"{mission_id}:{node}"
        assert attempt == (SHIPPED_ON_ATTEMPT[mission_id] if node == "ship" else 1), (
            mission_id,
            node,
        )

    assert final["completed"] == stored["completed"]
    assert timelines["completed"] == stored_timelines["completed"]

    mid_step = timelines["mid-step"][len(stored_timelines["mid-step"]) :]
    assert is_subsequence(
        [
            (TimelineKind.MISSION_RESUMED, "ship"),
            (TimelineKind.STEP_COMPLETED, "ship"),
        ],
        mid_step,
    ), kinds(mid_step)
    assert [entry.kind for entry in mid_step].count(TimelineKind.MISSION_RESUMED) == 1

    mid_retry = timelines["mid-retry"]
    assert at(mid_retry, TimelineKind.STEP_STARTED, "ship")[-1] == BEGAN + timedelta(minutes=11)

    for mission_id in ("sleeping", "buffered"):
        fired = at(timelines[mission_id], TimelineKind.TIMER_FIRED, "cool-off")
        assert fired == [BEGAN + timedelta(minutes=20)], mission_id
    buffered = timelines["buffered"][len(stored_timelines["buffered"]) :]
    assert is_subsequence(
        [
            (TimelineKind.TIMER_FIRED, "cool-off"),
            (TimelineKind.SIGNAL_RECEIVED, "approve"),
            (TimelineKind.STEP_STARTED, "ship"),
        ],
        buffered,
    ), kinds(buffered)
    async with create_sqlite_persistence_adapter(db, read_only=True) as inspector:
        assert await inspector.next_signal("buffered", "approve") is None

    delayed = timelines["delayed"]
    assert kinds(stored_timelines["delayed"]) == [(TimelineKind.MISSION_SCHEDULED, "start")]
    assert at(delayed, TimelineKind.MISSION_STARTED, "start") == [BEGAN + timedelta(hours=1)]
    assert final["delayed"].created_at == LEFT_AT


def assert_completed(snapshot: MissionSnapshot) -> None:
    """The mission ended as the definition says, with the outputs every node gave it."""
    mission_id = snapshot.id
    approver = APPROVERS[mission_id]
    attempt = SHIPPED_ON_ATTEMPT[mission_id]
    assert snapshot.status is MissionStatus.COMPLETED, (mission_id, snapshot.error)
    assert snapshot.definition == "upgrade-flow"
    assert snapshot.definition_version == 2
    assert snapshot.input == {"order": mission_id, "amount": 42}
    assert snapshot.output == {
        "order": mission_id,
        "charged": 42,
        "approved_by": approver,
        "shipped_on_attempt": attempt,
    }
    outputs = {name: record.output for name, record in snapshot.nodes.items()}
    assert outputs == {
        "start": {"received": mission_id},
        "charge": {"charged": 42, "key": f"{mission_id}:charge"},
        "cool-off": None,
        "approve": approver,
        "ship": {"attempt": attempt, "key": f"{mission_id}:ship"},
        "end": snapshot.output,
    }, mission_id
    assert all(record.status is NodeStatus.COMPLETED for record in snapshot.nodes.values())


async def test_missions_stored_before_schema_3_keep_the_version_their_snapshot_holds(
    tmp_path: Path,
) -> None:
    """A 0.1.0 database (schema 1) migrated to schema 3 knows its unfinished missions' version
    (2, from their snapshots) without a scan; the first commander with that version records
    its fingerprint, and one without it is refused naming the missions."""
    db = tmp_path / "v010.sqlite"
    shutil.copyfile(FIXTURE, db)
    async with create_sqlite_persistence_adapter(db) as adapter:
        assert await adapter.versions_in_use() == [("upgrade-flow", 2)]
        assert await adapter.fingerprints() == {}
        unfinished = await adapter.missions_on_version("upgrade-flow", 2, 100)
        listed = await adapter.list_missions(limit=100)
        assert unfinished == sorted(s.id for s in listed if not s.is_terminal)
    flow = flow_module.upgrade_flow(lambda ctx: None)
    newer = m.define("upgrade-flow", version=3).start(parse=dict).end()
    with pytest.raises(DefinitionVersionError, match="'upgrade-flow' version 2 is not registered"):
        async with SQLiteCommander(db, [newer]):
            pass
    async with SQLiteCommander(db, [flow, newer]) as commander:
        assert await commander.persistence.fingerprints() == {
            ("upgrade-flow", 2): fingerprint(flow),
            ("upgrade-flow", 3): fingerprint(newer),
        }
