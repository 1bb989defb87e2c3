"""What a parallel costs in write transactions on SQLite."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mission_control.adapter_sqlite import SQLiteCommander, SQLitePersistenceAdapter
from mission_control.core import Context, MissionStatus, m
from mission_control.in_memory_commander import ManualClock

pytestmark = pytest.mark.anyio

BRANCHES = 10


def _accept(value: Any) -> Any:
    return value


async def _work(ctx: Context[Any, Any]) -> str:
    return ctx.node


SEQUENTIAL = m.define("sequential").start(parse=_accept)
for _i in range(BRANCHES):
    SEQUENTIAL = SEQUENTIAL.step(f"s-{_i}", _work)
SEQUENCE = SEQUENTIAL.end()

FAN_OUT = (
    m.define("fan-out")
    .start(parse=_accept)
    .parallel(
        "all",
        {f"b-{i}": (lambda name: lambda b: b.step(name, _work))(f"p-{i}") for i in range(BRANCHES)},
    )
    .end()
)


async def test_a_parallel_of_ten_one_step_branches_costs_at_most_two_writes_beyond_its_steps(
    tmp_path: Path,
) -> None:
    """A mission running 10 one-step branches in a parallel costs at most 2 write transactions
    more than one running the same 10 steps one after the other."""
    async with SQLiteCommander(tmp_path / "m.db", [SEQUENCE, FAN_OUT], clock=ManualClock()) as c:
        adapter = c.persistence
        assert isinstance(adapter, SQLitePersistenceAdapter)
        before = adapter.transactions
        done = await (await c.start(SEQUENCE, None)).result()
        assert done.status is MissionStatus.COMPLETED
        sequential = adapter.transactions - before
        before = adapter.transactions
        done = await (await c.start(FAN_OUT, None)).result()
        assert done.status is MissionStatus.COMPLETED
        assert done.nodes["all"].output == {f"b-{i}": f"p-{i}" for i in range(BRANCHES)}
        parallel = adapter.transactions - before
    assert sequential == BRANCHES + 1
    assert parallel <= sequential + 2, (parallel, sequential)
