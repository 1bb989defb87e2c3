"""A poison mission that takes its process down never uses up the recovery attempts of a healthy
mission interrupted beside it, whatever the commander's max_recovery_attempts."""

from __future__ import annotations

import functools
from typing import Any

import anyio
import pytest

from mission_control.core import Commander, Context, MissionStatus, create_commander, m
from mission_control.in_memory_commander import InMemoryPersistenceAdapter
from mission_control.runtime import create_commander_runtime
from mission_control.testing import LoopClock

pytestmark = pytest.mark.anyio


def parse_any(raw: Any) -> Any:
    return raw


@pytest.mark.parametrize("limit", [1, 2, 3, 5])
async def test_a_healthy_neighbour_of_a_poison_mission_completes(limit: int) -> None:
    """Each 'process' (a commander and its runtime over one store) ends the moment the poison
    step runs, interrupting the healthy step beside it; the healthy mission completes and only
    the poison mission fails, for every max_recovery_attempts."""
    process = anyio.CancelScope()

    async def healthy(ctx: Context[Any, Any]) -> str:
        await anyio.sleep(10)
        return "done"

    async def poison(ctx: Context[Any, Any]) -> str:
        await anyio.sleep(1)
        process.cancel()  # the process dies here, with whatever else it was running
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    healthy_flow = m.define("healthy").start(parse=parse_any).step("work", healthy).end()
    poison_flow = m.define("poison").start(parse=parse_any).step("work", poison).end()
    store, clock = InMemoryPersistenceAdapter(), LoopClock()

    def commander() -> Commander:
        return create_commander(
            [healthy_flow, poison_flow],
            persistence=store,
            clock=clock,
            max_recovery_attempts=limit,
        )

    with process:
        async with anyio.create_task_group() as tasks:
            first = commander()
            tasks.start_soon(functools.partial(first.start, healthy_flow, {}, id="a-healthy"))
            tasks.start_soon(functools.partial(first.start, poison_flow, {}, id="b-poison"))
    for _ in range(limit + 2):
        process = anyio.CancelScope()
        with process:
            async with create_commander_runtime(commander()):
                await anyio.sleep(100)
    a, b = await store.load("a-healthy"), await store.load("b-poison")
    assert a is not None
    assert b is not None
    assert (a.status, b.status) == (MissionStatus.COMPLETED, MissionStatus.FAILED)
