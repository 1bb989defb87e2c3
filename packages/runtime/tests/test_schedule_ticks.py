"""The runtime and schedules: a schedule's next slot is a due time like a mission's, covered by
a tick whoever stored it and whenever; a schedule that cannot fire never stops the others."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import anyio
import pytest

from mission_control.core import Cron, Every, MissionStatus, m
from mission_control.in_memory_commander import InMemoryPersistenceAdapter
from mission_control.testing import CommanderFactory, RecordingLogger, RuntimeFactory

pytestmark = pytest.mark.anyio


def parse_any(raw: Any) -> Any:
    return raw


PING = m.define("ping").start(parse=parse_any, run=lambda ctx: "pong").end()


def strict(raw: Any) -> Any:
    if raw != {"v": 2}:
        raise ValueError("ping v2 takes {'v': 2}")
    return raw


PING_V2 = m.define("ping", version=2).start(parse=strict, run=lambda ctx: "pong").end()


@pytest.fixture
def mission_definitions() -> list[Any]:
    return [PING]


async def test_a_schedule_created_while_the_runtime_waits_fires_at_its_first_slot(
    make_commander: CommanderFactory, make_runtime: RuntimeFactory, log: RecordingLogger
) -> None:
    """With nothing due, a runtime armed for no time fires a schedule created afterwards at its
    slot (the creation's notice arms the tick), and that tick reports the mission it started
    and moved, and the schedule's next slot as the next due time."""
    commander = make_commander()
    runtime = await make_runtime(commander, logger=log)
    assert runtime.next_tick_at is None
    await anyio.sleep(100)
    schedule = await commander.create_schedule("p", PING, Every(timedelta(hours=1)), {})
    slot = schedule.next_fire_at
    assert slot is not None
    assert runtime.next_tick_at == slot
    await anyio.sleep(3601)
    firing = [r.fields for r in log.of("tick-completed") if r.fields["fired"]]
    assert len(firing) == 1
    assert firing[0]["fired"] == 1
    assert firing[0]["completed"] == 1
    assert firing[0]["next_due_at"] == (slot + timedelta(hours=1)).isoformat()
    mission = await commander.inspect(schedule.mission_id(slot))
    assert mission.status is MissionStatus.COMPLETED


async def test_a_resumed_schedule_gets_a_tick_for_its_next_slot(
    make_commander: CommanderFactory, make_runtime: RuntimeFactory
) -> None:
    """Resuming a paused schedule while the runtime is armed for nothing arms a tick for the
    schedule's next slot."""
    commander = make_commander()
    await commander.create_schedule("p", PING, Cron("*/5 * * * *"), {}, paused=True)
    runtime = await make_runtime(commander)
    assert runtime.next_tick_at is None
    resumed = await commander.resume_schedule("p")
    assert runtime.next_tick_at == resumed.next_fire_at
    await anyio.sleep(601)
    assert (await commander.get_schedule("p")).fires == 2


async def test_a_schedule_whose_definition_is_not_registered_waits_and_others_fire(
    make_commander: CommanderFactory,
    make_runtime: RuntimeFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A process that does not know a schedule's definition logs it (once, as an error) and
    leaves the schedule due (its slots fire once a process that knows it runs); the other
    schedules fire."""
    persistence = InMemoryPersistenceAdapter()
    writer = make_commander(
        [PING, m.define("other").start(parse=parse_any).end()], persistence=persistence
    )
    await writer.create_schedule("orphan", "other", Every(60), {})
    await writer.create_schedule("p", "ping", Every(60), {})
    commander = make_commander([PING], persistence=persistence)
    with caplog.at_level(logging.ERROR, logger="mission_control.core"):
        runtime = await make_runtime(commander)
        await anyio.sleep(61)
        # The runtime comes back to it every stalled_tick_delay: logged as an error once.
        await anyio.sleep(60)
    errors = [r for r in caplog.records if "schedule 'orphan' could not fire" in r.message]
    assert len(errors) == 1
    assert (await commander.get_schedule("p")).fires == 2
    orphan = await commander.get_schedule("orphan")
    assert orphan.fires == 0
    assert orphan.next_fire_at is not None
    assert orphan.next_fire_at <= commander.clock.now()
    assert runtime.is_running


async def test_a_slot_whose_input_the_definition_now_refuses_is_passed_over_and_recorded(
    make_commander: CommanderFactory, make_runtime: RuntimeFactory
) -> None:
    """After a deploy whose definition refuses a schedule's input, each slot records why it
    could not start its mission (last_error) and the schedule goes on; an update with an
    accepted input fires again and clears the error."""
    persistence = InMemoryPersistenceAdapter()
    first = make_commander([PING], persistence=persistence)
    await first.create_schedule("p", PING, Every(60), {"v": 1})
    deployed = make_commander([PING, PING_V2], persistence=persistence)
    await make_runtime(deployed)
    await anyio.sleep(90)
    refused = await deployed.get_schedule("p")
    assert refused.fires == 0
    assert refused.last_error is not None
    assert "ping v2 takes" in refused.last_error
    assert refused.next_fire_at == refused.created_at + timedelta(seconds=120)
    updated = await deployed.update_schedule("p", input={"v": 2})
    await anyio.sleep(60)
    fired = await deployed.get_schedule("p")
    assert fired.fires == 1
    assert fired.last_error is None
    assert updated.last_error is not None
