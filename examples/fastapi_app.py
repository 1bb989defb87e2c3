"""A FastAPI application on asyncio that runs expense approvals as missions stored in SQLite.

Run it with ``uv run uvicorn fastapi_app:app --app-dir examples`` (the database is
``missions.sqlite``, or the file ``MISSIONS_DATABASE`` names), then::

    curl -X POST localhost:8000/expenses -H 'content-type: application/json' \\
         -d '{"employee": "ada@example.com", "amount": 120}'
    curl -X POST localhost:8000/expenses/<id>/decision -H 'content-type: application/json' \\
         -d '{"approved": true, "by": "reviewer-1"}'
    curl localhost:8000/expenses/<id>/result

The commander and the tick runtime live as long as the application: its lifespan starts them on
uvicorn's asyncio loop and stops them at shutdown, giving the steps in flight a few seconds (a
step cut short committed nothing, and runs again at the next start). Uvicorn first waits for open
requests, such as a ``/result`` that waits for a decision (10 seconds at most here); pass
``--timeout-graceful-shutdown`` to bound that too. A request that submits an expense starts the
mission in the background: the mission is stored and the response sent at once, and the runtime
runs its steps on the same loop. So steps may use asyncio-only libraries (aiohttp, asyncpg, an
SDK), and no request waits for them.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager, suppress
from typing import Annotated, Any

import anyio
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from mission_control.adapter_sqlite import SQLiteCommander
from mission_control.client import MissionClient, create_mission_client
from mission_control.core import (
    Context,
    MissionNotActiveError,
    MissionNotFoundError,
    MissionSnapshot,
    m,
)
from mission_control.runtime import RuntimeState, create_commander_runtime

DATABASE = os.environ.get("MISSIONS_DATABASE", "missions.sqlite")
SHUTDOWN_GRACE = 5.0  # seconds the steps in flight have to finish at shutdown


# -- the mission -----------------------------------------------------------------------------


class Expense(BaseModel):
    employee: str = Field(pattern="@")
    amount: float = Field(gt=0)


class Decision(BaseModel):
    approved: bool
    by: str


def parse_expense(raw: object) -> dict[str, Any]:
    # The mission checks its input with the request body's model: a mission started by other
    # code (a script, a test) is held to the same rules.
    return Expense.model_validate(raw).model_dump()


def parse_decision(raw: object) -> dict[str, Any]:
    return Decision.model_validate(raw).model_dump()


async def notify_approver(ctx: Context[dict[str, Any], None]) -> str:
    # A stand-in for an asyncio-only client (aiohttp, an SDK): steps run on the app's own loop.
    await asyncio.sleep(0)
    return f"approver notified of {ctx.input['amount']} for {ctx.input['employee']}"


expense = (
    m.define("expense")
    .start(parse=parse_expense)
    .step("notify-approver", notify_approver, retry=m.retry(3, m.exponential(1, cap=30)))
    .need_to("decide", parse=parse_decision)
    .end(lambda ctx: ctx.events["decide"].output)
)


# -- the application -------------------------------------------------------------------------


class StepsCutShort(Exception):
    """Raised out of the runtime's ``async with`` so that it cancels the steps still running."""


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncGenerator[None, None]:
    async with SQLiteCommander(DATABASE, [expense]) as commander:
        with suppress(StepsCutShort):
            async with create_commander_runtime(commander) as runtime:
                app.state.missions = create_mission_client(runtime)
                yield
                with anyio.move_on_after(SHUTDOWN_GRACE):
                    await runtime.stop()
                if runtime.state is not RuntimeState.STOPPED:
                    raise StepsCutShort


app = FastAPI(lifespan=lifespan)


def missions(request: Request) -> MissionClient:
    return request.app.state.missions


Missions = Annotated[MissionClient, Depends(missions)]


class ExpenseView(BaseModel):
    id: str
    status: str
    waiting_for: str | None
    decision: Any = None

    @classmethod
    def of(cls, snapshot: MissionSnapshot) -> ExpenseView:
        wait = snapshot.wait
        return cls(
            id=snapshot.id,
            status=snapshot.status.value,
            waiting_for=None if wait is None else wait.signal or wait.kind.value,
            decision=snapshot.output,
        )


@app.exception_handler(MissionNotFoundError)
async def not_found(request: Request, error: Exception) -> JSONResponse:
    return JSONResponse(status_code=404, content={"detail": str(error)})


@app.exception_handler(MissionNotActiveError)
async def not_active(request: Request, error: Exception) -> JSONResponse:
    return JSONResponse(status_code=409, content={"detail": str(error)})


@app.post("/expenses", status_code=202)
async def submit(body: Expense, missions: Missions) -> ExpenseView:
    # background=True: store the mission and answer now; the runtime runs notify-approver.
    handle = await missions.start(expense, body.model_dump(), background=True)
    return ExpenseView.of(await handle.inspect())


@app.post("/expenses/{mission_id}/decision")
async def decide(mission_id: str, body: Decision, missions: Missions) -> ExpenseView:
    # A decision sent before the mission waits for it is kept and used when it gets there.
    return ExpenseView.of(await missions.signal(mission_id, "decide", body.model_dump()))


@app.get("/expenses/{mission_id}")
async def read(mission_id: str, missions: Missions) -> ExpenseView:
    return ExpenseView.of(await missions.inspect(mission_id))


@app.get("/expenses/{mission_id}/result")
async def result(mission_id: str, missions: Missions) -> ExpenseView:
    # Wait for the mission to end, for at most 10 seconds (then 504: ask again later).
    try:
        async with asyncio.timeout(10):
            return ExpenseView.of(await missions.result(mission_id))
    except TimeoutError:
        raise HTTPException(status_code=504, detail="still running; ask again later") from None


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app)
