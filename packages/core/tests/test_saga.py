"""Compensations in the core: the DSL's options and their checks, describe(), a definition that
lost a compensation, the end asking for one, and bad cancel arguments (an interrupted
compensation: test_control_flow_engine.py).
(What every adapter must do with them is in mission_control.testing's SagaConformance.)"""

from __future__ import annotations

from typing import Any

import pytest

from mission_control.core import (
    CompensationRequested,
    Context,
    InvalidDefinitionError,
    InvalidInputError,
    MissionStatus,
    TimelineKind,
    m,
)
from mission_control.in_memory_commander import (
    InMemoryPersistenceAdapter,
    create_in_memory_commander,
)

pytestmark = pytest.mark.anyio


def identity(value: Any) -> Any:
    return value


def undo(ctx: Context[Any, Any], output: Any) -> None:
    pass


def book(ctx: Context[Any, Any]) -> str:
    return "booked"


def fail(ctx: Context[Any, Any]) -> None:
    raise RuntimeError("boom")


def test_compensate_options_are_checked_when_the_step_is_defined() -> None:
    """A compensate that is not callable, a compensate_retry without a compensate and a
    compensate_retry that is no policy are refused, naming the step."""
    begun = m.define("checks").start(parse=identity)
    with pytest.raises(InvalidDefinitionError, match="step 'a' compensate must be callable"):
        begun.step("a", identity, compensate="undo")  # pyright: ignore[reportArgumentType]
    with pytest.raises(InvalidDefinitionError, match="step 'a' has compensate_retry but no"):
        begun.step("a", identity, compensate_retry=3)
    with pytest.raises(InvalidDefinitionError, match="step 'a' compensate_retry must be a"):
        begun.step("a", identity, compensate=undo, compensate_retry="3")  # pyright: ignore[reportArgumentType]


def test_describe_tells_which_steps_have_a_compensation() -> None:
    """describe() gives a compensable step's compensation attempts, and None for other nodes."""
    flow = (
        m.define("described")
        .start(parse=identity)
        .step("a", identity, compensate=undo, compensate_retry=m.retry(4))
        .step("b", identity, compensate=undo)
        .step("c", identity)
        .end()
    )
    attempts = {node.name: node.compensate_max_attempts for node in flow.describe().nodes}
    assert attempts == {"start": None, "a": 4, "b": 1, "c": None, "end": None}


async def test_a_compensation_missing_from_a_newer_definition_fails_the_mission() -> None:
    """A mission compensating on its definition version changed in place, whose step lost its
    compensation, fails with CompensationFailedError saying so, the compensation still owed."""
    store = InMemoryPersistenceAdapter()

    def version(compensate: bool) -> Any:
        begun = m.define("changing").start(parse=identity)
        step = (
            begun.step("book", book, compensate=undo)
            if compensate
            else begun.step("book", identity)
        )
        return step.need_to("go", parse=identity).step("fail", fail).end()

    old = version(True)
    await create_in_memory_commander([old], persistence=store).start(old, None, id="m-1")
    new = version(False)
    done = await create_in_memory_commander([new], persistence=store).signal("m-1", "go", None)
    assert done.status is MissionStatus.FAILED
    assert done.error is not None
    assert done.error.type == "CompensationFailedError"
    assert "has no compensation for step 'book'" in done.error.message
    assert done.compensations is not None
    assert len(done.compensations.owed) == 1


async def test_the_end_may_ask_for_compensation_too() -> None:
    """An end output function that raises CompensationRequested compensates the mission."""
    undone: list[Any] = []

    def refuse(ctx: Context[Any, Any]) -> None:
        raise CompensationRequested("the total is wrong")

    flow = (
        m.define("end-asks")
        .start(parse=identity)
        .step("book", lambda ctx: 7, compensate=lambda ctx, output: undone.append(output))
        .end(output=refuse)
    )
    commander = create_in_memory_commander([flow])
    done = await (await commander.start(flow, None)).result()
    assert done.status is MissionStatus.COMPENSATED
    assert undone == [7]
    kinds = [e.kind for e in await commander.timeline(done.id)]
    assert kinds[-1] is TimelineKind.MISSION_COMPENSATED


async def test_cancel_refuses_a_compensate_that_is_not_a_bool() -> None:
    """cancel(compensate=...) takes True or False only; anything else raises InvalidInputError
    and leaves the mission as it was."""
    flow = m.define("waits").start(parse=identity).need_to("go", parse=identity).end()
    commander = create_in_memory_commander([flow])
    handle = await commander.start(flow, None)
    before = await handle.inspect()
    with pytest.raises(InvalidInputError, match="compensate must be True or False"):
        await handle.cancel("stop", compensate="yes")  # pyright: ignore[reportArgumentType]
    assert await handle.inspect() == before


