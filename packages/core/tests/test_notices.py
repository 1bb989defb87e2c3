"""Notices: every commander on one store shares them, and raising one costs nothing when
nobody listens."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import pytest

from mission_control.core import (
    Context,
    InvalidSignalPayloadError,
    MissionNotActiveError,
    MissionNotFoundError,
    MissionStatus,
    UnknownSignalError,
    create_commander,
    m,
)
from mission_control.core.lowlevel import Notices, notices_for
from mission_control.in_memory_commander import InMemoryPersistenceAdapter
from mission_control.testing import wait_all_tasks_blocked

pytestmark = pytest.mark.anyio

T0 = datetime(2030, 1, 1, tzinfo=UTC)


def identity(value: Any) -> Any:
    return value


def positive(value: Any) -> int:
    if not isinstance(value, int) or value <= 0:
        raise ValueError(f"expected a positive int, got {value!r}")
    return value


FLOW = m.define("w").start(parse=identity).need_to("go", parse=identity).end()


async def hundred_seconds(ctx: Context[Any, Any]) -> str:
    await anyio.sleep(100)
    return "done"


SLOW = m.define("slow").start(parse=identity).step("work", hundred_seconds).end()
"""Runs a 100-second step as soon as it starts."""
COUNTED = m.define("counted").start(parse=identity).need_to("count", parse=positive).end()
"""Waits for ``count``, whose payload must be a positive int."""


async def test_result_returns_when_another_commander_on_the_store_ends_the_mission() -> None:
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

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(wait, "signalled")
            tasks.start_soon(wait, "cancelled")
            await wait_all_tasks_blocked()
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


async def test_a_mission_one_commander_moves_is_held_for_every_commander_on_the_adapter() -> None:
    """While a step runs in one commander's start, another commander on the same adapter sees
    the mission held: it is not listed as interrupted, not advanced, and a cancellation through
    it pokes the holder, which ends the mission cancelled after the step ran once."""
    store = InMemoryPersistenceAdapter()
    moving = create_commander([SLOW], persistence=store)
    other = create_commander([SLOW], persistence=store)
    started: list[MissionStatus] = []

    async def start() -> None:
        started.append((await (await moving.start(SLOW, {}, id="m")).inspect()).status)

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(start)
        await wait_all_tasks_blocked()
        assert other.is_held("m")
        assert await other.running_missions(10) == []
        assert await other.advance("m") is None
        await other.cancel("m", "enough")

    ended = await other.inspect("m")
    assert started == [MissionStatus.CANCELLED]
    assert (ended.status, ended.recovery_attempts) == (MissionStatus.CANCELLED, 0)
    assert (ended.nodes["work"].attempts, ended.nodes["work"].output) == (1, "done")


async def test_refused_signals_and_cancels_raise_no_left_running_notice() -> None:
    """A signal or cancellation refused before anything is written (unknown signal, bad
    payload, finished or unknown mission) tells no scheduler that a mission was left running."""
    commander = create_commander([COUNTED, FLOW], persistence=InMemoryPersistenceAdapter())
    recorder = Recorder()
    commander.notices.listen(recorder)
    await commander.start(COUNTED, {}, id="waiting")
    await commander.start(FLOW, {}, id="ended")
    await commander.cancel("ended")

    with pytest.raises(UnknownSignalError):
        await commander.signal("waiting", "nope")
    with pytest.raises(InvalidSignalPayloadError):
        await commander.signal("waiting", "count", -1)
    with pytest.raises(MissionNotActiveError):
        await commander.signal("ended", "go")
    with pytest.raises(MissionNotFoundError):
        await commander.signal("missing", "go")
    with pytest.raises(MissionNotActiveError):
        await commander.cancel("ended")
    with pytest.raises(MissionNotFoundError):
        await commander.cancel("missing")

    assert recorder.left == []
    assert (await commander.inspect("waiting")).status is MissionStatus.WAITING


@pytest.mark.parametrize("stop", [SystemExit, KeyboardInterrupt])
async def test_a_process_stopping_mid_step_raises_no_left_running_notice(
    stop: type[BaseException],
) -> None:
    """A step that stops the process (KeyboardInterrupt, SystemExit) arms no tick on the way
    out: the next start-up resumes the mission."""

    async def halt(ctx: Context[Any, Any]) -> None:
        raise stop

    flow = m.define("halts").start(parse=identity).step("halt", halt).end()
    commander = create_commander([flow], persistence=InMemoryPersistenceAdapter())
    recorder = Recorder()
    commander.notices.listen(recorder)

    with pytest.raises(stop):
        await commander.start(flow, {}, id="m")

    assert recorder.left == []
    assert (await commander.inspect("m")).status is MissionStatus.RUNNING


async def test_a_caller_cancelled_mid_step_raises_a_left_running_notice() -> None:
    """A start whose caller is cancelled while the step runs says the mission was left running,
    not failed, so a scheduler resumes it at once."""
    commander = create_commander([SLOW], persistence=InMemoryPersistenceAdapter())
    recorder = Recorder()
    commander.notices.listen(recorder)

    with anyio.move_on_after(1):
        await commander.start(SLOW, {}, id="m")

    assert recorder.left == [("m", False)]


async def test_a_cancelled_wait_for_a_mission_leaves_nothing_behind() -> None:
    """result() calls given up on a mission that lives on keep nothing in the hub, and a waiter
    still there is woken when the mission ends."""
    store = InMemoryPersistenceAdapter()
    commander = create_commander([FLOW], persistence=store)
    await commander.start(FLOW, {}, id="long-lived")
    hub = notices_for(store)

    for _ in range(3):
        with anyio.move_on_after(1):
            await commander.result("long-lived")
    assert hub._waiters == {}  # pyright: ignore[reportPrivateUsage]

    ended: list[MissionStatus] = []

    async def wait() -> None:
        ended.append((await commander.result("long-lived")).status)

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(wait)
        with anyio.move_on_after(1):
            await commander.result("long-lived")
        await wait_all_tasks_blocked()
        assert list(hub._waiters) == ["long-lived"]  # pyright: ignore[reportPrivateUsage]
        await commander.signal("long-lived", "go")

    assert ended == [MissionStatus.COMPLETED]
    assert hub._waiters == {}  # pyright: ignore[reportPrivateUsage]
