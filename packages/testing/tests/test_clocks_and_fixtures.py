"""The trio-linked clock, the recorders and the fixtures the plugin registers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
import trio
from trio.testing import MockClock

from mission_control.core import Commander, m
from mission_control.in_memory_commander import InMemoryPersistenceAdapter
from mission_control.runtime import CommanderRuntime, RuntimeState
from mission_control.testing import (
    CommanderFactory,
    RecordingMetrics,
    RuntimeFactory,
    TrioClock,
)

NAP = m.define("nap").start(parse=lambda raw: raw).sleep("nap", timedelta(days=7)).end()


async def test_trio_clock_moves_with_trio_time(autojump_clock: MockClock) -> None:
    """TrioClock reads its start plus the trio time that has passed since it was made."""
    clock = TrioClock(datetime(2031, 5, 1, 12, tzinfo=UTC))
    await trio.sleep(90)
    assert clock.now() == datetime(2031, 5, 1, 12, 1, 30, tzinfo=UTC)


async def test_a_trio_clock_made_outside_a_run_starts_at_its_first_read(
    autojump_clock: MockClock, mission_clock: TrioClock
) -> None:
    """A clock made by a sync fixture starts counting when it is first read."""
    await trio.sleep(10)
    assert mission_clock.now() == mission_clock.start
    await trio.sleep(10)
    assert mission_clock.now() == mission_clock.start + timedelta(seconds=10)


def test_trio_clock_needs_an_aware_start_and_a_trio_run() -> None:
    """A naive start is refused, and reading the clock outside trio raises RuntimeError."""
    with pytest.raises(ValueError, match="timezone-aware"):
        TrioClock(datetime(2030, 1, 1))
    clock = TrioClock(datetime(2030, 1, 1, 2, tzinfo=timezone(timedelta(hours=2))))
    assert clock.start == datetime(2030, 1, 1, tzinfo=UTC)
    with pytest.raises(RuntimeError):
        clock.now()


def test_recording_metrics_filters_by_attributes() -> None:
    """RecordingMetrics sums counts whose attributes include the ones asked for."""
    metrics = RecordingMetrics()
    metrics.count("ticks", 1, {"trigger": "direct", "outcome": "completed"})
    metrics.count("ticks", 2, {"trigger": "scheduled", "outcome": "completed"})
    metrics.observe("duration", 0.5, {"trigger": "direct"})
    assert metrics.total("ticks") == 3
    assert metrics.total("ticks", trigger="direct") == 1
    assert metrics.observations("duration", trigger="direct") == [0.5]


@pytest.fixture
def mission_definitions() -> list[object]:
    return [NAP]


async def test_the_commander_fixture_uses_the_mission_clock(
    commander: Commander, mission_clock: TrioClock
) -> None:
    """The commander fixture is in-memory, knows mission_definitions and reads mission_clock."""
    assert commander.clock is mission_clock
    assert set(commander.definitions) == {"nap"}
    handle = await commander.start(NAP, {})
    assert handle.id == "mission-000001"


async def test_make_commander_shares_a_store_between_commanders(
    make_commander: CommanderFactory,
) -> None:
    """Two commanders over one store see the same missions, as two processes over one file."""
    store = InMemoryPersistenceAdapter()
    handle = await make_commander(persistence=store).start(NAP, {}, id="shared")
    assert (await make_commander(persistence=store).inspect(handle.id)).definition == "nap"


async def test_the_runtime_fixture_runs_a_week_long_timer_in_virtual_time(
    autojump_clock: MockClock,
    commander: Commander,
    runtime: CommanderRuntime,
    mission_clock: TrioClock,
) -> None:
    """With autojump_clock, a scheduled tick for a 7-day timer fires without a real wait."""
    assert runtime.state is RuntimeState.RUNNING
    handle = await commander.start(NAP, {})
    due = (await handle.inspect()).due_at
    assert due is not None
    runtime.set_next_tick_at(due)

    await handle.wait_for_completion()

    assert mission_clock.now() == due


async def test_make_runtime_passes_options_and_stops_runtimes_at_teardown(
    autojump_clock: MockClock, make_runtime: RuntimeFactory
) -> None:
    """make_runtime forwards runtime options to create_commander_runtime."""
    runtime = await make_runtime(auto_schedule=True, max_missions_per_tick=5)
    assert runtime.auto_schedule
    assert runtime.is_running
