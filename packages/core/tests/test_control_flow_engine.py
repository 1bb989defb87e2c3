"""Control flow in the engine: decisions kept across a crash, branches that end on entry,
signal timeouts, cancellation and process stops inside a parallel, an interrupted
compensation."""

from __future__ import annotations

from datetime import timedelta
from functools import partial
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from mission_control.core import (
    Context,
    MissionStatus,
    NodeStatus,
    m,
)
from mission_control.in_memory_commander import (
    ManualClock,
    create_in_memory_commander,
)
from mission_control.testing import interrupt_when, wait_all_tasks_blocked

pytestmark = pytest.mark.anyio


def identity(value: Any) -> Any:
    return value


@pytest.mark.parametrize("before", ["a start's run", "a timer"])
async def test_a_choice_is_never_made_again_after_a_crash_on_its_path(before: str) -> None:
    """A choice reached right after a start's run or a timer is written before its path's first
    step runs, so recovery after that step is interrupted goes on along the same path without
    choosing again."""
    picks: list[str] = []
    runs: list[str] = []
    entered = anyio.Event()
    clock = ManualClock()

    def choose(ctx: Context[Any, Any]) -> str:
        picks.append("a" if not picks else "b")
        return picks[-1]

    async def work(ctx: Context[Any, Any]) -> str:
        entered.set()
        runs.append(ctx.node)
        if len(runs) == 1:
            await anyio.sleep_forever()  # interrupted: its caller is cancelled
        return ctx.node

    begun = m.define("pick").start(parse=identity, run=lambda ctx: "begun")
    if before == "a timer":
        begun = begun.sleep("nap", 10)
    flow = begun.choice(
        "route", choose, {"a": lambda b: b.step("do-a", work), "b": lambda b: b.step("do-b", work)}
    ).end()
    commander = create_in_memory_commander([flow], clock=clock)
    if before == "a timer":
        await commander.start(flow, None, id="m-1")
        clock.advance(10)
        await interrupt_when(partial(commander.advance, "m-1"), entered)
    else:
        await interrupt_when(partial(commander.start, flow, None, id="m-1"), entered)
    recovered = await commander.advance("m-1")
    assert recovered is not None
    assert recovered.status is MissionStatus.COMPLETED
    assert picks == ["a"]
    assert runs == ["do-a", "do-a"]
    assert recovered.nodes["route"].output == "a"


async def test_max_recovery_attempts_with_two_running_branches() -> None:
    """Both branches' steps are interrupted every time (a crash each run): after
    max_recovery_attempts the mission fails instead of re-running for ever."""
    entered = anyio.Event()
    runs: list[str] = []

    async def hang(ctx: Context[Any, Any]) -> str:
        runs.append(ctx.node)
        entered.set()
        await anyio.sleep_forever()
        return "never"

    flow = (
        m.define("par-poison")
        .start(parse=identity)
        .parallel("p", {"a": lambda b: b.step("sa", hang), "b": lambda b: b.step("sb", hang)})
        .end()
    )
    commander = create_in_memory_commander([flow], max_recovery_attempts=2)
    await interrupt_when(partial(commander.start, flow, None, id="m-1"), entered)
    for _ in range(5):
        entered = anyio.Event()
        snapshot = await commander.inspect("m-1")
        if snapshot.is_terminal:
            break
        await interrupt_when(partial(commander.advance, "m-1"), entered)
    snapshot = await commander.inspect("m-1")
    assert snapshot.status is MissionStatus.FAILED, (snapshot.status, snapshot.recovery_attempts)
    assert snapshot.error is not None
    assert snapshot.error.type == "RecoveryAttemptsExceededError"


async def test_first_mode_leaves_no_nested_container_running() -> None:
    """mode='first': branch a ends while branch b is inside a nested parallel; every record in
    b is cancelled, the nested parallel's too."""
    gate = anyio.Event()

    async def slow(ctx: Context[Any, Any]) -> str:
        await gate.wait()
        return "slow"

    flow = (
        m.define("first-nested")
        .start(parse=identity)
        .parallel(
            "race",
            {
                "a": lambda b: b.step("fast", lambda ctx: "fast"),
                "b": lambda b: b.parallel(
                    "inner",
                    {"x": lambda c: c.step("ix", slow), "y": lambda c: c.need_to("iy", identity)},
                ),
            },
            mode="first",
        )
        .end()
    )
    commander = create_in_memory_commander([flow])
    with anyio.fail_after(5):
        await commander.start(flow, None, id="m-1")
    done = await commander.inspect("m-1")
    assert done.status is MissionStatus.COMPLETED
    still = {p: r.status for p, r in done.nodes.items() if r.status is NodeStatus.RUNNING}
    assert not still, still


