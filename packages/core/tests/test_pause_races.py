"""A pause or a resume that comes while another task of the process moves the mission: it
lands on what that task is doing, whichever write of it is under way."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Any

import anyio
import pytest

from mission_control.core import (
    Context,
    MissionSnapshot,
    MissionStatus,
    TimelineEntry,
    TimelineKind,
    create_commander,
    m,
)
from mission_control.in_memory_commander import InMemoryPersistenceAdapter, ManualClock
from mission_control.testing import wait_all_tasks_blocked

pytestmark = pytest.mark.anyio

T0 = datetime(2030, 1, 1, tzinfo=UTC)


class SlowToPause(InMemoryPersistenceAdapter):
    """Holds the commit of a paused snapshot until ``go`` is set (``pausing`` is set once it
    waits): the holder has paused the mission and is storing that."""

    def __init__(self) -> None:
        super().__init__()
        self.pausing = anyio.Event()
        self.go = anyio.Event()

    async def commit(
        self,
        snapshot: MissionSnapshot,
        *,
        expected_revision: int,
        timeline: Sequence[TimelineEntry],
        consumed_signal: int | None = None,
        reopened: bool = False,
    ) -> None:
        if snapshot.status is MissionStatus.PAUSED and not self.go.is_set():
            self.pausing.set()
            await self.go.wait()
        await super().commit(
            snapshot,
            expected_revision=expected_revision,
            timeline=timeline,
            consumed_signal=consumed_signal,
            reopened=reopened,
        )


async def test_a_resume_while_the_holder_stores_its_pause_resumes_the_paused_mission() -> None:
    """A resume that comes after the holder paused the mission at its boundary, while it stores
    that, waits for it and takes the mission out of the pause: the mission does not stay
    paused, and the pause request is not reported withdrawn."""
    store = SlowToPause()
    commander_box: list[Any] = []

    async def first(ctx: Context[Any, Any]) -> str:
        await commander_box[0].pause(ctx.mission_id, "from inside")
        return "first done"

    flow = (
        m.define("paused-while-stored")
        .start(parse=lambda raw: raw)
        .step("first", first)
        .step("second", lambda ctx: "second done")
        .end()
    )
    commander = create_commander([flow], persistence=store, clock=ManualClock(T0))
    commander_box.append(commander)
    resumed: list[MissionSnapshot] = []
    async with anyio.create_task_group() as task_group:
        task_group.start_soon(partial(commander.start, flow, {}, id="r-1"))
        await store.pausing.wait()

        async def resume() -> None:
            resumed.append(await commander.resume("r-1"))

        task_group.start_soon(resume)
        await wait_all_tasks_blocked()
        assert resumed == []
        store.go.set()
    assert resumed[0].status is MissionStatus.COMPLETED
    assert (await commander.inspect("r-1")).status is MissionStatus.COMPLETED
    kinds = [entry.kind for entry in await commander.timeline("r-1")]
    assert TimelineKind.PAUSE_WITHDRAWN not in kinds
    assert kinds.count(TimelineKind.MISSION_PAUSED) == 1
    assert kinds.count(TimelineKind.MISSION_UNPAUSED) == 1
