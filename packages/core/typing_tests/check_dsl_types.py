"""Static typing checks of the DSL, run by pyright (not pytest).

Every line marked ``# pyright: ignore[...]`` must be an error: pyright runs with
``reportUnnecessaryTypeIgnoreComment``, so if a marked line stops being an error, the check
fails. Unmarked lines must type-check cleanly.
"""

from __future__ import annotations

from typing import TypedDict

import attrs

from mission_control.core import Commander, CommanderProtocol, Context, m
from mission_control.core.lowlevel import MissionDriver


class Request(TypedDict):
    email: str


@attrs.frozen
class Quote:
    amount: int


QUOTE = m.key("quote", Quote)


def parse(value: Request) -> Request:
    return value


async def begin(ctx: Context[Request, None]) -> int:
    return len(ctx.input["email"])


async def quote(ctx: Context[Request, int]) -> Quote:
    length: int = ctx.events.start.output
    email: str = ctx.events.start.input["email"]
    return Quote(length + len(email))


async def pay(ctx: Context[Request, int]) -> str:
    amount: int = ctx.events[QUOTE].output.amount
    wrong: str = ctx.events[QUOTE].output.amount  # pyright: ignore[reportAssignmentType]
    ctx.events[QOUTE]  # noqa: F821  # pyright: ignore[reportUndefinedVariable]
    ctx.input["emial"]  # pyright: ignore[reportGeneralTypeIssues]
    return f"{amount}{wrong}"


async def wrong_step(ctx: Context[Request, int]) -> None:
    ctx.events.start.output.upper()  # pyright: ignore[reportAttributeAccessIssue, reportUnknownMemberType]


definition = (
    m.define("typed")
    .start(parse=parse, run=begin)
    .step(QUOTE, quote)
    .step("pay", pay)
    .step(m.key("count", int), quote)  # pyright: ignore[reportArgumentType]
    .end()
)


async def use(commander: Commander) -> None:
    await commander.start(definition, {"email": "a@example.com"})
    await commander.start(definition, {"mail": "a@example.com"})  # pyright: ignore[reportArgumentType]
    await commander.start(definition, "a@example.com")  # pyright: ignore[reportArgumentType]
    # signal-with-start takes the definition's raw input, as start does, and the id by name.
    await commander.signal_with_start(
        definition, {"email": "a@example.com"}, mission_id="m-1", signal="go", payload=1
    )
    await commander.signal_with_start(definition, "a@", mission_id="m-1", signal="go")  # pyright: ignore[reportArgumentType]
    await commander.signal_with_start(definition, {"email": "a@"}, signal="go")  # pyright: ignore[reportCallIssue]
    await commander.signal_with_start(definition, {"email": "a@"}, "m-1", "go")  # pyright: ignore[reportCallIssue]


async def split(commander: Commander, app: CommanderProtocol, driver: MissionDriver) -> None:
    # The commander is both; the application protocol cannot drive, the driver cannot start.
    as_app: CommanderProtocol = commander
    as_driver: MissionDriver = commander
    await as_app.start(definition, {"email": "a@example.com"})
    await as_driver.advance("m-1")
    await app.start(definition, {"mail": "a@example.com"})  # pyright: ignore[reportArgumentType]
    await app.advance("m-1")  # pyright: ignore[reportAttributeAccessIssue, reportUnknownMemberType]
    await app.due_missions(10)  # pyright: ignore[reportAttributeAccessIssue, reportUnknownMemberType]
    await driver.start(definition, {"email": "a@example.com"})  # pyright: ignore[reportAttributeAccessIssue, reportUnknownMemberType]
