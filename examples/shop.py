"""A small shop whose orders the ``mission-control`` command looks after (docs/operations.md).

``DEFINITIONS`` is what ``mission-control --app shop:DEFINITIONS`` loads (with ``examples/``
on ``PYTHONPATH``, or run from that directory). Run as a program it is the application:

    uv run python examples/shop.py DATABASE [ORDER-ID[:QUANTITY] ...]

It opens DATABASE (it owns it: one process does), runs the tick runtime, starts an order of a
lamp for each ORDER-ID given (QUANTITY lamps, 1 by default), prints ``RUNNING`` and serves
until its standard input ends (or SIGTERM).
An order reserves its items, waits for the signal ``approve`` (``{"by": "..."}``), then for
``pickup`` (``{"carrier": "..."}``), ships and completes. A ``quantity`` above the stock (the
environment variable ``SHOP_STOCK``, 10 by default) makes ``reserve`` fail, and the order with
it.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any, cast

import anyio

from mission_control.adapter_sqlite import SQLiteCommander
from mission_control.core import Context, m
from mission_control.runtime import create_commander_runtime


def _field(raw: object, name: str, kind: type) -> Any:
    value = cast("dict[str, object]", raw).get(name) if isinstance(raw, dict) else None
    if not isinstance(value, kind):
        raise ValueError(f"expected an object with the {kind.__name__} field {name!r}, got {raw!r}")
    return value


def parse_order(raw: object) -> dict[str, Any]:
    return {"item": _field(raw, "item", str), "quantity": _field(raw, "quantity", int)}


def parse_approval(raw: object) -> dict[str, str]:
    return {"by": _field(raw, "by", str)}


def parse_pickup(raw: object) -> dict[str, str]:
    return {"carrier": _field(raw, "carrier", str)}


def reserve(ctx: Context[Any, Any]) -> dict[str, Any]:
    stock = int(os.environ.get("SHOP_STOCK", "10"))
    if ctx.input["quantity"] > stock:
        raise RuntimeError(f"only {stock} {ctx.input['item']} in stock")
    return {"reserved": ctx.input["quantity"]}


def ship(ctx: Context[Any, Any]) -> str:
    return f"shipped with {ctx.events['pickup'].output['carrier']}"


ORDER = (
    m.define("order")
    .start(parse=parse_order)
    .step("reserve", reserve)
    .need_to("approve", parse=parse_approval)
    .need_to("pickup", parse=parse_pickup)
    .step("ship", ship)
    .end(output=lambda ctx: ctx.events["ship"].output)
)

DEFINITIONS = [ORDER]


async def serve(database: str, orders: list[str]) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM) as terminated:
        async with (
            SQLiteCommander(database, DEFINITIONS, role="owner") as commander,
            create_commander_runtime(commander),
            anyio.create_task_group() as tasks,
        ):
            for order in orders:
                order_id, _, quantity = order.partition(":")
                lamps = {"item": "lamp", "quantity": int(quantity or 1)}
                await commander.start(ORDER, lamps, id=order_id)
            print("RUNNING", flush=True)

            async def until_terminated() -> None:
                async for _ in terminated:
                    tasks.cancel_scope.cancel()

            tasks.start_soon(until_terminated)
            # Served until standard input ends (the parent closed it) or SIGTERM.
            await anyio.to_thread.run_sync(sys.stdin.read, abandon_on_cancel=True)
            tasks.cancel_scope.cancel()


if __name__ == "__main__":
    anyio.run(serve, sys.argv[1], sys.argv[2:])
