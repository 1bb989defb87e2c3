"""Control flow at its boundaries: signals, choices and ends after a deadline or a
cancellation, signals at the instant of a timeout, process stops in several branches."""

from __future__ import annotations

from typing import Any

import anyio
import anyio.lowlevel
import pytest

from mission_control.core import Context, MissionStatus, m
from mission_control.in_memory_commander import (
    ManualClock,
    create_in_memory_commander,
)
from mission_control.testing import wait_all_tasks_blocked

pytestmark = pytest.mark.anyio


def identity(value: Any) -> Any:
    return value


async def test_signal_after_deadline_does_not_complete_the_mission() -> None:
    """Deadline 10 s; nobody ticks; a signal at 20 s. The mission is past its deadline and must
    fail with DeadlineExceededError (docs/dsl.md: past the deadline the mission fails)."""
    clock = ManualClock()
    flow = (
        m.define("dl").start(parse=identity).deadline(10).need_to("approve", parse=identity).end()
    )
    commander = create_in_memory_commander([flow], clock=clock)
    await commander.start(flow, None, id="m-1")
    clock.advance(20)
    snapshot = await commander.signal("m-1", "approve", "ok")
    assert snapshot.status is MissionStatus.FAILED, (snapshot.status, snapshot.output)
    assert snapshot.error.type == "DeadlineExceededError"


async def test_choose_not_called_after_deadline() -> None:
    """A signal that comes after the deadline passed leads to the deadline's path, and the
    choice after the need_to is never made."""
    clock = ManualClock()
    picks: list[str] = []

    def choose(ctx: Context[Any, Any]) -> str:
        picks.append("a")
        return "a"

    flow = (
        m.define("dl2")
        .start(parse=identity)
        .deadline(10, on_deadline=lambda p: p.step("late", lambda ctx: "late"))
        .need_to("approve", parse=identity)
        .choice("route", choose, {"a": lambda p: p.step("ship", lambda ctx: "shipped")})
        .end()
    )
    commander = create_in_memory_commander([flow], clock=clock)
    await commander.start(flow, None, id="m-1")
    clock.advance(20)
    snapshot = await commander.signal("m-1", "approve", "ok")
    assert picks == [], "choose ran after the deadline had passed"
    assert "end/deadline/late" in snapshot.nodes


async def test_signal_after_need_to_timeout_via_deadline_path() -> None:
    """need_to timeout 30 s, deadline 10 s, signal at 20 s with no tick: the deadline passed
    first."""
    clock = ManualClock()
    flow = (
        m.define("dl3")
        .start(parse=identity)
        .deadline(10)
        .need_to("approve", parse=identity, timeout=30)
        .end()
    )
    commander = create_in_memory_commander([flow], clock=clock)
    await commander.start(flow, None, id="m-1")
    clock.advance(20)
    snapshot = await commander.signal("m-1", "approve", "ok")
    assert snapshot.status is MissionStatus.FAILED, snapshot.status


@pytest.mark.parametrize("held", [False])
async def test_signal_exactly_at_timeout(held: bool) -> None:
    """A signal sent at the very instant of its need_to's timeout comes too late: the timeout
    path runs."""
    clock = ManualClock()
    flow = (
        m.define("to")
        .start(parse=identity)
        .need_to(
            "x", parse=identity, timeout=10, on_timeout=lambda p: p.step("refund", lambda c: "r")
        )
        .end(output=lambda ctx: "x" if "x" in ctx.events else "timeout")
    )
    commander = create_in_memory_commander([flow], clock=clock)
    await commander.start(flow, None, id="m-1")
    clock.advance(10)
    snapshot = await commander.signal("m-1", "x", 1)
    assert snapshot.output == "timeout"


async def test_two_system_exits_in_two_branches() -> None:
    """Two branches raising SystemExit at once reach the caller as one SystemExit, not as an
    exception group."""

    def bye(ctx: Context[Any, Any]) -> str:
        raise SystemExit(3)

    async def bye_async(ctx: Context[Any, Any]) -> str:
        raise SystemExit(3)

    flow = (
        m.define("se")
        .start(parse=identity)
        .parallel(
            "p", {"a": lambda b: b.step("sa", bye_async), "b": lambda b: b.step("sb", bye_async)}
        )
        .end()
    )
    commander = create_in_memory_commander([flow])
    with pytest.raises(SystemExit):
        await commander.start(flow, None, id="m-1")


