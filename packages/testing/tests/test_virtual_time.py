"""Virtual time on both backends: the asyncio loop of the testing package and trio's MockClock,
as the root conftest's ``anyio_backend`` gives them."""

from __future__ import annotations

import asyncio
import math
import threading
import time
import warnings
from collections.abc import Callable, Coroutine
from datetime import timedelta
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
import anyio.to_thread
import pytest

from mission_control.core import Context, MissionStatus, m
from mission_control.testing import (
    CommanderFactory,
    LoopClock,
    RuntimeFactory,
    VirtualTimeEventLoop,
    virtual_time_backend,
    virtual_time_loop,
    wait_all_tasks_blocked,
)

pytestmark = pytest.mark.anyio

SERVER_PAUSE = 5.0
"""Seconds the test server waits before it answers."""


async def _answer_slowly(stream: anyio.abc.SocketStream) -> None:
    async with stream:
        request = await stream.receive()
        await anyio.sleep(SERVER_PAUSE)
        await stream.send(b"pong " + request)


async def _port(listener: anyio.abc.SocketListener) -> int:
    return listener.extra(anyio.abc.SocketAttribute.local_port)


async def test_a_month_long_mission_whose_steps_use_a_real_socket_runs_in_under_a_second(
    make_commander: CommanderFactory, make_runtime: RuntimeFactory, mission_clock: LoopClock
) -> None:
    """A mission that asks a TCP server on 127.0.0.1 (which sleeps before answering), sleeps 30
    days, then retries a step twice an hour apart, each attempt asking the server again, ends
    with every wait taken in full in virtual time and under a second of real time."""
    async with (
        await anyio.create_tcp_listener(local_host="127.0.0.1") as listener,
        anyio.create_task_group() as server,
    ):
        server.start_soon(listener.serve, _answer_slowly)
        port = await _port(listener)

        async def ask(ctx: Context[Any, Any]) -> str:
            async with await anyio.connect_tcp("127.0.0.1", port) as stream:
                await stream.send(f"{ctx.node}#{ctx.attempt}".encode())
                return (await stream.receive()).decode()

        async def ask_then_fail_twice(ctx: Context[Any, Any]) -> str:
            answer = await ask(ctx)
            if ctx.attempt <= 2:
                raise ConnectionError(f"attempt {ctx.attempt}: the gateway is down")
            return answer

        month = (
            m.define("month")
            .start(parse=lambda raw: raw)
            .step("greet", ask)
            .sleep("trial", timedelta(days=30))
            .step("charge", ask_then_fail_twice, retry=m.retry(3, m.fixed(timedelta(hours=1))))
            .end(lambda ctx: [ctx.events["greet"].output, ctx.events["charge"].output])
        )
        commander = make_commander([month])
        await make_runtime(commander)
        began_real = time.perf_counter()
        began = mission_clock.now()

        handle = await commander.start(month, {})
        assert (await handle.inspect()).status is MissionStatus.WAITING
        done = await handle.wait_for_completion()

        took_real = time.perf_counter() - began_real
        server.cancel_scope.cancel()
    assert done.output == ["pong greet#1", "pong charge#3"]
    assert done.nodes["charge"].attempts == 3
    assert mission_clock.now() - began == timedelta(days=30, hours=2, seconds=4 * SERVER_PAUSE)
    assert took_real < 1.0


async def test_a_shorter_wait_inside_a_longer_deadline_ends_first() -> None:
    """Inside fail_after(10) a 3-second sleep ends at 3 seconds; a 10-second sleep inside
    fail_after(3) or move_on_after(3) is cut at 3 seconds, all in virtual time."""
    began = anyio.current_time()
    with anyio.fail_after(10):
        await anyio.sleep(3)
    assert anyio.current_time() - began == 3
    with pytest.raises(TimeoutError), anyio.fail_after(3):
        await anyio.sleep(10)
    assert anyio.current_time() - began == 6
    with anyio.move_on_after(3) as scope:
        await anyio.sleep(10)
    assert scope.cancelled_caught
    assert anyio.current_time() - began == 9


async def test_timers_years_away_fire_on_time() -> None:
    """Sleeps of a year and of ten years end when due, however far the clock has gone (where a
    nanosecond no longer changes the clock's value)."""
    for seconds in (365 * 24 * 3600.0, 3650 * 24 * 3600.0):
        began = anyio.current_time()
        with anyio.fail_after(seconds + 1):
            await anyio.sleep(seconds)
        assert seconds <= anyio.current_time() - began < seconds + 1e-6


