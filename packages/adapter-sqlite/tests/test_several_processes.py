"""Several processes on one SQLite file (issue 14), with real child processes
(tests/procs_child.py): submitters hand work to the owner, a bad submission is refused without
touching its mission, the owner's death hands the file to another process, and work submitted
while no owner runs waits for the next one.

Each runs its children on the test's backend, in real time: the deadlines around children are
watchdogs for a hung child, never waits the tests rely on (they poll the store or a file). Those
that start several processes one after another, or many missions, are slow: CI runs them once.
"""

from __future__ import annotations

import functools
import json
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import anyio.abc
import pytest
import trio

from mission_control.adapter_sqlite import (
    TAKEOVER_INTERVAL,
    SQLiteCommander,
    SQLitePersistenceAdapter,
    create_sqlite_persistence_adapter,
)
from mission_control.core import (
    ConcurrencyLimitError,
    MissionNotActiveError,
    MissionNotFoundError,
    MissionSnapshot,
    MissionStatus,
    Submission,
    SubmissionKind,
    SubmissionState,
    TimelineKind,
    WaitKind,
)

pytestmark = [
    pytest.mark.skipif(sys.platform == "win32", reason="needs SIGKILL and Unix sockets"),
    pytest.mark.anyio,
    pytest.mark.real_time,
]

CHILD = Path(__file__).with_name("procs_child.py")
DEADLINE = 60  # seconds; a watchdog for a hung child, never a wait the tests rely on
TAKEOVER_BOUND = TAKEOVER_INTERVAL + 4.5
"""Seconds within which a process standing by owns the file after its owner was killed: the
documented bound is ``TAKEOVER_INTERVAL`` (one try of the locks) and its start-up tick after
it; the margin is for a loaded CI machine."""


def command(db: Path, here: Path, mode: str, *args: str) -> list[str]:
    """The command that runs the child in ``mode`` on the backend the test runs on."""
    backend = "trio" if trio.lowlevel.in_trio_run() else "asyncio"
    return [sys.executable, str(CHILD), str(db), str(here), mode, backend, *args]


def submitted_by(pid: int) -> str:
    return f"pid {pid} on {socket.gethostname()}"


class Child:
    """A child process whose standard output is read line by line (its errors go to a file)."""

    def __init__(self, process: anyio.abc.Process, errors: Path) -> None:
        self.process = process
        self.errors = errors
        self.output = b""

    @property
    def pid(self) -> int:
        return self.process.pid

    def diagnosis(self) -> str:
        return f"stdout: {self.output.decode()!r}\nstderr: {self.errors.read_text()}"

    async def line(self, expected: str) -> None:
        """Read its output until it has printed the line ``expected``."""
        stdout = self.process.stdout
        assert stdout is not None
        with anyio.fail_after(DEADLINE):
            while f"{expected}\n".encode() not in self.output:
                try:
                    self.output += await stdout.receive()
                except anyio.EndOfStream:
                    raise AssertionError(
                        f"the child ended before printing {expected}\n{self.diagnosis()}"
                    ) from None

    async def finish(self) -> str:
        """Read its output to the end, wait for it to exit (with 0), and return the output."""
        stdout = self.process.stdout
        assert stdout is not None
        with anyio.fail_after(DEADLINE):
            async for chunk in stdout:
                self.output += chunk
            code = await self.process.wait()
        assert code == 0, self.diagnosis()
        return self.output.decode()

    async def terminate(self) -> None:
        """Stop it with SIGTERM (it stops its runtime and closes the file) and check it did."""
        self.process.send_signal(signal.SIGTERM)
        await self.line("STOPPED")
        await self.finish()


@asynccontextmanager
async def child(db: Path, here: Path, mode: str, *args: str) -> AsyncIterator[Child]:
    """Run the child in ``mode``; kill it at the end of the block if it is still running."""
    name = f"{mode}-{'-'.join(args)}" if args else mode
    errors = here / f"{name}-{time.monotonic_ns()}.err"
    with errors.open("wb") as error_file:
        process = await anyio.open_process(
            command(db, here, mode, *args), stdout=subprocess.PIPE, stderr=error_file
        )
    try:
        yield Child(process, errors)
    finally:
        if process.returncode is None:
            process.kill()
        with anyio.CancelScope(shield=True):
            await process.wait()
            await process.aclose()


