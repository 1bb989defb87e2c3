"""Crash tests: real child processes (tests/crash_child.py) killed with SIGKILL around a commit,
then a new process recovers the database.

Each runs its children on the test's backend, in real time: the deadline around a child is a
watchdog for a hung child, which virtual time would fire at once. Slow (many processes, many of
them killed): CI runs them once.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import anyio
import pytest
import trio

from mission_control.adapter_sqlite import SQLiteCommander, create_sqlite_persistence_adapter
from mission_control.core import (
    DEFAULT_MAX_RECOVERY_ATTEMPTS,
    MissionSnapshot,
    MissionStatus,
    NodeStatus,
    ParentLink,
    RecoveryAttemptsExceededError,
    TimelineKind,
    WaitKind,
)

pytestmark = [
    pytest.mark.skipif(sys.platform == "win32", reason="needs SIGKILL"),
    pytest.mark.slow,
    pytest.mark.anyio,
    pytest.mark.real_time,
]

CHILD = Path(__file__).with_name("crash_child.py")
DEADLINE = 60  # seconds; a watchdog for a hung child, never a wait the tests rely on


def child(db: Path, log: Path, mode: str) -> list[str]:
    """The command that runs the child in ``mode`` on the backend the test runs on."""
    backend = "trio" if trio.lowlevel.in_trio_run() else "asyncio"
    return [sys.executable, str(CHILD), str(db), str(log), mode, backend]


async def run_until_killed(db: Path, log: Path, mode: str, *, kill_on: str | None) -> None:
    """Run the child in ``mode``; SIGKILL it when it prints ``kill_on`` (or let it kill itself)."""
    with anyio.fail_after(DEADLINE):
        process = await anyio.open_process(
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
            with anyio.CancelScope(shield=True):
                await process.wait()
                for stream in (process.stdout, process.stderr):
                    if stream is not None:
                        await stream.aclose()
    assert process.returncode == -signal.SIGKILL, (output, errors.decode())


async def run_child(db: Path, log: Path, mode: str) -> tuple[int, str, str]:
    """Run the child in ``mode`` to its end: its return code, stdout and stderr."""
    with anyio.fail_after(DEADLINE):
        result = await anyio.run_process(child(db, log, mode), check=False)
    return result.returncode, result.stdout.decode(), result.stderr.decode()


async def recover(db: Path, log: Path, mode: str = "recover") -> dict[str, str]:
    code, out, errors = await run_child(db, log, mode)
    assert code == 0, errors
    statuses: dict[str, str] = json.loads(out.strip().splitlines()[-1])
    return statuses


def runs(log: Path) -> Counter[str]:
    return Counter(log.read_text().splitlines())


async def parent_and_kid(db: Path, parent: str) -> tuple[MissionSnapshot, MissionSnapshot]:
    """The stored mission ``parent`` and its child ``<parent>/kid`` (the ``child`` modes)."""
    async with create_sqlite_persistence_adapter(db, read_only=True) as inspector:
        stored = await inspector.load(parent)
        kid = await inspector.load(f"{parent}/kid")
    assert stored is not None
    assert kid is not None
    return stored, kid


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


async def test_a_crash_while_compensating_resumes_compensating(tmp_path: Path) -> None:
    """A process SIGKILLed inside a compensation keeps the compensations that completed before
    it (they are owed no more); recovery runs the interrupted one again, never the completed
    ones, and the mission ends compensated."""
    db, log = tmp_path / "crash.sqlite", tmp_path / "steps.log"
    await run_until_killed(db, log, "compensate", kill_on="UNDO-RAN")

    async with create_sqlite_persistence_adapter(db, read_only=True) as inspector:
        stored = await inspector.load("saga")
        assert stored is not None
        assert stored.status is MissionStatus.RUNNING
        assert stored.compensating
        assert stored.compensations is not None
        assert [owed.path for owed in stored.compensations.owed] == ["book-a"]
        assert stored.active == ("book-a/compensate",)
        assert stored.nodes["book-b/compensate"].status is NodeStatus.COMPLETED
        assert stored.error is not None
        assert stored.error.message == "card declined"
        assert await inspector.running_missions(10) == ["saga"]

    assert await recover(db, log) == {"saga": "compensated"}
    assert runs(log) == Counter(
        {"a saga": 1, "c saga": 1, "pay saga": 1, "undo-b saga": 1, "undo-a saga": 2}
    )
    async with create_sqlite_persistence_adapter(db, read_only=True) as inspector:
        entries = await inspector.timeline("saga")
    kinds = [entry.kind for entry in entries]
    assert kinds.count(TimelineKind.MISSION_RESUMED) == 1
    assert kinds.count(TimelineKind.COMPENSATION_COMPLETED) == 2
    assert kinds[-1] is TimelineKind.MISSION_COMPENSATED


async def test_a_crash_while_a_cancellation_compensates_resumes_compensating(
    tmp_path: Path,
) -> None:
    """A process SIGKILLed inside a compensation begun by ``cancel(..., compensate=True)`` is
    found compensating with its cancellation kept; recovery runs the interrupted compensation
    again, never the completed one, and the mission ends compensated, its reason kept."""
    db, log = tmp_path / "crash.sqlite", tmp_path / "steps.log"
    await run_until_killed(db, log, "compensate-cancel", kill_on="UNDO-RAN")

    async with create_sqlite_persistence_adapter(db, read_only=True) as inspector:
        stored = await inspector.load("saga-c")
        assert stored is not None
        assert stored.status is MissionStatus.RUNNING
        assert stored.compensating
        assert stored.cancel_request is not None
        assert stored.cancel_request.compensate
        assert stored.compensations is not None
        assert [owed.path for owed in stored.compensations.owed] == ["book-a"]
        assert stored.active == ("book-a/compensate",)
        assert stored.nodes["book-b/compensate"].status is NodeStatus.COMPLETED
        assert await inspector.running_missions(10) == ["saga-c"]

    assert await recover(db, log) == {"saga-c": "compensated"}
    assert runs(log) == Counter(
        {"a saga-c": 1, "c saga-c": 1, "undo-b saga-c": 1, "undo-a saga-c": 2}
    )
    async with create_sqlite_persistence_adapter(db, read_only=True) as inspector:
        done = await inspector.load("saga-c")
    assert done is not None
    assert done.error is None
    assert done.cancel_request is not None
    assert done.cancel_request.reason == "the customer changed their mind"


async def test_a_start_killed_inside_its_run_is_stored_and_the_runtime_completes_it(
    tmp_path: Path,
) -> None:
    """A process SIGKILLed inside the start node's run leaves the mission stored as running at
    its start; the next process's runtime runs the start again and completes the mission."""
    db, log = tmp_path / "crash.sqlite", tmp_path / "steps.log"
    await run_until_killed(db, log, "block-in-start", kill_on="START-RAN")

    async with create_sqlite_persistence_adapter(db, read_only=True) as inspector:
        stored = await inspector.load("s1")
        assert stored is not None
        assert (stored.status, stored.current_node) == (MissionStatus.RUNNING, "start")
        assert await inspector.running_missions(10) == ["s1"]

    assert await recover(db, log, "runtime") == {"s1": "completed"}
    assert runs(log) == Counter({"start s1": 2, "a s1": 1, "b s1": 1, "c s1": 1})


