"""The mission client: the commander's API with the ticks scheduled for the work it leaves due."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import anyio
import pytest

from mission_control.client import MissionClient, create_mission_client
from mission_control.core import (
    Commander,
    CommanderProtocol,
    Context,
    MissionCancelledError,
    MissionFailedError,
    MissionHandle,
    MissionStatus,
    m,
)
from mission_control.runtime import create_commander_runtime
from mission_control.testing import LoopClock, RuntimeFactory


def parse_approval(raw: Any) -> dict[str, str]:
    if not isinstance(raw, dict) or not isinstance(raw.get("by"), str):
        raise ValueError("an approval needs 'by'")
    return {"by": raw["by"]}


APPROVAL = (
    m.define("approval")
    .start(parse=lambda raw: raw)
    .need_to("approve", parse=parse_approval)
    .sleep("cool-off", timedelta(hours=1))
    .end(lambda ctx: {"approved_by": ctx.events["approve"].output["by"]})
)
"""Waits for an approval, then cools off for an hour before completing."""

REMINDER = m.define("reminder").start(parse=lambda raw: raw, run=lambda ctx: "sent").end()


class Flaky:
    def __init__(self, failures: int) -> None:
        self.failures = failures

    async def call(self, ctx: Context[Any, Any]) -> int:
        if ctx.attempt <= self.failures:
            raise ConnectionError("upstream down")
        return ctx.attempt


FLAKY = Flaky(failures=2)
RETRYING = (
    m.define("retrying")
    .start(parse=lambda raw: raw)
    .step("call", FLAKY.call, retry=m.retry(5, m.fixed(30)))
    .end()
)


@pytest.fixture
def mission_definitions() -> list[Any]:
    return [APPROVAL, REMINDER, RETRYING]


@pytest.fixture
async def client(make_runtime: RuntimeFactory) -> MissionClient:
    return create_mission_client(await make_runtime())


@pytest.mark.anyio
async def test_a_delayed_start_runs_at_its_time_without_scheduling_by_hand(
    client: MissionClient, mission_clock: LoopClock
) -> None:
    """A mission started with start_at runs when its time comes: the client scheduled it."""
    start_at = mission_clock.now() + timedelta(days=2)

    handle = await client.start(REMINDER, {"to": "ops"}, start_at=start_at)
    assert (await handle.inspect()).status is MissionStatus.WAITING
    assert client.runtime.next_tick_at == start_at
    snapshot = await handle.wait_for_completion()

    assert snapshot.nodes["start"].output == "sent"
    assert mission_clock.now() == start_at


@pytest.mark.anyio
async def test_retries_reached_while_starting_are_scheduled(
    client: MissionClient, mission_clock: LoopClock
) -> None:
    """A first step that fails inline gets its retry tick; so does each retry after it."""
    began = mission_clock.now()
    handle = await client.start(RETRYING, {})

    assert client.runtime.next_tick_at == began + timedelta(seconds=30)
    await anyio.sleep(30.001)
    snapshot = await handle.inspect()
    assert snapshot.nodes["call"].attempts == 2
    assert snapshot.status is MissionStatus.WAITING


@pytest.mark.anyio
async def test_a_signal_that_leads_to_a_timer_schedules_its_tick(
    client: MissionClient, mission_clock: LoopClock
) -> None:
    """Signalling an approval starts the cool-off timer, and the client schedules its tick."""
    handle = await client.start(APPROVAL, {})
    assert client.runtime.next_tick_at is None

    after = await client.signal(handle.id, "approve", {"by": "reviewer-1"})
    assert after.due_at == client.runtime.next_tick_at
    snapshot = await client.wait_for_completion(handle.id)

    assert snapshot.output == {"approved_by": "reviewer-1"}
    assert mission_clock.now() == after.due_at


@pytest.mark.anyio
async def test_handles_from_the_client_signal_through_it(client: MissionClient) -> None:
    """A handle the client returns schedules ticks too, so handle.signal needs no extra step."""
    handle = await client.start(APPROVAL, {})

    await handle.signal("approve", {"by": "reviewer-2"})
    snapshot = await handle.wait_for_completion()

    assert snapshot.status is MissionStatus.COMPLETED
    assert handle == await client.get(handle.id)


@pytest.mark.anyio
async def test_cancel_and_wait(client: MissionClient) -> None:
    """A cancelled mission makes wait_for_completion raise and result return its snapshot."""
    handle = await client.start(APPROVAL, {})

    async with anyio.create_task_group() as tasks:

        async def cancel_later() -> None:
            await anyio.sleep(60)
            await client.cancel(handle.id, "withdrawn")

        tasks.start_soon(cancel_later)
        with pytest.raises(MissionCancelledError, match="withdrawn"):
            await client.wait_for_completion(handle.id)

    snapshot = await client.result(handle.id)
    assert snapshot.status is MissionStatus.CANCELLED


@pytest.mark.anyio
async def test_a_failed_mission_raises_from_wait(
    make_runtime: RuntimeFactory, make_commander: Any
) -> None:
    """wait_for_completion raises MissionFailedError when retries run out under an
    auto-scheduling runtime (later retries are scheduled by ticks, not by client calls)."""
    flaky = Flaky(failures=10)
    definition = (
        m.define("doomed")
        .start(parse=lambda raw: raw)
        .step("call", flaky.call, retry=m.retry(3, m.fixed(5)))
        .end()
    )
    runtime = await make_runtime(make_commander([definition]), auto_schedule=True)
    client = create_mission_client(runtime)
    handle = await client.start(definition, {})

    with pytest.raises(MissionFailedError, match="upstream down"):
        await handle.wait_for_completion()
    assert (await handle.inspect()).nodes["call"].attempts == 3


@pytest.mark.anyio
async def test_inspect_list_and_timeline_read_through(client: MissionClient) -> None:
    """inspect, list, get and timeline read the commander's missions."""
    first = await client.start(APPROVAL, {}, id="a-1")
    await client.start(REMINDER, {}, id="r-1")

    assert (await client.inspect("a-1")).status is MissionStatus.WAITING
    assert [s.id for s in await client.list()] == ["a-1", "r-1"]
    assert [s.id for s in await client.list(status=MissionStatus.COMPLETED)] == ["r-1"]
    assert [s.id for s in await client.list(definition=APPROVAL)] == ["a-1"]
    assert (await client.timeline("a-1"))[0].kind == "mission-started"
    assert await first.timeline() == await client.timeline("a-1")


