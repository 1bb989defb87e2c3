"""Durability from the start, recovery attempts, BaseExceptions raised by user functions and
cancellation at the boundary after a step (issue 10, items 4, 6, 7 and 15)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from mission_control.core import (
    DEFAULT_MAX_RECOVERY_ATTEMPTS,
    Commander,
    ConfigurationError,
    Context,
    MissionDefinition,
    MissionSnapshot,
    MissionStatus,
    NodeStatus,
    RecoveryAttemptsExceededError,
    TimelineEntry,
    TimelineKind,
    create_commander,
    m,
)
from mission_control.core.storage import NewSignal
from mission_control.in_memory_commander import (
    InMemoryPersistenceAdapter,
    create_in_memory_commander,
)

pytestmark = pytest.mark.anyio


def identity(value: Any) -> Any:
    return value


async def done(ctx: Context[Any, Any]) -> str:
    return "done"


class Halt(BaseException):
    """A BaseException of the application's own, not meant to stop the process."""


async def start_then_cancel_the_caller(start: Any, entered: anyio.Event) -> None:
    """Run ``start()`` until ``entered`` is set, then cancel it as a timed-out request would."""
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(start)
        await entered.wait()
        tasks.cancel_scope.cancel()


# -- 4: durable from the moment start accepts its input ------------------------------------------


async def test_a_start_interrupted_inside_its_run_is_stored_and_resumed() -> None:
    """A mission whose start function is interrupted is stored already, running at its start,
    and advance() runs the start again and completes it."""
    entered = anyio.Event()
    runs: list[str] = []

    async def begin(ctx: Context[Any, Any]) -> str:
        runs.append(ctx.mission_id)
        entered.set()
        if len(runs) == 1:
            await anyio.sleep_forever()
        return "begun"

    flow = m.define("begins").start(parse=identity, run=begin).step("work", done).end()
    commander = create_in_memory_commander([flow])
    await start_then_cancel_the_caller(partial(commander.start, flow, {}, id="m-1"), entered)

    stored = await commander.inspect("m-1")
    assert (stored.status, stored.current_node) == (MissionStatus.RUNNING, "start")
    assert stored.nodes["start"].status is NodeStatus.RUNNING

    finished = await commander.advance("m-1")
    assert finished is not None
    assert finished.status is MissionStatus.COMPLETED
    assert finished.nodes["start"].output == "begun"
    assert runs == ["m-1", "m-1"]


class CountingStore(InMemoryPersistenceAdapter):
    """The in-memory adapter, counting the writes it is asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    async def insert(
        self,
        snapshot: MissionSnapshot,
        timeline: Sequence[TimelineEntry],
        *,
        signals: Sequence[NewSignal] = (),
    ) -> MissionSnapshot | None:
        self.writes.append(f"insert {snapshot.status.value} at {snapshot.current_node}")
        return await super().insert(snapshot, timeline, signals=signals)

    async def commit(
        self,
        snapshot: MissionSnapshot,
        *,
        expected_revision: int,
        timeline: Sequence[TimelineEntry],
        consumed_signal: int | None = None,
    ) -> None:
        self.writes.append(f"commit {snapshot.status.value} at {snapshot.current_node}")
        await super().commit(
            snapshot,
            expected_revision=expected_revision,
            timeline=timeline,
            consumed_signal=consumed_signal,
        )


@pytest.mark.parametrize(
    ("flow", "writes"),
    [
        (
            m.define("run-then-steps")
            .start(parse=identity, run=done)
            .step("a", done)
            .step("b", done)
            .end(),
            ["insert running at start", "commit running at b", "commit completed at None"],
        ),
        (
            m.define("no-run").start(parse=identity).step("a", done).step("b", done).end(),
            ["insert running at a", "commit running at b", "commit completed at None"],
        ),
        (
            m.define("no-run-wait").start(parse=identity).need_to("go", parse=identity).end(),
            ["insert waiting at go"],
        ),
    ],
)
async def test_a_start_is_stored_before_its_run_without_a_write_more_per_mission(
    flow: MissionDefinition[Any, Any, Any], writes: list[str]
) -> None:
    """A start that runs a function is inserted before it runs and its result goes with the
    first step's write; a start without one is inserted with what follows it, as before."""
    store = CountingStore()
    commander = create_in_memory_commander([flow], persistence=store)
    await commander.start(flow, {})
    assert store.writes == writes


