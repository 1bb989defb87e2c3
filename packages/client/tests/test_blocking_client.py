"""The blocking client: synchronous code starts, signals, inspects and waits for missions run by a
commander and runtime on an event loop in a thread the client owns, on a real SQLite file."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio.to_thread
import pytest

from mission_control.adapter_sqlite import SQLiteCommander
from mission_control.client import (
    BlockingMissionClient,
    BlockingMissionHandle,
    ClientClosedError,
    start_blocking_client,
)
from mission_control.core import (
    ConfigurationError,
    Context,
    Cron,
    EventLoopError,
    InvalidInputError,
    InvalidSignalPayloadError,
    MissionCancelledError,
    MissionFailedError,
    MissionNotFoundError,
    MissionNotRetryableError,
    MissionStatus,
    TimelineKind,
    UnknownSignalError,
    m,
)
from mission_control.testing import LoopClock, virtual_time_backend

# Real seconds a test thread waits for another before the test fails (never reached when green).
BOUND = 30.0


def reviewer(raw: Any) -> str:
    if not isinstance(raw, str) or not raw:
        raise ValueError("an approval is the reviewer's name")
    return raw


APPROVAL = (
    m.define("approval")
    .start(parse=dict)
    .need_to("approve", parse=reviewer)
    .end(lambda ctx: {"approved_by": ctx.events["approve"].output})
)


async def refuse(ctx: Context[Any, Any]) -> None:
    raise ConnectionError("upstream down")


DOOMED = m.define("doomed").start(parse=dict).step("call", refuse).end()
TRIAL = m.define("trial").start(parse=dict).sleep("trial-period", timedelta(days=30)).end()


class Gate:
    """A step that waits until the test thread opens the gate, without blocking the loop."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.opened = threading.Event()

    async def step(self, ctx: Context[Any, Any]) -> str:
        self.entered.set()
        await anyio.to_thread.run_sync(self.opened.wait, BOUND)
        return "through"


GATE = Gate()
GATED = m.define("gated").start(parse=dict).step("gate", GATE.step).end()

PINGED = m.define("pinged").start(parse=dict).triggered_by("ping").end()


def stop_the_process(ctx: Context[Any, Any]) -> None:
    raise SystemExit(3)


STOPPING = m.define("stopping").start(parse=dict).step("stop", stop_the_process).end()

CALLERS: list[BlockingMissionClient] = []


async def call_back(ctx: Context[Any, Any]) -> None:
    CALLERS[-1].inspect(ctx.mission_id)


CALLS_BACK = m.define("calls-back").start(parse=dict).step("call-back", call_back).end()


async def close_back(ctx: Context[Any, Any]) -> None:
    await anyio.to_thread.run_sync(CALLERS[-1].close)


CLOSES = m.define("closes").start(parse=dict).step("close", close_back).end()

DEFINITIONS = [APPROVAL, DOOMED, TRIAL, GATED, CALLS_BACK, STOPPING, CLOSES, PINGED]

OpenClient = Callable[..., BlockingMissionClient]