@pytest.mark.anyio
async def test_the_client_is_a_commander(client: MissionClient, commander: Commander) -> None:
    """The client satisfies CommanderProtocol and exposes its runtime's commander."""
    assert isinstance(client, CommanderProtocol)
    assert client.commander is commander
    assert client.clock is commander.clock
    assert set(client.definitions) == {"approval", "reminder", "retrying"}


def test_the_client_inherits_the_application_api_instead_of_forwarding_it() -> None:
    """Every CommanderProtocol member of the client is the commander's own, except aclose."""
    members = [name for name in vars(CommanderProtocol) if not name.startswith("_")]

    assert {"start", "signal", "iter_missions", "definitions"} <= set(members)
    for name in members:
        if name != "aclose":
            assert getattr(MissionClient, name) is getattr(Commander, name), name


@pytest.mark.anyio
async def test_closing_the_client_leaves_the_commanders_store_open(
    client: MissionClient, commander: Commander
) -> None:
    """Leaving ``async with client`` does not close the store the runtime's commander uses."""
    async with client:
        handle = await client.start(REMINDER, {})

    assert (await commander.inspect(handle.id)).status is MissionStatus.COMPLETED
    assert (await client.inspect(handle.id)).status is MissionStatus.COMPLETED


@pytest.mark.anyio
async def test_handles_from_the_client_are_bound_to_it(client: MissionClient) -> None:
    """start, get and iter_missions of the client work on the client, not on the commander."""
    handle = await client.start(REMINDER, {}, id="r-9")

    assert handle == await client.get("r-9")
    assert handle != await client.commander.get("r-9")
    assert [snapshot.id async for snapshot in client.iter_missions(page_size=1)] == ["r-9"]


def test_a_runtime_driving_something_else_than_a_commander_is_refused(
    commander: Commander,
) -> None:
    """A client needs a runtime whose driver is a commander made by create_commander."""

    class Driver:
        clock = commander.clock
        notices = commander.notices
        max_recovery_attempts = 1
        inspect = commander.inspect
        advance = commander.advance
        due_missions = commander.due_missions
        running_missions = commander.running_missions
        next_due_at = commander.next_due_at
        is_owner = True
        take_ownership = commander.take_ownership
        watch_submissions = commander.watch_submissions
        apply_submissions = commander.apply_submissions
        fire_schedules = commander.fire_schedules

    with pytest.raises(TypeError, match="create_commander"):
        MissionClient(create_commander_runtime(Driver()))


@pytest.mark.anyio
async def test_a_stopped_runtime_gets_no_ticks_and_calls_still_work(
    commander: Commander, mission_clock: LoopClock
) -> None:
    """After the runtime stopped, the client still starts missions and schedules nothing."""
    runtime = create_commander_runtime(commander)
    async with runtime:
        pass
    client = MissionClient(runtime)

    handle = await client.start(REMINDER, {}, start_at=mission_clock.now() + timedelta(hours=1))

    assert isinstance(handle, MissionHandle)
    assert runtime.scheduled_ticks == ()
    assert (await commander.next_due_at()) is not None


def test_a_runtime_is_required(commander: Commander) -> None:
    """A client is made from a runtime, not a commander."""
    with pytest.raises(TypeError, match="CommanderRuntime"):
        MissionClient(commander)  # type: ignore[arg-type]