async def run_to_end(db: Path, here: Path, mode: str, *args: str) -> tuple[int, str]:
    """Run the child in ``mode`` to its end: its process id and the last line it printed."""
    async with child(db, here, mode, *args) as running:
        output = await running.finish()
    return running.pid, output.strip().splitlines()[-1]


@asynccontextmanager
async def owner_running(db: Path, here: Path, mode: str = "owner") -> AsyncIterator[Child]:
    """A child running a runtime (``owner`` or ``auto``), stopped with SIGTERM at the end."""
    async with child(db, here, mode) as running:
        await running.line("RUNNING")
        yield running
        if running.process.returncode is None:
            await running.terminate()


async def poll(what: str, check: Callable[[], Awaitable[bool]]) -> None:
    """Return once ``check()`` holds, looking every 20 ms (other processes move in real time)."""
    with anyio.move_on_after(DEADLINE):
        # Polled: what it waits for happens in another process, which no Event reaches.
        while not await check():  # noqa: ASYNC110
            await anyio.sleep(0.02)
        return
    raise AssertionError(f"not within {DEADLINE} s: {what}")


async def all_missions(inspector: SQLitePersistenceAdapter) -> list[MissionSnapshot]:
    found: list[MissionSnapshot] = []
    after: str | None = None
    while page := await inspector.list_missions(limit=500, after_id=after):
        found.extend(page)
        after = page[-1].id
    return found


async def all_submissions(inspector: SQLitePersistenceAdapter) -> list[Submission]:
    """Every submission stored, in order (numbered from 1 with no gaps)."""
    found: list[Submission] = []
    while (submission := await inspector.load_submission(len(found) + 1)) is not None:
        found.append(submission)
    return found


def step_runs(here: Path) -> dict[int, Counter[str]]:
    """Process id -> how often each ``"<step> <mission id>"`` ran in that process."""
    return {
        int(log.stem.removeprefix("steps-")): Counter(log.read_text().splitlines())
        for log in here.glob("steps-*.log")
    }


def events(here: Path, pid: int) -> list[tuple[str, float]]:
    """The events child ``pid`` noted, with their times."""
    path = here / f"events-{pid}.log"
    if not path.exists():
        return []
    return [
        (event, float(at)) for event, at in (line.split() for line in path.read_text().splitlines())
    ]


@pytest.mark.slow
async def test_four_submitter_processes_and_one_owner_run_a_thousand_missions(
    tmp_path: Path,
) -> None:
    """Four submitter processes each start 250 missions and signal each once while an owner
    process runs them: all 1,000 complete with their signal's payload, every step ran exactly
    once and only in the owner, and every signal was stored once and applied once."""
    db = tmp_path / "shared.sqlite"
    prefixes = ["a", "b", "c", "d"]
    outputs: dict[str, tuple[int, str]] = {}

    async def submit(prefix: str) -> None:
        outputs[prefix] = await run_to_end(db, tmp_path, "submit", prefix, "250")

    async with (
        owner_running(db, tmp_path) as owner,
        create_sqlite_persistence_adapter(db, read_only=True) as inspector,
    ):
        async with anyio.create_task_group() as tasks:
            for prefix in prefixes:
                tasks.start_soon(submit, prefix)

        async def all_ended() -> bool:
            # Every signal is applied: a mission not ended now waits for its start or runs.
            waiting = await inspector.list_missions(status=MissionStatus.WAITING, limit=1)
            return not waiting and not await inspector.running_missions(1)

        await poll("every mission ended", all_ended)
    assert owner.process.returncode == 0

    expected = {f"{prefix}-{i}": {"by": prefix, "n": i} for prefix in prefixes for i in range(250)}
    pids = {prefix: pid for prefix, (pid, _) in outputs.items()}
    async with create_sqlite_persistence_adapter(db, read_only=True) as inspector:
        missions = await all_missions(inspector)
        assert {mission.id: mission.output for mission in missions} == expected
        for mission in missions:
            assert mission.nodes["approve"].output == expected[mission.id]
            kinds = [entry.kind for entry in await inspector.timeline(mission.id)]
            assert kinds.count(TimelineKind.SIGNAL_RECEIVED) == 1, mission.id
            assert TimelineKind.SIGNAL_REJECTED not in kinds
            assert await inspector.next_signal(mission.id, "approve") is None

        submissions = await all_submissions(inspector)
        assert await inspector.pending_submissions(10) == []
    # Starts are background starts (stored by the submitter itself); each signal is one
    # submission, stored once and applied once.
    assert len(submissions) == 1000
    assert sorted(s.mission_id for s in submissions) == sorted(expected)
    for submission in submissions:
        assert submission.kind is SubmissionKind.SIGNAL
        assert submission.name == "approve"
        assert submission.state is SubmissionState.APPLIED, submission
        assert submission.refusal is None
        assert submission.payload == expected[submission.mission_id]
        prefix = submission.mission_id.split("-")[0]
        assert submission.submitted_by == submitted_by(pids[prefix])
    by_seq = {submission.seq: submission.mission_id for submission in submissions}
    for _, printed in outputs.values():
        for mission_id, seq in json.loads(printed).items():
            if seq is not None:
                assert by_seq[seq] == mission_id

    runs = step_runs(tmp_path)
    assert list(runs) == [owner.pid], "a submitter never runs a step"
    assert runs[owner.pid] == Counter(
        {f"{step} {mission_id}": 1 for mission_id in expected for step in ("prepare", "finish")}
    )