@pytest.fixture(params=["trio", "asyncio"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(autouse=True)
def fresh_gate() -> Iterator[None]:
    GATE.__init__()
    yield
    GATE.opened.set()  # a failed test must not leave a step waiting
    CALLERS.clear()


@pytest.fixture
def database(tmp_path: Path) -> Path:
    return tmp_path / "missions.sqlite"


@pytest.fixture
def open_client(database: Path, backend: str) -> Iterator[OpenClient]:
    """Start blocking clients on the SQLite file; each is closed at the end of the test."""
    clients: list[BlockingMissionClient] = []

    def open_one(**options: Any) -> BlockingMissionClient:
        client = start_blocking_client(
            lambda: SQLiteCommander(database, DEFINITIONS), backend=backend, **options
        )
        clients.append(client)
        return client

    yield open_one
    for client in clients:
        client.close()


@pytest.fixture
def virtual_client(database: Path, backend: str) -> Iterator[BlockingMissionClient]:
    """A blocking client whose loop runs in virtual time: timers fire at once."""
    name, options = virtual_time_backend(backend)
    client = start_blocking_client(
        lambda: SQLiteCommander(database, DEFINITIONS, clock=LoopClock()),
        backend=name,
        backend_options=options,
    )
    with client:
        yield client


def run_script(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``script`` in a new interpreter with ``args``, bounded by BOUND."""
    return subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        timeout=BOUND,
        check=False,
    )


def loop_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "mission-control-client"]


def test_sync_code_starts_signals_and_waits(open_client: OpenClient) -> None:
    """A mission started from sync code waits for its signal, and the signal completes it."""
    client = open_client()

    handle = client.start(APPROVAL, {}, id="a-1")
    assert isinstance(handle, BlockingMissionHandle)
    assert handle.inspect().status is MissionStatus.WAITING
    after = handle.signal("approve", "reviewer-1")
    snapshot = handle.wait_for_completion()

    assert after.status is MissionStatus.COMPLETED
    assert snapshot.output == {"approved_by": "reviewer-1"}
    assert handle.result() == snapshot
    assert handle.timeline()[0].kind is TimelineKind.MISSION_STARTED


def test_sync_code_pauses_and_resumes(open_client: OpenClient) -> None:
    """A mission paused from sync code keeps the signal sent meanwhile, and resuming it takes
    the signal and completes it; a second client (a submitter) pauses and resumes through the
    first."""
    client = open_client()
    handle = client.start(APPROVAL, {}, id="a-1")

    paused = handle.pause("holiday")
    buffered = handle.signal("approve", "reviewer-1")
    done = handle.resume()

    assert paused.status is MissionStatus.PAUSED
    assert paused.pause is not None
    assert paused.pause.reason == "holiday"
    assert buffered.status is MissionStatus.PAUSED
    assert done.status is MissionStatus.COMPLETED
    assert done.output == {"approved_by": "reviewer-1"}
    submitter = open_client()
    assert not submitter.is_owner
    client.start(APPROVAL, {}, id="a-2")
    assert submitter.pause("a-2").status is MissionStatus.PAUSED
    assert [s.id for s in client.list(status=MissionStatus.PAUSED)] == ["a-2"]
    assert submitter.resume("a-2").status is MissionStatus.WAITING


def test_signal_with_start_from_sync_code_starts_once_then_signals(
    open_client: OpenClient,
) -> None:
    """signal_with_start from sync code starts a missing mission with the signal, which
    completes it; on a mission that exists it signals it; a refused payload stores nothing."""
    client = open_client()

    done = client.signal_with_start(
        APPROVAL, {}, mission_id="a-1", signal="approve", payload="reviewer-1"
    )
    client.start(APPROVAL, {}, id="a-2")
    with pytest.raises(InvalidSignalPayloadError):
        client.signal_with_start(APPROVAL, {}, mission_id="a-3", signal="approve", payload=7)
    signalled = client.signal_with_start(
        APPROVAL, {}, mission_id="a-2", signal="approve", payload="reviewer-2"
    )

    assert done.status is MissionStatus.COMPLETED
    assert done.output == {"approved_by": "reviewer-1"}
    assert signalled.output == {"approved_by": "reviewer-2"}
    assert [s.id for s in client.list()] == ["a-1", "a-2"]


def test_reads_go_through_the_client(open_client: OpenClient) -> None:
    """get, inspect, list, iter_missions and timeline read the commander's missions."""
    client = open_client()
    first = client.start(APPROVAL, {}, id="a-1")
    client.start(APPROVAL, {}, id="a-2")
    client.signal("a-2", "approve", "reviewer-2")

    assert client.get("a-1") == first
    assert client.inspect("a-1").status is MissionStatus.WAITING
    assert [s.id for s in client.list()] == ["a-1", "a-2"]
    assert [s.id for s in client.list(status=MissionStatus.COMPLETED)] == ["a-2"]
    assert [s.id for s in client.iter_missions(page_size=1)] == ["a-1", "a-2"]
    assert [s.id for s in client.iter_missions(definition=APPROVAL, after="a-1")] == ["a-2"]
    assert client.timeline("a-1") == first.timeline()
    assert set(client.definitions) == {definition.name for definition in DEFINITIONS}


def test_sync_code_works_within_a_tenant(open_client: OpenClient) -> None:
    """From sync code a mission started for a tenant is found, signalled and awaited through
    its handle and by naming the tenant, and not found from another tenant or none."""
    client = open_client()
    handle = client.start(APPROVAL, {"for": "acme"}, id="a-1", tenant="acme")
    client.start(APPROVAL, {"for": "none"}, id="a-1")

    assert (handle.id, handle.tenant) == ("a-1", "acme")
    assert client.get("a-1", tenant="acme") == handle
    with pytest.raises(MissionNotFoundError):
        client.signal("a-1", "approve", "reviewer-1", tenant="beta")
    after = handle.signal("approve", "reviewer-1")
    assert (after.id, after.tenant, after.status) == ("a-1", "acme", MissionStatus.COMPLETED)
    assert client.result("a-1", tenant="acme") == handle.wait_for_completion()
    assert client.inspect("a-1").input == {"for": "none"}
    assert [s.tenant for s in client.list(tenant="acme")] == ["acme"]
    assert client.timeline("a-1", tenant="acme")[-1].kind is TimelineKind.MISSION_COMPLETED


def test_triggers_and_schedules_from_sync_code(open_client: OpenClient) -> None:
    """Sync code fires, reads and replays triggers, and creates, changes, pauses, resumes,
    reads and deletes schedules, through the client's loop."""
    client = open_client()

    fire = client.fire_trigger("ping", {"n": 1}, id="p-1")
    replay = client.replay_trigger("p-1", id="p-2")
    assert client.inspect("p-1:pinged").status is MissionStatus.COMPLETED
    assert replay.replay_of == "p-1"
    assert client.get_trigger("p-1") == fire
    assert client.list_triggers(name="ping") == [fire, replay]

    created = client.create_schedule("daily", TRIAL, Cron("0 6 * * *"), {}, missed="once")
    assert client.update_schedule("daily", input={"x": 1}).input == {"x": 1}
    assert client.pause_schedule("daily").paused
    assert not client.resume_schedule("daily").paused
    assert client.get_schedule("daily").revision == created.revision + 3
    assert [s.id for s in client.list_schedules()] == ["daily"]
    assert client.delete_schedule("daily")
    assert client.list_schedules() == []


def test_a_background_start_returns_while_the_runtime_runs_the_mission(
    open_client: OpenClient,
) -> None:
    """start(background=True) returns before the mission's step has finished, and the runtime
    runs the step on its loop without any tick asked for."""
    client = open_client()

    handle = client.start(GATED, {}, background=True)

    assert handle.inspect().status is not MissionStatus.COMPLETED
    assert GATE.entered.wait(BOUND)
    GATE.opened.set()
    assert handle.wait_for_completion().nodes["gate"].output == "through"
    kinds = [entry.kind for entry in handle.timeline()]
    assert kinds[:2] == [TimelineKind.MISSION_SCHEDULED, TimelineKind.MISSION_STARTED]


def test_errors_raised_on_the_loop_reach_the_caller_unchanged(open_client: OpenClient) -> None:
    """Refused inputs, unknown missions and signals, failures and cancellations raise the
    library's own exceptions in the calling thread; a refused input stores nothing."""
    client = open_client()

    with pytest.raises(InvalidInputError):
        client.start(APPROVAL, "not a dict", id="bad")
    assert client.list() == []
    with pytest.raises(MissionNotFoundError):
        client.inspect("nobody")
    handle = client.start(APPROVAL, {})
    with pytest.raises(UnknownSignalError):
        handle.signal("reject")
    doomed = client.start(DOOMED, {})
    with pytest.raises(MissionFailedError, match="upstream down") as failed:
        doomed.wait_for_completion()
    assert failed.value.snapshot.status is MissionStatus.FAILED
    handle.cancel("withdrawn")
    with pytest.raises(MissionCancelledError, match="withdrawn"):
        handle.wait_for_completion()


def test_several_threads_call_at_once(open_client: OpenClient) -> None:
    """Twenty threads each start, signal and wait for a mission of their own at the same time,
    while five more wait for one mission another thread signals."""
    client = open_client()
    shared = client.start(APPROVAL, {}, id="shared")

    def one(n: int) -> Any:
        handle = client.start(APPROVAL, {}, id=f"a-{n:02}")
        handle.signal("approve", f"reviewer-{n}")
        return handle.wait_for_completion().output

    with ThreadPoolExecutor(max_workers=26) as pool:
        waiting = [pool.submit(shared.wait_for_completion) for _ in range(5)]
        outputs = list(pool.map(one, range(20)))
        pool.submit(shared.signal, "approve", "everyone").result(BOUND)
        finals = [future.result(BOUND) for future in waiting]

    assert outputs == [{"approved_by": f"reviewer-{n}"} for n in range(20)]
    assert {snapshot.output["approved_by"] for snapshot in finals} == {"everyone"}
    assert len(client.list()) == 21


def test_timers_fire_in_virtual_time(virtual_client: BlockingMissionClient) -> None:
    """A 30-day timer fires under the client's runtime while sync code waits, on a virtual
    clock."""
    handle = virtual_client.start(TRIAL, {})

    snapshot = handle.wait_for_completion()

    assert snapshot.status is MissionStatus.COMPLETED
    assert snapshot.updated_at - snapshot.created_at == timedelta(days=30)


def test_a_wait_gives_up_after_its_timeout(virtual_client: BlockingMissionClient) -> None:
    """wait_for_completion and result raise TimeoutError after timeout seconds; the mission
    goes on and completes when signalled."""
    handle = virtual_client.start(APPROVAL, {})

    with pytest.raises(TimeoutError):
        handle.wait_for_completion(timeout=3600)
    with pytest.raises(TimeoutError):
        virtual_client.result(handle.id, timeout=60)
    handle.signal("approve", "late")

    assert handle.wait_for_completion(timeout=3600).status is MissionStatus.COMPLETED


def test_close_stops_everything_and_is_safe_twice(open_client: OpenClient) -> None:
    """close() joins the loop's thread and releases the store (another client opens the file),
    can be called again, and later calls raise ClientClosedError."""
    client = open_client()
    handle = client.start(APPROVAL, {}, id="a-1")

    client.close()
    client.close()

    assert client.closed
    assert loop_threads() == []
    with pytest.raises(ClientClosedError):
        client.inspect("a-1")
    with pytest.raises(ClientClosedError):
        handle.signal("approve", "too-late")
    with open_client() as again:
        assert again.inspect("a-1").status is MissionStatus.WAITING


def test_close_ends_waits_and_lets_a_running_call_finish(open_client: OpenClient) -> None:
    """Closing while one thread waits for a mission and another is inside a start's step: the
    wait raises ClientClosedError, the start finishes and its mission is stored completed."""
    client = open_client()
    waited = client.start(APPROVAL, {})

    with ThreadPoolExecutor(max_workers=3) as pool:
        waiting = pool.submit(waited.wait_for_completion)
        starting = pool.submit(client.start, GATED, {}, id="g-1")
        assert GATE.entered.wait(BOUND)
        closing = pool.submit(client.close)
        with pytest.raises(ClientClosedError, match="closed while this call waited"):
            waiting.result(BOUND)
        GATE.opened.set()
        assert starting.result(BOUND).id == "g-1"
        closing.result(BOUND)

    assert loop_threads() == []
    with open_client() as again:
        assert again.inspect("g-1").status is MissionStatus.COMPLETED


def test_calls_from_the_clients_own_loop_are_refused(open_client: OpenClient) -> None:
    """A step that calls the blocking client fails with EventLoopError instead of deadlocking
    the loop it runs on."""
    client = open_client()
    CALLERS.append(client)

    handle = client.start(CALLS_BACK, {})

    with pytest.raises(MissionFailedError, match="its own event loop") as failed:
        handle.wait_for_completion()
    error = failed.value.snapshot.error
    assert error is not None
    assert error.type == EventLoopError.__name__


def test_a_step_that_stops_the_process_raises_in_the_callers_thread(
    open_client: OpenClient,
) -> None:
    """SystemExit raised by a step reaches the calling thread as itself; the client's loop keeps
    serving, and the mission stays stored running (the next start-up resumes it)."""
    client = open_client()

    with pytest.raises(SystemExit):
        client.start(STOPPING, {}, id="s-1")

    assert client.inspect("s-1").status is MissionStatus.RUNNING
    client.close()
    assert loop_threads() == []


def test_an_async_factory_is_awaited_on_the_loop(database: Path, backend: str) -> None:
    """The factory may be an async function; it runs on the client's loop."""
    made_in: list[str] = []

    async def make() -> SQLiteCommander:
        made_in.append(threading.current_thread().name)
        return SQLiteCommander(database, [APPROVAL])

    with start_blocking_client(make, backend=backend) as client:
        client.start(APPROVAL, {}, id="a-1")

    assert made_in == ["mission-control-client"]


def test_a_failing_factory_raises_to_the_caller_and_stops_the_thread(database: Path) -> None:
    """An error making the commander is raised by start_blocking_client itself, unchanged, and
    leaves no thread behind; so is a factory that returns something else than a commander."""

    def broken() -> SQLiteCommander:
        raise PermissionError("no access to the database")

    with pytest.raises(PermissionError, match="no access"):
        start_blocking_client(broken)
    with pytest.raises(TypeError, match="create_commander"):
        start_blocking_client(lambda: "a commander")  # type: ignore[arg-type, return-value]
    assert loop_threads() == []


def test_unknown_backends_and_factories_are_refused() -> None:
    """backend is 'trio' or 'asyncio', and the factory is callable."""
    with pytest.raises(ConfigurationError, match="backend"):
        start_blocking_client(lambda: SQLiteCommander("x", []), backend="curio")
    with pytest.raises(ConfigurationError, match="factory"):
        start_blocking_client("missions.sqlite")  # type: ignore[arg-type]


# A script that leaves its client open: the interpreter closes it on exit instead of hanging.
LEFT_OPEN = textwrap.dedent(
    """
    import sys

    from mission_control.adapter_sqlite import SQLiteCommander
    from mission_control.client import start_blocking_client
    from mission_control.core import m

    flow = m.define("flow").start(parse=dict).need_to("go", parse=dict).end()
    path, backend = sys.argv[1:]
    client = start_blocking_client(lambda: SQLiteCommander(path, [flow]), backend=backend)
    client.start(flow, {}, id="left-open")
    print("started")
    """
)


def test_a_client_left_open_is_closed_when_the_interpreter_exits(
    database: Path, backend: str
) -> None:
    """A script that never closes its client exits normally, and the store it leaves opens."""
    done = run_script(LEFT_OPEN, str(database), backend)

    assert done.returncode == 0, done.stderr
    assert done.stdout == "started\n"
    # The script's definition again: its mission waits on it.
    flow = m.define("flow").start(parse=dict).need_to("go", parse=dict).end()
    with start_blocking_client(lambda: SQLiteCommander(database, [flow])) as client:
        assert client.inspect("left-open").status is MissionStatus.WAITING


# A script that forks after starting its client, as a pre-forking server does.
FORKED = textwrap.dedent(
    """
    import os
    import sys

    from mission_control.adapter_sqlite import SQLiteCommander
    from mission_control.client import ClientClosedError, start_blocking_client
    from mission_control.core import m

    flow = m.define("flow").start(parse=dict).need_to("go", parse=dict).end()
    client = start_blocking_client(lambda: SQLiteCommander(sys.argv[1], [flow]))
    client.start(flow, {}, id="before-fork")
    child = os.fork()
    if child == 0:
        try:
            client.inspect("before-fork")
        except ClientClosedError as error:
            print(f"child refused: {error}", flush=True)
        sys.exit(0)  # runs atexit: closing the forked copy must not hang
    _, status = os.waitpid(child, 0)
    print(f"child exited {os.waitstatus_to_exitcode(status)}")
    print(f"parent reads {client.inspect('before-fork').status.value}")
    client.close()
    """
)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_client_used_after_a_fork_says_to_start_one_per_process(database: Path) -> None:
    """In a process forked after the client started, calls raise ClientClosedError naming the
    fix, and exiting that process does not hang; the parent's client still works."""
    done = run_script(FORKED, str(database))

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("child refused: this blocking client was started in process")
    assert "post_fork" in lines[0]
    assert lines[1:] == ["child exited 0", "parent reads waiting"]


# A pre-forking server's worker: the client is a function's local, the fork's child returns from
# that function (dropping its copy of the client) and exits normally.
FORKED_LOCAL = textwrap.dedent(
    """
    import os
    import sys

    from mission_control.adapter_sqlite import SQLiteCommander
    from mission_control.client import start_blocking_client
    from mission_control.core import m

    flow = m.define("flow").start(parse=dict).need_to("go", parse=dict).end()

    def serve(path, backend):
        client = start_blocking_client(lambda: SQLiteCommander(path, [flow]), backend=backend)
        client.start(flow, {}, id="before-fork")
        child = os.fork()
        if child:
            _, status = os.waitpid(child, 0)
            print(f"child exited {os.waitstatus_to_exitcode(status)}")
            client.close()

    serve(*sys.argv[1:])
    """
)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_child_forked_with_a_local_client_exits_normally(database: Path, backend: str) -> None:
    """A child forked after a function started its client, which drops the client and exits
    normally, exits at once instead of waiting for the parent's loop thread."""
    done = run_script(FORKED_LOCAL, str(database), backend)

    assert done.returncode == 0, done.stderr
    assert done.stdout == "child exited 0\n"


def test_a_background_step_that_stops_the_process_closes_the_client(
    open_client: OpenClient,
) -> None:
    """SystemExit raised by a step running in the background ends the client: the thread
    waiting then and later calls raise ClientClosedError caused by it, closed is true, and
    close() raises the SystemExit itself and joins the loop's thread."""
    client = open_client()
    waited = client.start(APPROVAL, {})

    with ThreadPoolExecutor(max_workers=1) as pool:
        waiting = pool.submit(waited.wait_for_completion)
        client.start(STOPPING, {}, background=True)
        with pytest.raises(ClientClosedError, match="SystemExit") as interrupted:
            waiting.result(BOUND)

    assert isinstance(interrupted.value.__cause__, SystemExit)
    assert client.closed
    with pytest.raises(ClientClosedError, match="SystemExit") as refused:
        client.inspect(waited.id)
    assert isinstance(refused.value.__cause__, SystemExit)
    with pytest.raises(SystemExit) as stopped:
        client.close()
    assert stopped.value.code == 3
    assert loop_threads() == []
    client.close()  # once


def test_a_step_closing_its_client_from_a_worker_thread_is_refused(
    open_client: OpenClient,
) -> None:
    """A step that closes its own client from a worker thread fails with EventLoopError
    instead of deadlocking (the close would wait for that step); the client goes on."""
    client = open_client()
    CALLERS.append(client)

    with pytest.raises(MissionFailedError, match="worker thread of its own event loop"):
        client.start(CLOSES, {}).wait_for_completion(timeout=BOUND)

    assert not client.closed
    assert client.start(APPROVAL, {}).inspect().status is MissionStatus.WAITING


# Ctrl-C while the client stops a step that never ends by itself: leaving `with` on the
# KeyboardInterrupt, inside close(), or while the factory is still making the commander. The
# client abandons the runtime (cancels the step) instead of draining it, and leaves no thread.
INTERRUPTED = textwrap.dedent(
    """
    import os
    import signal
    import sys
    import threading
    import time

    import anyio

    from mission_control.adapter_sqlite import SQLiteCommander
    from mission_control.client import start_blocking_client
    from mission_control.core import m

    path, backend, moment = sys.argv[1:]
    entered = threading.Event()

    async def stall(ctx):
        entered.set()
        await anyio.sleep_forever()

    stalled = m.define("stalled").start(parse=dict).step("stall", stall).end()

    def ctrl_c_once(ready):
        def send():
            ready()
            signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
        threading.Thread(target=send, daemon=True).start()

    async def make():
        if moment == "factory":
            entered.set()
            await anyio.sleep_forever()
        return SQLiteCommander(path, [stalled])

    try:
        if moment == "factory":
            ctrl_c_once(entered.wait)
            start_blocking_client(make, backend=backend)
        client = start_blocking_client(make, backend=backend)
        if moment == "with":
            with client:
                client.start(stalled, {}, id="s-1", background=True)
                entered.wait()
                raise KeyboardInterrupt
        client.start(stalled, {}, id="s-1", background=True)
        entered.wait()
        def closing():
            while not client.closed:  # Ctrl-C once close() has begun
                time.sleep(0.001)

        ctrl_c_once(closing)
        client.close()
    except KeyboardInterrupt:
        print("interrupted")
    print([t.name for t in threading.enumerate() if t.name == "mission-control-client"])
    """
)


@pytest.mark.parametrize("moment", ["with", "close", "factory"])
def test_ctrl_c_while_closing_abandons_the_runtime(
    database: Path, backend: str, moment: str
) -> None:
    """KeyboardInterrupt leaving `with`, in close() or while the factory runs cancels what runs
    on the loop (as the async runtime does when left on an error) instead of waiting for it,
    and leaves no loop thread behind."""
    done = run_script(INTERRUPTED, str(database), backend, moment)

    assert done.returncode == 0, done.stderr
    assert done.stdout == "interrupted\n[]\n"


# A program that leaves its client open while a thread of its own (not a daemon) waits on it.
WAITED_ON = textwrap.dedent(
    """
    import sys
    import threading

    from mission_control.adapter_sqlite import SQLiteCommander
    from mission_control.client import ClientClosedError, start_blocking_client
    from mission_control.core import m

    flow = m.define("flow").start(parse=dict).need_to("go", parse=dict).end()
    path, backend = sys.argv[1:]
    client = start_blocking_client(lambda: SQLiteCommander(path, [flow]), backend=backend)
    handle = client.start(flow, {})

    def notify_when_done():
        try:
            handle.wait_for_completion()
        except ClientClosedError:
            print("waiter: closed")

    threading.Thread(target=notify_when_done).start()
    """
)


def test_a_thread_waiting_on_a_client_left_open_does_not_keep_the_process_alive(
    database: Path, backend: str
) -> None:
    """At interpreter exit the client is closed before the program's threads are joined: a
    thread waiting on it gets ClientClosedError, and the process exits."""
    done = run_script(WAITED_ON, str(database), backend)

    assert done.returncode == 0, done.stderr
    assert done.stdout == "waiter: closed\n"


def test_a_second_blocking_client_submits_to_the_first_and_takes_over_when_it_closes(
    open_client: OpenClient,
) -> None:
    """Two blocking clients on one file: the second submits its starts, signals, retries and
    forks to the first (the owner), which runs them, and takes ownership once the first closes."""
    owner = open_client()
    submitter = open_client()
    assert owner.is_owner
    assert not submitter.is_owner

    handle = submitter.start(APPROVAL, {}, id="a1")
    with pytest.raises(InvalidSignalPayloadError, match="reviewer's name"):
        submitter.signal("a1", "approve", "")
    after = submitter.signal("a1", "approve", "ada")
    assert after.status is MissionStatus.COMPLETED
    assert handle.result(timeout=BOUND).output == {"approved_by": "ada"}
    pending = submitter.submit_start("approval", {}, id="a2")
    assert submitter.verdict(pending, timeout=BOUND).id == "a2"  # stored; a tick starts it
    owner.start(APPROVAL, {}, id="a3")
    owner.cancel("a3", "by mistake")
    assert submitter.retry("a3").current_node == "approve"
    with pytest.raises(MissionNotRetryableError, match="completed"):
        submitter.submit_retry("a1", from_node="approve")
    forked = submitter.fork("a1", at_node="approve", new_id="a1-fork")
    assert forked.inspect().forked_from == "a1"
    counted = submitter.purge(finished_before=datetime.now(UTC) + timedelta(days=1), dry_run=True)
    assert counted.matched == 1

    owner.close()
    deadline = time.monotonic() + BOUND
    while not submitter.is_owner:
        assert time.monotonic() < deadline, "the second client never took over"
        time.sleep(0.01)
    submitter.signal("a2", "approve", "bob")
    assert submitter.result("a2", timeout=BOUND).output == {"approved_by": "bob"}
