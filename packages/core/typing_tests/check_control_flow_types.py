"""Static typing checks of the control-flow nodes, run by pyright (not pytest): a step inside a
parallel's branch, a choice's path or a timeout path gets the same typed context as a top-level
step. Marked lines must be errors (see check_dsl_types.py)."""

from __future__ import annotations

from typing import TypedDict

from mission_control.core import Context, m


class Order(TypedDict):
    amount: int


def parse(value: Order) -> Order:
    return value


async def begin(ctx: Context[Order, None]) -> str:
    return "ok"


SCORE = m.key("score", int)


async def score(ctx: Context[Order, str]) -> int:
    started: str = ctx.events.start.output
    return ctx.input["amount"] + len(started)


async def review(ctx: Context[Order, str]) -> str:
    points: int = ctx.events[SCORE].output
    wrong: str = ctx.events[SCORE].output  # pyright: ignore[reportAssignmentType]
    ctx.input["amuont"]  # pyright: ignore[reportGeneralTypeIssues]
    return f"{points}{wrong}"


def pick(ctx: Context[Order, str]) -> str:
    return "big" if ctx.input["amount"] > 100 else "small"


async def other_input(ctx: Context[int, str]) -> int:
    return ctx.input


definition = (
    m.define("typed-flow")
    .start(parse=parse, run=begin)
    .parallel(
        "checks",
        {
            "score": lambda b: b.step(SCORE, score),
            "review": lambda b: b.step("review", review).need_to(
                "approve", parse=str, timeout=60, on_timeout=lambda p: p.step("escalate", review)
            ),
        },
    )
    .choice("route", pick, {"big": lambda p: p.step("big-review", review), "small": lambda p: p})
    .parallel(
        "wrong",
        {"a": lambda b: b.step("mistyped", other_input)},  # pyright: ignore[reportArgumentType]
    )
    .deadline(3600, on_deadline=lambda p: p.step("expire", review))
    .end()
)
