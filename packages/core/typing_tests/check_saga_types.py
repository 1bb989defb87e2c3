"""Static typing checks of compensations (``.step(..., compensate=...)``), run by pyright (not
pytest); marked lines must be errors, as in check_dsl_types.py."""

from __future__ import annotations

from typing import TypedDict

import attrs

from mission_control.core import Commander, Context, MissionHandle, m


class Order(TypedDict):
    sku: str


@attrs.frozen
class Hold:
    ref: str


def parse(value: Order) -> Order:
    return value


async def reserve(ctx: Context[Order, None]) -> Hold:
    return Hold(ctx.input["sku"])


async def release(ctx: Context[Order, None], hold: Hold) -> None:
    ref: str = hold.ref
    sku: str = ctx.input["sku"]
    del ref, sku


def release_plain(ctx: Context[Order, None], hold: Hold) -> str:
    return hold.ref


async def release_text(ctx: Context[Order, None], hold: str) -> None:
    del hold


async def release_alone(ctx: Context[Order, None]) -> None:
    del ctx


async def release_other_input(ctx: Context[int, None], hold: Hold) -> None:
    del hold


definition = (
    m.define("saga-typed")
    .start(parse=parse)
    .step("reserve", reserve, compensate=release, compensate_retry=m.retry(3))
    .step("again", reserve, compensate=release_plain, compensate_retry=2)
    .step("text", reserve, compensate=release_text)  # pyright: ignore[reportArgumentType]
    .step("alone", reserve, compensate=release_alone)  # pyright: ignore[reportArgumentType]
    .step("other", reserve, compensate=release_other_input)  # pyright: ignore[reportArgumentType]
    .step("policy", reserve, compensate=release, compensate_retry="3")  # pyright: ignore[reportArgumentType]
    .parallel(
        "branches",
        {"a": lambda b: b.step("in-branch", reserve, compensate=release)},
    )
    .end()
)


async def cancel(commander: Commander, handle: MissionHandle) -> None:
    await commander.cancel("m-1", "stop", compensate=True)
    await handle.cancel("stop", compensate=True)
    await handle.cancel("stop", True)  # pyright: ignore[reportCallIssue]
    await commander.cancel("m-1", compensate="yes")  # pyright: ignore[reportArgumentType]