# -- 6: recovery attempts ------------------------------------------------------------------------


async def test_a_background_start_that_stops_the_process_is_counted_and_quarantined() -> None:
    """A mission started in the background whose step stops the process is stored running
    before its start runs, so each later advance counts a recovery attempt and it fails past
    max_recovery_attempts instead of crash-looping (it never reaches the step a fifth time)."""
    runs: list[int] = []

    async def halt(ctx: Context[Any, Any]) -> None:
        runs.append(ctx.attempt)
        raise SystemExit

    flow = m.define("halts").start(parse=identity).step("halt", halt).end()
    commander = create_in_memory_commander([flow], max_recovery_attempts=2)
    await commander.start(flow, {}, id="m-1", background=True)
    assert (await commander.inspect("m-1")).status is MissionStatus.WAITING
    for attempt in (0, 1, 2):
        with pytest.raises(SystemExit):
            await commander.advance("m-1")
        stored = await commander.inspect("m-1")
        assert (stored.status, stored.recovery_attempts) == (MissionStatus.RUNNING, attempt)
    failed = await commander.advance("m-1")
    assert failed is not None
    assert failed.status is MissionStatus.FAILED
    assert failed.error is not None
    assert failed.error.type == RecoveryAttemptsExceededError.__qualname__
    assert runs == [1, 1, 1]


@pytest.mark.parametrize("stop", [SystemExit, KeyboardInterrupt])
async def test_a_step_that_stops_the_process_fails_after_max_recovery_attempts(
    stop: type[BaseException],
) -> None:
    """KeyboardInterrupt and SystemExit from a step stop the caller; each later advance of the
    mission left running counts a recovery attempt, and past max_recovery_attempts the mission
    fails saying why and what to do, without running the step again."""
    runs: list[int] = []

    async def halt(ctx: Context[Any, Any]) -> None:
        runs.append(ctx.attempt)
        raise stop

    flow = m.define("halts").start(parse=identity).step("halt", halt).end()
    commander = create_in_memory_commander([flow], max_recovery_attempts=3)
    with pytest.raises(stop):
        await commander.start(flow, {}, id="m-1")
    assert (await commander.inspect("m-1")).recovery_attempts == 0
    for attempt in (1, 2, 3):
        with pytest.raises(stop):
            await commander.advance("m-1")
        stored = await commander.inspect("m-1")
        assert (stored.status, stored.recovery_attempts) == (MissionStatus.RUNNING, attempt)

    failed = await commander.advance("m-1")
    assert failed is not None
    assert failed.status is MissionStatus.FAILED
    assert failed.error is not None
    assert failed.error.type == RecoveryAttemptsExceededError.__qualname__
    assert "step 'halt'" in failed.error.message
    assert "max_recovery_attempts=3" in failed.error.message
    assert "Fix the step" in failed.error.message
    assert failed.nodes["halt"].status is NodeStatus.FAILED
    assert runs == [1, 1, 1, 1]
    # Finished missions are packed by the in-memory adapter: the count survives that too.
    assert await commander.inspect("m-1") == failed
    assert failed.recovery_attempts == 4
    assert await commander.advance("m-1") == failed
    assert len(runs) == 4
    kinds = [entry.kind for entry in await commander.timeline("m-1")]
    assert kinds.count(TimelineKind.MISSION_RESUMED) == 3
    assert kinds[-1] is TimelineKind.MISSION_FAILED


