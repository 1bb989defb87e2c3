"""The owner's wake-up socket: datagrams from other processes wake the owner's wait, one wait
drains them all, long paths work, a dead owner's socket file is replaced, and a sender never
raises."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import anyio
import anyio.to_thread
import pytest

from mission_control.adapter_sqlite._wake import WakeReceiver, WakeSender, _address, wake_path
from mission_control.testing import wait_all_tasks_blocked

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="needs Unix sockets"),
]

DEADLINE = 60  # seconds; a watchdog for a hung child, never a wait the tests rely on
NO_WAKE = 0.2  # seconds a wait is given to prove it does not return (virtual time: at once)

SEND = """
import sys
from mission_control.adapter_sqlite._wake import WakeSender
print(WakeSender(sys.argv[1]).send())
"""

BIND_AND_HANG = """
import sys, time
from mission_control.adapter_sqlite._wake import WakeReceiver
receiver = WakeReceiver.bind(sys.argv[1])
print("bound", flush=True)
time.sleep(3600)
"""


@pytest.fixture(params=["short", "long"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database path whose wake-up socket path fits a socket address (``short``), or is
    longer than one holds (``long``, in a directory whose path has more than 110 characters)."""
    if request.param == "long":
        directory = tmp_path / ("d" * 120)
        directory.mkdir()
        yield str(directory / "missions.sqlite")
        return
    # pytest's tmp_path can itself be too long for a socket address: a short one under /tmp.
    directory = tempfile.mkdtemp(prefix="mc-wake-", dir="/tmp")
    try:
        yield os.path.join(directory, "missions.sqlite")
    finally:
        shutil.rmtree(directory)


@pytest.fixture
def receiver(database: str) -> Iterator[WakeReceiver]:
    bound = WakeReceiver.bind(wake_path(database))
    yield bound
    bound.close()


def kind(path: str) -> str:
    """What is at ``path``: ``"socket"``, ``"missing"`` or ``"other"``."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return "missing"
    return "socket" if stat.S_ISSOCK(info.st_mode) else "other"


async def nothing_queued(receiver: WakeReceiver) -> bool:
    """Whether a wait on ``receiver`` blocks (has no datagram to read) for ``NO_WAKE``
    seconds."""
    with anyio.move_on_after(NO_WAKE) as scope:
        await receiver.wait()
    return scope.cancelled_caught


def test_the_socket_is_bound_beside_the_database(database: str) -> None:
    """The wake-up socket is a socket file named ``<database path>.wake``, in the database's
    directory however long its path is, and closing the receiver removes it."""
    path = wake_path(database)
    assert path == database + ".wake"
    receiver = WakeReceiver.bind(path)
    assert kind(path) == "socket"
    receiver.close()
    assert kind(path) == "missing"
    receiver.close()  # closing twice does nothing


@pytest.mark.real_time
async def test_a_datagram_from_another_process_wakes_the_wait(
    database: str, receiver: WakeReceiver
) -> None:
    """A datagram sent by another process wakes a task waiting on the receiver."""
    woken = anyio.Event()

    async def wait() -> None:
        await receiver.wait()
        woken.set()

    with anyio.fail_after(DEADLINE):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(wait)
            await wait_all_tasks_blocked()
            assert not woken.is_set()
            sent = await anyio.run_process(
                [sys.executable, "-c", textwrap.dedent(SEND), wake_path(database)]
            )
            assert sent.stdout.decode().strip() == "True", sent.stderr.decode()
            await woken.wait()


async def test_one_wait_drains_every_datagram_sent_before_it(
    database: str, receiver: WakeReceiver
) -> None:
    """Many datagrams sent before a wait are all read by that one wait: the next wait blocks
    until another datagram comes."""
    sender = WakeSender(wake_path(database))
    assert all(sender.send() for _ in range(100))
    await receiver.wait()
    assert await nothing_queued(receiver)
    assert sender.send()
    await receiver.wait()
    sender.close()


async def test_filling_the_queue_never_raises(database: str, receiver: WakeReceiver) -> None:
    """Thousands of datagrams sent without a wait never raise: once the queue is full, a send
    still reports the owner woken (its queue holds wake-ups), and one wait empties it."""
    sender = WakeSender(wake_path(database))
    assert all(sender.send() for _ in range(10_000))
    await receiver.wait()
    assert await nothing_queued(receiver)
    sender.close()


async def test_a_long_database_name_gets_a_short_socket_name_in_its_directory(
    tmp_path: Path,
) -> None:
    """A database name too long for a socket address gets a short socket name of its own in
    the same directory, the same every time, and the datagrams reach it."""
    directory = tmp_path / ("d" * 120)
    directory.mkdir()
    database = str(directory / ("m" * 200 + ".sqlite"))
    path = wake_path(database)
    assert os.path.dirname(path) == str(directory)
    assert len(os.path.basename(path)) < 80
    assert path.endswith(".wake")
    assert wake_path(database) == path
    assert wake_path(str(directory / ("n" * 200 + ".sqlite"))) != path
    receiver = WakeReceiver.bind(path)
    sender = WakeSender(path)
    assert sender.send()
    await receiver.wait()
    sender.close()
    receiver.close()
    assert kind(path) == "missing"


@pytest.mark.real_time
@pytest.mark.skipif(sys.platform == "win32", reason="needs SIGKILL")
async def test_bind_replaces_the_socket_file_of_an_owner_killed_by_sigkill(
    database: str,
) -> None:
    """The socket file an owner killed by SIGKILL left behind takes no datagram, and the next
    owner's bind replaces it with its own socket, which does."""
    path = wake_path(database)
    with anyio.fail_after(DEADLINE):
        process = await anyio.open_process(
            [sys.executable, "-c", textwrap.dedent(BIND_AND_HANG), path],
            stdout=subprocess.PIPE,
        )
        try:
            assert process.stdout is not None
            said = b""
            async for chunk in process.stdout:
                said += chunk
                if b"bound" in said:
                    break
            assert b"bound" in said
            process.send_signal(signal.SIGKILL)
            await process.wait()
        finally:
            if process.returncode is None:
                process.kill()
            with anyio.CancelScope(shield=True):
                await process.aclose()
    assert process.returncode == -signal.SIGKILL
    assert kind(path) == "socket"
    sender = WakeSender(path)
    assert not sender.send()
    receiver = WakeReceiver.bind(path)
    assert sender.send()
    with anyio.fail_after(DEADLINE):
        await receiver.wait()
    sender.close()
    receiver.close()