async def test_a_signal_with_start_killed_inside_its_start_keeps_its_signal_for_the_recovery(
    tmp_path: Path,
) -> None:
    """A process SIGKILLed inside the start function of a mission signal_with_start started
    leaves the mission stored running with the signal buffered; the next process's runtime runs
    the start again and the need_to takes that signal."""
    db, log = tmp_path / "crash.sqlite", tmp_path / "steps.log"
    await run_until_killed(db, log, "signal-with-start", kill_on="START-RAN")

    async with create_sqlite_persistence_adapter(db, read_only=True) as inspector:
        stored = await inspector.load("sws")
        assert stored is not None
        assert (stored.status, stored.current_node) == (MissionStatus.RUNNING, "start")
        signal = await inspector.next_signal("sws", "go")
        assert signal is not None
        assert signal.payload == {"sent": 1}
        kinds = [entry.kind for entry in await inspector.timeline("sws")]
        assert kinds == [TimelineKind.MISSION_STARTED, TimelineKind.SIGNAL_BUFFERED]

    assert await recover(db, log, "runtime") == {"sws": "completed"}
    assert runs(log) == Counter({"start sws": 2, "a sws": 1})
    async with create_sqlite_persistence_adapter(db, read_only=True) as inspector:
        done = await inspector.load("sws")
        assert done is not None
        assert done.output == {"sent": 1}
        assert await inspector.next_signal("sws", "go") is None


