"""examples/web_workers.py served by a real uvicorn with two workers on one SQLite file, over
real HTTP on 127.0.0.1; the owning worker SIGKILLed and the other taking the file over."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from mission_control.adapter_sqlite import TAKEOVER_INTERVAL

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
# Real seconds uvicorn and its workers may take to start, to stop, or to finish the orders
# before the test fails (they take far less).
BOUND = 30.0
# Real seconds from the owner's death to another worker owning the file: the standby polls
# the lock every TAKEOVER_INTERVAL; the rest is slack for a loaded machine.
TAKEOVER_BOUND = TAKEOVER_INTERVAL + 4.5

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """uvicorn with two workers, and HTTP calls to it, each on a connection of its own so
    that both workers get some."""

    def __init__(self, process: subprocess.Popen[bytes], http: httpx.Client) -> None:
        self.process = process
        self.http = http

    def call(self, method: str, path: str, body: Any = None) -> httpx.Response:
        assert self.process.poll() is None, "uvicorn stopped"
        return self.http.request(method, path, json=body)

    def whoami(self) -> tuple[int, bool]:
        answer = self.call("GET", "/whoami").json()
        return answer["pid"], answer["owner"]

    def workers(self, done: Callable[[dict[int, bool]], bool]) -> dict[int, bool]:
        """Ask /whoami until the answers (owner or not, by pid; the latest answer of each pid)
        satisfy ``done``."""
        answers: dict[int, bool] = {}
        deadline = time.monotonic() + BOUND
        while not done(answers):
            assert time.monotonic() < deadline, f"/whoami answered only {answers}"
            pid, owner = self.whoami()
            answers[pid] = owner
        return answers

    def until(self, order_id: str, status: str) -> dict[str, Any]:
        deadline = time.monotonic() + BOUND
        while (view := self.call("GET", f"/orders/{order_id}").json())["status"] != status:
            assert time.monotonic() < deadline, f"order {order_id} stayed {view}"
            time.sleep(0.01)
        return view


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = (tmp_path / "uvicorn.log").open("wb")
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "uvicorn", "web_workers:app", "--app-dir", str(EXAMPLES)),
            *("--workers", "2", "--host", "127.0.0.1", "--port", str(port)),
        ],
        env={**os.environ, "MISSIONS_DATABASE": str(tmp_path / "orders.sqlite")},
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + BOUND
        while True:
            assert process.poll() is None, "uvicorn stopped while starting"
            assert time.monotonic() < deadline, "uvicorn did not start"
            try:
                httpx.get(f"{base}/whoami", timeout=1.0)
                break
            except httpx.TransportError:
                time.sleep(0.05)
        # No connection kept alive: each call reaches whichever worker accepts it first.
        no_reuse = httpx.Limits(max_keepalive_connections=0)
        with httpx.Client(base_url=base, timeout=BOUND, limits=no_reuse) as http:
            yield Server(process, http)
        # As Ctrl-C would: the supervisor stops the workers, each leaving its lifespan.
        process.send_signal(signal.SIGINT)
        assert process.wait(BOUND) == 0
        logged = (tmp_path / "uvicorn.log").read_text()
        assert logged.count("Application shutdown complete.") == 2
        assert "Traceback" not in logged
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


def test_two_workers_share_the_file_and_the_survivor_takes_it_over(server: Server) -> None:
    """Two uvicorn workers on one file, one owning it, both take orders and approvals that all
    complete; the library's errors come back as 400, 404 and 409 from either; after the owner
    is SIGKILLed the other worker takes the file over and orders complete again."""
    workers = server.workers(lambda answers: len(answers) == 2)
    assert sorted(workers.values()) == [False, True]

    with ThreadPoolExecutor(max_workers=8) as pool:
        placed = list(
            pool.map(
                lambda n: server.call("POST", "/orders", {"item": f"item-{n}", "quantity": n + 1}),
                range(20),
            )
        )
        assert {answer.status_code for answer in placed} == {202}
        ids = [answer.json()["id"] for answer in placed]
        approved = list(
            pool.map(lambda i: server.call("POST", f"/orders/{i}/approve", {"by": "dana"}), ids)
        )
        assert {answer.status_code for answer in approved} == {200}
        views = list(pool.map(lambda i: server.until(i, "completed"), ids))
    assert all(view["output"].endswith("approved by dana") for view in views)

    waiting = server.call("POST", "/orders", {"item": "lamp", "quantity": 1}).json()["id"]
    # Several times each, on fresh connections: both workers, owner and submitter, answer so.
    for _ in range(6):
        again = server.call("POST", f"/orders/{ids[0]}/approve", {"by": "dana"})
        assert again.status_code == 409
        assert "is completed" in again.json()["detail"]
        assert server.call("POST", "/orders/no-such-order/approve", {"by": "x"}).status_code == 404
        assert server.call("GET", "/orders/no-such-order").status_code == 404
        bad = server.call("POST", f"/orders/{waiting}/approve", {"by": ""})
        assert bad.status_code == 400
        assert "rejected its payload" in bad.json()["detail"]
    assert server.call("GET", f"/orders/{waiting}").json()["status"] == "waiting"

    (owner,) = [pid for pid, owns in workers.items() if owns]
    (survivor,) = [pid for pid, owns in workers.items() if not owns]
    os.kill(owner, signal.SIGKILL)
    killed_at = time.monotonic()
    # Sent while no worker may own the file yet: the survivor stores the approval and answers
    # once it has taken the file over and applied it.
    assert server.call("POST", f"/orders/{waiting}/approve", {"by": "erin"}).status_code == 200
    assert time.monotonic() - killed_at < TAKEOVER_BOUND
    # Until uvicorn's replacement for the dead worker has started, the survivor answers alone.
    took_over = server.workers(lambda answers: any(answers.values()))
    assert [pid for pid, owns in took_over.items() if owns] == [survivor]
    assert server.until(waiting, "completed")["output"].endswith("approved by erin")
    late = server.call("POST", "/orders", {"item": "chair", "quantity": 4}).json()["id"]
    assert server.call("POST", f"/orders/{late}/approve", {"by": "erin"}).status_code == 200
    assert server.until(late, "completed")["output"].endswith("approved by erin")

    # uvicorn restarted the dead worker: two workers again, exactly one owning the file.
    workers = server.workers(lambda answers: survivor in answers and len(answers) == 2)
    assert sorted(workers.values()) == [False, True]
