"""A child process for the concurrency key crash test: owns a SQLite file and runs 50 missions
of one key with limit 2.

    python keys_child.py DB LOG BACKEND

It starts missions ``k-00`` to ``k-49`` in the background (the runtime runs them; starting them
again after a crash finds them stored), prints ``STARTED``, and exits once every one has
completed (printing ``DONE``). The step of each appends ``"enter <id> <pid>"`` before its
short sleep and ``"exit <id> <pid>"`` after it to LOG.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import anyio

from mission_control.adapter_sqlite import SQLiteCommander
from mission_control.core import Context, MissionStatus, m
from mission_control.runtime import create_commander_runtime

DB, LOG, BACKEND = sys.argv[1:4]
IDS = [f"k-{n:02}" for n in range(50)]


def note(line: str) -> None:
    with open(LOG, "a") as log:
        log.write(f"{line} {os.getpid()}\n")


async def work(ctx: Context[Any, Any]) -> str:
    note(f"enter {ctx.mission_id}")
    await anyio.sleep(0.03)
    note(f"exit {ctx.mission_id}")
    return "worked"


KEYED = (
    m.define("keyed")
    .start(parse=dict)
    .concurrency(lambda value: str(value["customer"]), limit=2)
    .step("work", work)
    .end()
)


async def main() -> None:
    async with (
        SQLiteCommander(DB, [KEYED], role="owner") as commander,
        create_commander_runtime(commander),
    ):
        for mission_id in IDS:
            await commander.start(KEYED, {"customer": "c-1"}, id=mission_id, background=True)
        print("STARTED", flush=True)
        with anyio.fail_after(120):
            for mission_id in IDS:
                assert (await commander.result(mission_id)).status is MissionStatus.COMPLETED
    print("DONE", flush=True)


anyio.run(main, backend=BACKEND)