async def test_a_step_that_kills_its_process_fails_after_max_recovery_attempts(
    tmp_path: Path,
) -> None:
    """A step that SIGKILLs its process is re-run by each new runtime only until
    max_recovery_attempts is used up; the runtime after that starts, fails the mission with
    RecoveryAttemptsExceededError without running the step, and moves the healthy missions."""
    db, log = tmp_path / "crash.sqlite", tmp_path / "steps.log"
    await run_until_killed(db, log, "poison", kill_on=None)

    for _ in range(DEFAULT_MAX_RECOVERY_ATTEMPTS):
        code, _, errors = await run_child(db, log, "runtime")
        assert code == -signal.SIGKILL, errors
    expected = {"h-done": "completed", "h-run-1": "completed", "p-poison": "failed"}
    assert await recover(db, log, "runtime") == {**expected, "z-run": "completed"}
    assert runs(log)["die p-poison"] == 1 + DEFAULT_MAX_RECOVERY_ATTEMPTS

    async with create_sqlite_persistence_adapter(db, read_only=True) as inspector:
        poisoned = await inspector.load("p-poison")
        assert poisoned is not None
        assert poisoned.error is not None
        assert poisoned.error.type == RecoveryAttemptsExceededError.__qualname__
        assert "max_recovery_attempts=5" in poisoned.error.message
        assert "Fix the step" in poisoned.error.message
        assert poisoned.recovery_attempts == 1 + DEFAULT_MAX_RECOVERY_ATTEMPTS
        assert poisoned.nodes["die"].status is NodeStatus.FAILED
        healthy = await inspector.load("z-run")
        assert healthy is not None
        assert healthy.recovery_attempts == 0

    # Later runtimes leave the failed mission alone.
    assert await recover(db, log, "runtime") == {**expected, "z-run": "completed"}
    assert runs(log)["die p-poison"] == 1 + DEFAULT_MAX_RECOVERY_ATTEMPTS


async def test_a_step_that_kills_its_process_does_not_use_up_the_recoveries_of_its_neighbours(
    tmp_path: Path,
) -> None:
    """Missions interrupted beside a step that kills the process, with the runtime's default
    concurrency, complete: a mission recovered before is resumed alone, so only the poison
    mission uses up its recovery attempts and fails."""
    db, log = tmp_path / "crash.sqlite", tmp_path / "steps.log"
    await run_until_killed(db, log, "crowd", kill_on=None)
    assert {f"crowd {mission_id}" for mission_id in ("c-1", "c-2", "c-3")} <= set(runs(log))

    killed = 0
    while True:
        code, out, errors = await run_child(db, log, "runtime-concurrent")
        if code == 0:
            break
        assert code == -signal.SIGKILL, errors
        killed += 1
        assert killed <= DEFAULT_MAX_RECOVERY_ATTEMPTS, "the poison mission was never failed"
    statuses = json.loads(out.strip().splitlines()[-1])
    assert statuses == {
        "c-1": "completed",
        "c-2": "completed",
        "c-3": "completed",
        "p-crowd": "failed",
    }
    assert killed == DEFAULT_MAX_RECOVERY_ATTEMPTS
    assert runs(log)["die p-crowd"] == 1 + DEFAULT_MAX_RECOVERY_ATTEMPTS


