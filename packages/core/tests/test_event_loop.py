"""The commander on the event loop: where it refuses to run, and what a cancelled asyncio task does.

These tests choose their loop themselves (``asyncio.run``, ``anyio.run``, trio's pytest plugin),
because which loop a call comes from is what they are about.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import anyio
import pytest
import trio

from mission_control.core import (
    Context,
    EventLoopError,
    MissionStatus,
    NodeStatus,
    m,
)
from mission_control.in_memory_commander import (
    InMemoryPersistenceAdapter,
    create_in_memory_commander,
)


def identity(value: Any) -> Any:
    return value


async def done(ctx: Context[Any, Any]) -> str:
    return "done"


flow = m.define("flow").start(parse=identity).step("work", done).end()


def test_a_call_outside_any_event_loop_raises_event_loop_error_and_stores_nothing() -> None:
    """Driving ``start`` with no event loop running raises EventLoopError saying what to do, and
    stores nothing."""
    commander = create_in_memory_commander([flow])
    call = commander.start(flow, {}, id="m-1")
    with pytest.raises(EventLoopError, match="trio or asyncio event loop") as raised:
        call.send(None)
    assert "start_blocking_client" in str(raised.value)

    async def stored() -> list[str]:
        return [snapshot.id for snapshot in await commander.list()]

    assert anyio.run(stored) == []


@pytest.mark.trio
async def test_a_call_from_another_threads_loop_raises_and_stores_nothing() -> None:
    """While one loop uses a commander, a call from a loop in another thread raises
    EventLoopError and stores nothing."""
    commander = create_in_memory_commander([flow])
    assert await commander.list() == []

    def from_a_worker_thread() -> object:
        return asyncio.run(commander.start(flow, {}, id="m-1"))

    with pytest.raises(EventLoopError, match="another loop"):
        await trio.to_thread.run_sync(from_a_worker_thread)
    assert await commander.list() == []


@pytest.mark.trio
async def test_commanders_sharing_a_store_serve_one_loop() -> None:
    """A store's missions belong to one loop: a second commander on the same adapter object,
    called from another thread's loop, is refused as the first would be."""
    persistence = InMemoryPersistenceAdapter()
    first = create_in_memory_commander([flow], persistence=persistence)
    second = create_in_memory_commander([flow], persistence=persistence)
    assert await first.list() == []

    def from_a_worker_thread() -> object:
        return asyncio.run(second.start(flow, {}, id="m-1"))

    with pytest.raises(EventLoopError, match="another loop"):
        await trio.to_thread.run_sync(from_a_worker_thread)
    assert await first.list() == []


def test_a_commander_serves_the_next_loop_once_the_first_has_ended() -> None:
    """A script may run one loop after another (asyncio, then trio) with the same commander."""
    commander = create_in_memory_commander([flow])

    async def start() -> MissionStatus:
        return (await (await commander.start(flow, {}, id="m-1")).inspect()).status

    async def status() -> MissionStatus:
        return (await commander.inspect("m-1")).status

    assert asyncio.run(start()) is MissionStatus.COMPLETED
    assert anyio.run(status, backend="trio") is MissionStatus.COMPLETED


def test_a_step_awaits_asyncio_only_code_on_an_asyncio_loop() -> None:
    """On asyncio a step runs on the application's loop: it may use asyncio streams, also under
    a step timeout."""

    async def ask_server(ctx: Context[Any, Any]) -> str:
        reader, writer = await asyncio.open_connection("127.0.0.1", ctx.input["port"])
        writer.write(b"ping\n")
        await writer.drain()
        answer = await reader.readline()
        writer.close()
        await writer.wait_closed()
        return answer.decode().strip()

    asking = (
        m.define("asking")
        .start(parse=identity)
        .step("ask", ask_server, timeout=timedelta(minutes=1))
        .end()
    )

    async def main() -> Any:
        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readline()
            writer.write(b"pong\n")
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(answer, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            commander = create_in_memory_commander([asking])
            return await (await commander.start(asking, {"port": port})).inspect()

    snapshot = asyncio.run(main())
    assert snapshot.status is MissionStatus.COMPLETED
    assert snapshot.nodes["ask"].output == "pong"


def test_an_asyncio_task_cancelled_in_a_step_leaves_the_step_unblamed() -> None:
    """``Task.cancel()`` while a step runs (a server shutting down) propagates as cancellation:
    the mission stays running for a runtime to resume, and the step records no failure."""
    entered = asyncio.Event()

    async def hangs(ctx: Context[Any, Any]) -> None:
        entered.set()
        await asyncio.Event().wait()

    hanging = m.define("hanging").start(parse=identity).step("hang", hangs).end()
    commander = create_in_memory_commander([hanging])

    async def main() -> Any:
        task = asyncio.create_task(commander.start(hanging, {}, id="m-1"))
        await entered.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return await commander.inspect("m-1")

    snapshot = asyncio.run(main())
    assert snapshot.status is MissionStatus.RUNNING
    assert snapshot.error is None
    record = snapshot.nodes.get("hang")
    assert record is None or record.status is not NodeStatus.FAILED


def test_a_step_raising_cancelled_error_itself_fails_like_any_error() -> None:
    """A CancelledError a step raises while nothing cancels its task is the step's failure: the
    exception's type alone proves no cancellation."""

    async def raises_it(ctx: Context[Any, Any]) -> None:
        raise asyncio.CancelledError("made up")

    raising = m.define("raising").start(parse=identity).step("raise", raises_it).end()
    commander = create_in_memory_commander([raising])

    async def main() -> Any:
        return await (await commander.start(raising, {})).inspect()

    snapshot = asyncio.run(main())
    assert snapshot.status is MissionStatus.FAILED
    assert snapshot.error is not None
    assert snapshot.error.type == "CancelledError"


@pytest.mark.parametrize("backend", ["trio", "asyncio"])
def test_a_process_stop_raised_in_a_parallel_branch_reaches_the_caller_once(backend: str) -> None:
    """A SystemExit a branch's step raises reaches the caller of ``start`` as itself, and the
    loop does not raise it a second time once the caller has handled it."""

    async def exits(ctx: Context[Any, Any]) -> None:
        raise SystemExit(3)

    async def waits(ctx: Context[Any, Any]) -> None:
        await anyio.sleep_forever()

    both = (
        m.define("both")
        .start(parse=identity)
        .parallel(
            "branches",
            {"exit": lambda b: b.step("exit", exits), "wait": lambda b: b.step("wait", waits)},
        )
        .end()
    )
    commander = create_in_memory_commander([both])

    async def main() -> int:
        try:
            await commander.start(both, {}, id="m-1")
        except SystemExit as stop:
            return int(str(stop))
        return 0

    assert anyio.run(main, backend=backend) == 3


def test_an_idle_asyncio_loop_keeps_its_commander_until_it_is_closed() -> None:
    """A loop driven by ``run_until_complete`` now and then still owns the commander between
    runs; once it is closed, another loop may take the commander over."""
    commander = create_in_memory_commander([flow])
    first = asyncio.new_event_loop()
    try:
        first.run_until_complete(commander.list())
        with pytest.raises(EventLoopError, match="another loop"):
            asyncio.run(commander.start(flow, {}, id="m-1"))
    finally:
        first.close()

    async def start() -> MissionStatus:
        return (await (await commander.start(flow, {}, id="m-1")).inspect()).status

    assert asyncio.run(start()) is MissionStatus.COMPLETED