async def test_ready_io_goes_before_a_pending_timer() -> None:
    """A reply a server sends at once arrives without the clock moving, although a task sleeps
    an hour meanwhile: time jumps only when nothing is ready."""

    async def answer_at_once(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            await stream.send(b"pong " + await stream.receive())

    async with (
        await anyio.create_tcp_listener(local_host="127.0.0.1") as listener,
        anyio.create_task_group() as tasks,
    ):
        tasks.start_soon(listener.serve, answer_at_once)
        tasks.start_soon(anyio.sleep, 3600)
        began = anyio.current_time()
        for n in range(20):
            async with await anyio.connect_tcp("127.0.0.1", await _port(listener)) as stream:
                await stream.send(b"%d" % n)
                assert await stream.receive() == b"pong %d" % n
        assert anyio.current_time() == began
        tasks.cancel_scope.cancel()


async def test_a_thread_wakes_the_loop_when_no_timer_is_pending() -> None:
    """With no timer pending the loop waits for a worker thread for real, and the clock does
    not move."""
    began = anyio.current_time()
    finished = await anyio.to_thread.run_sync(lambda: time.sleep(0.05) or "slept")
    assert finished == "slept"
    assert anyio.current_time() == began


async def test_waiting_for_the_other_tasks_to_block_moves_no_time() -> None:
    """wait_all_tasks_blocked returns once the other tasks wait, before a timer due in 0.01 s
    fires: the clock stands still."""
    release = anyio.Event()
    progress: list[str] = []

    async def busy_then_wait() -> None:
        for _ in range(5):
            await anyio.lowlevel.checkpoint()
        progress.append("waiting")
        await release.wait()
        progress.append("released")

    async def soon() -> None:
        await anyio.sleep(0.01)
        progress.append("timer")

    began = anyio.current_time()
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(busy_then_wait)
        tasks.start_soon(soon)
        await wait_all_tasks_blocked()
        assert progress == ["waiting"]
        assert anyio.current_time() == began
        release.set()
        await wait_all_tasks_blocked()
        assert progress == ["waiting", "released"]
    assert progress == ["waiting", "released", "timer"]
    assert anyio.current_time() - began == 0.01


async def test_a_parent_whose_children_just_finished_is_not_counted_as_blocked() -> None:
    """A task whose task group's children have just finished is not counted as blocked:
    wait_all_tasks_blocked returns only once it has gone on to its next wait."""
    progress: list[str] = []

    async def parent() -> None:
        for round in range(3):
            async with anyio.create_task_group() as children:
                for _ in range(2):
                    children.start_soon(anyio.lowlevel.checkpoint)
            progress.append(f"round {round}")
        await anyio.sleep_forever()

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(parent)
        await wait_all_tasks_blocked()
        assert progress == ["round 0", "round 1", "round 2"]
        tasks.cancel_scope.cancel()


@pytest.mark.parametrize("loop_factory", [asyncio.new_event_loop, virtual_time_loop])
def test_waiting_for_the_other_tasks_to_block_lets_bytes_sent_on_127_0_0_1_arrive(
    loop_factory: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    """On asyncio's own loop and on the virtual-time one, bytes a task has just written to a
    server on 127.0.0.1 reach the server's handler before wait_all_tasks_blocked returns."""

    async def main() -> list[bytes]:
        received: list[bytes] = []
        handlers: list[asyncio.Task[Any]] = []

        async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            handler = asyncio.current_task()
            assert handler is not None
            handlers.append(handler)
            received.append(await reader.read(100))
            await reader.read(100)  # until the client closes
            writer.close()
            await writer.wait_closed()

        server = await asyncio.start_server(record, "127.0.0.1", 0)
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", server.sockets[0].getsockname()[1]
        )
        await wait_all_tasks_blocked()

        async def ask() -> None:
            writer.write(b"ping")
            await reader.read(100)

        asker = asyncio.create_task(ask())
        await wait_all_tasks_blocked()
        seen = list(received)
        asker.cancel()
        writer.close()
        await writer.wait_closed()
        await asyncio.gather(asker, *handlers, return_exceptions=True)
        server.close()
        await server.wait_closed()
        return seen

    for _ in range(5):
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            assert runner.run(main()) == [b"ping"]


def _run_with_watchdog(
    loop: asyncio.AbstractEventLoop, main: Callable[[], Coroutine[Any, Any, list[float]]]
) -> list[float]:
    # A loop that spins never returns by itself: a thread stops it after ten seconds so that
    # the test fails instead of hanging. It only wakes the loop if the test fails.
    with asyncio.Runner(loop_factory=lambda: loop) as runner:
        watchdog = threading.Timer(10, loop.call_soon_threadsafe, (loop.stop,))
        watchdog.start()
        try:
            return runner.run(main())
        finally:
            watchdog.cancel()
            watchdog.join()


YEAR = 365 * 24 * 3600.0


@pytest.mark.parametrize("start", [0.0, 200 * 24 * 3600.0, 10 * YEAR, 1000 * YEAR])
def test_timers_due_now_fire_however_far_virtual_time_has_gone(start: float) -> None:
    """Years into virtual time (where a nanosecond no longer changes the clock's value), a
    timer due now (call_later(0), call_at(now), a zero timeout) and a nanosecond sleep fire
    at once, and the clock moves by a few steps of its float at most."""
    loop = VirtualTimeEventLoop(start=start)

    async def main() -> list[float]:
        await asyncio.sleep(YEAR)
        began = loop.time()
        fired = asyncio.Event()
        loop.call_later(0, fired.set)
        await fired.wait()
        fired.clear()
        loop.call_at(loop.time(), fired.set)
        await fired.wait()
        fired.clear()
        loop.call_at(math.nextafter(loop.time(), math.inf), fired.set)
        loop.call_at(loop.time(), lambda: None)
        await fired.wait()
        await asyncio.sleep(0)
        await asyncio.sleep(1e-9)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0):
                await asyncio.sleep(YEAR)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.sleep(YEAR), 0)
        return [began, loop.time()]

    began, ended = _run_with_watchdog(loop, main)
    assert began >= start + YEAR
    assert 0 <= ended - began <= max(1e-6, 4 * math.ulp(ended))


