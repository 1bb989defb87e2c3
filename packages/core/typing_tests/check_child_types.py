"""Static typing checks of child nodes, run by pyright (not pytest): ``.child`` takes the
child's definition and an input function of the parent's typed context (plain or async)
returning what the child's ``start`` accepts; an EventKey name types the node's output for
later steps. Marked lines must be errors (see check_dsl_types.py)."""

from __future__ import annotations

from typing import TypedDict

import attrs

from mission_control.core import Context, m


class Order(TypedDict):
    lines: list[str]


class Parcel(TypedDict):
    weight: int


@attrs.frozen
class Shipment:
    carrier: str


SHIPPED = m.key("ship", Shipment)


def parse_order(value: Order) -> Order:
    return value


def parse_parcel(value: Parcel) -> Parcel:
    return value


async def ship(ctx: Context[Parcel, None]) -> str:
    return f"{ctx.input['weight']} kg"


shipping = (
    m.define("shipping")
    .start(parse=parse_parcel)
    .step("ship", ship)
    .end(output=lambda ctx: Shipment(ctx.events["ship"].output))
)


async def begin(ctx: Context[Order, None]) -> int:
    return len(ctx.input["lines"])


def parcel(ctx: Context[Order, int]) -> Parcel:
    return {"weight": ctx.events.start.output}


async def async_parcel(ctx: Context[Order, int]) -> Parcel:
    return {"weight": len(ctx.input["lines"])}


def wrong_parcel(ctx: Context[Order, int]) -> str:
    return "heavy"


async def async_wrong_parcel(ctx: Context[Order, int]) -> int:
    return 3


def other_context(ctx: Context[str, int]) -> Parcel:
    return {"weight": len(ctx.input)}


async def confirm(ctx: Context[Order, int]) -> str:
    shipment: Shipment = ctx.events[SHIPPED].output
    carrier: str = ctx.events[SHIPPED].output.carrier
    wrong: int = ctx.events[SHIPPED].output  # pyright: ignore[reportAssignmentType]
    weight: int = ctx.events[SHIPPED].output.weight  # pyright: ignore[reportAttributeAccessIssue, reportUnknownMemberType, reportUnknownVariableType]
    return f"{shipment}{carrier}{wrong}{weight}"


definition = (
    m.define("typed-children")
    .start(parse=parse_order, run=begin)
    .child(SHIPPED, shipping, parcel)
    .child("by-name", shipping, async_parcel, retry=3)
    .child("inline", shipping, lambda ctx: {"weight": len(ctx.input["lines"])})
    .child("policy", shipping, parcel, retry=m.retry(2, m.fixed(60)))
    .step("confirm", confirm)
    .parallel("both", {"a": lambda b: b.child("in-branch", shipping, parcel)})
    .loop(
        "again",
        lambda b: b.child("in-loop", shipping, parcel),
        until=lambda ctx: ctx.events.start.output > 0,
        max_iterations=3,
    )
    .end()
)

builder = m.define("wrong-children").start(parse=parse_order, run=begin)
builder.child("str-input", shipping, wrong_parcel)  # pyright: ignore[reportArgumentType]
builder.child("async-int-input", shipping, async_wrong_parcel)  # pyright: ignore[reportArgumentType]
builder.child("mistyped-dict", shipping, lambda ctx: {"weigth": 1})  # pyright: ignore[reportArgumentType]
builder.child("other-context", shipping, other_context)  # pyright: ignore[reportArgumentType]
builder.child("no-definition", "shipping", parcel)  # pyright: ignore[reportArgumentType]
builder.child("builder", m.define("x").start(parse=parse_parcel), parcel)  # pyright: ignore[reportArgumentType]
builder.child("no-input", shipping)  # pyright: ignore[reportCallIssue]
builder.child("input-value", shipping, {"weight": 1})  # pyright: ignore[reportArgumentType]
builder.child("str-retry", shipping, parcel, retry="3")  # pyright: ignore[reportArgumentType]
builder.child("positional-retry", shipping, parcel, 3)  # pyright: ignore[reportCallIssue]
builder.child(SHIPPED, shipping)  # pyright: ignore[reportCallIssue]