@pytest.mark.parametrize("end_output", [False, True])
async def test_last_step_finishing_after_deadline(end_output: bool) -> None:
    """The last step runs past the deadline: with end(output=fn) the mission fails with
    DeadlineExceededError, with end() it completes. The same flow should end the same way."""
    clock = ManualClock()

    def slow(ctx: Context[Any, Any]) -> str:
        clock.advance(20)
        return "done"

    builder = m.define(f"dl-end-{end_output}").start(parse=identity).deadline(10).step("slow", slow)
    flow = builder.end(output=lambda ctx: "out") if end_output else builder.end()
    commander = create_in_memory_commander([flow], clock=clock)
    await commander.start(flow, None, id="m-1")
    snapshot = await commander.inspect("m-1")
    assert snapshot.status is MissionStatus.FAILED


async def test_choose_not_called_once_cancel_requested() -> None:
    """A cancellation requested while a step runs ends the mission when the step returns; the
    choice after the step is never made."""
    clock = ManualClock()
    picks: list[str] = []
    gate = anyio.Event()
    entered = anyio.Event()

    async def slow(ctx: Context[Any, Any]) -> str:
        entered.set()
        await gate.wait()
        return "done"

    def choose(ctx: Context[Any, Any]) -> str:
        picks.append("a")
        return "a"

    flow = (
        m.define("cc")
        .start(parse=identity)
        .step("slow", slow)
        .choice("route", choose, {"a": lambda p: p.step("ship", lambda ctx: "shipped")})
        .end()
    )
    commander = create_in_memory_commander([flow], clock=clock)
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(lambda: commander.start(flow, None, id="m-1"))
        await entered.wait()
        await commander.cancel("m-1", "stop")
        gate.set()
    snapshot = await commander.inspect("m-1")
    assert snapshot.status is MissionStatus.CANCELLED
    assert picks == [], "choose called after the cancellation was acknowledged"


async def test_first_mode_empty_winner_and_failing_choice() -> None:
    """With mode "first", an empty branch wins at once and the branches after it are never
    entered, so a choice in them that would raise is never made."""

    def bad(ctx: Context[Any, Any]) -> str:
        raise RuntimeError("boom")

    flow = (
        m.define("fe")
        .start(parse=identity)
        .parallel(
            "p",
            {"a": lambda b: b, "b": lambda b: b.choice("c", bad, {"x": lambda p: p})},
            mode="first",
        )
        .end()
    )
    commander = create_in_memory_commander([flow])
    await commander.start(flow, None, id="m-1")
    snapshot = await commander.inspect("m-1")
    assert snapshot.status is MissionStatus.COMPLETED
    assert snapshot.nodes["p"].output == {"a": None}
    assert "p/b/c" not in snapshot.nodes


async def test_outside_cancel_with_two_running_branches_is_absorbed() -> None:
    """A caller cancelled from outside while two branches run gets its cancellation, and the
    mission is left running for recovery."""

    async def hang(ctx: Context[Any, Any]) -> str:
        await anyio.sleep_forever()
        return "x"

    flow = (
        m.define("oc")
        .start(parse=identity)
        .parallel("p", {"a": lambda b: b.step("sa", hang), "b": lambda b: b.step("sb", hang)})
        .end()
    )
    commander = create_in_memory_commander([flow])
    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(lambda: commander.start(flow, None, id="m-1"))
            await wait_all_tasks_blocked()
            scope.cancel()
    assert scope.cancelled_caught


async def test_keyboard_interrupt_and_error_in_write() -> None:
    """A step raising KeyboardInterrupt while another branch runs: the caller sees it as itself."""
    anyio.Event()

    async def ki(ctx: Context[Any, Any]) -> str:
        await anyio.lowlevel.checkpoint()
        raise KeyboardInterrupt

    async def hang(ctx: Context[Any, Any]) -> str:
        await anyio.sleep_forever()
        return "x"

    flow = (
        m.define("ki")
        .start(parse=identity)
        .parallel("p", {"a": lambda b: b.step("sa", ki), "b": lambda b: b.step("sb", hang)})
        .end()
    )
    commander = create_in_memory_commander([flow])
    with pytest.raises(KeyboardInterrupt):
        await commander.start(flow, None, id="m-1")
