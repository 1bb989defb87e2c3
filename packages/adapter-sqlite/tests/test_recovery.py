"""A mission whose advance keeps failing is not re-run by every runtime tick forever."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from mission_control.adapter_sqlite import SQLiteCommander
from mission_control.core import DEFAULT_MAX_RECOVERY_ATTEMPTS, Context, MissionStatus, m
from mission_control.in_memory_commander import ManualClock
from mission_control.runtime import create_commander_runtime


async def test_a_step_whose_output_cannot_be_written_is_not_rerun_by_every_tick(
    db_path: Path,
) -> None:
    """A step whose output the store cannot write runs at most 1 + max_recovery_attempts times
    however many ticks follow, the mission ends failed, and a healthy mission still moves."""
    runs: list[int] = []

    async def huge(ctx: Context[Any, Any]) -> int:
        runs.append(ctx.attempt)
        return 10**5000  # more digits than Python will turn into JSON text

    async def fine(ctx: Context[Any, Any]) -> str:
        return "fine"

    poison = m.define("huge").start(parse=lambda raw: raw).step("huge", huge).end()
    healthy = m.define("fine").start(parse=lambda raw: raw).step("fine", fine).end()
    async with SQLiteCommander(db_path, [poison, healthy], clock=ManualClock()) as commander:
        # Whichever error the failed write gives (or none, if the step's attempt fails
        # instead), the mission must end.
        with contextlib.suppress(Exception):
            await commander.start(poison, {}, id="poison")
        async with create_commander_runtime(commander) as runtime:
            for _ in range(3 * DEFAULT_MAX_RECOVERY_ATTEMPTS):
                await runtime.tick()
            handle = await commander.start(healthy, {}, id="healthy")
            assert (await handle.inspect()).status is MissionStatus.COMPLETED
        snapshot = await commander.inspect("poison")
    assert snapshot.status is MissionStatus.FAILED
    assert 1 <= len(runs) <= 1 + DEFAULT_MAX_RECOVERY_ATTEMPTS
