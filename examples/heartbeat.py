"""The missed-heartbeat flow of the peer seed 003 (Pulse), on both adapters: a trigger, a delay,
a condition, an action, a parallel notification, a nightly cleanup schedule, and a replay.

Run it with ``uv run python examples/heartbeat.py`` (a second or two). It runs on trio's
virtual clock (``MockClock(autojump_threshold=0)``, with the commander on a ``LoopClock``), so
that five minutes and three nights pass in a moment; in your application, leave the clocks
out and the same code runs on the wall clock.

- A monitor fires the trigger ``heartbeat.missed`` with ``{"service": ...}``; the definition
  ``incident`` is subscribed to it (``.triggered_by``), so each fire starts one ``incident``.
- The incident waits five minutes (a durable timer), then asks whether the service is still
  failing (a choice, recorded, never asked again after a crash): if it is, it opens an incident
  (a step) and notifies by e-mail and chat at the same time (a parallel); if not, it ends.
- A schedule runs ``cleanup`` every night at 03:00, Paris time, deleting the incidents older
  than two days; the slot's time is part of each cleanup's input.
- A recorded fire is replayed: the same payload, to the definitions subscribed now.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import anyio
import trio
import trio.testing

from mission_control.adapter_sqlite import SQLiteCommander
from mission_control.core import Commander, Context, Cron, m
from mission_control.in_memory_commander import create_in_memory_commander
from mission_control.runtime import create_commander_runtime
from mission_control.testing import LoopClock

HEALTH: dict[str, str] = {}
"""What the monitoring system says of each service now ("down" or "up")."""

INCIDENTS: dict[str, datetime] = {}
"""The incident tracker: each open incident and when it was opened."""

OPENED: list[str] = []
"""The service of every incident ever opened (incident numbers count them)."""

SENT: list[str] = []
"""The notifications sent."""


def parse_heartbeat(raw: object) -> dict[str, str]:
    service = cast("dict[str, object]", raw).get("service") if isinstance(raw, dict) else None
    if not isinstance(service, str) or not service:
        raise ValueError("a missed heartbeat names its 'service'")
    return {"service": service}


def still_failing(ctx: Context[dict[str, str], None]) -> str:
    return "failing" if HEALTH.get(ctx.input["service"]) == "down" else "recovered"


def create_incident(ctx: Context[dict[str, str], None]) -> str:
    # A real tracker call would pass ctx.idempotency_key, so that a retry after a crash opens
    # no second incident.
    OPENED.append(ctx.input["service"])
    incident = f"INC-{len(OPENED)}"
    INCIDENTS[incident] = ctx.now
    return incident


def notify(channel: str) -> Callable[[Context[dict[str, str], None]], str]:
    def send(ctx: Context[dict[str, str], None]) -> str:
        incident = ctx.events["create-incident"].output
        SENT.append(f"{channel}: {incident} {ctx.input['service']}")
        return channel

    return send


def outcome(ctx: Context[dict[str, str], None]) -> str:
    service = ctx.input["service"]
    if ctx.events["still-failing"].output == "recovered":
        return f"{service} recovered, no incident"
    incident = ctx.events["create-incident"].output
    return f"incident {incident} opened for {service}, notified by e-mail and chat"


incident = (
    m.define("incident")
    .start(parse=parse_heartbeat)
    .triggered_by("heartbeat.missed")
    .sleep("wait-5m", timedelta(minutes=5))
    .choice(
        "still-failing",
        still_failing,
        {
            "failing": lambda p: p.step("create-incident", create_incident).parallel(
                "notify",
                {
                    "email": lambda b: b.step("send-email", notify("email")),
                    "chat": lambda b: b.step("send-chat", notify("chat")),
                },
            ),
            "recovered": lambda p: p,
        },
    )
    .end(output=outcome)
)


def parse_cleanup(raw: object) -> dict[str, Any]:
    fields = cast("dict[str, Any]", raw) if isinstance(raw, dict) else {}
    if not isinstance(fields.get("keep_days"), int) or not isinstance(fields.get("night"), str):
        raise ValueError("a cleanup needs 'keep_days' (a number of days) and its 'night'")
    return fields


def cleanup_old_incidents(ctx: Context[dict[str, Any], None]) -> str:
    cutoff = ctx.now - timedelta(days=ctx.input["keep_days"])
    old = sorted(name for name, opened in INCIDENTS.items() if opened < cutoff)
    for name in old:
        del INCIDENTS[name]
    return f"{ctx.input['night']}: deleted {', '.join(old) or 'nothing'}"


cleanup = (
    m.define("cleanup")
    .start(parse=parse_cleanup, run=cleanup_old_incidents)
    .end(output=lambda ctx: ctx.events.start.output)
)

DEFINITIONS = [incident, cleanup]


async def run(commander: Commander, clock: LoopClock, tag: str) -> None:
    HEALTH.clear()
    INCIDENTS.clear()
    OPENED.clear()
    SENT.clear()
    await commander.create_schedule(
        "nightly-cleanup",
        cleanup,
        Cron("0 3 * * *", timezone="Europe/Paris"),
        {"keep_days": 2},
        fire_time_field="night",
    )
    async with create_commander_runtime(commander):
        HEALTH.update(api="down", db="down")
        api = await commander.fire_trigger("heartbeat.missed", {"service": "api"}, id="hb-api")
        db = await commander.fire_trigger("heartbeat.missed", {"service": "db"}, id="hb-db")
        await anyio.sleep(120)
        HEALTH["db"] = "up"  # the database came back within the five minutes
        await anyio.sleep(timedelta(minutes=4).total_seconds())
        for fire in (api, db):
            (mission_id,) = fire.missions
            done = await commander.inspect(mission_id)
            print(f"[{tag}] {mission_id}: {done.status}: {done.output}")
        print(f"[{tag}] sent: {'; '.join(sorted(SENT))}")
        # Three nights: the cleanup deletes INC-1 once it is older than two days.
        await anyio.sleep(timedelta(days=3).total_seconds())
        async for night in commander.iter_missions(definition="cleanup"):
            print(f"[{tag}] {night.id}: {night.output}")
        # The api is still down: replaying its fire opens a new incident.
        replay = await commander.replay_trigger("hb-api", id="hb-api-replay")
        await anyio.sleep(timedelta(minutes=5, seconds=1).total_seconds())
        (mission_id,) = replay.missions
        done = await commander.inspect(mission_id)
        print(f"[{tag}] {mission_id} (replay of {replay.replay_of}): {done.output}")
    schedule = await commander.get_schedule("nightly-cleanup")
    print(f"[{tag}] nightly-cleanup fired {schedule.fires} times, last {schedule.last_mission_id}")


START = datetime(2030, 1, 1, 9, tzinfo=UTC)


async def main() -> None:
    clock = LoopClock(START)
    async with create_in_memory_commander(DEFINITIONS, clock=clock) as commander:
        await run(commander, clock, "memory")
    with tempfile.TemporaryDirectory() as directory:
        clock = LoopClock(START)
        path = Path(directory) / "heartbeat.sqlite"
        async with SQLiteCommander(path, DEFINITIONS, clock=clock) as commander:
            await run(commander, clock, "sqlite")


if __name__ == "__main__":
    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    sys.stdout.flush()
