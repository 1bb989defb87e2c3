"""The runtime and child missions: a child's timer moves its parent on in the same tick, and a
parent that missed its child's end finds it when its child wait comes due."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from mission_control.core import MissionStatus, m
from mission_control.in_memory_commander import InMemoryPersistenceAdapter
from mission_control.testing import CommanderFactory, RuntimeFactory

pytestmark = pytest.mark.anyio


def parse_any(raw: Any) -> Any:
    return raw


NAP = m.define("nap").start(parse=parse_any).sleep("nap", 10).end(output=lambda ctx: "rested")
WAITS = (
    m.define("waits-for-go")
    .start(parse=parse_any)
    .need_to("go", parse=parse_any)
    .end(output=lambda ctx: ctx.events["go"].output)
)


def parent_of(child: Any) -> Any:
    return (
        m.define(f"parent-of-{child.name}")
        .start(parse=parse_any)
        .child("kid", child, lambda ctx: None)
        .end(output=lambda ctx: ctx.events["kid"].output)
    )


async def test_a_childs_timer_under_a_runtime_completes_its_parent_at_once(
    make_commander: CommanderFactory, make_runtime: RuntimeFactory
) -> None:
    """A child that sleeps 10 s under a runtime completes when its timer fires, and its parent
    completes with it, not at its own one-minute look at the child."""
    parent = parent_of(NAP)
    commander = make_commander([parent])
    await make_runtime(commander)
    began = anyio.current_time()
    handle = await commander.start(parent, None, id="p-1")
    assert (await handle.inspect()).status is MissionStatus.WAITING
    with anyio.fail_after(3600):
        done = await handle.wait_for_completion()
    assert done.output == "rested"
    assert (await commander.inspect("p-1/kid")).status is MissionStatus.COMPLETED
    assert anyio.current_time() - began < 20


async def test_a_parent_that_missed_its_childs_end_completes_at_its_due_look(
    make_commander: CommanderFactory, make_runtime: RuntimeFactory
) -> None:
    """A child ended by a commander that does not know its parent's definition leaves the
    parent waiting; the runtime moves the parent when its child wait comes due (a minute after
    the child started) and it completes with the child's output."""
    parent = parent_of(WAITS)
    store = InMemoryPersistenceAdapter()
    commander = make_commander([parent], persistence=store)
    await make_runtime(commander)
    began = anyio.current_time()
    handle = await commander.start(parent, None, id="p-2")
    elsewhere = make_commander([WAITS], persistence=store)
    await elsewhere.signal("p-2/kid", "go", "from elsewhere")
    assert (await handle.inspect()).status is MissionStatus.WAITING
    with anyio.fail_after(3600):
        done = await handle.wait_for_completion()
    assert done.output == "from elsewhere"
    assert 59 <= anyio.current_time() - began < 70
