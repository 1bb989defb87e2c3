from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import anyio
import attrs
import pytest

from mission_control.core import (
    ConfigurationError,
    Context,
    EventKey,
    MissionAlreadyExistsError,
    MissionStatus,
    NodeStatus,
    TimelineKind,
    UnknownDefinitionError,
    UnknownEventError,
    create_commander,
    m,
)
from mission_control.in_memory_commander import (
    InMemoryPersistenceAdapter,
    ManualClock,
    create_in_memory_commander,
)
from mission_control.testing import wait_all_tasks_blocked

pytestmark = pytest.mark.anyio

T0 = datetime(2030, 1, 1, tzinfo=UTC)


def identity(value: Any) -> Any:
    return value


@attrs.frozen
class Quote:
    amount: int
    currency: str


QUOTE = m.key("quote", Quote)


async def test_steps_see_typed_events_rebuilt_from_storage() -> None:
    """ctx.events gives earlier outputs as their declared types, and the parsed input."""
    seen: dict[str, Any] = {}

    async def quote(ctx: Context[dict[str, int], None]) -> Quote:
        return Quote(ctx.input["amount"] * 2, "EUR")

    async def pay(ctx: Context[dict[str, int], None]) -> str:
        seen["quote"] = ctx.events[QUOTE].output
        seen["by-name"] = ctx.events["quote"].output
        seen["start"] = ctx.events.start.input
        seen["key"] = ctx.idempotency_key
        seen["attempt"] = ctx.attempt
        seen["now"] = ctx.now
        seen["has"] = ("quote" in ctx.events, "pay" in ctx.events)
        return "paid"

    flow = m.define("pay").start(parse=identity).step(QUOTE, quote).step("pay", pay).end()
    commander = create_in_memory_commander([flow])
    handle = await commander.start(flow, {"amount": 21})
    snapshot = await handle.inspect()
    assert snapshot.nodes["quote"].output == {"amount": 42, "currency": "EUR"}
    assert seen == {
        "quote": Quote(42, "EUR"),
        "by-name": Quote(42, "EUR"),
        "start": {"amount": 21},
        "key": f"{handle.id}:pay",
        "attempt": 1,
        "now": T0,
        "has": (True, False),
    }
    assert isinstance(QUOTE, EventKey)


async def test_reading_an_event_that_does_not_exist_fails_the_step_clearly() -> None:
    """A step reading a node that has not completed fails with UnknownEventError's message."""

    async def read_missing(ctx: Context[Any, Any]) -> Any:
        return ctx.events["no-such-node"].output

    flow = m.define("typo").start(parse=identity).step("read", read_missing).end()
    commander = create_in_memory_commander([flow])
    snapshot = await (await commander.start(flow, {})).inspect()
    assert snapshot.status is MissionStatus.FAILED
    assert snapshot.error is not None
    assert snapshot.error.type == UnknownEventError.__qualname__
    assert "'no-such-node'" in snapshot.error.message
    assert "start" in snapshot.error.message


async def test_plain_functions_work_as_steps_and_end_computes_the_output() -> None:
    """Synchronous step functions run like async ones; end(output=...) sets the output."""
    flow = (
        m.define("sync")
        .start(parse=identity, run=lambda ctx: ctx.input["n"] + 1)
        .step("double", lambda ctx: ctx.events.start.output * 2)
        .end(output=lambda ctx: {"result": ctx.events["double"].output})
    )
    commander = create_in_memory_commander([flow])
    done = await (await commander.start(flow, {"n": 4})).wait_for_completion()
    assert done.output == {"result": 10}
    assert done.nodes["end"].output == {"result": 10}


async def test_sleep_until_a_computed_time() -> None:
    """sleep_until with a function waits until the time it computes from the context."""
    flow = (
        m.define("until")
        .start(parse=identity)
        .sleep_until("wake", lambda ctx: datetime.fromisoformat(ctx.input["at"]))
        .end()
    )
    clock = ManualClock(T0)
    commander = create_in_memory_commander([flow], clock=clock)
    handle = await commander.start(flow, {"at": "2030-01-02T00:00:00+00:00"})
    assert (await handle.inspect()).due_at == datetime(2030, 1, 2, tzinfo=UTC)
    clock.set(datetime(2030, 1, 2, tzinfo=UTC))
    for mission_id in await commander.due_missions(10):
        await commander.advance(mission_id)
    assert (await handle.inspect()).status is MissionStatus.COMPLETED


