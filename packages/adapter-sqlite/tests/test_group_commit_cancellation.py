"""Cancellation inside a group commit, on every loop and parking: a writer that joined a group
never leaves before its write is committed, and a cancelled leader still commits for the writers
waiting on it. asyncio's ``Task.cancel()`` goes through a shielded cancel scope, so it is tested
apart from AnyIO's scope cancellation.

The tests pick their loop themselves (``anyio.run``), and the parking: trio's own on trio, and
the plain AnyIO reference on both loops (see ``_parking.py``), which holds the two equal.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from mission_control.adapter_sqlite import SQLiteCommander, _group
from mission_control.adapter_sqlite._parking import Parking, PlainParking, parking_for_this_loop
from mission_control.core import Context, m


def identity(value: Any) -> Any:
    return value


async def work(ctx: Context[Any, Any]) -> str:
    return "ok"


flow = m.define("flow").start(parse=identity).step("work", work).end()

SETUPS = [("trio", "own"), ("trio", "plain"), ("asyncio", "plain")]
"""(loop, parking): on asyncio the loop's own parking is the plain one."""


@pytest.fixture(params=SETUPS, ids=[f"{loop}-{parking}" for loop, parking in SETUPS])
def setup(request: pytest.FixtureRequest) -> Iterator[str]:
    """The loop to run on, with the group commit's parking chosen for the test."""
    loop, parking = request.param
    chosen: Callable[[], Parking] = PlainParking if parking == "plain" else parking_for_this_loop
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_group, "parking_for_this_loop", chosen)
        yield loop


def run(loop: str, main: Callable[[], Awaitable[None]]) -> None:
    anyio.run(main, backend=loop)


def stored_ids(path: Path) -> set[str]:
    async def read() -> set[str]:
        async with SQLiteCommander(path, [flow], read_only=True) as reader:
            return {snapshot.id for snapshot in await reader.list()}

    return anyio.run(read, backend="trio")


def test_a_joined_writer_whose_scope_is_cancelled_returns_once_its_write_is_stored(
    setup: str, tmp_path: Path
) -> None:
    """A caller cancelled (by a cancel scope) while its write waits in another task's group
    returns only after the group committed its write."""
    path = tmp_path / "missions.sqlite"
    stored_when_it_left: list[bool] = []

    async def main() -> None:
        async with SQLiteCommander(path, [flow]) as commander:
            await commander.list()
            scope = anyio.CancelScope()

            async def joined() -> None:
                with scope:
                    await commander.start(flow, {}, id="b")
                stored_when_it_left.append("b" in {s.id for s in await commander.list()})

            async with anyio.create_task_group() as tasks:
                tasks.start_soon(functools.partial(commander.start, flow, {}, id="a"))
                tasks.start_soon(joined)
                await anyio.lowlevel.checkpoint()
                scope.cancel()

    run(setup, main)
    assert stored_when_it_left == [True]
    assert stored_ids(path) == {"a", "b"}


def test_a_joined_writer_cancelled_by_task_cancel_leaves_after_its_write_is_stored(
    tmp_path: Path,
) -> None:
    """On asyncio a ``Task.cancel()`` of a writer waiting in a group is held back until the group
    committed: the caller gets its CancelledError with the write already stored."""
    path = tmp_path / "missions.sqlite"
    seen: dict[str, object] = {}

    async def main() -> None:
        async with SQLiteCommander(path, [flow]) as commander:
            await commander.list()

            async def joined() -> None:
                try:
                    await commander.start(flow, {}, id="b")
                finally:
                    seen["stored when it left"] = "b" in {s.id for s in await commander.list()}

            leader = asyncio.create_task(commander.start(flow, {}, id="a"))
            writer = asyncio.create_task(joined())
            await asyncio.sleep(0)  # the leader yields for company; the writer joins it
            writer.cancel()
            outcomes = await asyncio.gather(leader, writer, return_exceptions=True)
            seen["writer"] = type(outcomes[1]).__name__

    asyncio.run(main())
    assert seen == {"stored when it left": True, "writer": "CancelledError"}
    assert stored_ids(path) == {"a", "b"}


def test_a_leader_cancelled_by_task_cancel_still_commits_the_writers_that_joined_it(
    tmp_path: Path,
) -> None:
    """On asyncio a ``Task.cancel()`` of the task leading a group is raised after the group is
    committed: every write, the leader's too, is stored, and the others return normally."""
    path = tmp_path / "missions.sqlite"
    outcomes: dict[str, str] = {}

    async def main() -> None:
        async with SQLiteCommander(path, [flow]) as commander:
            await commander.list()

            async def call(mission_id: str) -> None:
                try:
                    await commander.start(flow, {}, id=mission_id)
                    outcomes[mission_id] = "ok"
                except BaseException as error:
                    outcomes[mission_id] = type(error).__name__
                    raise

            leader = asyncio.create_task(call("leader"))
            others = [asyncio.create_task(call(f"other-{n}")) for n in range(3)]
            await asyncio.sleep(0)  # the leader is at its first yield; the others joined
            leader.cancel()
            await asyncio.gather(leader, *others, return_exceptions=True)

    asyncio.run(main())
    assert outcomes == {
        "leader": "CancelledError",
        "other-0": "ok",
        "other-1": "ok",
        "other-2": "ok",
    }
    assert stored_ids(path) == {"leader", "other-0", "other-1", "other-2"}


def test_concurrent_starts_all_complete_whatever_the_parking(setup: str, tmp_path: Path) -> None:
    """Fifty missions started at once by fifty tasks are all stored and completed."""
    path = tmp_path / "missions.sqlite"

    async def main() -> None:
        async with SQLiteCommander(path, [flow]) as commander:
            async with anyio.create_task_group() as tasks:
                for number in range(50):
                    tasks.start_soon(
                        functools.partial(commander.start, flow, {}, id=f"m-{number:02}")
                    )
            statuses = {snapshot.status.value for snapshot in await commander.list()}
            assert statuses == {"completed"}

    run(setup, main)
    assert stored_ids(path) == {f"m-{number:02}" for number in range(50)}
