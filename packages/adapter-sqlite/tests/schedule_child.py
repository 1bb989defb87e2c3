"""A child process for the schedule crash tests: fires a schedule on a SQLite file and dies at a
chosen point.

    python schedule_child.py DB LOG MODE BACKEND

The schedule ``s`` is created at ``T0`` (by the first process); it fires every minute from
``T0`` and fires every missed slot. The runtime starts at ``T0 + 130 s``: two slots are due
(``T0 + 60 s`` and ``T0 + 120 s``).
Each mission's start function appends ``"ran <mission id>"`` to LOG. Modes:

- ``die-after-insert``: a runtime's startup tick fires the schedule; the process SIGKILLs itself
  right after the write that stored the first slot's mission, before the schedule recorded it.
- ``die-after-record``: the same, SIGKILLed right after the write that recorded the fire on the
  schedule, before any of its missions ran.
- ``recover``: a runtime's startup tick (fires and runs what is due), then the clock moves a
  minute and a tick runs; prints the schedule and every mission's status as JSON.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio

from mission_control.adapter_sqlite import SQLiteCommander
from mission_control.core import Context, Every, MissedFires, Schedule, m
from mission_control.in_memory_commander import ManualClock
from mission_control.runtime import create_commander_runtime

DB, LOG, MODE, BACKEND = sys.argv[1:5]
T0 = datetime(2030, 1, 1, tzinfo=UTC)
CLOCK = ManualClock(T0)


def ran(ctx: Context[Any, None]) -> str:
    with open(LOG, "a", encoding="utf-8") as log:
        log.write(f"ran {ctx.mission_id}\n")
    return "ran"


TICK = m.define("tick").start(parse=lambda raw: raw, run=ran).end()


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


async def main() -> None:
    async with SQLiteCommander(DB, [TICK], clock=CLOCK) as commander:
        # Created at T0 by the first process (found as it is by the next one); then the
        # process starts at T0 + 130 s.
        await commander.create_schedule("s", TICK, Every(60, anchor=T0), {}, missed=MissedFires.ALL)
        CLOCK.advance(timedelta(seconds=130))
        persistence: Any = commander.persistence
        if MODE == "die-after-insert":
            insert = persistence.insert

            async def insert_then_die(*args: Any, **kwargs: Any) -> Any:
                await insert(*args, **kwargs)
                print("INSERTED", flush=True)
                die()

            persistence.insert = insert_then_die
        elif MODE == "die-after-record":
            commit_schedule = persistence.commit_schedule

            async def record_then_die(schedule: Schedule, *, expected_revision: int) -> None:
                await commit_schedule(schedule, expected_revision=expected_revision)
                print("RECORDED", flush=True)
                die()

            persistence.commit_schedule = record_then_die
        elif MODE != "recover":
            raise SystemExit(f"unknown mode {MODE!r}")
        async with create_commander_runtime(commander) as runtime:
            if MODE != "recover":
                raise AssertionError("the startup tick should have killed the process")
            CLOCK.advance(timedelta(minutes=1))
            await runtime.tick()
        schedule = await commander.get_schedule("s")
        statuses = {s.id: s.status.value for s in await commander.list()}
        print(
            json.dumps(
                {
                    "fires": schedule.fires,
                    "last_mission_id": schedule.last_mission_id,
                    "next_fire_at": str(schedule.next_fire_at),
                    "missions": statuses,
                }
            ),
            flush=True,
        )


anyio.run(main, backend=BACKEND)