async def test_the_recovery_count_is_reset_once_the_mission_moves_past_the_node() -> None:
    """A node that succeeds on a re-run resets the count, so earlier crashes never add up with
    later ones at other nodes."""
    stops = {"first": 1, "second": 1}

    async def crashes_once(ctx: Context[Any, Any]) -> str:
        if stops[ctx.node]:
            stops[ctx.node] -= 1
            raise SystemExit
        return ctx.node

    flow = (
        m.define("two")
        .start(parse=identity)
        .step("first", crashes_once)
        .step("second", crashes_once)
        .end()
    )
    commander = create_in_memory_commander([flow], max_recovery_attempts=1)
    with pytest.raises(SystemExit):
        await commander.start(flow, {}, id="m-1")
    with pytest.raises(SystemExit):
        await commander.advance("m-1")
    stored = await commander.inspect("m-1")
    assert (stored.current_node, stored.recovery_attempts) == ("second", 0)
    finished = await commander.advance("m-1")
    assert finished is not None
    assert (finished.status, finished.recovery_attempts) == (MissionStatus.COMPLETED, 0)


def test_max_recovery_attempts_defaults_to_five_and_refuses_nonsense() -> None:
    """The default is 5; a negative, fractional or boolean limit is refused when the commander
    is made."""
    assert DEFAULT_MAX_RECOVERY_ATTEMPTS == 5
    for bad in (-1, 1.5, True, "5"):
        with pytest.raises(ConfigurationError, match="max_recovery_attempts"):
            create_commander(
                [], persistence=InMemoryPersistenceAdapter(), max_recovery_attempts=bad
            )  # type: ignore[arg-type]


# -- 7: BaseExceptions a function raised itself ---------------------------------------------------


async def cancelled_by_itself(ctx: Context[Any, Any]) -> None:
    """Raises the cancellation of a scope of its own, after leaving that scope."""
    caught: BaseException | None = None
    with anyio.CancelScope() as scope:
        scope.cancel()
        try:
            await anyio.lowlevel.checkpoint()
        except anyio.get_cancelled_exc_class() as cancelled:
            caught = cancelled
    assert caught is not None
    raise caught


async def outcome(commander: Commander, flow: MissionDefinition[Any, Any, Any]) -> MissionSnapshot:
    """How a mission of ``flow`` ends; a test failure when an exception escapes ``start`` (a
    stray cancellation would otherwise end the test early and silently)."""
    try:
        handle = await commander.start(flow, {})
    except BaseException as escaped:
        pytest.fail(f"start let {escaped!r} through")
    return await commander.result(handle.id)


def raising(error: type[BaseException]) -> Any:
    async def step(ctx: Context[Any, Any]) -> None:
        raise error("from the step")

    return step


@pytest.mark.parametrize(
    ("step", "name"),
    [
        (raising(Halt), "Halt"),
        (raising(GeneratorExit), "GeneratorExit"),
        (cancelled_by_itself, None),
    ],
)
async def test_a_base_exception_a_step_raised_itself_fails_that_attempt(
    step: Any, name: str | None
) -> None:
    """A custom BaseException, GeneratorExit or a cancellation the step raised while nothing
    around it was cancelled fails the attempt like an Exception: the retry policy decides, and
    the mission fails with the error recorded."""
    attempts: list[int] = []

    async def flaky(ctx: Context[Any, Any]) -> str:
        attempts.append(ctx.attempt)
        if ctx.attempt == 1:
            await step(ctx)
        return "second time lucky"

    retried = (
        m.define("retried")
        .start(parse=identity)
        .step("flaky", flaky, retry=m.retry(2, m.fixed(0), retry_on=BaseException))
        .end()
    )
    plain = m.define("plain").start(parse=identity).step("once", step).end()
    commander = create_in_memory_commander([retried, plain])

    ok = await outcome(commander, retried)
    assert ok.status is MissionStatus.COMPLETED
    assert attempts == [1, 2]
    assert ok.nodes["flaky"].output == "second time lucky"

    failed = await outcome(commander, plain)
    assert failed.status is MissionStatus.FAILED
    assert failed.error is not None
    # The cancellation is the backend's own: trio.Cancelled or asyncio.CancelledError.
    name = name or anyio.get_cancelled_exc_class().__qualname__
    assert (failed.error.type, failed.error.attempt) == (name, 1)


async def test_an_end_output_raising_a_base_exception_fails_the_mission() -> None:
    """The end node's output function raising its own BaseException fails the mission too."""

    def output(ctx: Context[Any, Any]) -> None:
        raise Halt("no output")

    flow = m.define("ends").start(parse=identity).end(output=output)
    commander = create_in_memory_commander([flow])
    failed = await commander.result((await commander.start(flow, {})).id)
    assert failed.status is MissionStatus.FAILED
    assert failed.error is not None
    assert (failed.error.type, failed.error.message) == ("Halt", "no output")


