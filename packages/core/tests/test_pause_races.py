"""A pause or a resume that comes while another task of the process moves the mission: it
lands on what that task is doing, whichever write of it is under way."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Any

import anyio
import pytest

from mission_control.core import (
    Commander,
    Context,
    MissionSnapshot,
    MissionStatus,
    Pause,
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


class SlowToRequest(InMemoryPersistenceAdapter):
    """Holds the next pause request write open once ``hold_next`` is set, until ``go`` is set
    (``writing`` is set once it waits): before it stores the request, or after (as a write whose
    commit is stored and whose answer has not come back yet)."""

    def __init__(self, stored_first: bool) -> None:
        super().__init__()
        self.stored_first = stored_first
        self.hold_next = False
        self.writing = anyio.Event()
        self.go = anyio.Event()

    async def request_pause(
        self, mission_id: str, request: Pause | None, timeline: Sequence[TimelineEntry]
    ) -> None:
        if self.stored_first:
            await super().request_pause(mission_id, request, timeline)
        if self.hold_next:
            self.hold_next = False
            self.writing.set()
            await self.go.wait()
        if not self.stored_first:
            await super().request_pause(mission_id, request, timeline)


Call = tuple[str, Callable[[], Awaitable[MissionSnapshot]]]


class _Overlap:
    """A mission whose step ``slow`` runs until ``step_go`` is set, on a store that can hold a
    pause request write open, and what the calls made on it while that write is open
    returned."""

    def __init__(self, stored_first: bool) -> None:
        self.store = SlowToRequest(stored_first)
        self.step_go = anyio.Event()
        self.started = anyio.Event()

        async def slow(ctx: Context[Any, Any]) -> str:
            self.started.set()
            await self.step_go.wait()
            return "slow done"

        self.flow = (
            m.define("overlapping")
            .start(parse=lambda raw: raw)
            .step("slow", slow)
            .step("next", lambda ctx: "next done")
            .need_to("go", parse=lambda raw: raw)
            .end()
        )
        self.commander = self.make_commander()
        self.returned: dict[str, MissionSnapshot] = {}

    def make_commander(self) -> Commander:
        return create_commander([self.flow], persistence=self.store, clock=ManualClock(T0))

    async def call(self, name: str, call: Callable[[], Awaitable[MissionSnapshot]]) -> None:
        self.returned[name] = await call()

    async def overlap(
        self, first: Call, second: Call, crash: bool, before: Call | None = None
    ) -> MissionSnapshot:
        """While ``slow`` runs, make the ``before`` call, then ``first`` with its request write
        held open and ``second`` meanwhile; then let the step end (or, with ``crash``, stop the
        task running it and have a second commander take the mission up, as after a restart);
        the mission as stored at the end."""
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(partial(self.commander.start, self.flow, {}, id="o-1"))
            await self.started.wait()
            if before is not None:
                await self.call(*before)
            self.store.hold_next = True
            task_group.start_soon(self.call, *first)
            await self.store.writing.wait()
            task_group.start_soon(self.call, *second)
            await wait_all_tasks_blocked()
            # The second waits for the first to be done with the holder.
            assert second[0] not in self.returned
            self.store.go.set()
            await wait_all_tasks_blocked()
            assert {first[0], second[0]} <= set(self.returned)
            if crash:
                task_group.cancel_scope.cancel()
            else:
                self.step_go.set()
        if crash:
            self.step_go.set()
            again = self.make_commander()
            assert await again.advance("o-1") is not None
        return await self.commander.inspect("o-1")

    async def kinds(self) -> list[TimelineKind]:
        return [entry.kind for entry in await self.commander.timeline("o-1")]


@pytest.mark.parametrize("crash", [False, True], ids=["lives", "crashes"])
@pytest.mark.parametrize("stored_first", [False, True], ids=["open", "stored"])
async def test_a_resume_during_a_pause_request_write_withdraws_it_in_store_and_holder(
    crash: bool, stored_first: bool
) -> None:
    """A resume that comes while a pause of a running mission stores its request acts after
    it: the request is withdrawn from the store and the holder alike, and the mission goes on
    unpaused, whether its process lives to the boundary or stops before it."""
    run = _Overlap(stored_first)
    commander = run.commander
    end = await run.overlap(
        ("pause", partial(commander.pause, "o-1", "stop")),
        ("resume", partial(commander.resume, "o-1")),
        crash,
    )
    assert run.returned["pause"].pause_request == Pause(T0, "stop")
    assert run.returned["resume"].pause_request is None
    assert (end.status, end.current_node, end.pause, end.pause_request) == (
        MissionStatus.WAITING,
        "go",
        None,
        None,
    )
    kinds = await run.kinds()
    assert TimelineKind.MISSION_PAUSED not in kinds
    assert kinds.count(TimelineKind.PAUSE_REQUESTED) == 1
    assert kinds.index(TimelineKind.PAUSE_REQUESTED) < kinds.index(TimelineKind.PAUSE_WITHDRAWN)


@pytest.mark.parametrize("crash", [False, True], ids=["lives", "crashes"])
@pytest.mark.parametrize("stored_first", [False, True], ids=["open", "stored"])
async def test_a_pause_during_a_resume_withdrawal_write_is_stored_and_lands(
    crash: bool, stored_first: bool
) -> None:
    """A pause that comes while a resume withdraws an earlier pause request acts after it: its
    own request is stored and told to the holder, and the mission pauses (at the boundary, or
    at the interrupted step when its process stops before that)."""
    run = _Overlap(stored_first)
    commander = run.commander
    end = await run.overlap(
        ("resume", partial(commander.resume, "o-1")),
        ("pause", partial(commander.pause, "o-1", "second")),
        crash,
        before=("first pause", partial(commander.pause, "o-1", "first")),
    )
    assert run.returned["resume"].pause_request is None
    asked = run.returned["pause"].pause_request
    assert asked is not None
    assert asked.reason == "second"
    assert (end.status, end.pause, end.pause_request) == (MissionStatus.PAUSED, asked, None)
    assert end.current_node == ("slow" if crash else "next")
    assert (await run.kinds()).count(TimelineKind.PAUSE_REQUESTED) == 2


@pytest.mark.parametrize("crash", [False, True], ids=["lives", "crashes"])
@pytest.mark.parametrize("stored_first", [False, True], ids=["open", "stored"])
async def test_two_overlapping_pauses_keep_the_first(crash: bool, stored_first: bool) -> None:
    """A pause that comes while another pause of the running mission stores its request changes
    nothing: one request is stored, and the mission pauses with the first reason."""
    run = _Overlap(stored_first)
    commander = run.commander
    end = await run.overlap(
        ("first", partial(commander.pause, "o-1", "first")),
        ("second", partial(commander.pause, "o-1", "second")),
        crash,
    )
    first = Pause(T0, "first")
    assert run.returned["first"].pause_request == first
    assert run.returned["second"].pause_request == first
    assert (end.status, end.pause, end.pause_request) == (MissionStatus.PAUSED, first, None)
    assert (await run.kinds()).count(TimelineKind.PAUSE_REQUESTED) == 1