async def test_a_bad_raw_signal_from_another_process_is_refused_and_changes_nothing(
    tmp_path: Path,
) -> None:
    """A signal whose payload the owner's parser refuses, sent raw by a submitter process
    without definitions, is recorded refused (InvalidSignalPayloadError, naming that process),
    leaves the mission exactly as it was, and raises the owner's error in the submitter."""
    db = tmp_path / "shared.sqlite"
    async with (
        owner_running(db, tmp_path),
        SQLiteCommander(db, [], role="submitter") as submitter,
    ):
        await submitter.verdict(await submitter.submit_start("approval", {"n": 1}, id="r-1"))

        async def waiting() -> bool:
            # A submitted start is a background start: it waits for its start first.
            snapshot = await submitter.inspect("r-1")
            return snapshot.status is MissionStatus.WAITING and snapshot.current_node == "approve"

        await poll("r-1 waits for its approval", waiting)
        before = await submitter.inspect("r-1")
        timeline_before = await submitter.timeline("r-1")

        pid, printed = await run_to_end(db, tmp_path, "raw-signal", "r-1")

        assert await submitter.inspect("r-1") == before
        assert await submitter.timeline("r-1") == timeline_before
        assert await submitter.persistence.next_signal("r-1", "approve") is None
        submissions = await all_submissions(submitter.persistence)

    found = json.loads(printed)
    assert found["submitted_by"] == submitted_by(pid)
    start, *refused = submissions
    assert (start.kind, start.state) == (SubmissionKind.START, SubmissionState.APPLIED)
    assert [s.seq for s in refused] == [found["seq"], found["seq"] + 1]
    for submission in refused:
        assert (submission.kind, submission.mission_id) == (SubmissionKind.SIGNAL, "r-1")
        assert (submission.name, submission.payload) == ("approve", {"nobody": "approves"})
        assert submission.submitted_by == submitted_by(pid)
        assert submission.state is SubmissionState.REFUSED
        assert submission.refusal is not None
        # The owner's error, as the submitter got it both ways.
        owner_error = [submission.refusal.type, submission.refusal.message]
        assert found["verdict"] == found["signal"] == owner_error
    assert found["verdict"][0] == "InvalidSignalPayloadError"
    assert "an approval names who approves" in found["verdict"][1]


