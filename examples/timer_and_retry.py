"""A trial that waits on a durable timer, then charges a card that fails once and is retried:
both the timer and the retry are fired by the tick runtime.

Run it with ``uv run python examples/timer_and_retry.py`` (about a second). It uses the
in-memory commander on the system clock; with ``SQLiteCommander(path, [trial])`` instead, a
restart in the middle would pick up the timer or the retry where it was.

Who asks for which tick:

- ``client.start`` stores the mission waiting on its 0.3 s timer; the commander's notice arms
  the runtime's tick for the timer's due time;
- that tick fires the timer and runs ``charge``, which fails and leaves a retry due in 0.2 s;
  after the tick the runtime re-arms for the store's next due time, and that tick runs the
  retry.
"""

from __future__ import annotations

import logging
import sys
from datetime import datetime, timedelta
from typing import TypedDict, cast

import trio

from mission_control.client import create_mission_client
from mission_control.core import Context, SystemClock, m
from mission_control.in_memory_commander import create_in_memory_commander
from mission_control.runtime import create_commander_runtime


class Signup(TypedDict):
    user: str


def parse_signup(value: object) -> Signup:
    user = cast("dict[str, object]", value).get("user") if isinstance(value, dict) else None
    if not isinstance(user, str) or not user:
        raise ValueError("a signup needs a non-empty 'user'")
    return {"user": user}


async def charge(ctx: Context[Signup, None]) -> str:
    # A real step would pass ctx.idempotency_key to the payment API, so that a retry after a
    # crash cannot charge twice.
    print(f"  charge {ctx.input['user']}: attempt {ctx.attempt}")
    if ctx.attempt == 1:
        raise ConnectionError("payment gateway timed out")
    return f"invoice-for-{ctx.input['user']}"


trial = (
    m.define("trial")
    .start(parse=parse_signup)
    .sleep("trial-period", timedelta(seconds=0.3))
    .step("charge", charge, retry=m.retry(3, m.fixed(0.2)))
    .end(lambda ctx: {"invoice": ctx.events["charge"].output})
)


def offset(at: datetime, origin: datetime) -> str:
    return f"+{(at - origin).total_seconds():.3f}s"


async def main() -> None:
    # The runtime's own events (tick-scheduled, tick-completed, ...) show who fired what.
    logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="  [runtime] %(message)s")
    logging.getLogger("mission_control.runtime").setLevel(logging.DEBUG)
    commander = create_in_memory_commander([trial], clock=SystemClock())
    async with commander, create_commander_runtime(commander) as runtime:
        client = create_mission_client(runtime)
        handle = await client.start(trial, {"user": "ada"})
        print(f"started {handle.id}; next tick at {runtime.next_tick_at}")
        snapshot = await handle.wait_for_completion()
        print(f"{handle.id} is {snapshot.status.value}: {snapshot.output}")

        timeline = await handle.timeline()
        print("timeline:")
        for entry in timeline:
            attempt = f" (attempt {entry.attempt})" if entry.attempt else ""
            print(
                f"  {offset(entry.at, timeline[0].at):>9}  {entry.kind.value:<17} "
                f"{entry.node or ''}{attempt}"
            )


if __name__ == "__main__":
    trio.run(main)
