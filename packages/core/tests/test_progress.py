"""Values a mission publishes for callers to read while it goes on (``ctx.publish``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import anyio
import pytest

from mission_control.core import Context, MissionStatus, OutputNotSerializableError, m
from mission_control.in_memory_commander import ManualClock, create_in_memory_commander

pytestmark = pytest.mark.anyio

T0 = datetime(2030, 1, 1, tzinfo=UTC)


def identity(value: Any) -> Any:
    return value


async def test_a_value_published_by_a_failed_attempt_is_kept_for_the_retry() -> None:
    """Publishing is not undone by a failed attempt: readers see it while the retry waits, and
    the retry's own value replaces it."""

    async def flaky(ctx: Context[Any, Any]) -> str:
        ctx.publish("attempt", ctx.attempt)
        if ctx.attempt == 1:
            raise RuntimeError("try again")
        return "ok"

    flow = m.define("flaky").start(parse=identity).step("work", flaky, retry=m.retry(2)).end()
    clock = ManualClock(T0)
    commander = create_in_memory_commander([flow], clock=clock)
    waiting = await (await commander.start(flow, {}, id="m-1")).inspect()
    assert waiting.status is MissionStatus.WAITING
    assert waiting.progress == {"attempt": 1}
    clock.advance(3600)
    done = await commander.advance("m-1")
    assert done is not None
    assert done.status is MissionStatus.COMPLETED
    assert done.progress == {"attempt": 2}


async def test_a_snapshot_read_earlier_keeps_the_values_it_had() -> None:
    """A snapshot is immutable: values published after it was read do not show in it."""

    async def first(ctx: Context[Any, Any]) -> None:
        ctx.publish("stage", "one")

    async def second(ctx: Context[Any, Any]) -> None:
        ctx.publish("stage", "two")

    flow = (
        m.define("stages")
        .start(parse=identity)
        .step("first", first)
        .need_to("go", parse=identity)
        .step("second", second)
        .end()
    )
    commander = create_in_memory_commander([flow])
    before = await (await commander.start(flow, {}, id="m-1")).inspect()
    after = await commander.signal("m-1", "go", None)
    assert before.progress == {"stage": "one"}
    assert after.progress == {"stage": "two"}


def test_a_context_made_by_hand_keeps_what_its_function_published() -> None:
    """A step unit-tested with a context of its own publishes into that context, converted to
    JSON; a name that is not a non-empty string is refused."""
    flow = m.define("unit").start(parse=identity).end()
    snapshot_like = type(
        "View", (), {"id": "m-1", "definition": "unit", "input": {}, "nodes": {}}
    )()
    ctx: Context[Any, Any] = Context(
        definition=flow, mission=snapshot_like, node="work", attempt=1, now=T0
    )
    ctx.publish("when", T0)
    ctx.publish("items", (1, 2))
    assert ctx.published == {"when": T0.isoformat(), "items": [1, 2]}
    with pytest.raises(OutputNotSerializableError, match="non-empty str"):
        ctx.publish("", 1)


async def test_what_the_start_publishes_is_stored_before_the_first_step_runs() -> None:
    """A value the start function publishes is readable while the step after it runs."""
    entered = anyio.Event()
    release = anyio.Event()

    def begin(ctx: Context[Any, Any]) -> None:
        ctx.publish("stage", "accepted")

    async def long(ctx: Context[Any, Any]) -> None:
        entered.set()
        await release.wait()

    flow = m.define("long").start(parse=identity, run=begin).step("long", long).end()
    commander = create_in_memory_commander([flow])
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(commander.start, flow, {})
        await entered.wait()
        (running,) = await commander.list()
        assert running.status is MissionStatus.RUNNING
        assert running.progress == {"stage": "accepted"}
        release.set()


async def test_publishing_after_the_function_returned_raises() -> None:
    """A context kept past its function's return refuses to publish, saying why."""
    kept: list[Context[Any, Any]] = []

    async def keep(ctx: Context[Any, Any]) -> None:
        kept.append(ctx)

    flow = m.define("keep").start(parse=identity).step("keep", keep).end()
    commander = create_in_memory_commander([flow])
    await commander.start(flow, {})
    with pytest.raises(RuntimeError, match="after the function of 'keep' has returned"):
        kept[0].publish("late", 1)


async def test_a_cancelled_branch_publishing_as_it_unwinds_does_not_rewrite_the_ended_mission() -> (
    None
):
    """When the first branch of a first-mode parallel ends the mission, a losing branch that
    publishes while it is cancelled changes nothing stored: the mission is not written again."""

    async def quick(ctx: Context[Any, Any]) -> str:
        return "won"

    async def slow(ctx: Context[Any, Any]) -> None:
        try:
            await anyio.sleep_forever()
        finally:
            ctx.publish("slow", "cleanup")

    flow = (
        m.define("race")
        .start(parse=identity)
        .parallel(
            "race",
            {"quick": lambda b: b.step("quick", quick), "slow": lambda b: b.step("slow", slow)},
            mode="first",
        )
        .end()
    )
    commander = create_in_memory_commander([flow])
    done = await (await commander.start(flow, {}, id="m-1")).inspect()
    assert done.status is MissionStatus.COMPLETED
    assert done.progress is None
    assert await commander.inspect("m-1") == done
