"""A schedule changed while the runtime fires it: the change and the record of the fire both
stay."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
import pytest

from mission_control.core import (
    Every,
    MissionSnapshot,
    Schedule,
    TimelineEntry,
    create_commander,
    m,
)
from mission_control.core.storage import NewSignal
from mission_control.in_memory_commander import (
    InMemoryPersistenceAdapter,
    ManualClock,
    SequentialIds,
)

pytestmark = pytest.mark.anyio

T0 = datetime(2030, 1, 1, tzinfo=UTC)
PING = m.define("ping").start(parse=dict).end()


class ChangedWhileFiring(InMemoryPersistenceAdapter):
    """Applies ``change`` to the schedule ``s`` (as another writer would) when the first
    scheduled mission is stored, between the fire's start and its record."""

    def __init__(self, change: Any) -> None:
        super().__init__()
        self.change = change

    async def insert(
        self,
        snapshot: MissionSnapshot,
        timeline: Sequence[TimelineEntry],
        *,
        signals: Sequence[NewSignal] = (),
    ) -> MissionSnapshot | None:
        stored = await super().insert(snapshot, timeline, signals=signals)
        if self.change is not None and "@" in snapshot.id:
            change, self.change = self.change, None
            current = await self.load_schedule("s")
            assert current is not None
            changed: Schedule = change(current)
            await self.commit_schedule(
                attrs.evolve(changed, revision=current.revision + 1),
                expected_revision=current.revision,
            )
        return stored


@pytest.mark.parametrize(
    ("change", "paused", "next_fire_at"),
    [
        (lambda s: attrs.evolve(s, paused=True, next_fire_at=None), True, None),
        (lambda s: attrs.evolve(s, input={"v": 2}), False, T0 + timedelta(seconds=120)),
    ],
    ids=["paused", "input-updated"],
)
async def test_a_schedule_changed_while_it_fires_keeps_the_change_and_the_fires_record(
    change: Any, paused: bool, next_fire_at: datetime | None
) -> None:
    """A pause (or an update) stored between a fire's mission and the fire's record is kept,
    and the record of the fire (last slot, mission, count) is added to it; a pause keeps the
    schedule without a next slot, an update that left the slot fired moves it on."""
    persistence = ChangedWhileFiring(change)
    clock = ManualClock(T0)
    commander = create_commander([PING], persistence=persistence, clock=clock, ids=SequentialIds())
    await commander.create_schedule("s", PING, Every(60, anchor=T0), {"v": 1})
    clock.advance(61)

    assert await commander.fire_schedules(10) == 1

    schedule = await commander.get_schedule("s")
    assert schedule.paused is paused
    assert schedule.next_fire_at == next_fire_at
    assert schedule.fires == 1
    assert schedule.last_fire_at == T0 + timedelta(seconds=60)
    assert schedule.last_mission_id == "s@2030-01-01T00:01:00Z"
    assert schedule.revision == 3
