"""asyncio's ``Task.cancel()`` inside a group commit: it goes through a shielded cancel scope,
so it is held back instead (see ``_parking.py``). A writer that joined a group never leaves before
its write is committed, and a cancelled leader still commits for the writers waiting on it.
(Scope cancellation, on every loop and parking, is in test_group_commit.py.)

These tests run on asyncio alone and make their loop themselves (``asyncio.run``).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import anyio

from mission_control.adapter_sqlite import SQLiteCommander
from mission_control.core import Context, m


def identity(value: Any) -> Any:
    return value


async def work(ctx: Context[Any, Any]) -> str:
    return "ok"


flow = m.define("flow").start(parse=identity).step("work", work).end()


def stored_ids(path: Path) -> set[str]:
    async def read() -> set[str]:
        async with SQLiteCommander(path, [flow], read_only=True) as reader:
            return {snapshot.id for snapshot in await reader.list()}

    return anyio.run(read, backend="trio")


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
