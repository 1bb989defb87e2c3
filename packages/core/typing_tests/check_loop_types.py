"""Static typing checks of the loops, run by pyright (not pytest): a step in a loop's or a
for_each's body gets the same typed context as a top-level step, ``until`` is a plain function
of the context returning a bool, ``items`` a plain function returning a sequence, and
``max_iterations`` is required. Marked lines must be errors (see check_dsl_types.py)."""

from __future__ import annotations

from typing import Any, TypedDict

from mission_control.core import ChainBuilder, Context, m


class Order(TypedDict):
    lines: list[str]


def parse(value: Order) -> Order:
    return value


async def begin(ctx: Context[Order, None]) -> str:
    return "ok"


PACKED = m.key("pack", int)


async def pack(ctx: Context[Order, str]) -> int:
    round_number: int | None = ctx.iteration
    line: Any = ctx.item
    return len(ctx.input["lines"]) + (round_number or 0) + len(str(line))


async def check(ctx: Context[Order, str]) -> str:
    packed: int = ctx.events[PACKED].output
    wrong: str = ctx.events[PACKED].output  # pyright: ignore[reportAssignmentType]
    number: int = ctx.iteration  # pyright: ignore[reportAssignmentType]
    return f"{packed}{wrong}{number}"


def all_packed(ctx: Context[Order, str]) -> bool:
    return ctx.events[PACKED].output >= len(ctx.input["lines"])


async def async_all_packed(ctx: Context[Order, str]) -> bool:
    return ctx.events[PACKED].output >= 1


def says_yes(ctx: Context[Order, str]) -> str:
    return "yes"


def lines(ctx: Context[Order, str]) -> list[str]:
    return ctx.input["lines"]


def line_count(ctx: Context[Order, str]) -> int:
    return len(ctx.input["lines"])


async def other_input(ctx: Context[int, str]) -> int:
    return ctx.input


def body(b: ChainBuilder[Order, str]) -> ChainBuilder[Order, str]:
    return b.step(PACKED, pack).need_to("inspected", parse=str).step("check", check)


definition = (
    m.define("typed-loops")
    .start(parse=parse, run=begin)
    .loop("packing", body, until=all_packed, max_iterations=5)
    .loop(
        "polling",
        lambda b: b.step("poll", check).sleep("pause", 60),
        until=lambda ctx: ctx.iteration == 3 or ctx.events["poll"].output == "done",
        max_iterations=10,
    )
    .for_each("each-line", lines, lambda b: b.step("ship", pack), max_iterations=100)
    .for_each(
        "by-two",
        lambda ctx: ctx.input["lines"],
        lambda b: b.step("label", check).loop(
            "inner", lambda c: c.step("retry", check), until=all_packed, max_iterations=3
        ),
        max_iterations=100,
        concurrency=2,
    )
    .parallel(
        "both",
        {
            "a": lambda b: b.loop("a-loop", body, until=all_packed, max_iterations=2),
            "b": lambda b: b.for_each("b-each", lines, body, max_iterations=2),
        },
    )
    .end()
)

builder = m.define("wrong-loops").start(parse=parse, run=begin)
builder.loop("async-until", body, until=async_all_packed, max_iterations=5)  # pyright: ignore[reportArgumentType]
builder.loop("str-until", body, until=says_yes, max_iterations=5)  # pyright: ignore[reportArgumentType]
builder.loop("no-limit", body, until=all_packed)  # pyright: ignore[reportCallIssue]
builder.loop("no-until", body, max_iterations=5)  # pyright: ignore[reportCallIssue]
builder.loop("no-body", "pack", until=all_packed, max_iterations=5)  # pyright: ignore[reportArgumentType]
builder.loop("positional", body, all_packed, 5)  # pyright: ignore[reportCallIssue]
builder.loop(
    "mistyped-body",
    lambda b: b.step("x", other_input),  # pyright: ignore[reportArgumentType]
    until=all_packed,
    max_iterations=5,
)
builder.for_each("no-limit", lines, body)  # pyright: ignore[reportCallIssue]
builder.for_each("no-items", ["a", "b"], body, max_iterations=5)  # pyright: ignore[reportArgumentType]
builder.for_each("int-items", line_count, body, max_iterations=5)  # pyright: ignore[reportArgumentType]
builder.for_each("no-body", lines, 42, max_iterations=5)  # pyright: ignore[reportArgumentType]
builder.for_each("str-limit", lines, body, max_iterations="5")  # pyright: ignore[reportArgumentType]
builder.for_each("str-concurrency", lines, body, max_iterations=5, concurrency="2")  # pyright: ignore[reportArgumentType]