async def test_step_timeout_is_a_failed_attempt() -> None:
    """A step that outlives its timeout fails that attempt with StepTimeoutError."""

    async def slow(ctx: Context[Any, Any]) -> None:
        await anyio.sleep(10)

    flow = m.define("slow").start(parse=identity).step("slow", slow, timeout=1).end()
    commander = create_in_memory_commander([flow])
    snapshot = await (await commander.start(flow, {})).inspect()
    assert snapshot.status is MissionStatus.FAILED
    assert snapshot.error is not None
    assert snapshot.error.type == "StepTimeoutError"
    assert "within 1 s" in snapshot.error.message


async def test_cancel_of_a_running_mission_takes_effect_at_the_next_boundary() -> None:
    """Cancelling while a step runs lets that step finish, then cancels before the next one is
    entered."""
    entered = anyio.Event()
    release = anyio.Event()
    ran: list[str] = []

    async def first(ctx: Context[Any, Any]) -> str:
        entered.set()
        await release.wait()
        ran.append("first")
        return "ok"

    async def second(ctx: Context[Any, Any]) -> None:
        ran.append("second")

    flow = m.define("long").start(parse=identity).step("first", first).step("second", second).end()
    commander = create_in_memory_commander([flow])
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(partial(commander.start, flow, {}, id="m-1"))
        await entered.wait()
        requested = await commander.cancel("m-1", "stop please")
        assert requested.status is MissionStatus.RUNNING
        assert requested.cancel_request is not None
        release.set()
    snapshot = await commander.inspect("m-1")
    assert ran == ["first"]
    assert snapshot.status is MissionStatus.CANCELLED
    assert snapshot.nodes["first"].status is NodeStatus.COMPLETED
    # The next node is never entered: no record of it, no step-started entry.
    assert "second" not in snapshot.nodes
    assert snapshot.current_node == "first"


async def test_signal_sent_while_a_step_runs_is_consumed_when_the_wait_begins() -> None:
    """A signal that arrives mid-step is buffered, and the need_to that follows consumes it."""
    entered = anyio.Event()
    release = anyio.Event()

    async def work(ctx: Context[Any, Any]) -> None:
        entered.set()
        await release.wait()

    flow = (
        m.define("busy")
        .start(parse=identity)
        .step("work", work)
        .need_to("go", parse=identity)
        .end()
    )
    commander = create_in_memory_commander([flow])
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(partial(commander.start, flow, {}, id="m-1"))
        await entered.wait()
        buffered = await commander.signal("m-1", "go", {"now": True})
        assert buffered.status is MissionStatus.RUNNING
        release.set()
    snapshot = await commander.inspect("m-1")
    assert snapshot.status is MissionStatus.COMPLETED
    assert snapshot.nodes["go"].input == {"now": True}


async def test_wait_for_completion_wakes_when_another_task_finishes_the_mission() -> None:
    """A task blocked in wait_for_completion returns once a signal completes the mission."""
    flow = m.define("w").start(parse=identity).need_to("go", parse=identity).end()
    commander = create_in_memory_commander([flow])
    handle = await commander.start(flow, {})
    results: list[MissionStatus] = []

    async def waiter() -> None:
        results.append((await handle.wait_for_completion()).status)

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(waiter)
        await wait_all_tasks_blocked()
        assert results == []
        await handle.signal("go", {})
    assert results == [MissionStatus.COMPLETED]


async def test_concurrent_starts_with_one_id_run_the_mission_once() -> None:
    """Two starts with the same id at once create one mission and run its steps once."""
    runs: list[int] = []
    gate = anyio.Event()

    async def step(ctx: Context[Any, Any]) -> None:
        runs.append(1)
        await gate.wait()

    flow = m.define("once").start(parse=identity).step("s", step).end()
    commander = create_in_memory_commander([flow])
    ids: list[str] = []

    async def start() -> None:
        ids.append((await commander.start(flow, {}, id="same")).id)

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(start)
        tasks.start_soon(start)
        await wait_all_tasks_blocked()
        gate.set()
    assert ids == ["same", "same"]
    assert runs == [1]


async def test_idempotent_start_with_another_definitions_id_is_refused() -> None:
    """Reusing an id that belongs to another definition raises instead of returning it."""
    a = m.define("a").start(parse=identity).end()
    b = m.define("b").start(parse=identity).end()
    commander = create_in_memory_commander([a, b])
    await commander.start(a, {}, id="x")
    with pytest.raises(MissionAlreadyExistsError, match="definition 'a'"):
        await commander.start(b, {}, id="x")