async def test_signal_after_the_need_to_timeout_passed_is_not_taken() -> None:
    """need_to with timeout 10 s and an on_timeout path: a signal sent at 60 s, before any
    tick, should not be received as if it came in time."""
    clock = ManualClock()
    flow = (
        m.define("timeout")
        .start(parse=identity)
        .need_to("ship", identity, timeout=10, on_timeout=lambda b: b.step("refund", lambda c: "r"))
        .end()
    )
    commander = create_in_memory_commander([flow], clock=clock)
    await commander.start(flow, None, id="m-1")
    clock.advance(60)
    try:
        after = await commander.signal("m-1", "ship", "late")
    except Exception as error:  # a clear refusal is fine too
        after = await commander.inspect("m-1")
        print("refused:", error)
    assert after.nodes["ship"].status is NodeStatus.TIMED_OUT, after.nodes["ship"]


async def test_a_branch_that_ends_on_entry_does_not_end_the_parallel_before_the_others() -> None:
    """parallel(all): branch a is a choice that picks an empty path (ends at once); branch b
    runs a step. The parallel must wait for b, and the node after it must run once."""
    after_runs: list[str] = []
    b_runs: list[str] = []

    def after(ctx: Context[Any, Any]) -> Any:
        after_runs.append(ctx.path)
        return ctx.events["par"].output

    flow = (
        m.define("empty-path")
        .start(parse=identity)
        .parallel(
            "par",
            {
                "a": lambda b: b.choice(
                    "pick",
                    lambda ctx: "nothing",
                    {"nothing": lambda p: p, "gift": lambda p: p.step("g", lambda c: 1)},
                ),
                "b": lambda b: b.step("work", lambda ctx: b_runs.append(ctx.path) or "worked"),
            },
        )
        .step("after", after)
        .end(output=lambda ctx: ctx.events["after"].output)
    )
    commander = create_in_memory_commander([flow])
    with anyio.fail_after(5):
        await commander.start(flow, None, id="m-1")
    done = await commander.inspect("m-1")
    assert done.status is MissionStatus.COMPLETED, (done.status, done.error)
    assert done.output == {"a": "nothing", "b": "worked"}, done.output
    assert after_runs == ["after"], after_runs


async def test_first_mode_a_branch_that_ends_on_entry_leaves_no_orphan_branch() -> None:
    """parallel(first): branch a ends on entry (choice with an empty path): the parallel ends
    with a, branch b is never entered (or is cancelled), the next node runs once."""
    after_runs: list[str] = []
    flow = (
        m.define("empty-path-first")
        .start(parse=identity)
        .parallel(
            "par",
            {
                "a": lambda b: b.choice("pick", lambda ctx: "none", {"none": lambda p: p}),
                "b": lambda b: b.sleep("nap", 10),
            },
            mode="first",
        )
        .step("after", lambda ctx: after_runs.append(ctx.path) or "ok")
        .end()
    )
    commander = create_in_memory_commander([flow])
    with anyio.fail_after(5):
        await commander.start(flow, None, id="m-1")
    done = await commander.inspect("m-1")
    assert done.status is MissionStatus.COMPLETED, (done.status, done.active, done.waits)
    assert after_runs == ["after"]
    # A completed mission with a position and a due time left: it stays in the due index.
    assert done.active == ()
    assert done.waits == ()
    assert done.due_at is None, done.due_at


async def test_cancel_while_two_branches_run_waits_for_both_then_cancels() -> None:
    """A cancellation requested while two branches' steps run lets both finish, then cancels
    the mission before anything after them starts."""
    gates = {"a": anyio.Event(), "b": anyio.Event()}
    started: list[str] = []
    later: list[str] = []

    def gated(name: str) -> Any:
        async def run(ctx: Context[Any, Any]) -> str:
            started.append(name)
            await gates[name].wait()
            return name

        return run

    flow = (
        m.define("cancel-par")
        .start(parse=identity)
        .parallel(
            "p",
            {
                "a": lambda b: b.step("sa", gated("a")).step("sa2", lambda c: later.append("a2")),
                "b": lambda b: b.step("sb", gated("b")),
            },
        )
        .end()
    )
    commander = create_in_memory_commander([flow])
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(partial(commander.start, flow, None, id="m-1"))
        while len(started) < 2:
            await anyio.lowlevel.checkpoint()
        await commander.cancel("m-1", "stop")
        gates["a"].set()
        await wait_all_tasks_blocked()
        gates["b"].set()
    with anyio.fail_after(1):
        done = await commander.inspect("m-1")
    assert done.status is MissionStatus.CANCELLED, done.status
    assert later == []
    assert done.nodes["p/a/sa"].status is NodeStatus.COMPLETED
    assert done.nodes["p/b/sb"].status is NodeStatus.COMPLETED
    assert done.active == ()
    assert done.waits == ()