async def test_a_parallel_killed_in_one_branch_runs_only_its_unfinished_work_again(
    tmp_path: Path,
) -> None:
    """A SIGKILL while one branch of a parallel runs its second step, once the other branch's
    step and this branch's first were written, runs again only the interrupted step; the
    mission then completes, its waiting branch included."""
    db, log = tmp_path / "missions.db", tmp_path / "steps.log"
    await run_until_killed(db, log, "parallel", kill_on="BLOCK-RAN")
    assert runs(log) == Counter({"p-fast par": 1, "p-first par": 1, "p-block par": 1})
    statuses = await recover(db, log)
    assert statuses["par"] == "completed"
    assert runs(log) == Counter(
        {"p-fast par": 1, "p-first par": 1, "p-block par": 2, "p-after par": 1}
    )


async def test_a_loop_killed_mid_iteration_goes_on_from_that_iteration(tmp_path: Path) -> None:
    """A SIGKILL inside iteration 3 of a loop (in its first step, or its second) runs again only
    the interrupted step: the earlier iterations and their until verdicts are not run or asked
    again, the verdict that began iteration 3 was stored before its first step ran, and the
    loops complete with the last iteration's output."""
    db, log = tmp_path / "missions.db", tmp_path / "steps.log"
    await run_until_killed(db, log, "loop", kill_on="LOOPS-BLOCKED")

    async with create_sqlite_persistence_adapter(db, read_only=True) as inspector:
        first = await inspector.load("loop-first")
        mid = await inspector.load("loop-mid")
        assert first is not None
        assert mid is not None
        assert first.nodes["rounds"].attempts == 3
        assert first.active == ("rounds/3/l-first",)
        assert first.nodes["rounds/3/l-first"].status is NodeStatus.RUNNING
        assert mid.active == ("rounds/3/l-second",)
        assert mid.nodes["rounds/3/l-first"].output == "l-first 3"
        for stored in (first, mid):
            assert stored.status is MissionStatus.RUNNING
            assert not any(path.startswith(("rounds/1/", "rounds/2/")) for path in stored.nodes)

    assert await recover(db, log) == {"loop-first": "completed", "loop-mid": "completed"}
    counts = runs(log)
    for mission_id in ("loop-first", "loop-mid"):
        interrupted = "l-first" if mission_id == "loop-first" else "l-second"
        for iteration in (1, 2, 3, 4):
            for step in ("l-first", "l-second"):
                expected = 2 if (step, iteration) == (interrupted, 3) else 1
                assert counts[f"{step}/{iteration} {mission_id}"] == expected, (step, iteration)
            assert counts[f"until/{iteration} {mission_id}"] == 1, iteration
    assert sum(counts.values()) == 2 * (4 * 3 + 1)

    async with create_sqlite_persistence_adapter(db, read_only=True) as inspector:
        for mission_id in ("loop-first", "loop-mid"):
            done = await inspector.load(mission_id)
            assert done is not None
            assert done.output == "l-second 4"
            assert done.nodes["rounds"].attempts == 4
            timeline = await inspector.timeline(mission_id)
            iterations = [e.attempt for e in timeline if e.kind is TimelineKind.ITERATION_STARTED]
            assert iterations == [1, 2, 3, 4]
            kinds = [e.kind for e in timeline]
            assert kinds.count(TimelineKind.MISSION_RESUMED) == 1


