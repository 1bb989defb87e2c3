"""Concurrency keys through a SIGKILL: 50 missions of one key with limit 2, the owner killed in
the middle of them, a new owner finishing them; never more than 2 ran at once."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
import trio

from mission_control.adapter_sqlite import create_sqlite_persistence_adapter
from mission_control.core import MissionStatus, TimelineKind

pytestmark = [
    pytest.mark.skipif(sys.platform == "win32", reason="needs SIGKILL"),
    pytest.mark.anyio,
    pytest.mark.real_time,
]

CHILD = Path(__file__).with_name("keys_child.py")
DEADLINE = 150  # seconds: a watchdog for a hung child (a slot lost to the kill waits 60 s)


def most_at_once(intervals: list[tuple[float, float]]) -> int:
    """The most intervals open at one time (one ending when another begins: not both open)."""
    events = sorted([(end, -1) for _, end in intervals] + [(begin, 1) for begin, _ in intervals])
    most = now = 0
    for _, change in events:
        now += change
        most = max(most, now)
    return most


async def test_fifty_missions_of_one_key_hold_two_slots_at_most_through_a_sigkill(
    tmp_path: Path,
) -> None:
    """The owner running 50 missions of one key with limit 2 is SIGKILLed in a step; the next
    owner resumes the interrupted ones and runs the rest: all 50 complete, never more than 2
    between their start and their end, and no step ran more than 2 at once in either
    process."""
    db = tmp_path / "keys.sqlite"
    log = tmp_path / "steps.log"
    backend = "trio" if trio.lowlevel.in_trio_run() else "asyncio"
    command = [sys.executable, str(CHILD), str(db), str(log), backend]
    errors = tmp_path / "child.err"
    with errors.open("wb") as error_file:
        first = await anyio.open_process(command, stdout=subprocess.PIPE, stderr=error_file)
    try:
        with anyio.fail_after(DEADLINE):
            # Polled: the child moves in real time, which no Event reaches.
            while log.read_text().count("enter") < 9 if log.exists() else True:  # noqa: ASYNC110
                await anyio.sleep(0.01)
        first.send_signal(signal.SIGKILL)
        assert await first.wait() == -signal.SIGKILL
    finally:
        if first.returncode is None:
            first.kill()
        await first.aclose()
    result = await anyio.run_process(command, check=False)
    assert result.returncode == 0, result.stderr.decode() + errors.read_text()
    assert result.stdout.decode().splitlines()[-1] == "DONE"

    async with create_sqlite_persistence_adapter(db, read_only=True) as store:
        missions = await store.list_missions(limit=100)
        assert len(missions) == 50
        assert all(s.status is MissionStatus.COMPLETED for s in missions)
        intervals: list[tuple[float, float]] = []
        for snapshot in missions:
            entries = await store.timeline(snapshot.id)
            start = next(e.at for e in entries if e.kind is TimelineKind.MISSION_STARTED)
            end = next(e.at for e in entries if e.kind is TimelineKind.MISSION_COMPLETED)
            intervals.append((start.timestamp(), end.timestamp()))
    assert most_at_once(intervals) <= 2
    lines = [line.split() for line in log.read_text().splitlines()]
    pids = {pid for *_, pid in lines}
    assert len(pids) == 2  # steps ran in the killed owner and in the next one
    for pid in pids:
        open_steps = 0
        for kind, _, line_pid in lines:
            if line_pid == pid:
                open_steps += 1 if kind == "enter" else -1
                assert open_steps <= 2