async def test_signal_for_a_branch_while_another_branch_runs_is_taken_at_once() -> None:
    """A signal for a branch that waits is taken while another branch's step still runs."""
    gate = anyio.Event()
    got: list[Any] = []

    async def slow(ctx: Context[Any, Any]) -> str:
        await gate.wait()
        return "slow"

    flow = (
        m.define("sig-par")
        .start(parse=identity)
        .parallel(
            "p",
            {
                "a": lambda b: b.step("sa", slow),
                "b": lambda b: b.need_to("go", identity).step(
                    "after-go", lambda c: got.append(c.events["go"].output) or "ok"
                ),
            },
        )
        .end()
    )
    commander = create_in_memory_commander([flow])
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(partial(commander.start, flow, None, id="m-1"))
        await wait_all_tasks_blocked()
        await commander.signal("m-1", "go", "payload")
        await wait_all_tasks_blocked()
        assert got == ["payload"]
        gate.set()
    done = await commander.inspect("m-1")
    assert done.status is MissionStatus.COMPLETED


async def test_deadline_path_that_waits_then_ends() -> None:
    """A deadline path may wait for a signal; with a delayed start the deadline counts from
    the start time, and the mission ends after the path."""
    clock = ManualClock()
    flow = (
        m.define("dl")
        .start(parse=identity)
        .need_to("approve", identity)
        .deadline(
            60,
            on_deadline=lambda b: b.need_to("ack", identity).step("notify", lambda c: "told"),
        )
        .end(output=lambda ctx: "ended")
    )
    commander = create_in_memory_commander([flow], clock=clock)
    await commander.start(flow, None, id="m-1", start_at=clock.now() + timedelta(seconds=30))
    clock.advance(31)
    await commander.advance("m-1")
    clock.advance(31)  # 62 s: before start_at + deadline (90 s)
    s = await commander.advance("m-1")
    assert s is not None
    assert s.status is MissionStatus.WAITING
    assert "end/deadline/ack" not in s.active
    clock.advance(30)  # 92 s
    s = await commander.advance("m-1")
    assert s is not None
    assert s.active == ("end/deadline/ack",)
    s = await commander.signal("m-1", "ack", "ok")
    assert s.status is MissionStatus.COMPLETED
    assert s.output == "ended"
    assert s.nodes["approve"].status is NodeStatus.CANCELLED


async def test_system_exit_in_a_branch_reaches_the_caller_as_itself() -> None:
    """A step that raises SystemExit(3) stops the process with code 3 in a single chain; in a
    parallel the caller gets BaseExceptionGroup([SystemExit(3)]) (the interpreter then exits
    with 1, and `except SystemExit`/`except KeyboardInterrupt` no longer match)."""

    def die(ctx: Context[Any, Any]) -> None:
        raise SystemExit(3)

    async def other(ctx: Context[Any, Any]) -> int:
        await anyio.lowlevel.checkpoint()
        return 1

    flow = (
        m.define("exit-in-branch")
        .start(parse=identity)
        .parallel("p", {"a": lambda b: b.step("sa", die), "b": lambda b: b.step("sb", other)})
        .end()
    )
    commander = create_in_memory_commander([flow])
    raised: BaseException | None = None
    try:
        await commander.start(flow, None, id="m-1")
    except BaseException as error:
        raised = error
    assert type(raised) is SystemExit, repr(raised)


@pytest.mark.parametrize("cancelled", [False, True], ids=["failed", "cancelled"])
async def test_an_interrupted_compensation_runs_again_and_counts_as_a_recovery(
    cancelled: bool,
) -> None:
    """A compensation whose caller is cancelled mid-run is left running; advancing the mission
    runs it again (counted as a recovery, also when a cancellation began the compensating),
    and after max_recovery_attempts the mission fails with it still owed."""
    entered = anyio.Event()
    runs: list[int] = []

    async def hang(ctx: Context[Any, Any], output: Any) -> None:
        runs.append(ctx.attempt)
        entered.set()
        await anyio.sleep_forever()

    def refuse(ctx: Context[Any, Any]) -> None:
        raise RuntimeError("declined")

    flow = (
        m.define("hanging-undo")
        .start(parse=identity)
        .step("book", lambda ctx: "booked", compensate=hang)
        .need_to("go", parse=identity)
        .step("fail", refuse)
        .end()
    )
    commander = create_in_memory_commander([flow], max_recovery_attempts=2)
    await commander.start(flow, None, id="m-1")
    if cancelled:
        trigger = partial(commander.cancel, "m-1", "stop", compensate=True)
    else:
        trigger = partial(commander.signal, "m-1", "go", None)
    await interrupt_when(trigger, entered)
    left = await commander.inspect("m-1")
    assert left.status is MissionStatus.RUNNING
    assert left.compensating
    assert left.active == ("book/compensate",)
    for _ in range(2):
        entered = anyio.Event()
        await interrupt_when(partial(commander.advance, "m-1"), entered)
    assert (await commander.inspect("m-1")).recovery_attempts == 2
    failed = await commander.advance("m-1")
    assert failed is not None
    assert failed.status is MissionStatus.FAILED
    assert failed.error is not None
    assert failed.error.type == "RecoveryAttemptsExceededError"
    assert failed.nodes["book/compensate"].status is NodeStatus.FAILED
    assert failed.compensations is not None
    assert [owed.path for owed in failed.compensations.owed] == ["book"]
    assert runs == [1, 1, 1]
