"""A runtime process of the schedules-across-runtimes test: a sharded PostgreSQL adapter, a
commander that creates the test's schedules (as an application does at every start-up: the
same settings return the stored ones), a runtime that fires those of its shards, and the
spreading rule's rounds (which the runtime runs).

    python schedule_child.py URL SCHEMA NAME SCHEDULES ANCHOR DIR BACKEND

It creates SCHEDULES schedules ``s0``, ``s1``, ... firing a mission of ``tick`` every second
from ANCHOR (an ISO 8601 time). Every step appends ``"<mission id>"`` to ``DIR/steps-<pid>.log``
(one file per process, so that the parent counts how often each mission ran, and where). It
prints ``READY`` once it owns at least ``SHARDS // 2 - 1`` shards (the two runtimes have spread
them), and runs until SIGTERM. BACKEND is the event loop (``trio`` or ``asyncio``).
"""

from __future__ import annotations

import os
import signal
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio

from mission_control.adapter_postgres import SHARDS, open_postgres_persistence_adapter
from mission_control.core import Context, Every, create_commander, m
from mission_control.runtime import create_commander_runtime

URL, SCHEMA, NAME, SCHEDULES, ANCHOR, DIR, BACKEND = sys.argv[1:8]
HERE = Path(DIR)
WATCHDOG = 120.0
"""Seconds after which a wait for the other runtime gives up: a hung test, never a wait."""
CONCURRENCY = 8
"""The runtime's max_concurrency: the most steps a killed runtime can have had in flight."""


def record(mission_id: str) -> None:
    with open(HERE / f"steps-{os.getpid()}.log", "a", encoding="utf-8") as log:
        log.write(f"{mission_id}\n")


async def work(ctx: Context[Any, Any]) -> None:
    record(ctx.mission_id)


TICK = m.define("tick").start(parse=dict).step("work", work).end()


async def main() -> None:
    with anyio.open_signal_receiver(signal.SIGTERM) as terminated:
        adapter = await open_postgres_persistence_adapter(
            URL, schema=SCHEMA, sharded=True, name=NAME
        )
        async with (
            adapter,
            create_commander([TICK], persistence=adapter, ids=adapter.new_mission_id) as commander,
            create_commander_runtime(commander, max_concurrency=CONCURRENCY),
        ):
            every = Every(1, anchor=datetime.fromisoformat(ANCHOR))
            for n in range(int(SCHEDULES)):
                await commander.create_schedule(f"s{n}", TICK, every, {})
            with anyio.fail_after(WATCHDOG):
                # Polled: the other runtime is another process.
                while len(adapter.owned_shards) < SHARDS // 2 - 1:  # noqa: ASYNC110
                    await anyio.sleep(0.05)
            print("READY", flush=True)
            async for _ in terminated:
                break


if __name__ == "__main__":
    anyio.run(main, backend=BACKEND)
