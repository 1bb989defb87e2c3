"""Notices: every commander on one store shares them, and raising one costs nothing when
nobody listens."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import trio
import trio.testing

from mission_control.core import MissionStatus, Notices, create_commander, m, notices_for
from mission_control.in_memory_commander import InMemoryPersistenceAdapter

T0 = datetime(2030, 1, 1, tzinfo=UTC)


def identity(value: Any) -> Any:
    return value


FLOW = m.define("w").start(parse=identity).need_to("go", parse=identity).end()


async def test_result_returns_when_another_commander_on_the_store_ends_the_mission(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """result() and wait_for_completion() return when another commander of the process, on the
    same adapter, ends the mission (by a signal or a cancellation)."""
    store = InMemoryPersistenceAdapter()
    waiting = create_commander([FLOW], persistence=store)
    ending = create_commander([FLOW], persistence=store)
    await waiting.start(FLOW, {}, id="signalled")
    await waiting.start(FLOW, {}, id="cancelled")
    ended: list[MissionStatus] = []

    async def wait(mission_id: str) -> None:
        ended.append((await waiting.result(mission_id)).status)

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(wait, "signalled")
            nursery.start_soon(wait, "cancelled")
            await trio.testing.wait_all_tasks_blocked()
            await ending.signal("signalled", "go", {})
            await ending.cancel("cancelled", "no longer needed")

    assert sorted(ended) == sorted([MissionStatus.COMPLETED, MissionStatus.CANCELLED])


def test_one_hub_per_adapter_object() -> None:
    """Commanders on one adapter object share its hub; another adapter object has its own."""
    store = InMemoryPersistenceAdapter()
    first = create_commander([FLOW], persistence=store)
    second = create_commander([FLOW], persistence=store)
    other = create_commander([FLOW], persistence=InMemoryPersistenceAdapter())

    assert first.notices is second.notices is notices_for(store)
    assert other.notices is not first.notices


class Recorder:
    def __init__(self) -> None:
        self.due_times: list[datetime] = []
        self.left: list[tuple[str, bool]] = []

    def due(self, when: datetime) -> None:
        self.due_times.append(when)

    def left_running(self, mission_id: str, *, failed: bool) -> None:
        self.left.append((mission_id, failed))


def test_a_due_notice_reaches_a_listener_only_before_what_it_armed() -> None:
    """A listener hears of due times earlier than the tick it armed, and of all of them while it
    has nothing armed; with nobody listening a notice goes nowhere."""
    hub = Notices()
    hub.due(T0)
    recorder = Recorder()
    hub.listen(recorder)

    hub.due(T0 + timedelta(hours=2))
    hub.arm(recorder, T0 + timedelta(hours=1))
    hub.due(T0 + timedelta(hours=1))
    hub.due(T0 + timedelta(hours=3))
    hub.due(T0 + timedelta(minutes=30))
    hub.unlisten(recorder)
    hub.due(T0)

    assert recorder.due_times == [T0 + timedelta(hours=2), T0 + timedelta(minutes=30)]
