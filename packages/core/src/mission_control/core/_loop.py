"""What the library needs to know about the event loop it runs on, on trio and asyncio alike.

Everything else awaits through AnyIO; the few questions AnyIO does not answer cheaply (which loop
is this, is this task being cancelled the asyncio way) are answered here, once.
"""

from __future__ import annotations

import asyncio
import threading

import anyio.lowlevel
import sniffio
import trio

from ._errors import EventLoopError

SUPPORTED = ("trio", "asyncio")

_HOW_FROM_SYNC = (
    "from synchronous code (a script, a Flask or Django view, a Celery task) use "
    "mission_control.client.start_blocking_client, which runs the commander on an event loop "
    "of its own"
)


def _running_loop(what: str) -> object:
    """The running event loop (trio's token or asyncio's loop); :class:`EventLoopError` when
    there is none or it is not one we support."""
    try:
        library = sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        raise EventLoopError(
            f"{what} must be awaited inside a running trio or asyncio event loop, and none runs "
            f"in thread {threading.current_thread().name!r}; {_HOW_FROM_SYNC}"
        ) from None
    if library == "trio":
        return trio.lowlevel.current_trio_token()
    if library == "asyncio":
        return asyncio.get_running_loop()
    raise EventLoopError(
        f"{what} runs on trio or asyncio, not on {library!r} (supported: {', '.join(SUPPORTED)})"
    )


class LoopBinding:
    """The one event loop an object serves: the first that uses it, until that loop ends.

    A commander's store, its held missions and the tasks waiting on them belong to one loop;
    reached from another running loop (a second ``asyncio.run`` in a worker thread, a loop made
    per request), they would be shared by two schedulers that know nothing of each other. So
    that is refused before anything is read or stored. Once the first loop has ended (trio's run
    returned; an asyncio loop closed, as ``asyncio.run`` does), the next loop takes the object
    over: a script may run one loop after another. An asyncio loop that is only idle (driven by
    ``run_until_complete`` now and then) has not ended: its tasks may still hold missions.
    """

    __slots__ = ("_lock", "_loop", "_owner", "_thread", "_thread_id")

    def __init__(self, owner: str) -> None:
        self._owner = owner
        self._loop: object | None = None
        self._thread = ""
        self._thread_id: int | None = None
        self._lock = threading.Lock()

    def check(self, what: str) -> None:
        """Raise :class:`EventLoopError` unless the caller runs on this object's loop (binding
        it on the first call, or when the loop it served has ended)."""
        loop = _running_loop(what)
        if loop is self._loop:
            return
        # Two threads may bind at once: one wins, the other is refused.
        with self._lock:
            if self._loop is not None and self._loop is not loop and not _has_ended(self._loop):
                raise EventLoopError(
                    f"{what}: this {self._owner} serves the event loop that first used it "
                    f"(running in thread {self._thread!r}), and this call runs on another loop (in "
                    f"thread {threading.current_thread().name!r}); reach it from other threads "
                    f"through anyio.from_thread with that loop's token, or {_HOW_FROM_SYNC}"
                )
            self._loop = loop
            self._thread = threading.current_thread().name
            self._thread_id = threading.get_ident()

    def check_thread(self, what: str) -> None:
        """Raise :class:`EventLoopError` when a synchronous call comes from a thread other than
        the one the bound loop runs in (nothing there is safe from another thread); allowed
        before any loop used the object, and once that loop has ended."""
        thread_id = self._thread_id
        if thread_id is None or thread_id == threading.get_ident():
            return
        loop = self._loop
        if loop is not None and _has_ended(loop):
            return
        raise EventLoopError(
            f"{what} was called from thread {threading.current_thread().name!r}, but this "
            f"{self._owner} serves the event loop running in thread {self._thread!r}; call it "
            "there (from another thread: anyio.from_thread.run_sync with that loop's token)"
        )


def _has_ended(loop: object) -> bool:
    if isinstance(loop, asyncio.AbstractEventLoop):
        return loop.is_closed()
    assert isinstance(loop, trio.lowlevel.TrioToken)
    try:
        loop.run_sync_soon(_nothing)
    except trio.RunFinishedError:
        return True
    return False


def _nothing() -> None:
    pass


def current_task_key() -> int:
    """A number that tells the running task from the other tasks alive now (its ``id``).

    Cheaper than ``anyio.get_current_task()`` (which builds an object per call) on a path taken
    once per write. Outside a running loop it raises :class:`EventLoopError`.
    """
    library = sniffio.current_async_library()
    if library == "trio":
        return id(trio.lowlevel.current_task())
    if library == "asyncio":
        return id(asyncio.current_task())
    raise EventLoopError(f"tasks run on trio or asyncio, not on {library!r}")


async def raise_if_cancelled(raised: BaseException) -> None:
    """Raise this task's cancellation if it is being cancelled; return otherwise.

    A function may raise a cancellation exception it caught itself while nothing around it is
    cancelled, so the exception's type proves nothing: AnyIO's cancel scopes are asked, and on
    asyncio also the task itself (``Task.cancel()`` from a server shutting down is no scope).
    """
    await anyio.lowlevel.checkpoint_if_cancelled()
    if isinstance(raised, asyncio.CancelledError) and sniffio.current_async_library() == "asyncio":
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise raised
