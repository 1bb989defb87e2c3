"""Order approval with rollback: reserve the stock and authorize the payment, each with a
compensation; a small order is approved at once, a large one waits up to two days for a
manager. A rejection, or no answer in time, rolls back what was done (the authorization is
voided, then the stock released: last done, first undone) and the order ends ``compensated``.

Run it with ``uv run python examples/order_approval.py``. It runs four orders on each adapter
(in memory, then a SQLite file) with a ``ManualClock``, so the two days pass at once; the loop
over ``due_missions`` does what a runtime tick does. Halfway, a new commander takes over the
same store (as a restarted process would) with an approval limit that would now route every
order automatically: the orders already waiting for a manager stay on that path, because a
choice is recorded once and never made again. Last, it prints the flow's ``describe()``.
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncGenerator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any, TypedDict

import trio

from mission_control.adapter_sqlite import SQLiteCommander
from mission_control.core import (
    Commander,
    CompensationRequested,
    Context,
    MissionDefinition,
    NodeDescription,
    m,
)
from mission_control.in_memory_commander import (
    InMemoryPersistenceAdapter,
    ManualClock,
    create_in_memory_commander,
)


class Order(TypedDict):
    customer: str
    amount: int


class Decision(TypedDict):
    approved: bool
    by: str
    note: str


def parse_order(value: Order) -> Order:
    customer = value.get("customer") if isinstance(value, dict) else None
    amount = value.get("amount") if isinstance(value, dict) else None
    if not isinstance(customer, str) or type(amount) is not int or amount <= 0:
        raise ValueError("an order needs a 'customer' string and a positive whole 'amount'")
    return {"customer": customer, "amount": amount}


def parse_decision(value: Decision) -> Decision:
    if not isinstance(value, dict) or not isinstance(value.get("approved"), bool):
        raise ValueError("a decision needs 'approved' (true or false) and 'by'")
    return {
        "approved": value["approved"],
        "by": str(value.get("by")),
        "note": value.get("note", ""),
    }


UNDONE: list[str] = []
"""What the compensations did, in order (a real one would call the warehouse and the payment
gateway with ``ctx.idempotency_key``)."""
FLAKY_GATEWAY: set[str] = set()
"""Orders whose first attempt to void the authorization times out."""


def reserve_stock(ctx: Context[Order, None]) -> str:
    return f"stock-{ctx.mission_id}"


def release_stock(ctx: Context[Order, None], reservation: str) -> None:
    UNDONE.append(f"{ctx.mission_id}: released {reservation}")


def authorize(ctx: Context[Order, None]) -> str:
    return f"auth-{ctx.mission_id}"


def void_authorization(ctx: Context[Order, None], authorization: str) -> None:
    if ctx.mission_id in FLAKY_GATEWAY and ctx.attempt == 1:
        raise TimeoutError("payment gateway timed out")
    UNDONE.append(f"{ctx.mission_id}: voided {authorization} (attempt {ctx.attempt})")


def apply_decision(ctx: Context[Order, None]) -> str:
    decision: Decision = ctx.events["manager-decision"].output
    if not decision["approved"]:
        raise CompensationRequested(f"rejected by {decision['by']}: {decision['note']}")
    return f"approved by {decision['by']}"


def capture(ctx: Context[Order, None]) -> str:
    return f"captured {ctx.input['amount']}"


def summary(ctx: Context[Order, None]) -> str:
    approval = "auto-approve" if "auto-approve" in ctx.events else "apply-decision"
    return f"{ctx.events[approval].output}, {ctx.events['capture-payment'].output}"


def order_approval(limit: int) -> MissionDefinition[Order, Order, None]:
    """The flow, routing orders above ``limit`` to a manager."""
    return (
        m.define("order-approval")
        .start(parse=parse_order)
        .step("reserve-stock", reserve_stock, compensate=release_stock)
        .step(
            "authorize-payment",
            authorize,
            compensate=void_authorization,
            compensate_retry=m.retry(3, m.fixed(60)),
        )
        .choice(
            "route",
            lambda ctx: "manager" if ctx.input["amount"] > limit else "auto",
            {
                "auto": lambda p: p.step("auto-approve", lambda ctx: "approved automatically"),
                "manager": lambda p: p.need_to(
                    "manager-decision", parse=parse_decision, timeout=timedelta(days=2)
                ).step("apply-decision", apply_decision),
            },
        )
        .step("capture-payment", capture)
        .end(output=summary)
    )


async def tick(commander: Commander) -> None:
    """What one runtime tick does: advance every mission that is due now."""
    for mission_id in await commander.due_missions(100):
        await commander.advance(mission_id)


ORDERS = (120, 2_500, 4_000, 9_000)
"""The amounts of order-1 (approved automatically), order-2 (approved by a manager), order-3
(rejected) and order-4 (no answer in time)."""


async def run_orders(
    adapter: str,
    make_commander: Callable[
        [MissionDefinition[Any, Any, Any]], AbstractAsyncContextManager[Commander]
    ],
    clock: ManualClock,
) -> None:
    async with make_commander(order_approval(limit=1_000)) as commander:
        definition = commander.definitions["order-approval"]
        for number, amount in enumerate(ORDERS, start=1):
            order: Order = {"customer": "ada", "amount": amount}
            await commander.start(definition, order, id=f"order-{number}")
    # A new commander on the same store, as after a restart, with a limit that would route
    # every order automatically: the waiting orders keep the path chosen for them.
    FLAKY_GATEWAY.add("order-3")
    async with make_commander(order_approval(limit=100_000)) as commander:
        await commander.signal("order-2", "manager-decision", {"approved": True, "by": "dana"})
        await commander.signal(
            "order-3", "manager-decision", {"approved": False, "by": "dana", "note": "over budget"}
        )
        clock.advance(timedelta(days=2))  # order-4's manager never answers
        await tick(commander)
        clock.advance(timedelta(minutes=1))  # order-3's void is retried
        await tick(commander)
        for number in range(1, 5):
            done = await commander.result(f"order-{number}")
            why = done.output if done.error is None else f"{done.error.type}: {done.error.message}"
            print(f"[{adapter}] order-{number}: {done.status.value}: {why}")
        for entry in await commander.timeline("order-3"):
            if entry.kind.value.startswith(("mission-compensat", "compensation-", "retry")):
                print(f"[{adapter}]     {entry.kind.value:<24} {entry.node}")
    for line in UNDONE:
        print(f"[{adapter}]   undone {line}")
    UNDONE.clear()
    FLAKY_GATEWAY.clear()


def show(nodes: tuple[NodeDescription, ...], indent: str = "") -> None:
    for node in nodes:
        extra = "" if node.compensate_max_attempts is None else " (compensable)"
        print(f"{indent}{node.path} ({node.kind}){extra}")
        for branch, inner in node.branches:
            print(f"{indent}  [{branch}]")
            show(inner, indent + "    ")


async def main() -> None:
    clock = ManualClock()
    store = InMemoryPersistenceAdapter()

    @asynccontextmanager
    async def in_memory(definition: MissionDefinition[Any, Any, Any]) -> AsyncGenerator[Commander]:
        # Left open: closing an in-memory commander closes its store, which the next one uses.
        yield create_in_memory_commander([definition], persistence=store, clock=clock)

    await run_orders("memory", in_memory, clock)
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "orders.sqlite"
        sqlite_clock = ManualClock()

        def on_sqlite(definition: MissionDefinition[Any, Any, Any]) -> SQLiteCommander:
            return SQLiteCommander(path, [definition], clock=sqlite_clock)

        await run_orders("sqlite", on_sqlite, sqlite_clock)
    show(order_approval(limit=1_000).describe().nodes)


if __name__ == "__main__":
    trio.run(main)