async def test_a_for_each_killed_with_two_items_in_flight_runs_only_those_again(
    tmp_path: Path,
) -> None:
    """A SIGKILL while a for_each has its third and fourth items in flight keeps the items it
    computed and the results of the first two: recovery runs again only the interrupted steps,
    never computes the items again, and completes with every result in the items' order."""
    db, log = tmp_path / "missions.db", tmp_path / "steps.log"
    await run_until_killed(db, log, "for-each", kill_on="EACH-BLOCKED")

    async with create_sqlite_persistence_adapter(db, read_only=True) as inspector:
        stored = await inspector.load("each")
        assert stored is not None
        assert stored.status is MissionStatus.RUNNING
        record = stored.nodes["items"]
        assert record.input == ["a", "b", "c", "d", "e"]
        assert record.attempts == 4
        assert record.output == ["A in iteration 1", "B in iteration 2", None, None, None]
        assert set(stored.active) == {"items/3/e-work", "items/4/e-work"}

    assert await recover(db, log) == {"each": "completed"}
    assert runs(log) == Counter(
        {
            "items each": 1,
            **{f"e-work/{item} each": 1 for item in "abe"},
            **{f"e-work/{item} each": 2 for item in "cd"},
            **{f"e-done/{item} each": 1 for item in "abcde"},
        }
    )
    async with create_sqlite_persistence_adapter(db, read_only=True) as inspector:
        done = await inspector.load("each")
        assert done is not None
        assert done.output == [
            f"{item.upper()} in iteration {i}" for i, item in enumerate("abcde", 1)
        ]
        started = [
            e.attempt
            for e in await inspector.timeline("each")
            if e.kind is TimelineKind.ITERATION_STARTED
        ]
        assert started == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("how", ["recover", "runtime"])
async def test_a_child_killed_in_its_step_is_not_started_again_and_completes_its_parent(
    tmp_path: Path, how: str
) -> None:
    """A SIGKILL inside a child's first step, run by its parent's start call (the parent
    stored running at its child node) or once the parent waits for it, leaves one child per
    parent: recovery (advance, or a runtime) finds that child instead of starting another,
    runs again only its interrupted step, and the parent completes with the child's
    output."""
    db, log = tmp_path / "missions.db", tmp_path / "steps.log"
    await run_until_killed(db, log, "child", kill_on="CHILDREN-BLOCKED")
    assert runs(log) == Counter(
        {
            "input c-first": 1,
            "k-work c-first/kid": 1,
            "input c-wait": 1,
            "k-work c-wait/kid": 1,
        }
    )

    first, _ = await parent_and_kid(db, "c-first")
    assert (first.status, first.current_node) == (MissionStatus.RUNNING, "kid")
    assert first.nodes["kid"].status is NodeStatus.RUNNING
    assert first.nodes["kid"].attempts == 0
    waiting, _ = await parent_and_kid(db, "c-wait")
    assert waiting.status is MissionStatus.WAITING
    assert waiting.wait is not None
    assert waiting.wait.kind is WaitKind.CHILD
    assert waiting.nodes["kid"].input == {"mission_id": "c-wait/kid", "input": {"parcels": 2}}
    for parent in ("c-first", "c-wait"):
        _, kid = await parent_and_kid(db, parent)
        assert (kid.status, kid.current_node) == (MissionStatus.RUNNING, "k-work")
        assert kid.parent == ParentLink(mission_id=parent, node="kid")
    async with create_sqlite_persistence_adapter(db, read_only=True) as inspector:
        assert await inspector.running_missions(10) == ["c-first", "c-first/kid", "c-wait/kid"]

    assert await recover(db, log, how) == {
        "c-first": "completed",
        "c-first/kid": "completed",
        "c-wait": "completed",
        "c-wait/kid": "completed",
    }
    assert runs(log) == Counter(
        {
            # The parent left running at its child node computes the child's input again.
            "input c-first": 2,
            "k-work c-first/kid": 2,
            "k-after c-first/kid": 1,
            "p-after c-first": 1,
            "input c-wait": 1,
            "k-work c-wait/kid": 2,
            "k-after c-wait/kid": 1,
            "p-after c-wait": 1,
        }
    )
    async with SQLiteCommander(db, [], read_only=True) as reader:
        for parent, parcels in (("c-first", 1), ("c-wait", 2)):
            assert [s.id for s in await reader.list(parent=parent)] == [f"{parent}/kid"]
            done = await reader.inspect(parent)
            kid = await reader.inspect(f"{parent}/kid")
            assert kid.output == f"worked on {parcels}, checked"
            assert done.output == kid.output
            assert done.nodes["kid"].attempts == 1
            timeline = await reader.timeline(parent)
            started = [e.detail for e in timeline if e.kind is TimelineKind.CHILD_STARTED]
            assert started == [{"mission_id": f"{parent}/kid"}]
            kinds = [e.kind for e in await reader.timeline(f"{parent}/kid")]
            assert kinds.count(TimelineKind.MISSION_RESUMED) == 1