@pytest.mark.slow
async def test_a_process_standing_by_takes_over_from_a_killed_owner_and_resumes_its_mission(
    tmp_path: Path,
) -> None:
    """Of two "auto" processes running a runtime, the second stands by; SIGKILLed inside a
    mission's step, the first hands over the file, which the second owns within TAKEOVER_BOUND
    (never while the first lives), runs the interrupted step again, finishes the mission, and
    carries out what is submitted afterwards."""
    db = tmp_path / "shared.sqlite"
    async with owner_running(db, tmp_path, "auto") as first:
        assert [event for event, _ in events(tmp_path, first.pid)][:1] == ["owner"]
        async with owner_running(db, tmp_path, "auto") as second:
            assert "runtime-standby" in [event for event, _ in events(tmp_path, second.pid)]
            async with SQLiteCommander(db, [], role="submitter") as submitter:
                await submitter.submit_start("hold", {}, id="f-1")

                holding = tmp_path / "holding"

                async def first_holds() -> bool:
                    return holding.exists() and holding.read_text() == str(first.pid)

                await poll("the first process is inside step hold", first_holds)
                killed_at = time.time()
                first.process.send_signal(signal.SIGKILL)
                assert await first.process.wait() == -signal.SIGKILL
                (tmp_path / "go").touch()

                async def completed(mission_id: str) -> bool:
                    mission = await submitter.inspect(mission_id)
                    return mission.status is MissionStatus.COMPLETED

                await poll("f-1 completed", functools.partial(completed, "f-1"))
                kinds = [entry.kind for entry in await submitter.timeline("f-1")]
                # The new owner takes work submitted to it as the first one did.
                after = await submitter.verdict(await submitter.submit_start("hold", {}, id="f-2"))
                assert after.id == "f-2"
                await poll("f-2 completed", functools.partial(completed, "f-2"))
                submissions = await all_submissions(submitter.persistence)
        assert second.process.returncode == 0

    owned_first = [at for event, at in events(tmp_path, first.pid) if event == "owner"]
    second_events = events(tmp_path, second.pid)
    owned_second = [at for event, at in second_events if event == "owner"]
    standby = [at for event, at in second_events if event == "runtime-standby"]
    assert len(owned_first) == 1
    assert len(owned_second) == 1
    assert owned_first[0] < standby[0] < killed_at < owned_second[0], "never two owners"
    took = owned_second[0] - killed_at
    assert took < TAKEOVER_BOUND, f"took over {took:.3f} s after the kill"

    assert kinds.count(TimelineKind.MISSION_STARTED) == 1
    assert kinds.count(TimelineKind.MISSION_RESUMED) == 1
    assert kinds[-1] is TimelineKind.MISSION_COMPLETED
    # The start of f-1 was applied by the first owner, in its insert: never again.
    assert [(s.mission_id, s.state) for s in submissions] == [
        ("f-1", SubmissionState.APPLIED),
        ("f-2", SubmissionState.APPLIED),
    ]
    runs = step_runs(tmp_path)
    assert runs[first.pid] == Counter({"hold f-1": 1})
    assert runs[second.pid] == Counter(
        {"hold f-1": 1, "after f-1": 1, "hold f-2": 1, "after f-2": 1}
    )


async def test_a_pause_applied_while_a_step_runs_survives_the_owners_kill_and_pauses_at_restart(
    tmp_path: Path,
) -> None:
    """A pause a submitter asks for while the owner runs a mission's step is stored when its
    submission is applied: SIGKILLed inside the step, the owner loses nothing, the next owner
    pauses the mission at that step at its start (without running it again), and a resume runs
    the step and the rest once."""
    db = tmp_path / "shared.sqlite"
    async with SQLiteCommander(db, [], role="submitter") as submitter:
        async with owner_running(db, tmp_path) as first:
            await submitter.submit_start("hold", {}, id="k-1")
            holding = tmp_path / "holding"

            async def first_holds() -> bool:
                return holding.exists() and holding.read_text() == str(first.pid)

            await poll("the first owner is inside step hold", first_holds)
            asked = await submitter.pause("k-1", "ops says stop")
            assert (asked.status, asked.current_node) == (MissionStatus.RUNNING, "hold")
            assert asked.pause_request is not None
            assert asked.pause_request.reason == "ops says stop"
            first.process.send_signal(signal.SIGKILL)
            assert await first.process.wait() == -signal.SIGKILL
        stored = await submitter.inspect("k-1")
        assert (stored.status, stored.pause_request) == (MissionStatus.RUNNING, asked.pause_request)

        async with owner_running(db, tmp_path) as second:

            async def paused_again() -> bool:
                return (await submitter.inspect("k-1")).status is not MissionStatus.RUNNING

            await poll("the second owner took k-1 up", paused_again)
            paused = await submitter.inspect("k-1")
            assert (paused.status, paused.current_node) == (MissionStatus.PAUSED, "hold")
            assert (paused.pause, paused.pause_request) == (asked.pause_request, None)
            (tmp_path / "go").touch()
            await submitter.resume("k-1")

            async def completed() -> bool:
                return (await submitter.inspect("k-1")).status is MissionStatus.COMPLETED

            await poll("k-1 completed", completed)
        kinds = [entry.kind for entry in await submitter.timeline("k-1")]
        submissions = await all_submissions(submitter.persistence)
    assert kinds[kinds.index(TimelineKind.PAUSE_REQUESTED) :] == [
        TimelineKind.PAUSE_REQUESTED,
        TimelineKind.MISSION_RESUMED,
        TimelineKind.MISSION_PAUSED,
        TimelineKind.MISSION_UNPAUSED,
        TimelineKind.STEP_STARTED,
        TimelineKind.STEP_COMPLETED,
        TimelineKind.STEP_STARTED,
        TimelineKind.STEP_COMPLETED,
        TimelineKind.MISSION_COMPLETED,
    ]
    # The pause was applied by the first owner, in the write that stored its request.
    assert [(s.kind, s.state) for s in submissions] == [
        (SubmissionKind.START, SubmissionState.APPLIED),
        (SubmissionKind.PAUSE, SubmissionState.APPLIED),
        (SubmissionKind.RESUME, SubmissionState.APPLIED),
    ]
    runs = step_runs(tmp_path)
    assert runs[first.pid] == Counter({"hold k-1": 1})
    assert runs[second.pid] == Counter({"hold k-1": 1, "after k-1": 1})