async def test_a_compensating_parent_has_its_running_child_compensate_too() -> None:
    """A parent that begins compensating while its child runs cancels the child with
    compensate=True: the child undoes its own completed steps and ends compensated, while a
    plainly cancelled parent's child is only cancelled."""
    undone: list[str] = []

    def undo_as(name: str) -> Any:
        def run(ctx: Context[Any, Any], output: Any) -> None:
            undone.append(f"{name} {ctx.mission_id}")

        return run

    kid = (
        m.define("kid")
        .start(parse=identity)
        .step("hold", book, compensate=undo_as("hold"))
        .need_to("release", parse=identity)
        .end()
    )
    parent = (
        m.define("parent")
        .start(parse=identity)
        .step("charge", book, compensate=undo_as("charge"))
        .parallel(
            "both",
            {
                "sub": lambda b: b.child("kid", kid, lambda ctx: None),
                "check": lambda b: b.need_to("verdict", parse=identity).step("judge", fail),
            },
        )
        .end()
    )
    commander = create_in_memory_commander([parent, kid])
    failing = await commander.start(parent, None, id="p-1")
    assert (await commander.inspect("p-1/both/sub/kid")).status is MissionStatus.WAITING
    done = await commander.signal(failing.id, "verdict", None)
    assert done.status is MissionStatus.COMPENSATED
    child = await commander.inspect("p-1/both/sub/kid")
    assert child.status is MissionStatus.COMPENSATED
    assert child.cancel_request is not None
    assert child.cancel_request.compensate
    assert undone == ["hold p-1/both/sub/kid", "charge p-1"]

    undone.clear()
    await commander.start(parent, None, id="p-2")
    cancelled = await commander.cancel("p-2", "stop")
    assert cancelled.status is MissionStatus.CANCELLED
    assert (await commander.inspect("p-2/both/sub/kid")).status is MissionStatus.CANCELLED
    assert undone == []


async def test_a_compensation_whose_backoff_raises_fails_for_good() -> None:
    """A compensation whose retry backoff raises is not retried: the mission fails with a
    CompensationFailedError that holds the backoff's error and the compensation's."""

    def no_delay(attempt: int) -> float:
        raise LookupError("no delay configured")

    def refuse(ctx: Context[Any, Any], output: Any) -> None:
        raise ConnectionError("unreachable")

    flow = (
        m.define("backoff-raises")
        .start(parse=identity)
        .step(
            "book",
            book,
            compensate=refuse,
            compensate_retry=m.retry(3, m.custom_backoff(no_delay)),
        )
        .step("fail", fail)
        .end()
    )
    commander = create_in_memory_commander([flow])
    done = await (await commander.start(flow, None)).result()
    assert done.status is MissionStatus.FAILED
    assert done.error is not None
    assert done.error.type == "CompensationFailedError"
    assert "retry backoff of the compensation of step 'book' failed (no delay configured)" in (
        done.error.message
    )
    assert "ConnectionError: unreachable" in done.error.message
    assert done.nodes["book/compensate"].attempts == 1


async def test_a_failure_while_a_parallel_is_entered_enters_no_further_branch() -> None:
    """A branch that fails as the parallel enters it (its sleep_until raises) begins the
    compensating at once: the branches after it are never entered, and nothing of them runs."""
    ran: list[str] = []
    undone: list[Any] = []

    def no_time(ctx: Context[Any, Any]) -> Any:
        raise LookupError("no time")

    def later(ctx: Context[Any, Any]) -> str:
        ran.append(ctx.path)
        return "later"

    flow = (
        m.define("fails-on-entry")
        .start(parse=identity)
        .step("book", book, compensate=lambda ctx, output: undone.append(output))
        .parallel(
            "both",
            {
                "a": lambda b: b.sleep_until("never", no_time),
                "b": lambda b: b.step("later", later),
                "c": lambda b: b.for_each(
                    "each",
                    lambda ctx: [1, 2],
                    lambda body: body.step("inner", later),
                    max_iterations=5,
                ),
            },
        )
        .end()
    )
    commander = create_in_memory_commander([flow])
    done = await (await commander.start(flow, None)).result()
    assert done.status is MissionStatus.COMPENSATED
    assert done.error is not None
    assert done.error.message == "no time"
    assert ran == []
    assert undone == ["booked"]
    assert "both/b/later" not in done.nodes
    assert done.active == ()
