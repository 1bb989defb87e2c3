"""The benchmark's mission definitions, each used by the scenarios named in its docstring."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import anyio.lowlevel

from mission_control.core import (
    Context,
    MissionDefinition,
    m,
)

Definition = MissionDefinition[Any, Any, Any]
T0 = datetime(2030, 1, 1, tzinfo=UTC)
"""The manual clock's start in scenarios 5, 6 and 8 (and when capturing rows)."""
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# The definitions' functions (scripts/bench_where.py builds its own definitions from them).


def same(raw: object) -> object:
    return raw


def started(ctx: Context[object, None]) -> dict[str, bool]:
    return {"ok": True}


def one(ctx: Context[object, Any]) -> int:
    return 1


async def _yield_one(ctx: Context[object, Any]) -> int:
    await anyio.lowlevel.checkpoint()
    return 1


THREE_STEPS: Definition = (
    m.define("three-steps")
    .start(parse=same, run=started)
    .step("a", one)
    .step("b", one)
    .step("c", one)
    .end()
)
"""(1): start, three plain steps, end: one insert and three commits per mission."""

IN_FLIGHT: Definition = (
    m.define("in-flight")
    .start(parse=same, run=started)
    .step("a", _yield_one)
    .step("b", _yield_one)
    .step("c", _yield_one)
    .end()
)
"""(2): the same with steps that yield to the event loop, so that missions interleave."""

SIGNALLED: Definition = (
    m.define("signalled").start(parse=same).need_to("approve", parse=same).step("work", one).end()
)
"""(3) and (7): wait for a signal, then one step."""


def _stop_asked(ctx: Context[Any, Any]) -> bool:
    return ctx.events["next"].output == "stop"


LOOPED: Definition = (
    m.define("looped")
    .start(parse=same)
    .loop(
        "rounds",
        lambda body: body.need_to("next", parse=same).step("work", one),
        until=_stop_asked,
        max_iterations=1_000_000,
    )
    .end()
)
"""(9): a loop whose iterations wait for a signal, then run one step."""

SLEEPER_NAME = "sleeper"


def sleeper(seconds: float) -> Definition:
    """(4): sleep, then one step."""
    return m.define(SLEEPER_NAME).start(parse=same).sleep("nap", seconds).step("work", one).end()


PARKED: Definition = (
    m.define("parked")
    .start(parse=same)
    .need_to("approve", parse=same)
    .sleep("nap", timedelta(days=1))
    .step("work", one)
    .end()
)
"""(5), (6), (8): the 100,000 waiting missions wait at ``approve`` (a signal) or ``nap`` (a
timer); the due ones run ``work`` and end when a tick advances them."""
