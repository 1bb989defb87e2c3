"""A runtime process of the concurrency-key test on PostgreSQL: a sharded adapter, a commander
whose new ids fall in its own shards, and a runtime, on trio with a clock that runs ``RATE``
times faster than the wall clock, so that a mission waiting for a slot another runtime gave it
looks at its key again (``SLOT_RECHECK``, 60 s of the clock) within two real seconds.

    python keys_runtime_child.py URL SCHEMA NAME COUNT DIR

It prints ``READY`` once it owns at least ``SHARDS // 3 - 1`` shards, waits for ``DIR/go``, then
starts ``COUNT`` missions of ``keyed`` (one concurrency key, limit 2) at once, each running one
step that appends ``"enter <mission id> <wall time>"`` and, a moment later, ``"exit <mission id>
<wall time>"`` to ``DIR/steps-<pid>.log``; it prints ``DONE`` once every one of its missions
has completed. Then it waits for ``DIR/race`` and starts a mission of ``single`` (a singleton
that refuses: limit 1, ``when_busy="refuse"``) with the key the other runtimes use too, and
prints ``STARTED`` or ``REFUSED``; it runs until SIGTERM.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import trio.testing

from mission_control.adapter_postgres import SHARDS, open_postgres_persistence_adapter
from mission_control.core import ConcurrencyLimitError, Context, MissionStatus, create_commander, m
from mission_control.runtime import create_commander_runtime
from mission_control.testing import LoopClock

URL, SCHEMA, NAME, COUNT, DIR = sys.argv[1:6]
HERE = Path(DIR)
RATE = 30
"""How much faster than the wall clock the loop's clock runs."""
WATCHDOG = 120.0 * RATE
"""Clock seconds (two real minutes) after which a wait gives up: a hung test, never a wait."""
LIMIT = 2


def record(event: str, mission_id: str) -> None:
    with open(HERE / f"steps-{os.getpid()}.log", "a", encoding="utf-8") as log:
        log.write(f"{event} {mission_id} {time.time()!r}\n")


async def work(ctx: Context[Any, Any]) -> str:
    record("enter", ctx.mission_id)
    await anyio.sleep(3)  # a tenth of a real second
    record("exit", ctx.mission_id)
    return "worked"


KEYED = (
    m.define("keyed")
    .start(parse=dict)
    .concurrency(lambda value: str(value["key"]), limit=LIMIT)
    .step("work", work)
    .end()
)

SINGLE = (
    m.define("single")
    .start(parse=dict)
    .concurrency(lambda value: str(value["key"]), limit=1, when_busy="refuse")
    .need_to("go", parse=dict)
    .end()
)


async def main() -> None:
    with anyio.open_signal_receiver(signal.SIGTERM) as terminated:
        adapter = await open_postgres_persistence_adapter(
            URL, schema=SCHEMA, sharded=True, name=NAME
        )
        async with (
            adapter,
            create_commander(
                [KEYED, SINGLE],
                persistence=adapter,
                ids=adapter.new_mission_id,
                clock=LoopClock(datetime.now(UTC)),
            ) as commander,
            create_commander_runtime(commander),
        ):
            with anyio.fail_after(WATCHDOG):
                # Polled: the other runtimes are other processes.
                while len(adapter.owned_shards) < SHARDS // 3 - 1:  # noqa: ASYNC110
                    await anyio.sleep(0.05)
                print("READY", flush=True)
                while not (HERE / "go").exists():  # noqa: ASYNC110
                    await anyio.sleep(0.01)
                ids = [adapter.new_mission_id() for _ in range(int(COUNT))]
                async with anyio.create_task_group() as starts:
                    for mission_id in ids:
                        starts.start_soon(
                            lambda i: commander.start(KEYED, {"key": "shared"}, id=i), mission_id
                        )
                for mission_id in ids:
                    done = await commander.result(mission_id)
                    assert done.status is MissionStatus.COMPLETED, done
            print("DONE", flush=True)
            with anyio.fail_after(WATCHDOG):
                while not (HERE / "race").exists():  # noqa: ASYNC110
                    await anyio.sleep(0.001)
            try:
                await commander.start(SINGLE, {"key": "one"}, id=adapter.new_mission_id())
            except ConcurrencyLimitError:
                print("REFUSED", flush=True)
            else:
                print("STARTED", flush=True)
            async for _ in terminated:
                break


if __name__ == "__main__":
    anyio.run(main, backend="trio", backend_options={"clock": trio.testing.MockClock(rate=RATE)})
