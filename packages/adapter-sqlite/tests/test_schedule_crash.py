"""Schedules and SIGKILL: a real child process (tests/schedule_child.py) fires a schedule on a
SQLite file and is killed right after one of the fire's writes; a new process then fires and
runs every slot exactly once."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import anyio
import pytest
import trio

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.real_time,
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform == "win32", reason="needs SIGKILL"),
]

CHILD = Path(__file__).with_name("schedule_child.py")
DEADLINE = 60  # seconds; a watchdog for a hung child, never a wait the tests rely on
SLOTS = [
    "s@2030-01-01T00:01:00Z",
    "s@2030-01-01T00:02:00Z",
    "s@2030-01-01T00:03:00Z",
]


async def run_child(db: Path, log: Path, mode: str) -> tuple[int, str, str]:
    backend = "trio" if trio.lowlevel.in_trio_run() else "asyncio"
    with anyio.fail_after(DEADLINE):
        result = await anyio.run_process(
            [sys.executable, str(CHILD), str(db), str(log), mode, backend],
            check=False,
            stderr=subprocess.PIPE,
        )
    return result.returncode, result.stdout.decode(), result.stderr.decode()


@pytest.mark.parametrize(
    ("mode", "said"), [("die-after-insert", "INSERTED"), ("die-after-record", "RECORDED")]
)
async def test_a_process_killed_right_after_a_fire_neither_repeats_nor_loses_a_slot(
    tmp_path: Path, mode: str, said: str
) -> None:
    """SIGKILLed right after the write that stored a slot's mission (before the schedule
    recorded the fire), or right after the write that recorded it (before the missions ran),
    a schedule's slots each start one mission, which runs once, when the next process fires it."""
    db, log = tmp_path / "missions.sqlite", tmp_path / "runs.log"
    log.touch()
    code, out, errors = await run_child(db, log, mode)
    assert code == -9, errors
    assert said in out
    assert log.read_text() == ""

    code, out, errors = await run_child(db, log, "recover")
    assert code == 0, errors
    result = json.loads(out.strip().splitlines()[-1])
    assert result["missions"] == dict.fromkeys(SLOTS, "completed")
    assert Counter(log.read_text().splitlines()) == Counter(f"ran {slot}" for slot in SLOTS)
    assert result["fires"] == 3
    assert result["last_mission_id"] == SLOTS[-1]
    assert result["next_fire_at"] == "2030-01-01 00:04:00+00:00"
