"""The runtime and several positions: a branch's due time comes while another branch's step
runs."""

from __future__ import annotations

from functools import partial
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from mission_control.core import Context, m
from mission_control.testing import CommanderFactory, LoopClock, RuntimeFactory

pytestmark = pytest.mark.anyio


def parse_any(raw: Any) -> Any:
    return raw


async def long_step(ctx: Context[Any, Any]) -> str:
    await anyio.sleep(1000)
    return "long"


def stamp(seen: dict[str, float]) -> Any:
    def run(ctx: Context[Any, Any]) -> str:
        seen[ctx.node] = anyio.current_time()
        return "ok"

    return run


@pytest.mark.parametrize("after_a_signal", [False, True])
async def test_a_sleeping_branch_fires_on_time_while_another_branch_runs(
    make_commander: CommanderFactory,
    make_runtime: RuntimeFactory,
    mission_clock: LoopClock,
    after_a_signal: bool,
) -> None:
    """A branch's 10 s sleep, begun while another branch runs a 1000 s step (at once, or after a
    signal the holder takes), fires on time under a runtime, not once the long step is over."""
    seen: dict[str, float] = {}
    waiting = m.define("par-timer").start(parse=parse_any, run=lambda ctx: "begun")
    flow = waiting.parallel(
        "both",
        {
            "a": lambda b: b.step("a-long", long_step),
            "b": lambda b: (
                (b.need_to("go", parse=parse_any) if after_a_signal else b)
                .sleep("b-nap", 10)
                .step("b-work", stamp(seen))
            ),
        },
    ).end()
    commander = make_commander([flow])
    await make_runtime(commander)
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(partial(commander.start, flow, None, id="m-1"))
        await anyio.sleep(1)
        began = anyio.current_time()
        if after_a_signal:
            await commander.signal("m-1", "go", "x")
        await anyio.sleep(50)
        assert "b-work" in seen, "B's 10 s timer did not fire while A's step ran"
        tasks.cancel_scope.cancel()
    assert seen["b-work"] - began < 20


async def test_a_completed_mission_is_not_ticked_for_ever(
    make_commander: CommanderFactory,
    make_runtime: RuntimeFactory,
    mission_clock: LoopClock,
) -> None:
    """parallel(first) whose branch a ends on entry (a choice with an empty path) and branch b
    sleeps 10 s: the mission completes at once but keeps b's due time, so every tick past 10 s
    'advances' it again and the runtime follows each tick at once."""
    flow = (
        m.define("first-orphan")
        .start(parse=parse_any)
        .parallel(
            "par",
            {
                "a": lambda b: b.choice("pick", lambda ctx: "none", {"none": lambda p: p}),
                "b": lambda b: b.sleep("nap", 10),
            },
            mode="first",
        )
        .step("after", lambda ctx: "ok")
        .end()
    )
    commander = make_commander([flow])
    runtime = await make_runtime(commander)
    await commander.start(flow, None, id="m-1")
    done = await commander.inspect("m-1")
    assert done.is_terminal
    await anyio.sleep(60)
    # One tick now (as a restart's startup tick would): it keeps following itself at once.
    await runtime.tick()
    ticks = [0]
    execute = runtime._execute  # pyright: ignore[reportPrivateUsage]

    async def counted(tick_pass: Any) -> Any:
        ticks[0] += 1
        return await execute(tick_pass)

    runtime._execute = counted  # type: ignore[method-assign]
    for _ in range(2000):
        await anyio.lowlevel.checkpoint()
    assert ticks[0] < 3, f"{ticks[0]} ticks in 2000 checkpoints of no virtual time: a tick loop"
    assert await commander.due_missions(10) == [], "a completed mission is still due"


async def test_a_retry_in_a_branch_runs_on_time_while_another_branch_runs(
    make_commander: CommanderFactory,
    make_runtime: RuntimeFactory,
    mission_clock: LoopClock,
) -> None:
    from mission_control.core import fixed, retry

    seen: dict[str, float] = {}
    attempts: list[int] = []

    def flaky(ctx: Context[Any, Any]) -> str:
        attempts.append(ctx.attempt)
        if ctx.attempt == 1:
            raise RuntimeError("once")
        seen["flaky"] = anyio.current_time()
        return "ok"

    flow = (
        m.define("par-retry")
        .start(parse=parse_any)
        .parallel(
            "both",
            {
                "a": lambda b: b.step("a-long", long_step),
                "b": lambda b: b.step("flaky", flaky, retry=retry(3, fixed(5))),
            },
        )
        .end()
    )
    commander = make_commander([flow])
    await make_runtime(commander)
    began = anyio.current_time()
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(partial(commander.start, flow, None, id="m-1"))
        await anyio.sleep(50)
        tasks.cancel_scope.cancel()
    assert attempts == [1, 2]
    assert seen["flaky"] - began < 10


async def test_deadline_passes_while_a_branch_step_runs(
    make_commander: CommanderFactory,
    make_runtime: RuntimeFactory,
    mission_clock: LoopClock,
) -> None:
    from mission_control.core import MissionStatus

    async def hundred(ctx: Context[Any, Any]) -> str:
        await anyio.sleep(100)
        return "done"

    flow = (
        m.define("par-deadline")
        .start(parse=parse_any)
        .parallel(
            "both",
            {"a": lambda b: b.step("a-100", hundred), "b": lambda b: b.need_to("go", parse_any)},
        )
        .deadline(10)
        .end()
    )
    commander = make_commander([flow])
    runtime = await make_runtime(commander)
    ticks = [0]
    execute = runtime._execute  # pyright: ignore[reportPrivateUsage]

    async def counted(tick_pass: Any) -> Any:
        ticks[0] += 1
        return await execute(tick_pass)

    runtime._execute = counted  # type: ignore[method-assign]
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(partial(commander.start, flow, None, id="m-1"))
        await anyio.sleep(200)
    done = await commander.inspect("m-1")
    assert done.status is MissionStatus.FAILED
    assert done.error is not None
    assert done.error.type == "DeadlineExceededError"