async def test_a_real_cancellation_propagates_whatever_the_step_turns_it_into() -> None:
    """A cancelled caller is told apart by its cancel scope, not by the exception's type: a step
    that turns the cancellation into a BaseException of its own still leaves the mission
    running for recovery, with no failed attempt recorded."""
    entered = anyio.Event()

    async def converts(ctx: Context[Any, Any]) -> None:
        entered.set()
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            raise Halt("converted") from None

    flow = m.define("converts").start(parse=identity).step("wait", converts).end()
    commander = create_in_memory_commander([flow])
    await start_then_cancel_the_caller(partial(commander.start, flow, {}, id="m-1"), entered)
    stored = await commander.inspect("m-1")
    assert (stored.status, stored.current_node) == (MissionStatus.RUNNING, "wait")
    assert stored.nodes["wait"].status is NodeStatus.RUNNING
    assert stored.nodes["wait"].error is None


# -- 15: a cancel acknowledged mid-step ----------------------------------------------------------


def cancelled_mid_node(
    kind: str,
) -> tuple[MissionDefinition[Any, Any, Any], anyio.Event, anyio.Event]:
    """A mission whose last step, or end output, parks until the test releases it; with the
    events its function sets when it has begun and waits on to return."""
    entered, release = anyio.Event(), anyio.Event()

    async def park(ctx: Context[Any, Any]) -> str:
        entered.set()
        await release.wait()
        return "parked"

    builder = m.define(f"last-{kind}").start(parse=identity)
    flow = builder.step("last", park).end() if kind == "step" else builder.end(output=park)
    return flow, entered, release


@pytest.mark.parametrize("kind", ["step", "end"])
async def test_a_cancel_acknowledged_while_the_last_node_runs_ends_the_mission_cancelled(
    kind: str,
) -> None:
    """A cancel acknowledged while the last step (or the end's output) runs ends the mission
    cancelled when it returns: the step's result is kept, the mission does not complete."""
    flow, entered, release = cancelled_mid_node(kind)
    commander = create_in_memory_commander([flow])
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(partial(commander.start, flow, {}, id="m-1"))
        await entered.wait()
        acknowledged = await commander.cancel("m-1", "changed my mind")
        assert acknowledged.cancel_request is not None
        release.set()
    snapshot = await commander.inspect("m-1")
    assert snapshot.status is MissionStatus.CANCELLED
    assert snapshot.output is None
    assert snapshot.cancel_request is not None
    assert snapshot.cancel_request.reason == "changed my mind"
    if kind == "step":
        assert snapshot.nodes["last"].status is NodeStatus.COMPLETED
        assert snapshot.nodes["last"].output == "parked"
    kinds = [entry.kind for entry in await commander.timeline("m-1")]
    assert TimelineKind.MISSION_COMPLETED not in kinds
    assert kinds[-1] is TimelineKind.MISSION_CANCELLED


async def test_starting_again_returns_the_stored_mission_while_its_step_runs() -> None:
    """An idempotent start (background or not) of a mission whose step another task is running
    returns that mission at once instead of waiting for the step."""
    release = anyio.Event()
    entered = anyio.Event()

    async def slow(ctx: Context[Any, Any]) -> str:
        entered.set()
        await release.wait()
        return "done"

    flow = m.define("slow").start(parse=identity).step("slow", slow).end()
    commander = create_in_memory_commander([flow])
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(partial(commander.start, flow, {}, id="m-1"))
        await entered.wait()
        with anyio.fail_after(1):  # in virtual time: fires at once if the start waited
            again = await commander.start(flow, {}, id="m-1", background=True)
            plain = await commander.start(flow, {}, id="m-1")
        assert again.id == plain.id == "m-1"
        assert (await commander.inspect("m-1")).status is MissionStatus.RUNNING
        release.set()
    assert (await commander.inspect("m-1")).status is MissionStatus.COMPLETED
