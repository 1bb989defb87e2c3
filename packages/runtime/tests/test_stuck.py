"""Missions that cannot move (their definition was removed in a deploy) never hold the others
back: not their due times, not the missions left mid-node after them."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import trio
from trio.testing import MockClock

from mission_control.core import Context, MissionStatus, m
from mission_control.in_memory_commander import InMemoryPersistenceAdapter
from mission_control.runtime import RuntimeEvent
from mission_control.testing import CommanderFactory, RecordingLogger, RuntimeFactory, TrioClock


def parse_any(raw: Any) -> Any:
    return raw


def done(ctx: Context[Any, Any]) -> str:
    return "done"


RETIRED = m.define("retired").start(parse=parse_any).step("work", done).end()
"""A definition the next deploy no longer has."""

QUICK = m.define("quick").start(parse=parse_any).step("work", done).end()
"""Completes as soon as it starts."""


async def hang(ctx: Context[Any, Any]) -> str:
    await trio.sleep_forever()
    raise AssertionError("unreachable")


HANGING = m.define("retired").start(parse=parse_any).step("work", hang).end()
"""The retired definition, in the old deploy whose process died mid-step."""


async def take_five(ctx: Context[Any, Any]) -> str:
    await trio.sleep(5)
    return "done"


SLOW = m.define("slow").start(parse=parse_any).step("work", take_five).end()
"""Runs a 5-second step as soon as it starts."""


@pytest.mark.parametrize("stuck", [1, 3, 7])
async def test_a_due_mission_that_cannot_move_does_not_delay_a_later_due_time(
    autojump_clock: MockClock,
    make_commander: CommanderFactory,
    make_runtime: RuntimeFactory,
    mission_clock: TrioClock,
    stuck: int,
) -> None:
    """Delayed starts a deploy can no longer move, due at t+1 s (one, or more than
    max_missions_per_tick, or than several ticks take), do not hold back another due at t+10 s:
    it starts at t+10 s, not after stalled_tick_delay."""
    store = InMemoryPersistenceAdapter()
    old = make_commander([RETIRED], persistence=store)
    deployed = make_commander([QUICK], persistence=store)
    await make_runtime(deployed, max_missions_per_tick=2, stalled_tick_delay=30)
    began = mission_clock.now()

    for n in range(stuck):
        await old.start(RETIRED, {}, id=f"retired-{n}", start_at=began + timedelta(seconds=1))
    await deployed.start(QUICK, {}, id="quick", start_at=began + timedelta(seconds=10))
    with trio.fail_after(120):
        snapshot = await deployed.result("quick")

    assert snapshot.status is MissionStatus.COMPLETED
    assert snapshot.updated_at - began == timedelta(seconds=10)


async def test_missions_left_mid_node_are_resumed_past_those_whose_resume_keeps_failing(
    autojump_clock: MockClock,
    make_commander: CommanderFactory,
    make_runtime: RuntimeFactory,
    log: RecordingLogger,
) -> None:
    """max_missions_per_tick missions whose resume raises are passed over for
    stalled_tick_delay, so a mission left mid-node after them (by id) is resumed at once, and
    they are not retried (nor logged) on every tick meanwhile."""
    store = InMemoryPersistenceAdapter()
    old = make_commander([HANGING], persistence=store)
    for n in range(2):
        with trio.move_on_after(1):
            await old.start(HANGING, {}, id=f"a-retired-{n}")
    deployed = make_commander([SLOW], persistence=store)
    runtime = await make_runtime(
        deployed, max_missions_per_tick=2, stalled_tick_delay=3600, logger=log
    )
    assert len(log.of(RuntimeEvent.MISSION_RESUME_FAILED)) == 2

    with trio.move_on_after(1):
        await deployed.start(SLOW, {}, id="z-web")
    with trio.fail_after(60):
        snapshot = await deployed.result("z-web")
    await runtime.tick()
    await runtime.tick()

    assert snapshot.status is MissionStatus.COMPLETED
    assert len(log.of(RuntimeEvent.MISSION_RESUME_FAILED)) == 2
    for n in range(2):
        assert (await deployed.inspect(f"a-retired-{n}")).status is MissionStatus.RUNNING
