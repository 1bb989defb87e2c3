"""A FastAPI application served by several uvicorn workers on one SQLite file.

Run it from the repository with::

    MISSIONS_DATABASE=orders.sqlite uv run uvicorn web_workers:app --app-dir examples --workers 2

then::

    curl -X POST localhost:8000/orders -H 'content-type: application/json' \\
         -d '{"item": "desk", "quantity": 2}'
    curl -X POST localhost:8000/orders/<id>/approve -H 'content-type: application/json' \\
         -d '{"by": "dana"}'
    curl localhost:8000/orders/<id>
    curl localhost:8000/whoami

Each worker opens the file with the default role, ``"auto"``: the first to open it becomes its
owner and executes the missions; the other is a submitter, whose starts and signals are stored
for the owner and applied by it (a signal waits for the owner's verdict and answers with the
order as the owner left it, or with the owner's error). The submitter's runtime stands by: when
the owner dies, it takes the file over within about half a second plus its start-up tick, and
finishes what the dead owner left. Every worker serves every route; ``/whoami`` tells which one
answered and whether it owns the file.
"""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Body, Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from mission_control.adapter_sqlite import SQLiteCommander
from mission_control.client import MissionClient, create_mission_client
from mission_control.core import (
    Context,
    InvalidSignalPayloadError,
    MissionNotActiveError,
    MissionNotFoundError,
    MissionSnapshot,
    m,
)
from mission_control.runtime import create_commander_runtime

DATABASE = os.environ.get("MISSIONS_DATABASE", "missions.sqlite")


# -- the mission -----------------------------------------------------------------------------


class Order(BaseModel):
    item: str = Field(min_length=1)
    quantity: int = Field(gt=0)


class Approval(BaseModel):
    by: str = Field(min_length=1)


def parse_order(raw: object) -> dict[str, Any]:
    return Order.model_validate(raw).model_dump()


def parse_approval(raw: object) -> dict[str, Any]:
    # The mission checks the payload, whichever worker receives it: a submitter checks it as
    # the owner would, so a bad one is refused (400) there, with nothing stored.
    return Approval.model_validate(raw).model_dump()


def reserve(ctx: Context[dict[str, Any], None]) -> str:
    return f"reserved {ctx.input['quantity']} x {ctx.input['item']} (pid {os.getpid()})"


def ship(ctx: Context[dict[str, Any], None]) -> str:
    return f"shipped by pid {os.getpid()}, approved by {ctx.events['approve'].output['by']}"


order = (
    m.define("order")
    .start(parse=parse_order)
    .step("reserve", reserve)
    .need_to("approve", parse=parse_approval)
    .step("ship", ship)
    .end(lambda ctx: ctx.events["ship"].output)
)


# -- the application -------------------------------------------------------------------------


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncGenerator[None, None]:
    # role="auto" (the default): owner if no other process owns the file, else a submitter
    # whose runtime stands by to take the file over.
    async with (
        SQLiteCommander(DATABASE, [order]) as commander,
        create_commander_runtime(commander) as runtime,
    ):
        app.state.missions = create_mission_client(runtime)
        yield


app = FastAPI(lifespan=lifespan)


def missions(request: Request) -> MissionClient:
    return request.app.state.missions


Missions = Annotated[MissionClient, Depends(missions)]


class OrderView(BaseModel):
    id: str
    status: str
    output: Any = None

    @classmethod
    def of(cls, snapshot: MissionSnapshot) -> OrderView:
        return cls(id=snapshot.id, status=snapshot.status.value, output=snapshot.output)


# The library's errors a request can cause, as HTTP statuses.
HTTP_STATUS: dict[type[Exception], int] = {
    InvalidSignalPayloadError: 400,
    MissionNotFoundError: 404,
    MissionNotActiveError: 409,
}


async def refused(request: Request, error: Exception) -> JSONResponse:
    return JSONResponse(status_code=HTTP_STATUS[type(error)], content={"detail": str(error)})


for error_class in HTTP_STATUS:
    app.add_exception_handler(error_class, refused)


@app.post("/orders", status_code=202)
async def place(body: Order, missions: Missions) -> OrderView:
    # Stored at once, on either worker; the owner runs it.
    handle = await missions.start(order, body.model_dump(), background=True)
    return OrderView.of(await handle.inspect())


@app.post("/orders/{order_id}/approve")
async def approve(order_id: str, missions: Missions, body: Annotated[Any, Body()]) -> OrderView:
    # On the submitter this waits for the owner to apply the signal (or refuse it).
    return OrderView.of(await missions.signal(order_id, "approve", body))


@app.get("/orders/{order_id}")
async def read(order_id: str, missions: Missions) -> OrderView:
    return OrderView.of(await missions.inspect(order_id))


@app.get("/whoami")
async def whoami(missions: Missions) -> dict[str, Any]:
    return {"pid": os.getpid(), "owner": missions.is_owner}
