"""Crash tests: real child processes (tests/crash_child.py) killed with SIGKILL around a commit,
then a new process recovers the database."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import trio

from mission_control.adapter_sqlite import create_sqlite_persistence_adapter
from mission_control.core import MissionStatus, NodeStatus, TimelineKind

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs SIGKILL")

CHILD = Path(__file__).with_name("crash_child.py")
DEADLINE = 60  # seconds; a watchdog for a hung child, never a wait the tests rely on


def child(db: Path, log: Path, mode: str) -> list[str]:
    return [sys.executable, str(CHILD), str(db), str(log), mode]


async def run_until_killed(db: Path, log: Path, mode: str, *, kill_on: str | None) -> None:
    """Run the child in ``mode``; SIGKILL it when it prints ``kill_on`` (or let it kill itself)."""
    with trio.fail_after(DEADLINE):
        process = await trio.lowlevel.open_process(
            child(db, log, mode), stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        try:
            assert process.stdout is not None
            assert process.stderr is not None
            output = b""
            async for chunk in process.stdout:
                output += chunk
                if kill_on is not None and kill_on.encode() in output:
                    process.send_signal(signal.SIGKILL)
                    break
            await process.wait()
            errors = b"".join([chunk async for chunk in process.stderr])
        finally:
            if process.returncode is None:
                process.kill()
            with trio.CancelScope(shield=True):
                await process.wait()
                for stream in (process.stdout, process.stderr):
                    if stream is not None:
                        await stream.aclose()
    assert process.returncode == -signal.SIGKILL, (output, errors.decode())


async def recover(db: Path, log: Path) -> dict[str, str]:
    with trio.fail_after(DEADLINE):
        result = await trio.run_process(
            child(db, log, "recover"), capture_stdout=True, capture_stderr=True, check=False
        )
    assert result.returncode == 0, result.stderr.decode()
    statuses: dict[str, str] = json.loads(result.stdout.decode().strip().splitlines()[-1])
    return statuses


def runs(log: Path) -> Counter[str]:
    return Counter(log.read_text().splitlines())


async def test_a_step_whose_commit_did_not_happen_runs_again_after_a_crash(
    tmp_path: Path,
) -> None:
    """A process killed inside a step keeps every earlier commit; the step runs again on recovery
    and the mission completes, while committed steps do not run again."""
    db, log = tmp_path / "crash.sqlite", tmp_path / "steps.log"
    await run_until_killed(db, log, "block-in-b", kill_on="STEP-RAN")

    async with create_sqlite_persistence_adapter(db, read_only=True) as inspector:
        m1 = await inspector.load("m1")
        m2 = await inspector.load("m2")
        assert m1 is not None
        assert m1.status is MissionStatus.COMPLETED
        assert m2 is not None
        assert m2.status is MissionStatus.RUNNING
        assert m2.current_node == "b"
        assert m2.nodes["a"].status is NodeStatus.COMPLETED
        assert m2.nodes["a"].output == "a-done"
        assert await inspector.running_missions(10) == ["m2"]

    assert await recover(db, log) == {"m1": "completed", "m2": "completed"}
    assert runs(log) == Counter({"a m1": 1, "b m1": 1, "c m1": 1, "a m2": 1, "b m2": 2, "c m2": 1})
    async with create_sqlite_persistence_adapter(db, read_only=True) as inspector:
        kinds = [entry.kind for entry in await inspector.timeline("m2")]
    assert kinds.count(TimelineKind.MISSION_RESUMED) == 1
    assert kinds[-1] is TimelineKind.MISSION_COMPLETED


async def test_a_step_whose_commit_happened_does_not_run_again_after_a_crash(
    tmp_path: Path,
) -> None:
    """A process killed right after a step's commit keeps that step's result; recovery carries
    on from the next step and never runs the committed step again."""
    db, log = tmp_path / "crash.sqlite", tmp_path / "steps.log"
    await run_until_killed(db, log, "die-after-commit-b", kill_on=None)

    async with create_sqlite_persistence_adapter(db, read_only=True) as inspector:
        m2 = await inspector.load("m2")
        assert m2 is not None
        assert m2.status is MissionStatus.RUNNING
        assert m2.current_node == "c"
        assert m2.nodes["b"].output == "b-done"

    assert await recover(db, log) == {"m1": "completed", "m2": "completed"}
    assert runs(log) == Counter({"a m1": 1, "b m1": 1, "c m1": 1, "a m2": 1, "b m2": 1, "c m2": 1})


async def test_waits_buffered_signals_and_cancellation_requests_survive_a_crash(
    tmp_path: Path,
) -> None:
    """Missions waiting for a signal, a timer, a retry or a delayed start, a buffered signal and
    a cancellation request left mid-step all survive SIGKILL and reach their terminal state."""
    db, log = tmp_path / "crash.sqlite", tmp_path / "steps.log"
    await run_until_killed(db, log, "waits-then-die", kill_on=None)

    async with create_sqlite_persistence_adapter(db, read_only=True) as inspector:
        buffered = await inspector.next_signal("w-buffered", "go")
        assert buffered is not None
        assert buffered.payload == {"early": True}
        cancelled = await inspector.load("p-cancel")
        assert cancelled is not None
        assert cancelled.status is MissionStatus.RUNNING
        assert cancelled.cancel_request is not None
        assert cancelled.cancel_request.reason == "crash test"

    assert await recover(db, log) == {
        "p-cancel": "cancelled",
        "w-buffered": "completed",
        "w-delayed": "completed",
        "w-retry": "completed",
        "w-signal": "completed",
        "w-timer": "completed",
    }
    counts = runs(log)
    assert counts["b p-cancel"] == 1, "a cancelled mission does not re-run its interrupted step"
    assert counts["c p-cancel"] == 0
    for mission_id in ("w-buffered", "w-delayed", "w-retry", "w-signal", "w-timer"):
        assert counts[f"flaky {mission_id}"] == 2
    async with create_sqlite_persistence_adapter(db, read_only=True) as inspector:
        assert await inspector.next_signal("w-buffered", "go") is None
