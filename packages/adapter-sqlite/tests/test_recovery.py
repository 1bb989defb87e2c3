"""A mission whose advance keeps failing is not re-run by every runtime tick forever."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import apsw
import pytest

from mission_control.adapter_sqlite import SQLiteCommander
from mission_control.core import (
    DEFAULT_MAX_RECOVERY_ATTEMPTS,
    Context,
    MissionStatus,
    PersistenceError,
    RecoveryAttemptsExceededError,
    m,
)
from mission_control.in_memory_commander import ManualClock
from mission_control.runtime import create_commander_runtime

pytestmark = pytest.mark.anyio

STALLED = 10.0

# SQLite itself refuses the write that would store the step's result (but not the recovery
# count, nor the failure): the step runs, and its mission is left running, every time.
REFUSE_THE_RESULT = """
    CREATE TRIGGER refuse_the_result BEFORE UPDATE ON missions
    WHEN NEW.id = 'poison'
        AND json_extract(NEW.snapshot, '$.nodes.write-refused.status') = 'completed'
    BEGIN
        SELECT RAISE(ABORT, 'refused by the test trigger');
    END
"""


async def test_a_step_whose_result_the_store_refuses_fails_after_max_recovery_attempts(
    db_path: Path,
) -> None:
    """A step whose result SQLite refuses to store runs exactly 1 + max_recovery_attempts times
    however many ticks follow, then the mission fails with RecoveryAttemptsExceededError, and a
    healthy mission still moves."""
    runs: list[str] = []

    async def begin(ctx: Context[Any, Any]) -> str:
        return "begun"

    async def step(ctx: Context[Any, Any]) -> str:
        runs.append(ctx.mission_id)
        return "done"

    # The step before stores the mission running at the refused step: that is where every
    # recovery finds it.
    poison = (
        m.define("refused")
        .start(parse=lambda raw: raw, run=begin)
        .step("before", begin)
        .step("write-refused", step)
        .end()
    )
    healthy = m.define("fine").start(parse=lambda raw: raw).step("fine", step).end()
    clock = ManualClock()
    async with SQLiteCommander(db_path, [poison, healthy], clock=clock):
        pass  # creates the schema
    connection = apsw.Connection(str(db_path))
    connection.execute(REFUSE_THE_RESULT)
    connection.close()

    async with SQLiteCommander(db_path, [poison, healthy], clock=clock) as commander:
        with pytest.raises(PersistenceError, match="refused by the test trigger"):
            await commander.start(poison, {}, id="poison")
        assert (await commander.inspect("poison")).status is MissionStatus.RUNNING
        async with create_commander_runtime(commander, stalled_tick_delay=STALLED) as runtime:
            for _ in range(3 * DEFAULT_MAX_RECOVERY_ATTEMPTS):
                # Past the longest pause a runtime gives a mission whose move keeps raising.
                clock.advance(timedelta(seconds=64 * STALLED + 1))
                await runtime.tick()
            handle = await commander.start(healthy, {}, id="healthy")
            assert (await handle.inspect()).status is MissionStatus.COMPLETED
        snapshot = await commander.inspect("poison")
    assert runs == ["poison"] * (1 + DEFAULT_MAX_RECOVERY_ATTEMPTS) + ["healthy"]
    assert snapshot.status is MissionStatus.FAILED
    assert snapshot.error is not None
    assert snapshot.error.type == RecoveryAttemptsExceededError.__qualname__
    assert snapshot.recovery_attempts == 1 + DEFAULT_MAX_RECOVERY_ATTEMPTS
