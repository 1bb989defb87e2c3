"""A product milestone: discover what to build, build the API and the UI at the same time, wait
for the founder's sign-off, then ship through a child mission (a deployment that soaks on
staging for an hour before production) and announce it. A refused sign-off, or none within
three days, undoes the work: the builds are thrown away, then the discovery ticket closed (last
done, first undone), and the milestone ends ``compensated``.

Run it with ``uv run python examples/milestone.py``. It runs three milestones on each adapter
(in memory, then a SQLite file) with a ``ManualClock``, so the hour and the days pass at once;
the loop over ``due_missions`` does what a runtime tick does. The deployment is a mission of
its own: it is listed under its parent (``list(parent=...)``), its id comes from its parent's
(``"<milestone>/ship"``), and when it ends its parent goes on at once.
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import TypedDict

import trio

from mission_control.adapter_sqlite import SQLiteCommander
from mission_control.core import (
    Commander,
    CompensationRequested,
    Context,
    EventKey,
    m,
)
from mission_control.in_memory_commander import (
    InMemoryPersistenceAdapter,
    ManualClock,
    create_in_memory_commander,
)


class Milestone(TypedDict):
    name: str
    features: list[str]


class SignOff(TypedDict):
    approved: bool
    by: str


class Release(TypedDict):
    version: str


def parse_milestone(value: Milestone) -> Milestone:
    name = value.get("name") if isinstance(value, dict) else None
    features = value.get("features") if isinstance(value, dict) else None
    if not isinstance(name, str) or not isinstance(features, list) or not features:
        raise ValueError("a milestone needs a 'name' and a non-empty list of 'features'")
    return {"name": name, "features": [str(feature) for feature in features]}


def parse_sign_off(value: SignOff) -> SignOff:
    if not isinstance(value, dict) or not isinstance(value.get("approved"), bool):
        raise ValueError("a sign-off needs 'approved' (true or false) and 'by'")
    return {"approved": value["approved"], "by": str(value.get("by"))}


def parse_release(value: Release) -> Release:
    if not isinstance(value, dict) or not isinstance(value.get("version"), str):
        raise ValueError("a release needs a 'version' string")
    return {"version": value["version"]}


DONE: list[str] = []
"""What the steps and compensations did, in order (real ones would call the tracker, the build
service and the deployer, passing ``ctx.idempotency_key``)."""


# -- the child: a deployment ---------------------------------------------------------------------


def deploy_to(environment: str) -> Callable[[Context[Release, None]], str]:
    def deploy(ctx: Context[Release, None]) -> str:
        DONE.append(f"{ctx.mission_id}: {ctx.input['version']} on {environment}")
        return environment

    return deploy


deployment = (
    m.define("deployment")
    .start(parse=parse_release)
    .step("staging", deploy_to("staging"))
    .sleep("soak", timedelta(hours=1))
    .step("production", deploy_to("production"), retry=3)
    .end(output=lambda ctx: f"{ctx.input['version']} live")
)


# -- the parent: the milestone -------------------------------------------------------------------


def discover(ctx: Context[Milestone, None]) -> str:
    ticket = f"TICKET-{ctx.input['name']}"
    DONE.append(f"{ctx.mission_id}: opened {ticket}")
    return ticket


def close_ticket(ctx: Context[Milestone, None], ticket: str) -> None:
    DONE.append(f"{ctx.mission_id}: closed {ticket}")


def build(part: str) -> Callable[[Context[Milestone, None]], Awaitable[str]]:
    async def run(ctx: Context[Milestone, None]) -> str:
        await trio.lowlevel.checkpoint()  # the API and the UI build side by side
        artifact = f"{part}-{ctx.input['name']}.tar"
        DONE.append(f"{ctx.mission_id}: built {artifact}")
        return artifact

    return run


def throw_away(ctx: Context[Milestone, None], artifact: str) -> None:
    DONE.append(f"{ctx.mission_id}: threw away {artifact}")


def check_sign_off(ctx: Context[Milestone, None]) -> str:
    sign_off: SignOff = ctx.events["sign-off"].output
    if not sign_off["approved"]:
        raise CompensationRequested(f"sign-off refused by {sign_off['by']}")
    return sign_off["by"]


SHIPPED: EventKey[str] = m.key("ship", str)
"""The child node: its output is the deployment's output, a ``str``."""


def announce(ctx: Context[Milestone, None]) -> str:
    return (
        f"{ctx.input['name']}: {ctx.events[SHIPPED].output}, signed off by "
        + ctx.events["check-sign-off"].output
    )


milestone = (
    m.define("milestone")
    .start(parse=parse_milestone)
    .step("discover", discover, compensate=close_ticket)
    .parallel(
        "build",
        {
            "api": lambda b: b.step("build-api", build("api"), compensate=throw_away),
            "ui": lambda b: b.step("build-ui", build("ui"), compensate=throw_away),
        },
    )
    .need_to("sign-off", parse=parse_sign_off, timeout=timedelta(days=3))
    .step("check-sign-off", check_sign_off)
    .child(SHIPPED, deployment, lambda ctx: {"version": f"{ctx.input['name']}.0"}, retry=2)
    .step("announce", announce)
    .end(output=lambda ctx: ctx.events["announce"].output)
)


async def tick(commander: Commander) -> None:
    """What one runtime tick does: advance every mission that is due now."""
    for mission_id in await commander.due_missions(100):
        await commander.advance(mission_id)


async def run_milestones(
    adapter: str,
    make_commander: Callable[[], AbstractAsyncContextManager[Commander]],
    clock: ManualClock,
) -> None:
    async with make_commander() as commander:
        for name in ("m1", "m2", "m3"):
            await commander.start(milestone, {"name": name, "features": ["search"]}, id=name)
        await commander.signal("m1", "sign-off", {"approved": True, "by": "the founder"})
        await commander.signal("m2", "sign-off", {"approved": False, "by": "the founder"})
        (child,) = await commander.list(parent="m1")
        print(f"[{adapter}] m1's child {child.id} is {child.status.value}")
        clock.advance(timedelta(hours=1))  # the deployment's soak
        await tick(commander)
        clock.advance(timedelta(days=3))  # m3's sign-off never comes
        await tick(commander)
        for name in ("m1", "m2", "m3"):
            done = await commander.inspect(name)
            why = done.output if done.error is None else f"{done.error.type}: {done.error.message}"
            print(f"[{adapter}] {name}: {done.status.value}: {why}")
    for line in DONE:
        print(f"[{adapter}]   {line}")
    DONE.clear()


async def main() -> None:
    clock = ManualClock()
    store = InMemoryPersistenceAdapter()

    @asynccontextmanager
    async def in_memory() -> AsyncGenerator[Commander]:
        # The deployment's definition is registered with the milestone's.
        yield create_in_memory_commander([milestone], persistence=store, clock=clock)

    await run_milestones("memory", in_memory, clock)
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "milestones.sqlite"
        sqlite_clock = ManualClock()

        def on_sqlite() -> SQLiteCommander:
            return SQLiteCommander(path, [milestone], clock=sqlite_clock)

        await run_milestones("sqlite", on_sqlite, sqlite_clock)
    for node in milestone.describe().nodes:
        print(f"{node.path} ({node.kind})" + (f" -> {node.child}" if node.child else ""))


if __name__ == "__main__":
    trio.run(main)
