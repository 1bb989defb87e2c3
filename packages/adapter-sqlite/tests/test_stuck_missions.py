"""A deploy that removed a definition, over a real database file: the missions it left behind
never delay the others' due times."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest

from mission_control.adapter_sqlite import SQLiteCommander
from mission_control.core import Context, MissionStatus, m
from mission_control.runtime import create_commander_runtime
from mission_control.testing import LoopClock

pytestmark = pytest.mark.anyio


def parse_any(raw: Any) -> Any:
    return raw


def done(ctx: Context[Any, Any]) -> str:
    return "done"


RETIRED = m.define("retired").start(parse=parse_any).step("work", done).end()
"""A definition the next deploy no longer has."""

QUICK = m.define("quick").start(parse=parse_any).step("work", done).end()
"""Completes as soon as it starts."""


async def test_delayed_starts_of_a_removed_definition_do_not_delay_a_later_one(
    db_path: Path,
) -> None:
    """Delayed starts stored by the previous deploy, due at t+1 s, whose definition is gone, do
    not hold back one due at t+10 s: it starts at t+10 s, not after stalled_tick_delay."""
    clock = LoopClock()
    began = clock.now()
    async with SQLiteCommander(db_path, [RETIRED], clock=clock) as old:
        for n in range(3):
            await old.start(RETIRED, {}, id=f"retired-{n}", start_at=began + timedelta(seconds=1))

    async with (
        # Started all the same, the missing definition logged.
        SQLiteCommander(db_path, [QUICK], clock=clock, version_check="warn") as commander,
        create_commander_runtime(commander, max_missions_per_tick=2, stalled_tick_delay=30),
    ):
        await commander.start(QUICK, {}, id="quick", start_at=began + timedelta(seconds=10))
        with anyio.fail_after(120):
            snapshot = await commander.result("quick")

    assert snapshot.status is MissionStatus.COMPLETED
    assert snapshot.updated_at - began == timedelta(seconds=10)
