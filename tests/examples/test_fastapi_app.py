"""examples/fastapi_app.py served by a real uvicorn on 127.0.0.1, on asyncio, over real HTTP."""

from __future__ import annotations

import importlib.util
import socket
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import httpx
import pytest
import uvicorn

from mission_control.adapter_sqlite import SQLiteCommander
from mission_control.client import start_blocking_client
from mission_control.core import Context, MissionStatus, m

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "fastapi_app.py"
# Real seconds the server may take to start or stop before the test fails.
BOUND = 30.0


@pytest.fixture
def database(tmp_path: Path) -> Path:
    return tmp_path / "missions.sqlite"


@pytest.fixture
def example(database: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """The example's module, its database in the test's directory."""
    monkeypatch.setenv("MISSIONS_DATABASE", str(database))
    spec = importlib.util.spec_from_file_location("fastapi_app", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # pydantic resolves the models' annotations through it
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[spec.name]


@contextmanager
def served(example: ModuleType) -> Iterator[httpx.Client]:
    """The example's app under uvicorn in a thread of its own, on a free port of 127.0.0.1, and
    an HTTP client for it; the server shuts down (the app's lifespan ends) on exit."""
    listening = socket.socket()
    # Inherited by each connection: without it, a reply written in two parts waits for the
    # client's delayed acknowledgement (about 40 ms a request).
    listening.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    listening.bind(("127.0.0.1", 0))
    port = listening.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(example.app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listening]})
    thread.start()
    try:
        began = time.monotonic()
        while not server.started:
            assert thread.is_alive(), "uvicorn stopped while starting"
            assert time.monotonic() - began < BOUND, "uvicorn did not start"
            time.sleep(0.01)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=BOUND) as http:
            yield http
    finally:
        server.should_exit = True
        thread.join(BOUND)
        listening.close()
    assert not thread.is_alive(), "uvicorn did not stop"


def stored_status(database: Path, example: ModuleType, mission_id: str) -> MissionStatus:
    """The mission's status in the database, read once the server has let go of it."""
    with start_blocking_client(lambda: SQLiteCommander(database, [example.expense])) as client:
        return client.inspect(mission_id).status


def test_an_expense_is_submitted_decided_and_read_over_http(
    example: ModuleType, database: Path
) -> None:
    """A submitted expense is answered at once with 202 before it completes; the decision
    completes it, and the result and the mission read back say so."""
    with served(example) as http:
        submitted = http.post("/expenses", json={"employee": "ada@example.com", "amount": 120})
        assert submitted.status_code == 202
        view = submitted.json()
        assert view["status"] in {"waiting", "running"}  # the runtime may have begun
        assert view["decision"] is None

        decided = http.post(
            f"/expenses/{view['id']}/decision", json={"approved": True, "by": "reviewer-1"}
        )
        assert decided.status_code == 200
        result = http.get(f"/expenses/{view['id']}/result")
        read = http.get(f"/expenses/{view['id']}")

    assert result.status_code == 200
    assert result.json() == {
        "id": view["id"],
        "status": "completed",
        "waiting_for": None,
        "decision": {"approved": True, "by": "reviewer-1"},
    }
    assert read.json() == result.json()
    assert stored_status(database, example, view["id"]) is MissionStatus.COMPLETED


def test_expenses_submitted_at_once_each_get_their_own_decision(example: ModuleType) -> None:
    """Ten clients each submitting, deciding and awaiting an expense at the same time all get
    their own decision back."""

    def one(http: httpx.Client, n: int) -> object:
        view = http.post("/expenses", json={"employee": f"e{n}@example.com", "amount": n + 1})
        path = f"/expenses/{view.json()['id']}"
        decision = {"approved": n % 2 == 0, "by": f"reviewer-{n}"}
        assert http.post(f"{path}/decision", json=decision).status_code == 200
        return http.get(f"{path}/result").json()["decision"]

    with served(example) as http, ThreadPoolExecutor(max_workers=10) as pool:
        decisions = list(pool.map(one, [http] * 10, range(10)))

    assert decisions == [{"approved": n % 2 == 0, "by": f"reviewer-{n}"} for n in range(10)]


def test_bad_requests_get_http_errors(example: ModuleType, database: Path) -> None:
    """An invalid expense is refused with 422 and stores nothing, an unknown expense is 404, and
    deciding a finished one is 409."""
    with served(example) as http:
        refused = http.post("/expenses", json={"employee": "nobody", "amount": -5})
        missing = http.get("/expenses/no-such-expense")
        view = http.post("/expenses", json={"employee": "ada@example.com", "amount": 1}).json()
        decision = {"approved": False, "by": "reviewer-1"}
        http.post(f"/expenses/{view['id']}/decision", json=decision)
        http.get(f"/expenses/{view['id']}/result")
        again = http.post(f"/expenses/{view['id']}/decision", json=decision)

    assert refused.status_code == 422
    assert missing.status_code == 404
    assert again.status_code == 409
    with start_blocking_client(lambda: SQLiteCommander(database, [example.expense])) as client:
        assert [snapshot.id for snapshot in client.list()] == [view["id"]]


def test_an_expense_outlives_a_restart_of_the_server(example: ModuleType) -> None:
    """An expense submitted before the server stopped is decided after it started again."""
    with served(example) as http:
        view = http.post("/expenses", json={"employee": "ada@example.com", "amount": 7}).json()

    with served(example) as http:
        http.post(f"/expenses/{view['id']}/decision", json={"approved": True, "by": "later"})
        result = http.get(f"/expenses/{view['id']}/result").json()

    assert result["status"] == "completed"


@pytest.mark.anyio
async def test_shutdown_cuts_a_stuck_step_short_after_the_grace(
    example: ModuleType, database: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At shutdown the lifespan gives a step in flight SHUTDOWN_GRACE seconds (virtual here),
    then cancels it: the step committed nothing, and the mission is stored still active, to run
    again at the next start."""
    entered = anyio.Event()

    async def stall(ctx: Context[Any, Any]) -> None:
        entered.set()
        await anyio.sleep_forever()

    stuck = m.define("expense").start(parse=dict).step("notify-approver", stall).end()
    monkeypatch.setattr(example, "expense", stuck)

    with anyio.fail_after(example.SHUTDOWN_GRACE * 2):
        async with example.lifespan(example.app):
            await example.app.state.missions.start(stuck, {}, id="stuck", background=True)
            await entered.wait()
            began = anyio.current_time()
    assert anyio.current_time() - began == pytest.approx(example.SHUTDOWN_GRACE)

    async with SQLiteCommander(database, [stuck]) as commander:
        status = (await commander.inspect("stuck")).status
        assert status in {MissionStatus.WAITING, MissionStatus.RUNNING}
