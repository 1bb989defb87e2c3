"""A runtime process of the several-runtimes test: a sharded PostgreSQL adapter, a commander
whose new ids fall in its own shards, and a runtime (which runs the spreading rule's rounds
beside its ticks itself).

    python runtime_child.py URL SCHEMA NAME COUNT DIR BACKEND

BACKEND is the event loop (``trio`` or ``asyncio``). Every step appends ``"<step> <mission id>"``
to ``DIR/steps-<pid>.log`` (one file per process, so that the parent counts how often each step
ran, and where). It prints ``READY`` once it owns at least ``SHARDS // 3 - 1`` shards (the
three runtimes have spread them), waits for ``DIR/go``, then starts ``COUNT`` missions of
``work`` with their signal (``signal_with_start``), a few at a time, prints ``STARTED``, and
runs until SIGTERM.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

import anyio

from mission_control.adapter_postgres import SHARDS, open_postgres_persistence_adapter
from mission_control.core import Context, create_commander, m
from mission_control.runtime import create_commander_runtime

URL, SCHEMA, NAME, COUNT, DIR, BACKEND = sys.argv[1:7]
HERE = Path(DIR)
WATCHDOG = 120.0
"""Seconds after which a wait for the parent gives up: a hung test, never a wait."""
CONCURRENCY = 8
"""The runtime's max_concurrency: the most steps a killed runtime can have had in flight."""


def record(step: str, mission_id: str) -> None:
    with open(HERE / f"steps-{os.getpid()}.log", "a", encoding="utf-8") as log:
        log.write(f"{step} {mission_id}\n")


async def first(ctx: Context[Any, Any]) -> int:
    record("first", ctx.mission_id)
    return int(ctx.input["n"])


async def second(ctx: Context[Any, Any]) -> str:
    record("second", ctx.mission_id)
    return f"done {ctx.events['go'].output['n']}"


WORK = (
    m.define("work")
    .start(parse=dict)
    .step("first", first)
    .sleep("pause", 1)
    .need_to("go", parse=dict)
    .step("second", second)
    .end(output=lambda ctx: ctx.events["second"].output)
)


async def main() -> None:
    with anyio.open_signal_receiver(signal.SIGTERM) as terminated:
        adapter = await open_postgres_persistence_adapter(
            URL, schema=SCHEMA, sharded=True, name=NAME
        )
        async with (
            adapter,
            create_commander([WORK], persistence=adapter, ids=adapter.new_mission_id) as commander,
            create_commander_runtime(commander, max_concurrency=CONCURRENCY),
        ):
            with anyio.fail_after(WATCHDOG):
                # Polled: the other runtimes are other processes.
                while len(adapter.owned_shards) < SHARDS // 3 - 1:  # noqa: ASYNC110
                    await anyio.sleep(0.05)
                print("READY", flush=True)
                while not (HERE / "go").exists():  # noqa: ASYNC110
                    await anyio.sleep(0.01)

            async def start(offset: int) -> None:
                for n in range(offset, int(COUNT), 8):
                    await commander.signal_with_start(
                        WORK,
                        {"n": n},
                        mission_id=adapter.new_mission_id(),
                        signal="go",
                        payload={"n": n},
                    )

            async with anyio.create_task_group() as starts:
                for offset in range(8):
                    starts.start_soon(start, offset)
            print("STARTED", flush=True)
            async for _ in terminated:
                break


if __name__ == "__main__":
    anyio.run(main, backend=BACKEND)
