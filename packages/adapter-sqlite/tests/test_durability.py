"""Missions survive closing and reopening the database: waits, retries, timers, delayed starts,
buffered signals and cancellation requests all carry on where they were."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import pytest

from mission_control.adapter_sqlite import SQLiteCommander
from mission_control.core import (
    Context,
    MissionStatus,
    NodeStatus,
    TimelineKind,
    WaitKind,
    m,
)
from mission_control.core.lowlevel import MissionDriver
from mission_control.in_memory_commander import ManualClock
from mission_control.testing import wait_all_tasks_blocked

pytestmark = pytest.mark.anyio

RUNS: Counter[str] = Counter()
GATE: dict[str, anyio.Event] = {}


@pytest.fixture(autouse=True)
def _reset() -> None:
    RUNS.clear()
    GATE.clear()


def parse(raw: Any) -> Any:
    return raw


async def prepare(ctx: Context[Any, Any]) -> str:
    RUNS["prepare"] += 1
    return f"prepared {ctx.input['user']}"


async def notify(ctx: Context[Any, Any]) -> dict[str, Any]:
    RUNS["notify"] += 1
    if ctx.attempt < 3:
        raise ConnectionError(f"mail server down (attempt {ctx.attempt})")
    return {"approved_by": ctx.events["approve"].output["by"]}


async def gated(ctx: Context[Any, Any]) -> str:
    RUNS["gated"] += 1
    gate = GATE.get(ctx.mission_id)
    if gate is not None:
        await gate.wait()
    return "passed"


APPROVAL = (
    m.define("approval")
    .start(parse=parse)
    .step("prepare", prepare)
    .need_to("approve", parse=parse)
    .sleep("cool-off", timedelta(hours=1))
    .step("notify", notify, retry=m.retry(5, m.fixed(timedelta(minutes=5))))
    .end(lambda ctx: "done")
)

GATED = m.define("gated").start(parse=parse).step("gated", gated).step("after", gated).end()

DEFINITIONS = [APPROVAL, GATED]


def reopen(db_path: Path, clock: ManualClock) -> SQLiteCommander:
    return SQLiteCommander(db_path, DEFINITIONS, clock=clock)


async def run_due(commander: MissionDriver) -> None:
    for mission_id in await commander.due_missions(100):
        await commander.advance(mission_id)


async def test_a_mission_survives_every_wait_across_reopens(
    db_path: Path, clock: ManualClock
) -> None:
    """A mission waiting for a signal, then a timer, then retries is closed and reopened at each
    wait and completes with its full history, each step run as often as it was attempted."""
    async with reopen(db_path, clock) as commander:
        handle = await commander.start(APPROVAL, {"user": "ada"}, id="ada")
        snapshot = await handle.inspect()
        assert snapshot.status is MissionStatus.WAITING
        assert snapshot.wait is not None
        assert snapshot.wait.kind is WaitKind.SIGNAL

    async with reopen(db_path, clock) as commander:
        snapshot = await commander.signal("ada", "approve", {"by": "grace"})
        assert snapshot.wait is not None
        assert snapshot.wait.kind is WaitKind.TIMER
        due = snapshot.wait.due_at

    async with reopen(db_path, clock) as commander:
        assert await commander.next_due_at() == due
        assert await commander.due_missions(10) == []
        clock.advance(timedelta(hours=1))
        assert await commander.due_missions(10) == ["ada"]
        await run_due(commander)
        snapshot = await commander.inspect("ada")
        assert snapshot.wait is not None
        assert snapshot.wait.kind is WaitKind.RETRY
        assert snapshot.nodes["notify"].attempts == 1

    for attempt in (2, 3):
        async with reopen(db_path, clock) as commander:
            assert await commander.due_missions(10) == []
            clock.advance(timedelta(minutes=5))
            await run_due(commander)
            assert (await commander.inspect("ada")).nodes["notify"].attempts == attempt

    async with reopen(db_path, clock) as commander:
        snapshot = await commander.wait_for_completion("ada")
        assert snapshot.output == "done"
        assert snapshot.nodes["notify"].output == {"approved_by": "grace"}
        assert await commander.next_due_at() is None
        kinds = [entry.kind for entry in await commander.timeline("ada")]
    assert Counter({"prepare": 1, "notify": 3}) == RUNS
    assert kinds.count(TimelineKind.RETRY_SCHEDULED) == 2
    assert kinds[-1] is TimelineKind.MISSION_COMPLETED


async def test_a_delayed_start_survives_a_reopen(db_path: Path, clock: ManualClock) -> None:
    """A mission started with ``start_at`` waits durably and starts once that time has come."""
    async with reopen(db_path, clock) as commander:
        start_at = clock.now() + timedelta(days=2)
        await commander.start(APPROVAL, {"user": "ada"}, id="later", start_at=start_at)

    async with reopen(db_path, clock) as commander:
        assert await commander.next_due_at() == start_at
        clock.advance(timedelta(days=1))
        assert await commander.due_missions(10) == []
        clock.advance(timedelta(days=1))
        await run_due(commander)
        snapshot = await commander.inspect("later")
        assert snapshot.nodes["prepare"].status is NodeStatus.COMPLETED
        assert snapshot.wait is not None
        assert snapshot.wait.signal == "approve"
    assert RUNS["prepare"] == 1


async def test_a_buffered_signal_survives_a_reopen(db_path: Path, clock: ManualClock) -> None:
    """A signal sent before its ``need_to`` is reached is stored, survives a reopen, and is
    consumed when the mission gets there."""
    async with reopen(db_path, clock) as commander:
        start_at = clock.now() + timedelta(minutes=1)
        await commander.start(APPROVAL, {"user": "ada"}, id="early", start_at=start_at)
        await commander.signal("early", "approve", {"by": "linus"})

    async with reopen(db_path, clock) as commander:
        clock.advance(timedelta(minutes=1))
        await run_due(commander)
        snapshot = await commander.inspect("early")
        assert snapshot.nodes["approve"].output == {"by": "linus"}
        assert snapshot.wait is not None
        assert snapshot.wait.kind is WaitKind.TIMER
        assert await commander.persistence.next_signal("early", "approve") is None


async def test_a_cancellation_request_survives_a_reopen(db_path: Path, clock: ManualClock) -> None:
    """A cancellation requested while a step runs is stored at once; if the process stops before
    the step's commit, the reopened mission is cancelled when it is resumed, not re-run."""
    GATE["victim"] = anyio.Event()
    async with reopen(db_path, clock) as commander, anyio.create_task_group() as tasks:
        tasks.start_soon(partial(commander.start, GATED, {}, id="victim"))
        await wait_all_tasks_blocked()
        assert commander.is_held("victim")
        await commander.cancel("victim", "changed my mind")
        # Stop the process's work before the step finishes: nothing more is committed.
        tasks.cancel_scope.cancel()

    async with reopen(db_path, clock) as commander:
        snapshot = await commander.inspect("victim")
        assert snapshot.status is MissionStatus.RUNNING
        assert snapshot.cancel_request is not None
        assert snapshot.cancel_request.reason == "changed my mind"
        assert await commander.running_missions(10) == ["victim"]
        result = await commander.advance("victim")
        assert result is not None
        assert result.status is MissionStatus.CANCELLED
    assert RUNS["gated"] == 1


async def test_a_mission_interrupted_mid_step_resumes_after_a_reopen(
    db_path: Path, clock: ManualClock
) -> None:
    """A mission whose step never committed is listed as running after a reopen and resuming it
    re-runs only that step."""
    GATE["stuck"] = anyio.Event()
    async with reopen(db_path, clock) as commander, anyio.create_task_group() as tasks:
        tasks.start_soon(partial(commander.start, GATED, {}, id="stuck"))
        await wait_all_tasks_blocked()
        tasks.cancel_scope.cancel()
    assert RUNS["gated"] == 1

    GATE.clear()
    async with reopen(db_path, clock) as commander:
        assert await commander.running_missions(10) == ["stuck"]
        result = await commander.advance("stuck")
        assert result is not None
        assert result.status is MissionStatus.COMPLETED
        kinds = [entry.kind for entry in await commander.timeline("stuck")]
    assert RUNS["gated"] == 3  # "gated" twice (interrupted, resumed), "after" once
    assert TimelineKind.MISSION_RESUMED in kinds
