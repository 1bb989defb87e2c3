"""The storage codec is the library's own: hooks a user registers on the public converter never
change how the SQLite adapter writes or reads records, while a commander's own converter
carries user types through the store."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import apsw
import pytest
from cattrs.preconf.json import make_converter
from pydantic import BaseModel

from mission_control.adapter_sqlite import SQLiteCommander
from mission_control.core import Context, MissionStatus, converter, m
from mission_control.in_memory_commander import ManualClock

pytestmark = pytest.mark.anyio

_HOOK_ON = {"on": False}


def _user_datetime(value: datetime) -> Any:
    # A user's taste (epoch seconds) while the test runs, the default form otherwise: cattrs
    # has no way to remove a hook from the shared converter again.
    return value.timestamp() if _HOOK_ON["on"] else value.isoformat()


converter.register_unstructure_hook(datetime, _user_datetime)


async def test_a_hook_on_the_public_converter_changes_no_record(
    db_path: Path, clock: ManualClock
) -> None:
    """With a datetime hook on the public converter, a cancelled mission (its request in a
    column of its own) and a buffered signal are written and read back as always, while user
    values in the same mission do go through the hook."""
    flow = (
        m.define("hooked")
        .start(parse=lambda raw: raw)
        .sleep("pause", 60)
        .need_to("go", parse=lambda raw: raw)
        .end()
    )
    _HOOK_ON["on"] = True
    try:
        async with SQLiteCommander(db_path, [flow], clock=clock) as commander:
            handle = await commander.start(flow, {"at": clock.now()})
            await handle.signal("go", {"at": clock.now()})
            cancelled = await handle.cancel("changed my mind")
            assert cancelled.status is MissionStatus.CANCELLED
        async with SQLiteCommander(db_path, [flow], clock=clock) as commander:
            snapshot = await commander.inspect(handle.id)
            timeline = await commander.timeline(handle.id)
    finally:
        _HOOK_ON["on"] = False
    assert snapshot.status is MissionStatus.CANCELLED
    assert snapshot.created_at == clock.now()
    assert snapshot.cancel_request is not None
    assert snapshot.cancel_request.requested_at == clock.now()
    assert snapshot.input == {"at": clock.now().timestamp()}
    assert [entry.at for entry in timeline] == [clock.now()] * len(timeline)
    connection = apsw.Connection(str(db_path))
    try:
        rows = connection.execute("SELECT cancel_request, snapshot FROM missions").fetchall()
        signals = connection.execute("SELECT payload, received_at FROM inbox").fetchall()
    finally:
        connection.close()
    request, text = rows[0]
    assert '"requested_at":"2030-01-01T00:00:00+00:00"' in str(request)
    assert '"created_at":"2030-01-01T00:00:00+00:00"' in str(text)
    assert signals == [(f'{{"at":{clock.now().timestamp()}}}', "2030-01-01T00:00:00+00:00")]


def _is_model(cls: object) -> bool:
    return isinstance(cls, type) and issubclass(cls, BaseModel)


class Order(BaseModel):
    sku: str
    quantity: int


class Shipment(BaseModel):
    order: Order
    carrier: str


async def test_pydantic_models_round_trip_through_a_commanders_converter(
    db_path: Path, clock: ManualClock
) -> None:
    """pydantic models pass through an input, an output and a payload with the hooks a
    commander's converter has for them, and are rebuilt as models after a reopen."""
    models = make_converter()
    models.register_unstructure_hook_func(_is_model, lambda model: model.model_dump(mode="json"))
    models.register_structure_hook_func(_is_model, lambda value, cls: cls.model_validate(value))
    seen: list[Any] = []

    def ship(ctx: Context[Order, None]) -> Shipment:
        return Shipment(order=ctx.input, carrier="post")

    def record(ctx: Context[Order, None]) -> None:
        seen.extend([ctx.events["ship"].output, ctx.events["carrier"].output])

    flow = (
        m.define("shipping")
        .start(parse=Order.model_validate)
        .step("ship", ship)
        .need_to("carrier", parse=Shipment.model_validate)
        .step("record", record)
        .end()
    )
    async with SQLiteCommander(db_path, [flow], clock=clock, converter=models) as commander:
        handle = await commander.start(flow, Order(sku="A-1", quantity=2))
    shipment = Shipment(order=Order(sku="A-1", quantity=2), carrier="express")
    async with SQLiteCommander(db_path, [flow], clock=clock, converter=models) as commander:
        await commander.signal(handle.id, "carrier", shipment)
        done = await commander.wait_for_completion(handle.id)
    assert done.input == {"sku": "A-1", "quantity": 2}
    assert done.nodes["ship"].output == {"order": {"sku": "A-1", "quantity": 2}, "carrier": "post"}
    assert done.nodes["carrier"].input == shipment.model_dump(mode="json")
    assert seen == [Shipment(order=Order(sku="A-1", quantity=2), carrier="post"), shipment]
