"""A submitter process of the submitters test: a web worker's adapter (``role="submitter"``)
that starts, signals, cancels and waits for missions the runtime processes execute.

    python submitter_child.py URL SCHEMA PREFIX COUNT BACKEND

It starts COUNT missions of ``work`` (the shape of runtime_child.py's: its steps never run
here) with ids ``PREFIX-<n>``, cancels every fifth one and signals the others (each call
returns once a runtime has applied it), waits for every result, and prints one line of JSON:
each mission's id and how it ended, and the status its signal or cancellation returned.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import anyio

from mission_control.adapter_postgres import open_postgres_persistence_adapter
from mission_control.core import Context, create_commander, m

URL, SCHEMA, PREFIX, COUNT, BACKEND = sys.argv[1:6]
WATCHDOG = 120.0
"""Seconds after which the child gives up: a hung test, never a wait."""


async def never(ctx: Context[Any, Any]) -> None:
    raise AssertionError("a submitter executes no step")


WORK = (
    m.define("work")
    .start(parse=dict)
    .step("first", never)
    .sleep("pause", 1)
    .need_to("go", parse=dict)
    .step("second", never)
    .end(output=lambda ctx: ctx.events["second"].output)
)


async def main() -> None:
    adapter = await open_postgres_persistence_adapter(URL, schema=SCHEMA, role="submitter")
    ids = [f"{PREFIX}-{n}" for n in range(int(COUNT))]
    answered: dict[str, str] = {}
    ended: dict[str, str] = {}
    async with (
        adapter,
        create_commander([WORK], persistence=adapter) as commander,
        anyio.create_task_group() as tasks,
    ):
        assert not commander.is_owner
        tasks.start_soon(adapter.listen)
        with anyio.fail_after(WATCHDOG):

            async def drive(n: int, mission_id: str) -> None:
                await commander.start(WORK, {"n": n}, id=mission_id)
                if n % 5 == 0:
                    snapshot = await commander.cancel(mission_id, "the customer left")
                else:
                    snapshot = await commander.signal(mission_id, "go", {"n": n})
                answered[mission_id] = snapshot.status.value
                ended[mission_id] = (await commander.result(mission_id)).status.value

            async with anyio.create_task_group() as drives:
                for n, mission_id in enumerate(ids):
                    drives.start_soon(drive, n, mission_id)
        tasks.cancel_scope.cancel()
    print(json.dumps({"answered": answered, "ended": ended}), flush=True)


if __name__ == "__main__":
    anyio.run(main, backend=BACKEND)
