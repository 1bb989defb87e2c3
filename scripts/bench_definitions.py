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


def _same(raw: object) -> object:
    return raw


def _started(ctx: Context[object, None]) -> dict[str, bool]:
    return {"ok": True}


def _one(ctx: Context[object, Any]) -> int:
    return 1


async def _yield_one(ctx: Context[object, Any]) -> int:
    await anyio.lowlevel.checkpoint()
    return 1


THREE_STEPS: Definition = (
    m.define("three-steps")
    .start(parse=_same, run=_started)
    .step("a", _one)
    .step("b", _one)
    .step("c", _one)
    .end()
)
"""(1): start, three plain steps, end: one insert and three commits per mission."""

IN_FLIGHT: Definition = (
    m.define("in-flight")
    .start(parse=_same, run=_started)
    .step("a", _yield_one)
    .step("b", _yield_one)
    .step("c", _yield_one)
    .end()
)
"""(2): the same with steps that yield to the event loop, so that missions interleave."""

SIGNALLED: Definition = (
    m.define("signalled")
    .start(parse=_same)
    .need_to("approve", parse=_same)
    .step("work", _one)
    .end()
)
"""(3) and (7): wait for a signal, then one step."""


def _stop_asked(ctx: Context[Any, Any]) -> bool:
    return ctx.events["next"].output == "stop"


LOOPED: Definition = (
    m.define("looped")
    .start(parse=_same)
    .loop(
        "rounds",
        lambda body: body.need_to("next", parse=_same).step("work", _one),
        until=_stop_asked,
        max_iterations=1_000_000,
    )
    .end()
)
"""(9): a loop whose iterations wait for a signal, then run one step."""

SLEEPER_NAME = "sleeper"


def sleeper(seconds: float) -> Definition:
    """(4): sleep, then one step."""
    return m.define(SLEEPER_NAME).start(parse=_same).sleep("nap", seconds).step("work", _one).end()


PARKED: Definition = (
    m.define("parked")
    .start(parse=_same)
    .need_to("approve", parse=_same)
    .sleep("nap", timedelta(days=1))
    .step("work", _one)
    .end()
)
"""(5), (6), (8): the 100,000 waiting missions wait at ``approve`` (a signal) or ``nap`` (a
timer); the due ones run ``work`` and end when a tick advances them."""
