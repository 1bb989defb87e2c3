"""A mission ended by another process: a read-only view's result() sees it within the
documented re-read interval."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from mission_control.adapter_sqlite import READ_ONLY_REREAD_INTERVAL, SQLiteCommander
from mission_control.core import MissionSnapshot, MissionStatus, m
from mission_control.testing import wait_all_tasks_blocked

pytestmark = pytest.mark.anyio


def identity(value: Any) -> Any:
    return value


FLOW = m.define("w").start(parse=identity).need_to("go", parse=identity).end()

OWNER = Path(__file__).with_name("owner_child.py")


async def test_result_on_a_read_only_view_sees_an_end_written_by_another_process(
    db_path: Path,
) -> None:
    """A read-only view's result() returns at most READ_ONLY_REREAD_INTERVAL seconds after
    another process (the database's writer) ended the mission."""
    async with SQLiteCommander(db_path, [FLOW]) as owner:
        await owner.start(FLOW, {}, id="m-1")
    ended: list[MissionSnapshot] = []
    seen = anyio.Event()

    async with SQLiteCommander(db_path, [FLOW], read_only=True) as viewer:

        async def wait() -> None:
            ended.append(await viewer.result("m-1"))
            seen.set()

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(wait)
            await wait_all_tasks_blocked()
            # Real time passes while the other process runs: no virtual deadline around it.
            await anyio.run_process([sys.executable, str(OWNER), str(db_path)], input=b"signal\n")
            # The re-read due by then fires first: virtual time moves only to the next deadline.
            with anyio.fail_after(READ_ONLY_REREAD_INTERVAL + 0.01):
                await seen.wait()

    assert ended[0].status is MissionStatus.COMPLETED