async def test_a_definition_the_commander_was_not_given_is_refused() -> None:
    """Starting with an unregistered definition raises UnknownDefinitionError."""
    known = m.define("known").start(parse=identity).end()
    stranger = m.define("stranger").start(parse=identity).end()
    commander = create_in_memory_commander([known])
    with pytest.raises(UnknownDefinitionError, match="stranger"):
        await commander.start(stranger, {})


async def test_a_new_version_missing_the_current_node_fails_the_mission_clearly() -> None:
    """A mission resumed on its version changed in place, without its current node, fails,
    saying that a changed definition needs a new version."""
    store = InMemoryPersistenceAdapter()
    clock = ManualClock(T0)
    v1 = m.define("flow").start(parse=identity).sleep("old-pause", 60).end()
    v2 = m.define("flow").start(parse=identity).sleep("new-pause", 60).end()
    first = create_in_memory_commander([v1], persistence=store, clock=clock)
    handle = await first.start(v1, {})
    clock.advance(60)
    second = create_in_memory_commander([v2], persistence=store, clock=clock)
    snapshot = await second.advance(handle.id)
    assert snapshot is not None
    assert snapshot.status is MissionStatus.FAILED
    assert snapshot.error is not None
    assert "no node 'old-pause'" in snapshot.error.message
    assert "needs a new version" in snapshot.error.message


async def test_a_mission_interrupted_mid_step_resumes_and_reruns_the_step() -> None:
    """A step cut off before its commit runs again when the mission is advanced later."""
    store = InMemoryPersistenceAdapter()
    calls: list[int] = []

    async def step(ctx: Context[Any, Any]) -> str:
        calls.append(ctx.attempt)
        if len(calls) == 1:
            await anyio.sleep_forever()
        return "done"

    flow = m.define("resume").start(parse=identity).step("s", step).end()
    commander = create_in_memory_commander([flow], persistence=store)
    with anyio.move_on_after(0.01):
        await commander.start(flow, {}, id="m-1")
    assert (await commander.inspect("m-1")).status is MissionStatus.RUNNING
    restarted = create_in_memory_commander([flow], persistence=store)
    assert await restarted.running_missions(10) == ["m-1"]
    snapshot = await restarted.advance("m-1")
    assert snapshot is not None
    assert snapshot.status is MissionStatus.COMPLETED
    assert calls == [1, 1]
    kinds = [e.kind for e in await restarted.timeline("m-1")]
    assert TimelineKind.MISSION_RESUMED in kinds


async def test_create_commander_defaults_to_in_memory_storage() -> None:
    """create_commander without persistence works when the in-memory package is installed."""
    flow = m.define("d").start(parse=identity).end()
    async with create_commander([flow]) as commander:
        done = await (await commander.start(flow, {})).wait_for_completion()
        assert done.status is MissionStatus.COMPLETED
        assert len(done.id) == 26


def test_missing_in_memory_package_names_the_package_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without an adapter or the in-memory package, the error says what to install."""
    import builtins

    real_import = builtins.__import__

    def no_in_memory(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("mission_control.in_memory_commander"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_in_memory)
    import importlib

    monkeypatch.setattr(
        importlib, "import_module", lambda name: no_in_memory(name, globals(), locals(), [], 0)
    )
    flow = m.define("d").start(parse=identity).end()
    with pytest.raises(ConfigurationError, match="mission-control-in-memory-commander"):
        create_commander([flow])


async def test_start_at_must_be_timezone_aware() -> None:
    """A naive start_at is rejected before anything is stored."""
    from mission_control.core import InvalidInputError

    flow = m.define("d").start(parse=identity).end()
    commander = create_in_memory_commander([flow])
    with pytest.raises(InvalidInputError, match="timezone-aware"):
        await commander.start(flow, {}, start_at=datetime(2030, 1, 1) + timedelta(1))
    assert await commander.list() == []


async def test_running_missions_fills_its_page_past_missions_held_here() -> None:
    """Missions this process is moving are skipped without shortening the page."""
    store = InMemoryPersistenceAdapter()
    gate = anyio.Event()

    async def blocked(ctx: Context[Any, Any]) -> None:
        await gate.wait()

    flow = m.define("held").start(parse=identity).step("wait", blocked).end()
    first = create_in_memory_commander([flow], persistence=store)
    for mission_id in ("a", "b", "c"):
        # Each start is cut off inside its step, leaving the mission stored as running.
        with anyio.move_on_after(0.01):
            await first.start(flow, {}, id=mission_id)
    commander = create_in_memory_commander([flow], persistence=store)
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(commander.advance, "a")
        await wait_all_tasks_blocked()
        assert commander.is_held("a")
        assert await commander.running_missions(1) == ["b"]
        assert await commander.running_missions(2) == ["b", "c"]
        gate.set()
