"""What a 3-step mission costs on SQLite in statements and transactions, counted.

Timings cannot tell one more statement per mission from a slow phase of the machine; a count
can. apsw's exec trace sees every statement the adapter's connections run (public apsw API:
``apsw.connection_hooks`` is called with each new connection)."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apsw
import pytest

from mission_control.adapter_sqlite import SQLiteCommander
from mission_control.core import Context, MissionStatus, m
from mission_control.in_memory_commander import ManualClock

pytestmark = pytest.mark.anyio

MISSIONS = 20


def _same(raw: object) -> object:
    return raw


def _one(ctx: Context[Any, Any]) -> int:
    return 1


THREE_STEPS = (
    m.define("three-steps").start(parse=_same).step("a", _one).step("b", _one).step("c", _one).end()
)


class StatementCounter:
    """Counts the statements of every connection opened while it is installed, by kind (the
    verb and the table), while ``counting`` is set."""

    def __init__(self) -> None:
        self.counting = False
        self.kinds: Counter[str] = Counter()

    def trace(self, cursor: apsw.Cursor, sql: str, bindings: Any) -> bool:
        if self.counting:
            self.kinds[_kind(sql)] += 1
        return True

    def hook(self, connection: apsw.Connection) -> None:
        connection.exec_trace = self.trace


def _kind(sql: str) -> str:
    words = re.sub(r"\s+", " ", sql.strip()).split(" ")
    match words[0].upper():
        case "INSERT" | "DELETE":
            return " ".join(words[:3])
        case "UPDATE":
            return " ".join(words[:2])
        case "SELECT":
            found = re.search(r"\bFROM (\w+)", sql, re.IGNORECASE)
            return f"SELECT FROM {found.group(1) if found else '?'}"
        case _:
            return " ".join(words[:2])


@pytest.fixture
def statements() -> Iterator[StatementCounter]:
    counter = StatementCounter()
    apsw.connection_hooks.append(counter.hook)
    try:
        yield counter
    finally:
        apsw.connection_hooks.remove(counter.hook)


async def test_a_three_step_mission_run_alone_costs_four_transactions_and_no_read(
    tmp_path: Path, statements: StatementCounter
) -> None:
    """A 3-step mission of no tenant started and run to its end with nothing else running costs
    exactly 4 write transactions (its insert and one commit per step, the last with its end), 13
    writes (one mission row, whose row among the missions of no tenant the schema's trigger
    writes, three updates of it, nine timeline entries) and no read."""
    async with SQLiteCommander(tmp_path / "m.db", [THREE_STEPS], clock=ManualClock()) as c:
        await c.start(THREE_STEPS, {"n": -1})  # the first mission's one-off costs, uncounted
        statements.counting = True
        for number in range(MISSIONS):
            handle = await c.start(THREE_STEPS, {"n": number})
            statements.counting = False
            assert (await handle.result()).status is MissionStatus.COMPLETED
            statements.counting = True
        statements.counting = False
    per_mission = {kind: count / MISSIONS for kind, count in statements.kinds.items()}
    assert per_mission == {
        "BEGIN IMMEDIATE": 4,
        "COMMIT": 4,
        "INSERT INTO missions": 1,
        "UPDATE missions": 3,
        "INSERT INTO timeline": 9,
    }
