"""The loop-linked clock, the recorders and the fixtures the plugin registers, on trio and
asyncio through AnyIO's plugin, and the fixtures under pytest-trio too (the one trio-marked test:
it proves them for users who stay with pytest-trio)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import anyio
import pytest
import trio
from trio.testing import MockClock

from mission_control.core import Commander, m
from mission_control.in_memory_commander import InMemoryPersistenceAdapter
from mission_control.runtime import CommanderRuntime, RuntimeState
from mission_control.testing import (
    VIRTUAL_TIME_BACKENDS,
    CommanderFactory,
    LoopClock,
    RecordingMetrics,
    RuntimeFactory,
    TrioClock,
    virtual_time_backend,
    virtual_time_loop,
)

NAP = m.define("nap").start(parse=lambda raw: raw).sleep("nap", timedelta(days=7)).end()


@pytest.mark.anyio
async def test_loop_clock_moves_with_loop_time() -> None:
    """LoopClock reads its start plus the event loop time that has passed since it was made."""
    clock = LoopClock(datetime(2031, 5, 1, 12, tzinfo=UTC))
    await anyio.sleep(90)
    assert clock.now() == datetime(2031, 5, 1, 12, 1, 30, tzinfo=UTC)


@pytest.mark.anyio
async def test_a_loop_clock_made_outside_a_run_starts_at_its_first_read(
    mission_clock: LoopClock,
) -> None:
    """A clock made by a sync fixture starts counting when it is first read."""
    await anyio.sleep(10)
    assert mission_clock.now() == mission_clock.start
    await anyio.sleep(10)
    assert mission_clock.now() == mission_clock.start + timedelta(seconds=10)


def test_loop_clock_needs_an_aware_start_and_a_running_loop() -> None:
    """A naive start is refused, and reading the clock outside an event loop raises
    RuntimeError; TrioClock, its former name, is the same class."""
    with pytest.raises(ValueError, match="timezone-aware"):
        LoopClock(datetime(2030, 1, 1))
    clock = LoopClock(datetime(2030, 1, 1, 2, tzinfo=timezone(timedelta(hours=2))))
    assert clock.start == datetime(2030, 1, 1, tzinfo=UTC)
    with pytest.raises(RuntimeError):
        clock.now()
    assert TrioClock is LoopClock


def test_virtual_time_backends_make_a_new_clock_each_time() -> None:
    """virtual_time_backend gives trio a new autojumping MockClock per call and asyncio the
    virtual-time loop factory; other backends are refused."""
    (trio_name, first), (_, second) = (virtual_time_backend("trio") for _ in range(2))
    assert trio_name == "trio"
    assert isinstance(first["clock"], MockClock)
    assert first["clock"] is not second["clock"]
    assert first["clock"].autojump_threshold == 0
    assert virtual_time_backend("asyncio") == ("asyncio", {"loop_factory": virtual_time_loop})
    assert VIRTUAL_TIME_BACKENDS == ("trio", "asyncio")
    with pytest.raises(ValueError, match="trio or asyncio"):
        virtual_time_backend("curio")


@pytest.mark.anyio
async def test_the_anyio_backend_runs_on_virtual_time(anyio_backend_name: str) -> None:
    """The test runs on the backend its parameter names, and a day passes at once."""
    assert trio.lowlevel.in_trio_run() == (anyio_backend_name == "trio")
    began = anyio.current_time()
    await anyio.sleep(24 * 3600)
    assert anyio.current_time() - began == 24 * 3600


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


@pytest.mark.anyio
async def test_the_commander_fixture_uses_the_mission_clock(
    commander: Commander, mission_clock: LoopClock
) -> None:
    """The commander fixture is in-memory, knows mission_definitions and reads mission_clock."""
    assert commander.clock is mission_clock
    assert set(commander.definitions) == {"nap"}
    handle = await commander.start(NAP, {})
    assert handle.id == "mission-000001"


@pytest.mark.anyio
async def test_make_commander_shares_a_store_between_commanders(
    make_commander: CommanderFactory,
) -> None:
    """Two commanders over one store see the same missions, as two processes over one file."""
    store = InMemoryPersistenceAdapter()
    handle = await make_commander(persistence=store).start(NAP, {}, id="shared")
    assert (await make_commander(persistence=store).inspect(handle.id)).definition == "nap"


async def _a_week_long_timer_fires(
    commander: Commander, runtime: CommanderRuntime, mission_clock: LoopClock
) -> None:
    assert runtime.state is RuntimeState.RUNNING
    handle = await commander.start(NAP, {})
    due = (await handle.inspect()).due_at
    assert due is not None
    runtime.set_next_tick_at(due)

    await handle.wait_for_completion()

    assert mission_clock.now() == due


@pytest.mark.anyio
async def test_the_runtime_fixture_runs_a_week_long_timer_in_virtual_time(
    commander: Commander, runtime: CommanderRuntime, mission_clock: LoopClock
) -> None:
    """In virtual time, a scheduled tick for a 7-day timer fires without a real wait."""
    await _a_week_long_timer_fires(commander, runtime, mission_clock)


@pytest.mark.trio
async def test_the_fixtures_run_under_pytest_trio_with_its_autojump_clock(
    autojump_clock: MockClock,
    commander: Commander,
    runtime: CommanderRuntime,
    mission_clock: LoopClock,
) -> None:
    """Under pytest-trio (a trio-marked test) the async fixtures work as well, and pytest-trio's
    autojump_clock drives mission_clock: a 7-day timer fires without a real wait."""
    await _a_week_long_timer_fires(commander, runtime, mission_clock)
    assert trio.current_time() == autojump_clock.current_time()


@pytest.mark.anyio
async def test_make_runtime_passes_options_and_stops_runtimes_at_teardown(
    make_runtime: RuntimeFactory,
) -> None:
    """make_runtime forwards runtime options to create_commander_runtime."""
    runtime = await make_runtime(auto_schedule=True, max_missions_per_tick=5)
    assert runtime.auto_schedule
    assert runtime.is_running
