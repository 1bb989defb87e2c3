"""A child process owning a SQLite file whose mission hangs in a step, for doctor's tests.

    python hanging_owner.py DB

It owns DB with a runtime, starts ``h-1`` (a mission of ``hang`` whose step ``work`` never
returns), prints ``HANGING`` once the step runs, and waits there until it is killed.
"""

from __future__ import annotations

import sys
from typing import Any

import anyio

from mission_control.adapter_sqlite import SQLiteCommander
from mission_control.core import Context, m
from mission_control.runtime import create_commander_runtime


async def work(ctx: Context[Any, Any]) -> None:
    print("HANGING", flush=True)
    await anyio.sleep_forever()


HANG = m.define("hang").start(parse=lambda raw: raw).step("work", work).end()


async def main() -> None:
    async with (
        SQLiteCommander(sys.argv[1], [HANG], role="owner") as commander,
        create_commander_runtime(commander),
    ):
        await commander.start(HANG, {}, id="h-1", background=True)
        await anyio.sleep_forever()


anyio.run(main)
