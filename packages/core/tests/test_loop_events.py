"""What a node in a loop's body reads of the mission's events while other iterations of the same
loop are in flight beside it."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from mission_control.core import Context, MissionStatus, m
from mission_control.in_memory_commander import ManualClock, create_in_memory_commander

pytestmark = pytest.mark.anyio


def identity(value: Any) -> Any:
    return value


async def test_events_as_dict_in_a_for_each_iteration_reads_its_own_iteration() -> None:
    """``ctx.events.as_dict()`` in an iteration of a for_each that runs two at once gives, by
    name, the events of its own iteration (and of the nodes outside the loop), never fails on
    the nodes another iteration has completed and it has not."""
    seen: dict[int, dict[str, Any]] = {}

    async def first(ctx: Context[Any, Any]) -> str:
        # Virtual time: the first item's iteration is ahead of the second's when it reads.
        await anyio.sleep(ctx.item)
        return f"first {ctx.item}"

    def read(ctx: Context[Any, Any]) -> None:
        assert ctx.iteration is not None
        seen[ctx.iteration] = {name: event.output for name, event in ctx.events.as_dict().items()}

    flow = (
        m.define("as-dict")
        .start(parse=identity, run=lambda ctx: "started")
        .for_each(
            "each",
            lambda ctx: [1, 2],
            lambda b: b.step("first", first).step("read", read).sleep("hold", 60),
            max_iterations=2,
            concurrency=2,
        )
        .end()
    )
    clock = ManualClock()
    commander = create_in_memory_commander([flow], clock=clock)
    waiting = await (await commander.start(flow, None, id="m-1")).inspect()
    assert waiting.status is MissionStatus.WAITING, waiting.error
    assert seen == {
        1: {"start": "started", "first": "first 1"},
        2: {"start": "started", "first": "first 2"},
    }
