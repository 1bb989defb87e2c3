"""Background start: the mission is stored and its handle returned at once; the runtime runs it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest

from mission_control.adapter_sqlite import SQLiteCommander
from mission_control.client import create_mission_client
from mission_control.core import (
    Context,
    InvalidInputError,
    MissionStatus,
    TimelineKind,
    WaitKind,
    m,
)
from mission_control.runtime import create_commander_runtime
from mission_control.testing import LoopClock, RuntimeFactory

pytestmark = pytest.mark.anyio

packed_for: list[str] = []


def parse_order(raw: Any) -> dict[str, str]:
    if not isinstance(raw, dict) or not isinstance(raw.get("item"), str):
        raise ValueError("an order needs an 'item'")
    return {"item": raw["item"]}


async def pack(ctx: Context[dict[str, str], Any]) -> str:
    packed_for.append(ctx.mission_id)
    return f"packed {ctx.input['item']}"


ORDER = (
    m.define("order")
    .start(parse=parse_order)
    .step("pack", pack)
    .end(lambda ctx: {"packed": ctx.events["pack"].output})
)


@pytest.fixture(autouse=True)
def forget_runs() -> None:
    packed_for.clear()


@pytest.fixture
def mission_definitions() -> list[Any]:
    return [ORDER]


async def test_a_background_start_returns_before_the_mission_runs_and_the_runtime_runs_it(
    make_runtime: RuntimeFactory, mission_clock: LoopClock
) -> None:
    """A background start returns a handle to a mission not yet started, and the running runtime
    completes it without a tick asked for by hand."""
    client = create_mission_client(await make_runtime())
    began = mission_clock.now()

    handle = await client.start(ORDER, {"item": "book"}, background=True)

    snapshot = await handle.inspect()
    assert snapshot.status is MissionStatus.WAITING
    assert snapshot.wait is not None
    assert snapshot.wait.kind is WaitKind.START
    assert snapshot.wait.due_at == began
    assert not packed_for
    completed = await handle.wait_for_completion()
    assert completed.output == {"packed": "packed book"}
    assert packed_for == [handle.id]
    assert mission_clock.now() == began


async def test_a_background_start_is_idempotent_by_id(make_runtime: RuntimeFactory) -> None:
    """Starting again with the id of a mission started in the background returns that mission,
    and its step runs once."""
    client = create_mission_client(await make_runtime())

    first = await client.start(ORDER, {"item": "book"}, id="o-1", background=True)
    again = await client.start(ORDER, {"item": "lamp"}, id="o-1", background=True)
    await first.wait_for_completion()
    after = await client.start(ORDER, {"item": "lamp"}, id="o-1", background=True)

    assert first == again == after
    assert (await first.inspect()).output == {"packed": "packed book"}
    assert packed_for == ["o-1"]


async def test_an_invalid_input_raises_and_stores_nothing(make_runtime: RuntimeFactory) -> None:
    """A background start whose input the definition rejects raises InvalidInputError, and no
    mission is stored."""
    client = create_mission_client(await make_runtime())

    with pytest.raises(InvalidInputError, match="an order needs an 'item'"):
        await client.start(ORDER, {"thing": "book"}, id="o-1", background=True)

    assert await client.list() == []
    assert await client.next_due_at() is None


async def test_a_background_start_with_a_later_start_at_waits_for_it(
    make_runtime: RuntimeFactory, mission_clock: LoopClock
) -> None:
    """background=True with a start_at in the future is the delayed start: it runs then."""
    client = create_mission_client(await make_runtime())
    start_at = mission_clock.now() + timedelta(hours=2)

    handle = await client.start(ORDER, {"item": "book"}, start_at=start_at, background=True)
    await handle.wait_for_completion()

    assert mission_clock.now() == start_at
    kinds = [entry.kind for entry in await handle.timeline()]
    assert kinds[:2] == [TimelineKind.MISSION_SCHEDULED, TimelineKind.MISSION_STARTED]


async def test_without_a_runtime_a_background_start_runs_nothing(commander: Any) -> None:
    """With no runtime, a mission started in the background stays stored, due, and not run."""
    handle = await commander.start(ORDER, {"item": "book"}, background=True)
    await anyio.sleep(3600)

    assert (await handle.inspect()).status is MissionStatus.WAITING
    assert await commander.due_missions(10) == [handle.id]
    assert not packed_for


async def test_a_non_boolean_background_is_refused(commander: Any) -> None:
    """background takes True or False; anything else raises TypeError and stores nothing."""
    with pytest.raises(TypeError, match="background"):
        await commander.start(ORDER, {"item": "book"}, background="yes")
    assert await commander.list() == []


# A process that starts a mission in the background and dies before anything runs it.
CRASHING_PROCESS = textwrap.dedent(
    """
    import os
    import sys

    import anyio

    from mission_control.adapter_sqlite import SQLiteCommander
    from mission_control.core import m

    order = m.define("order").start(parse=dict).step("pack", lambda ctx: None).end()


    async def main():
        commander = SQLiteCommander(sys.argv[1], [order])
        await commander.start(order, {"item": "book"}, id="o-1", background=True)
        os._exit(70)


    anyio.run(main, backend=sys.argv[2])
    """
)


@pytest.fixture
def crashed_database(tmp_path: Path, anyio_backend_name: str) -> Path:
    """A SQLite file left by a process on the test's loop that died right after a background
    start of ``o-1``."""
    database = tmp_path / "missions.sqlite"
    crashed = subprocess.run(
        [sys.executable, "-c", CRASHING_PROCESS, str(database), anyio_backend_name],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert crashed.returncode == 70, crashed.stderr
    return database


async def test_a_background_start_survives_a_crash_before_it_runs(crashed_database: Path) -> None:
    """A mission started in the background by a process that then died is run by the runtime of
    the next process on the same SQLite file."""
    async with (
        SQLiteCommander(crashed_database, [ORDER], clock=LoopClock()) as commander,
        create_commander_runtime(commander),
    ):
        snapshot = await commander.wait_for_completion("o-1")

    assert snapshot.output == {"packed": "packed book"}
    assert packed_for == ["o-1"]
