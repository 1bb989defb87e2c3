"""The plugin's fixtures under pytest-trio: a trio-marked test (or trio_mode) runs them on trio,
without AnyIO's pytest plugin.

Trio-only on purpose: it proves the fixtures for users who stay with pytest-trio.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import trio
from trio.testing import MockClock

from mission_control.core import Commander, m
from mission_control.runtime import CommanderRuntime
from mission_control.testing import LoopClock

NAP = m.define("nap").start(parse=lambda raw: raw).sleep("nap", timedelta(days=7)).end()


@pytest.fixture
def mission_definitions() -> list[object]:
    return [NAP]


@pytest.mark.trio
async def test_the_fixtures_run_under_pytest_trio_with_its_autojump_clock(
    autojump_clock: MockClock,
    commander: Commander,
    runtime: CommanderRuntime,
    mission_clock: LoopClock,
) -> None:
    """Under pytest-trio (a trio-marked test) the async fixtures work as well, and pytest-trio's
    autojump_clock drives mission_clock: a 7-day timer fires without a real wait."""
    handle = await commander.start(NAP, {})
    due = (await handle.inspect()).due_at
    assert due is not None
    runtime.set_next_tick_at(due)

    await handle.wait_for_completion()

    assert mission_clock.now() == due
    assert trio.current_time() == autojump_clock.current_time()