async def test_a_pause_asked_during_the_last_compensation_pauses_it_after_the_owners_kill(
    tmp_path: Path,
) -> None:
    """A pause asked while a mission's last compensation runs, its owner SIGKILLed inside it,
    pauses the mission at that compensation when the next owner takes it up, as for any node
    interrupted with a pause asked (the compensation has not ended: it is left to run); paused,
    it stays compensating and cannot be cancelled, and the resume runs the compensation again
    and ends it compensated."""
    db = tmp_path / "shared.sqlite"
    async with SQLiteCommander(db, [], role="submitter") as submitter:
        async with owner_running(db, tmp_path) as first:
            await submitter.submit_start("undo", {}, id="u-1")

            async def waiting() -> bool:
                found = await submitter.persistence.load("u-1")
                return found is not None and found.status is MissionStatus.WAITING

            await poll("u-1 waits for confirm", waiting)
            await submitter.verdict(await submitter.submit_cancel("u-1", "no", compensate=True))
            holding = tmp_path / "holding"

            async def first_undoes() -> bool:
                return holding.exists() and holding.read_text() == str(first.pid)

            await poll("the first owner is inside the compensation", first_undoes)
            asked = await submitter.pause("u-1", "hold the refund")
            assert (asked.status, asked.compensating) == (MissionStatus.RUNNING, True)
            assert asked.pause_request is not None
            first.process.send_signal(signal.SIGKILL)
            assert await first.process.wait() == -signal.SIGKILL

        async with owner_running(db, tmp_path) as second:

            async def taken_up() -> bool:
                return (await submitter.inspect("u-1")).status is not MissionStatus.RUNNING

            await poll("the second owner took u-1 up", taken_up)
            paused = await submitter.inspect("u-1")
            assert (paused.status, paused.compensating) == (MissionStatus.PAUSED, True)
            assert (paused.pause, paused.pause_request) == (asked.pause_request, None)
            with pytest.raises(MissionNotActiveError, match="running its compensations"):
                await submitter.cancel("u-1", "now")
            (tmp_path / "go").touch()
            await submitter.resume("u-1")

            async def compensated() -> bool:
                return (await submitter.inspect("u-1")).status is MissionStatus.COMPENSATED

            await poll("u-1 compensated", compensated)
        kinds = [entry.kind for entry in await submitter.timeline("u-1")]
    assert kinds[kinds.index(TimelineKind.PAUSE_REQUESTED) :] == [
        TimelineKind.PAUSE_REQUESTED,
        TimelineKind.MISSION_RESUMED,
        TimelineKind.MISSION_PAUSED,
        TimelineKind.MISSION_UNPAUSED,
        TimelineKind.COMPENSATION_STARTED,
        TimelineKind.COMPENSATION_COMPLETED,
        TimelineKind.MISSION_COMPENSATED,
    ]
    runs = step_runs(tmp_path)
    assert runs[first.pid] == Counter({"undo u-1": 1})
    assert runs[second.pid] == Counter({"undo u-1": 1})


