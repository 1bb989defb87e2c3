"""Operations on missions of another runtime's shards: a runtime's commander hands them to the
mission's owner (a start stored for it to run, a signal or cancellation a submission) instead
of refusing them (docs/postgres.md, several runtimes)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from mission_control.adapter_postgres import (
    PostgresPersistenceAdapter,
    open_postgres_persistence_adapter,
    shard_of,
)
from mission_control.core import Commander, Context, MissionStatus, create_commander, m

pytestmark = pytest.mark.anyio

ran: list[tuple[str, str]] = []
"""The steps that ran, and for which mission, in order."""


async def first(ctx: Context[Any, Any]) -> int:
    ran.append(("first", ctx.mission_id))
    return int(ctx.input["n"])


WORK = (
    m.define("work")
    .start(parse=dict)
    .step("first", first)
    .sleep("pause", 3600)
    .end(output=lambda ctx: ctx.events["first"].output)
)


def _id_in(shards: set[int], prefix: str) -> str:
    """A mission id whose shard is one of ``shards``."""
    for n in range(100_000):
        if shard_of(f"{prefix}-{n}") in shards:
            return f"{prefix}-{n}"
    raise AssertionError("no id found")


@pytest.fixture
async def runtimes(
    postgres_url: str, postgres_schema: str
) -> AsyncIterator[tuple[Commander, Commander]]:
    """Two commanders, each on a sharded adapter of its own, which split the shards."""
    ran.clear()
    adapters: list[PostgresPersistenceAdapter] = []
    for name in ("first", "second"):
        adapters.append(
            await open_postgres_persistence_adapter(
                postgres_url, schema=postgres_schema, sharded=True, name=name
            )
        )
    try:
        for _ in range(2):
            for adapter in adapters:
                await adapter.rebalance()
        one, two = (
            create_commander([WORK], persistence=adapter, ids=adapter.new_mission_id)
            for adapter in adapters
        )
        yield one, two
    finally:
        for adapter in adapters:
            await adapter.aclose()


def _shards(commander: Commander) -> set[int]:
    persistence = commander.persistence
    assert isinstance(persistence, PostgresPersistenceAdapter)
    return set(persistence.owned_shards)


async def test_a_start_of_a_mission_in_another_runtimes_shard_is_stored_for_it_to_run(
    runtimes: tuple[Commander, Commander],
) -> None:
    """A start (and a fork) with an id in another runtime's shard is stored waiting for its
    start, due now, running nothing here; the owner's due query finds it and the owner runs
    it, while a start in the runtime's own shard runs inline."""
    one, two = runtimes
    theirs = _id_in(_shards(two), "theirs")
    mine = _id_in(_shards(one), "mine")
    assert not one.owns(theirs)
    assert two.owns(theirs)
    assert one.owns(mine)
    handle = await one.start(WORK, {"n": 1}, id=theirs)
    stored = await handle.inspect()
    assert stored.status is MissionStatus.WAITING
    assert stored.current_node == "start"
    assert ran == []
    assert await one.due_missions(10, stored.updated_at) == []
    assert await two.due_missions(10, stored.updated_at) == [theirs]
    moved = await two.advance(theirs)
    assert moved is not None
    assert moved.current_node == "pause"
    assert ran == [("first", theirs)]
    await one.start(WORK, {"n": 2}, id=mine)
    assert ran == [("first", theirs), ("first", mine)]
    fork_id = _id_in(_shards(two), "fork")
    fork = await one.fork(mine, at_node="first", new_id=fork_id)
    forked = await fork.inspect()
    assert forked.status is MissionStatus.WAITING
    assert forked.forked_from == mine
    assert len(ran) == 2
    await two.advance(fork_id)
    assert ran[-1] == ("first", fork_id)