def test_asyncio_timeouts_run_in_virtual_time_on_the_loop() -> None:
    """On the virtual-time loop (through asyncio's own Runner), asyncio.timeout lets a shorter
    sleep finish first and cuts a longer one at its deadline; a week passes at once."""

    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, VirtualTimeEventLoop)
        seen: list[float] = []
        async with asyncio.timeout(10):
            await asyncio.sleep(3)
        seen.append(loop.time())
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(3):
                await asyncio.sleep(10)
        seen.append(loop.time())
        await asyncio.sleep(7 * 24 * 3600)
        seen.append(loop.time())
        return seen

    began = time.perf_counter()
    with asyncio.Runner(loop_factory=virtual_time_loop) as runner:
        assert runner.run(main()) == [3, 6, 6 + 7 * 24 * 3600]
    assert time.perf_counter() - began < 1.0


def test_closing_the_loop_waits_for_its_executor_threads_without_a_deadline() -> None:
    """Closing a Runner on the virtual-time loop waits for the default executor's threads
    without its 300-second deadline passing at once in virtual time (no warning)."""

    async def main() -> str:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, lambda: time.sleep(0.01) or "done")

    loop = virtual_time_loop()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with asyncio.Runner(loop_factory=lambda: loop) as runner:
            assert runner.run(main()) == "done"
    assert loop.time() == 0


def test_a_thread_calling_into_the_loop_wakes_it() -> None:
    """call_soon_threadsafe from another thread wakes a loop that waits with no timer."""

    async def main() -> str:
        loop = asyncio.get_running_loop()
        woken: asyncio.Future[str] = loop.create_future()
        thread = threading.Thread(
            target=lambda: (time.sleep(0.05), loop.call_soon_threadsafe(woken.set_result, "hi"))
        )
        thread.start()
        try:
            return await woken
        finally:
            thread.join()

    with asyncio.Runner(loop_factory=virtual_time_loop) as runner:
        assert runner.run(main()) == "hi"
        assert runner.get_loop().time() == 0


@pytest.mark.parametrize("backend", ["trio", "asyncio"])
def test_with_a_threshold_virtual_time_stands_while_a_thread_works(backend: str) -> None:
    """With an autojump threshold, virtual time stands still while the test waits on real work
    in a worker thread (a watchdog's deadline does not pass meanwhile) and still jumps over a
    long timer; without one, it jumps to the watchdog's deadline during the thread's work."""

    async def call_under_watchdog() -> tuple[float, float]:
        began = anyio.current_time()
        with anyio.move_on_after(60):
            await anyio.to_thread.run_sync(time.sleep, 0.05)
        during = anyio.current_time() - began
        await anyio.sleep(3600)
        return during, anyio.current_time() - began - during

    def run(threshold: float) -> tuple[float, float]:
        name, options = virtual_time_backend(backend, autojump_threshold=threshold)
        return anyio.run(call_under_watchdog, backend=name, backend_options=options)

    during, slept = run(0.5)
    assert during < 1
    assert slept == pytest.approx(3600)
    during, _ = run(0.0)
    assert during == pytest.approx(60)


def test_with_a_threshold_a_timer_months_away_costs_one_threshold_of_real_time() -> None:
    """On asyncio, which waits for a timer at most a day at a time, a 200-day sleep on a loop
    with an autojump threshold waits the threshold once, not once a day (200 thresholds)."""

    async def sleep_long() -> float:
        began = anyio.current_time()
        await anyio.sleep(200 * 86400)
        return anyio.current_time() - began

    name, options = virtual_time_backend("asyncio", autojump_threshold=0.1)
    began = time.monotonic()
    slept = anyio.run(sleep_long, backend=name, backend_options=options)
    assert slept == pytest.approx(200 * 86400)
    assert time.monotonic() - began < 5  # 20 seconds when each day waited the threshold