@pytest.mark.slow
async def test_work_submitted_while_no_owner_runs_is_done_by_the_next_owner_at_its_start(
    tmp_path: Path,
) -> None:
    """A start, a signal and a start submission stored by a submitter process while no process
    owns the file wait in the store, and the next owner process carries them out in its
    runtime's start-up tick."""
    db = tmp_path / "shared.sqlite"
    _, printed = await run_to_end(db, tmp_path, "submit-alone")
    found = json.loads(printed)
    assert found == {
        "signal": [found["signal"][0], "pending"],
        "start": [found["start"][0], "pending"],
    }

    async with create_sqlite_persistence_adapter(db, read_only=True) as inspector:
        stored = await inspector.load("n-1")
        assert stored is not None
        assert stored.status is MissionStatus.WAITING
        assert [wait.kind for wait in stored.waits] == [WaitKind.START]
        assert await inspector.load("n-2") is None
        pending = await inspector.pending_submissions(10)
        assert [(s.kind, s.mission_id) for s in pending] == [
            (SubmissionKind.SIGNAL, "n-1"),
            (SubmissionKind.START, "n-2"),
        ]

    # The owner prints RUNNING once its runtime's start-up tick is over: that tick did it all.
    async with (
        owner_running(db, tmp_path) as owner,
        create_sqlite_persistence_adapter(db, read_only=True) as inspector,
    ):
        signalled = await inspector.load("n-1")
        started = await inspector.load("n-2")
        submissions = await all_submissions(inspector)
    assert signalled is not None
    assert signalled.status is MissionStatus.COMPLETED
    assert signalled.output == {"by": "cron", "n": 1}
    assert started is not None
    assert started.status is MissionStatus.WAITING
    assert [wait.signal for wait in started.waits] == ["approve"]
    assert [s.state for s in submissions] == [SubmissionState.APPLIED] * 2
    assert step_runs(tmp_path) == {
        owner.pid: Counter({"prepare n-1": 1, "finish n-1": 1, "prepare n-2": 1})
    }


async def test_singleton_starts_from_three_submitter_processes_at_once_one_holds_the_slot(
    tmp_path: Path,
) -> None:
    """Three submitter processes start a refusing singleton with one key at the same moment:
    one start returns, the two others raise ConcurrencyLimitError and store nothing; three
    starting a joining singleton at once all get the one mission that holds the key; and a
    start submitted for the owner to apply while the key is held is refused with
    ConcurrencyLimitError."""
    db = tmp_path / "singletons.sqlite"

    async def race(name: str) -> list[dict[str, str]]:
        at = repr(time.time() + 1.5)  # every child open and waiting by then
        printed: list[dict[str, str]] = []

        async def start(tag: str) -> None:
            _, line = await run_to_end(db, tmp_path, "singleton", name, tag, at)
            printed.append(json.loads(line))

        async with anyio.create_task_group() as tasks:
            for tag in ("a", "b", "c"):
                tasks.start_soon(start, tag)
        return printed

    async with owner_running(db, tmp_path):
        refused = await race("refuse")
        joined = await race("join")
        async with create_sqlite_persistence_adapter(db, read_only=True) as inspector:
            stored = {s.definition: s.id for s in await all_missions(inspector)}
            assert len(await all_missions(inspector)) == 2
        assert [r.get("error") for r in refused].count("ConcurrencyLimitError") == 2, refused
        assert {"id": stored["refuse"]} in refused
        assert joined == [{"id": stored["join"]}] * 3

        async with SQLiteCommander(db, [], role="submitter") as submitter:
            submission = await submitter.submit_start("refuse", {"c": "race"}, id="refuse-d")
            with pytest.raises(ConcurrencyLimitError, match="has 1 of 1 running"):
                await submitter.verdict(submission)
            with pytest.raises(MissionNotFoundError):
                await submitter.inspect("refuse-d")