async def test_a_parent_whose_child_ended_just_before_a_crash_completes_when_its_wait_is_due(
    tmp_path: Path,
) -> None:
    """A SIGKILL right after the commit that stored a child completed, before its parent was
    told, leaves the parent waiting: when its child wait is due, recovery finds the child's
    end and completes the parent with its output, running nothing of the child again."""
    db, log = tmp_path / "missions.db", tmp_path / "steps.log"
    await run_until_killed(db, log, "child-lost", kill_on=None)

    parent, kid = await parent_and_kid(db, "c-lost")
    assert kid.status is MissionStatus.COMPLETED
    assert parent.status is MissionStatus.WAITING
    assert parent.wait is not None
    assert parent.wait.kind is WaitKind.CHILD
    assert parent.due_at is not None

    assert await recover(db, log) == {"c-lost": "completed", "c-lost/kid": "completed"}
    assert runs(log) == Counter(
        {"input c-lost": 1, "k-work c-lost/kid": 1, "k-after c-lost/kid": 1, "p-after c-lost": 1}
    )
    done, _ = await parent_and_kid(db, "c-lost")
    assert done.output == "worked on 3, checked"


async def test_a_child_whose_parent_was_cancelled_just_before_a_crash_cancels_itself(
    tmp_path: Path,
) -> None:
    """A SIGKILL right after the commit that stored a parent cancelled, while its child ran a
    step and before the child was told, leaves the child running: recovery cancels it, as
    its parent no longer waits for it, without running its step again."""
    db, log = tmp_path / "missions.db", tmp_path / "steps.log"
    await run_until_killed(db, log, "child-orphan", kill_on=None)

    parent, kid = await parent_and_kid(db, "c-orphan")
    assert parent.status is MissionStatus.CANCELLED
    assert (kid.status, kid.current_node) == (MissionStatus.RUNNING, "k-work")
    assert kid.cancel_request is None

    assert await recover(db, log) == {"c-orphan": "cancelled", "c-orphan/kid": "cancelled"}
    assert runs(log) == Counter({"input c-orphan": 1, "k-work c-orphan/kid": 1})
    _, kid = await parent_and_kid(db, "c-orphan")
    assert kid.cancel_request is not None
    assert kid.cancel_request.reason == "its parent 'c-orphan' no longer waits for it"


async def test_a_retry_killed_inside_its_step_is_resumed_once(tmp_path: Path) -> None:
    """A process SIGKILLed inside the step a retry runs again leaves the mission stored running
    at that step, retried once; recovery runs the step once more (attempt 1 again) and the
    mission completes, with one retry and one recovery in its timeline."""
    db, log = tmp_path / "crash.sqlite", tmp_path / "steps.log"
    await run_until_killed(db, log, "retry", kill_on="RETRY-RAN")

    async with create_sqlite_persistence_adapter(db, read_only=True) as inspector:
        stored = await inspector.load("r1")
        assert stored is not None
        assert stored.status is MissionStatus.RUNNING
        assert (stored.current_node, stored.retries, stored.error) == ("b", 1, None)
        assert stored.nodes["b"].status is NodeStatus.RUNNING
        assert await inspector.running_missions(10) == ["r1"]

    assert await recover(db, log) == {"r1": "completed"}
    assert runs(log) == Counter({"a r1": 1, "b r1": 3, "c r1": 1})
    async with create_sqlite_persistence_adapter(db, read_only=True) as inspector:
        done = await inspector.load("r1")
        kinds = [entry.kind for entry in await inspector.timeline("r1")]
    assert done is not None
    assert done.nodes["b"].attempts == 1
    assert kinds.count(TimelineKind.MISSION_FAILED) == 1
    assert kinds.count(TimelineKind.MISSION_RETRIED) == 1
    assert kinds.count(TimelineKind.MISSION_RESUMED) == 1
    assert kinds[-1] is TimelineKind.MISSION_COMPLETED