async def test_close_leaves_the_socket_of_a_receiver_bound_since(database: str) -> None:
    """A receiver whose socket file was replaced by a newer owner's closes without removing the
    newer one, which goes on taking datagrams."""
    path = wake_path(database)
    older = WakeReceiver.bind(path)
    newer = WakeReceiver.bind(path)
    older.close()
    assert kind(path) == "socket"
    sender = WakeSender(path)
    assert sender.send()
    await newer.wait()
    newer.close()
    assert kind(path) == "missing"
    assert not sender.send()
    sender.close()


def test_send_with_nobody_listening_returns_false(database: str) -> None:
    """A send with no socket file, with a socket file nobody has bound any more, with a file
    that is not a socket, or into a missing directory returns False and raises nothing."""
    path = wake_path(database)
    sender = WakeSender(path)
    assert not sender.send()
    receiver = WakeReceiver.bind(path)
    receiver.close()
    left = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    with _address(path) as address:
        left.bind(address)
    left.close()  # the file stays, with nobody behind it
    assert kind(path) == "socket"
    assert not sender.send()
    os.unlink(path)
    Path(path).write_text("not a socket")
    assert not sender.send()
    sender.close()
    assert not WakeSender(os.path.join(database + "-missing", "x.wake")).send()


def test_bind_refuses_a_file_that_is_not_a_socket(database: str) -> None:
    """A file that is not a socket where the socket goes makes bind raise an OSError naming
    it, and is left as it was."""
    path = wake_path(database)
    Path(path).write_text("keep me")
    with pytest.raises(FileExistsError, match="not a socket") as raised:
        WakeReceiver.bind(path)
    assert raised.value.filename == path
    assert Path(path).read_text() == "keep me"


async def test_closing_the_receiver_ends_a_waiting_wait(receiver: WakeReceiver) -> None:
    """Closing the receiver makes a task waiting on it raise ClosedResourceError, and so does
    any wait after it."""
    raised: list[BaseException] = []

    async def wait() -> None:
        try:
            await receiver.wait()
        except anyio.ClosedResourceError as error:
            raised.append(error)

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(wait)
        await wait_all_tasks_blocked()
        receiver.close()
    assert len(raised) == 1
    with pytest.raises(anyio.ClosedResourceError):
        await receiver.wait()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
async def test_a_forked_child_closing_its_copy_keeps_the_parents_socket(
    database: str, receiver: WakeReceiver
) -> None:
    """A forked child's copy of the receiver cannot wait (the wake-ups are its parent's) and
    closes without removing the parent's socket file; a sender used before the fork sends from
    the child, and the parent is woken."""
    path = wake_path(database)
    sender = WakeSender(path)
    assert sender.send()
    await receiver.wait()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child's copy of the test
        status = 1
        try:
            # No loop can run here (the parent's is copied in this thread's state): the wait
            # refuses before its first await, so stepping it once is enough.
            waiting = receiver.wait()
            try:
                waiting.send(None)
            except anyio.ClosedResourceError:
                receiver.close()
                status = 0 if sender.send() else 2
            else:
                waiting.close()
        finally:
            os._exit(status)
    _, status = await anyio.to_thread.run_sync(os.waitpid, child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert kind(path) == "socket"
    await receiver.wait()  # the child's datagram
    assert await nothing_queued(receiver)
    sender.close()


@pytest.mark.skipif(not os.path.exists("/proc/self/fd"), reason="counts /proc/self/fd")
def test_closing_both_ends_leaves_no_descriptor_open(database: str) -> None:
    """Once the sender and the receiver are closed, every descriptor they opened (their
    sockets, a directory's descriptor to reach a long path) is closed."""
    before = len(os.listdir("/proc/self/fd"))
    path = wake_path(database)
    receiver = WakeReceiver.bind(path)
    sender = WakeSender(path)
    assert all(sender.send() for _ in range(10))
    sender.close()
    receiver.close()
    assert len(os.listdir("/proc/self/fd")) == before
