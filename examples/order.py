"""An order: check credit and reserve stock at the same time, accept or reject on what they
said, then wait up to seven days for the warehouse to say "shipped", refunding if it does not.

Run it with ``uv run python examples/order.py``. It runs three orders on the in-memory commander
with a ``ManualClock``, so the seven days pass at once: the loop over ``due_missions`` does what
the tick runtime does when a due time comes. With ``SQLiteCommander(path, [order])`` and the
runtime (see examples/timer_and_retry.py), the same definition survives restarts: a crash
during the checks re-runs only the check that had not finished, and the choice is never made
again.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TypedDict, cast

import trio

from mission_control.core import Commander, Context, m
from mission_control.in_memory_commander import ManualClock, create_in_memory_commander

CREDIT_LIMIT = 1_000
STOCK = {"lamp": 5, "sofa": 0}


class Order(TypedDict):
    item: str
    amount: int


class Shipment(TypedDict):
    tracking: str


# The parsers get JSON from outside: the TypedDicts say what callers should send (a type
# checker holds commander.start to Order), the checks what a mission accepts.
def parse_order(value: Order) -> Order:
    item = value.get("item") if isinstance(value, dict) else None
    amount = value.get("amount") if isinstance(value, dict) else None
    if not isinstance(item, str) or type(amount) is not int or amount <= 0:
        raise ValueError("an order needs an 'item' string and a positive whole 'amount'")
    return {"item": item, "amount": amount}


def parse_shipment(value: Shipment) -> Shipment:
    tracking = value.get("tracking") if isinstance(value, dict) else None
    if not isinstance(tracking, str) or not tracking:
        raise ValueError("a shipment needs a 'tracking' string")
    return {"tracking": tracking}


# The two checks run concurrently, each in a branch of the parallel "checks". A real check
# would call a service, passing ctx.idempotency_key ("<mission id>:checks/credit/check-credit").
async def check_credit(ctx: Context[Order, None]) -> bool:
    await trio.lowlevel.checkpoint()
    return ctx.input["amount"] <= CREDIT_LIMIT


async def reserve_stock(ctx: Context[Order, None]) -> bool:
    await trio.lowlevel.checkpoint()
    return STOCK.get(ctx.input["item"], 0) > 0


def decide(ctx: Context[Order, None]) -> str:
    # The parallel's output maps each branch to its last node's output.
    checks = cast("dict[str, bool]", ctx.events["checks"].output)
    return "accept" if checks["credit"] and checks["stock"] else "reject"


async def charge(ctx: Context[Order, None]) -> str:
    return f"charged {ctx.input['amount']}"


async def refund(ctx: Context[Order, None]) -> str:
    return f"refunded {ctx.input['amount']}"


def summary(ctx: Context[Order, None]) -> str:
    if ctx.events["decide"].output == "reject":
        return "rejected"
    if "shipped" in ctx.events:  # missing when the wait timed out
        return f"shipped ({ctx.events['shipped'].output['tracking']})"
    return "refunded"


order = (
    m.define("order")
    .start(parse=parse_order)
    .parallel(
        "checks",
        {
            "credit": lambda b: b.step("check-credit", check_credit, retry=3),
            "stock": lambda b: b.step("reserve-stock", reserve_stock, retry=3),
        },
    )
    .choice(
        "decide",
        decide,
        {
            "accept": lambda p: p.step("charge", charge).need_to(
                "shipped",
                parse=parse_shipment,
                timeout=timedelta(days=7),
                on_timeout=lambda t: t.step("refund", refund),
            ),
            "reject": lambda p: p,
        },
    )
    .end(output=summary)
)


async def tick(commander: Commander) -> None:
    """What one runtime tick does: advance every mission that is due now."""
    for mission_id in await commander.due_missions(100):
        await commander.advance(mission_id)


async def main() -> None:
    clock = ManualClock()
    async with create_in_memory_commander([order], clock=clock) as commander:
        shipped = await commander.start(order, {"item": "lamp", "amount": 40}, id="order-1")
        rejected = await commander.start(order, {"item": "sofa", "amount": 900}, id="order-2")
        forgotten = await commander.start(order, {"item": "lamp", "amount": 60}, id="order-3")

        waiting = await shipped.inspect()
        print(f"order-1 is {waiting.status.value} at {waiting.active[0]}, due {waiting.due_at}")
        await shipped.signal("shipped", {"tracking": "TRK-1"})

        clock.advance(timedelta(days=7))
        await tick(commander)

        for mission in (shipped, rejected, forgotten):
            done = await mission.result()
            print(f"{mission.id}: {done.output}")
            for path, record in done.nodes.items():
                print(f"    {path:<40} {record.status.value:<10} {record.output}")
        for entry in await forgotten.timeline():
            print(f"{entry.at.isoformat()}  {entry.kind.value:<18} {entry.node or ''}")


if __name__ == "__main__":
    trio.run(main)
