"""The blocking client: the commander's API for synchronous code (scripts, Flask or Django views,
Celery tasks), served by a commander and a runtime on an event loop in one thread it owns.

Design: everything that touches the store runs on that loop, in the thread
:func:`start_blocking_client` starts (an AnyIO blocking portal), and the caller's thread only
waits for results. The commander is made there too, by the factory the caller gives, because a
commander and its store serve the loop that first uses them. Each call is a task of the portal,
so several caller threads wait side by side; the loop side (:class:`_Calls`) counts them, so that
:meth:`BlockingMissionClient.close` can refuse new calls, end those that only wait, let the others
finish, and then stop the runtime, close the store and join the thread, in that order.

The loop's thread and its portal are owned by :class:`_LoopThread`, not by AnyIO's
``start_blocking_portal`` generator: a process forked after the client started has the client's
objects but not the thread, and that generator, finalised there, would wait for the thread forever.

A client nobody closed is closed when the interpreter exits, before it joins the program's own
threads (``threading``'s exit hook, which runs before those joins, where ``atexit`` runs after):
a thread still waiting on the client then gets :class:`ClientClosedError` instead of keeping the
process alive.
"""

from __future__ import annotations

import atexit
import inspect
import os
import threading
from collections.abc import Awaitable, Callable, Iterator, Mapping
from concurrent.futures import CancelledError, Future
from contextlib import suppress
from datetime import datetime
from typing import Any, Self, TypeVar, Unpack, cast

import anyio
import anyio.from_thread
import attrs
from anyio.abc import TaskStatus
from anyio.from_thread import BlockingPortal

from mission_control.core import (
    LIST_LIMIT,
    Commander,
    ConfigurationError,
    EventLoopError,
    ListFilters,
    MissionControlError,
    MissionDefinition,
    MissionSnapshot,
    MissionStatus,
    PurgeOptions,
    PurgeReport,
    Schedule,
    ScheduleChanges,
    ScheduleOptions,
    Submission,
    TimelineEntry,
    Trigger,
    TriggerFire,
)
from mission_control.runtime import CommanderRuntime, create_commander_runtime

from ._client import MissionClient

_T = TypeVar("_T")
RawT = TypeVar("RawT")

CommanderFactory = Callable[[], Commander | Awaitable[Commander]]
"""Makes the client's commander on its loop: a function or async function returning one (such as
``SQLiteCommander``, or ``functools.partial(SQLiteCommander, path, definitions)``)."""


async def _now(value: _T) -> _T:
    return value


class ClientClosedError(MissionControlError, RuntimeError):
    """The blocking client was closed (or its loop stopped) before or during the call."""


class _Calls:
    """The loop side of a blocking client: runs each call as a task of the portal, and counts
    them so that closing can end the waits and drain the rest."""

    def __init__(self, client: MissionClient) -> None:
        self.client = client
        self.closing = False
        self.stopped = anyio.Event()  # closing has drained the calls: the runtime may stop
        self._running = 0
        self._drained = anyio.Event()
        self._waits: set[anyio.CancelScope] = set()
        self.ended_by: BaseException | None = None  # the process stop that ended the runtime

    def refused(self, message: str) -> ClientClosedError:
        if self.ended_by is None:
            return ClientClosedError(message)
        refused = ClientClosedError(
            f"the blocking client has stopped: a step running in the background raised "
            f"{self.ended_by!r}, which ended its runtime"
        )
        refused.__cause__ = self.ended_by
        return refused

    async def run(
        self,
        call: Callable[[MissionClient], Awaitable[_T]],
        within: float | None,
        waits: bool,
    ) -> _T | _ProcessStop:
        if self.closing:
            raise self.refused("the blocking client is closed")
        self._running += 1
        scope = anyio.CancelScope()
        if waits:
            self._waits.add(scope)
        try:
            with scope:
                with anyio.fail_after(within):
                    return await call(self.client)
        except (Exception, anyio.get_cancelled_exc_class()):
            raise
        except BaseException as stop:
            # A step raised KeyboardInterrupt or SystemExit: the process is to stop. The caller's
            # thread raises it; raised here, it would end the loop under the other callers and
            # leave nothing for close() to stop cleanly.
            return _ProcessStop(stop)
        finally:
            self._running -= 1
            self._waits.discard(scope)
            if self.closing and not self._running:
                self._drained.set()
        # Only close() cancels this scope: the caller's own cancellation passes through it.
        raise self.refused("the blocking client was closed while this call waited")

    def end(self, stop: BaseException) -> None:
        """The runtime ended with a process stop: refuse new calls and end the waits."""
        self.ended_by = stop
        self.closing = True
        for scope in self._waits:
            scope.cancel()

    async def close(self) -> None:
        """Refuse new calls, end those that wait for a mission to end, let the others finish,
        then let the runtime stop."""
        self.closing = True
        for scope in self._waits:
            scope.cancel()
        if self._running:
            await self._drained.wait()
        self.stopped.set()


class _LoopStopped(Exception):
    """The serving task's end by a process stop, as an ``Exception``: raised as itself, it would
    end the loop under the other calls and leave nothing for close() to stop cleanly."""

    def __init__(self, stop: BaseException) -> None:
        super().__init__(stop)
        self.stop = stop


class _ProcessStop:
    """A ``BaseException`` a call raised on the loop, carried to the caller's thread."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


def _process_stop_in(error: BaseException | None) -> BaseException | None:
    """The ``SystemExit`` or ``KeyboardInterrupt`` that ended the loop, found in its error."""
    if isinstance(error, BaseExceptionGroup):
        group = cast("BaseExceptionGroup[BaseException]", error)
        inners = group.exceptions
        for inner in inners:
            found = _process_stop_in(inner)
            if found is not None:
                return found
        return None
    return error if isinstance(error, (SystemExit, KeyboardInterrupt)) else None


class _LoopThread:
    """The client's event loop in a thread of its own, and the portal that reaches it."""

    def __init__(self, backend: str, options: dict[str, Any]) -> None:
        started: Future[BlockingPortal] = Future()
        self.error: BaseException | None = None  # what ended the loop, if not its portal's stop

        async def serve_portal() -> None:
            async with BlockingPortal() as portal:
                started.set_result(portal)
                await portal.sleep_until_stopped()

        def run() -> None:
            try:
                anyio.run(serve_portal, backend=backend, backend_options=options)
            except BaseException as error:
                # On asyncio, a step's SystemExit or KeyboardInterrupt escapes the loop itself.
                if not started.done():
                    started.set_exception(error)
                self.error = error

        self.thread = threading.Thread(target=run, daemon=True, name="mission-control-client")
        self.thread.start()
        self.portal = started.result()

    def stop(self, *, cancel: bool) -> None:
        """Stop the portal (cancelling what still runs on it if ``cancel``) and join the thread."""
        # Not portal.call: a loop that is ending already would never answer it.
        with suppress(RuntimeError):  # the loop has stopped already
            self.portal.start_task_soon(self.portal.stop, cancel)
        self.thread.join()


# The clients not closed yet, which the interpreter closes as it exits.
_open_clients: set[BlockingMissionClient] = set()
_exit_hook_lock = threading.Lock()
_exit_hook_registered = False


def _close_open_clients() -> None:
    for client in list(_open_clients):
        with suppress(Exception):
            client.close()


def _register_exit_hook() -> None:
    global _exit_hook_registered
    with _exit_hook_lock:
        if _exit_hook_registered:
            return
        # threading's own exit hook (CPython 3.9+) runs before the interpreter joins non-daemon
        # threads, which a thread still waiting on a client would otherwise keep alive.
        register: Callable[[Callable[[], None]], object] = getattr(
            threading, "_register_atexit", atexit.register
        )
        register(_close_open_clients)
        _exit_hook_registered = True


async def _serve(
    factory: CommanderFactory,
    make_runtime: Callable[[Commander], CommanderRuntime],
    *,
    task_status: TaskStatus[_Calls],
) -> None:
    """The client's main task on its loop: make the commander, run the runtime beside it until
    the calls are drained, then stop the runtime (draining its tick) and close the store."""
    calls: _Calls | None = None
    try:
        made = factory()
        commander = await made if inspect.isawaitable(made) else made
        if not isinstance(commander, Commander):
            raise TypeError(  # noqa: TRY301 - the same handler covers the factory's own errors
                "the blocking client's factory must return a commander made by "
                "mission_control.core.create_commander (or SQLiteCommander, ...), "
                f"got {commander!r}"
            )
        async with commander, make_runtime(commander) as runtime:
            calls = _Calls(MissionClient(runtime))
            try:
                task_status.started(calls)
                await calls.stopped.wait()
            finally:
                calls.closing = True
    except BaseException as error:
        # A step running in the background (or the factory) raised SystemExit or
        # KeyboardInterrupt: the runtime has ended, the loop keeps serving close().
        stop = _process_stop_in(error)
        if stop is None:
            raise
        if calls is not None:
            calls.end(stop)
        raise _LoopStopped(stop) from error


class BlockingMissionClient:
    """Start, signal, cancel, inspect and wait for missions from synchronous code.

    Made by :func:`start_blocking_client`, which runs a commander and its runtime on an event loop
    in a thread of their own. Every method blocks its caller until the loop has done the work, and
    is safe to call from several threads at once; errors raised on the loop
    (:class:`~mission_control.core.InvalidInputError`,
    :class:`~mission_control.core.MissionFailedError`, ...) are raised to the caller unchanged.
    The methods are those of :class:`~mission_control.core.Commander`, returning
    :class:`BlockingMissionHandle` for handles; ``wait_for_completion`` and ``result`` also take
    a ``timeout`` in seconds (then :class:`TimeoutError`).

    Close it (``close()`` or ``with``) to stop cleanly: the runtime stops after its in-flight tick,
    the store is closed and the thread joined. Interrupted while it closes (Ctrl-C), or leaving
    ``with`` with an error, it abandons the runtime instead, as the async runtime does: the
    in-flight tick is cancelled (its steps run again at the next start). A client still open when
    the interpreter exits is closed then, before the interpreter waits for the program's threads.
    Calls after ``close()`` raise :class:`ClientClosedError`, and so do waits interrupted by it.
    Calling it from its own loop's thread (a step of one of its missions) raises
    :class:`~mission_control.core.EventLoopError`: it would wait for the loop it blocks; so does
    closing it from a worker thread of that loop (``anyio.to_thread.run_sync`` in a step).

    A step running in the background that raises ``SystemExit`` or ``KeyboardInterrupt`` ends the
    loop: the calls waiting then, and all later ones, raise :class:`ClientClosedError` caused by
    it, ``closed`` is true, and ``close()`` raises that ``SystemExit`` or ``KeyboardInterrupt``
    (once), so that the process stops as the step asked.
    """

    def __init__(self, loop: _LoopThread, serving: Future[None], calls: _Calls) -> None:
        # Made by start_blocking_client, which has started the loop and the runtime.
        self._loop = loop
        self._portal = loop.portal
        self._serving = serving
        self._calls = calls
        self._loop_thread, self._definitions = loop.portal.call(
            lambda: (threading.get_ident(), calls.client.definitions)
        )
        self._lock = threading.Lock()
        self._closed = False
        self._pid = os.getpid()
        _register_exit_hook()
        _open_clients.add(self)

    @property
    def definitions(self) -> dict[str, MissionDefinition[Any, Any, Any]]:
        """The definitions the commander was made with, by name."""
        return dict(self._definitions)

    @property
    def closed(self) -> bool:
        """Closed by ``close()``, or its loop has ended (see the class's description)."""
        return self._closed or self._serving.done() or not self._loop.thread.is_alive()

    def _call(
        self,
        call: Callable[[MissionClient], Awaitable[_T]],
        *,
        timeout: float | None = None,
        waits: bool = False,
    ) -> _T:
        self._refuse_loop_thread()
        if self._closed:
            raise ClientClosedError("the blocking client is closed")
        if os.getpid() != self._pid:
            raise ClientClosedError(
                f"this blocking client was started in process {self._pid}, and this process "
                f"({os.getpid()}) was forked from it: its loop's thread does not run here. Start "
                "a client in each process after the fork (gunicorn's post_fork hook, Celery's "
                "worker_process_init signal)"
            )
        try:
            future = self._portal.start_task_soon(self._calls.run, call, timeout, waits)
        except RuntimeError as error:  # the portal has stopped
            raise self._calls.refused("the blocking client is closed") from (
                self._calls.ended_by or error
            )
        try:
            result = future.result()
        except CancelledError as error:
            if self._closed:  # close() abandoned the loop under the call
                raise ClientClosedError(
                    "the blocking client was closed during this call"
                ) from error
            # The loop itself ended under the call: on asyncio, a step's SystemExit or
            # KeyboardInterrupt escapes it.
            self._loop.thread.join()
            raise self._calls.refused("the blocking client's loop has ended") from (
                self._calls.ended_by or self._loop.error
            )
        except BaseException:
            # The caller was interrupted (KeyboardInterrupt): its call is cancelled on the loop
            # too, as an async caller's would be.
            future.cancel()
            raise
        if isinstance(result, _ProcessStop):
            raise result.error
        return result

    def _refuse_worker_thread(self) -> None:
        try:
            # A worker thread of an AnyIO loop reaches that loop; any other thread gets an error.
            loop_thread = anyio.from_thread.run_sync(threading.get_ident)
        except RuntimeError:
            return
        if loop_thread == self._loop_thread:
            raise EventLoopError(
                "the blocking client was closed from a worker thread of its own event loop (a "
                "step's anyio.to_thread.run_sync): closing waits for that step, which waits for "
                "the close. Close it from the code that started it"
            )

    def _refuse_loop_thread(self) -> None:
        if threading.get_ident() == self._loop_thread:
            raise EventLoopError(
                "the blocking client was called from its own event loop's thread (a step of one "
                "of its missions, or a function running on that loop): it would wait for the "
                "loop it blocks. Code on that loop awaits an async commander API instead"
            )

    def start(
        self,
        definition: MissionDefinition[RawT, Any, Any],
        input: RawT,
        *,
        id: str | None = None,
        start_at: datetime | None = None,
        background: bool = False,
        tenant: str | None = None,
    ) -> BlockingMissionHandle:
        """Start a mission (of ``tenant``); see :meth:`mission_control.core.Commander.start`.
        With ``background=True`` it returns once the mission is stored, and the runtime runs
        it."""
        handle = self._call(
            lambda client: client.start(
                definition, input, id=id, start_at=start_at, background=background, tenant=tenant
            )
        )
        return BlockingMissionHandle(self, handle.id, handle.tenant)

    def fork(
        self,
        mission_id: str,
        *,
        at_node: str,
        new_id: str | None = None,
        tenant: str | None = None,
    ) -> BlockingMissionHandle:
        """A new mission from ``mission_id``, run from ``at_node``; see
        :meth:`mission_control.core.Commander.fork`."""
        handle = self._call(
            lambda client: client.fork(mission_id, at_node=at_node, new_id=new_id, tenant=tenant)
        )
        return BlockingMissionHandle(self, handle.id, handle.tenant)

    def get(self, mission_id: str, *, tenant: str | None = None) -> BlockingMissionHandle:
        """A handle to an existing mission (of ``tenant``); raises ``MissionNotFoundError``."""
        handle = self._call(lambda client: client.get(mission_id, tenant=tenant))
        return BlockingMissionHandle(self, handle.id, handle.tenant)

    def inspect(self, mission_id: str, *, tenant: str | None = None) -> MissionSnapshot:
        """The mission as stored now; raises ``MissionNotFoundError``."""
        return self._call(lambda client: client.inspect(mission_id, tenant=tenant))

    def list(
        self,
        *,
        status: MissionStatus | None = None,
        definition: str | MissionDefinition[Any, Any, Any] | None = None,
        parent: str | None = None,
        limit: int = LIST_LIMIT,
        after: str | None = None,
        tenant: str | None = None,
    ) -> list[MissionSnapshot]:
        """One page of missions; see :meth:`mission_control.core.Commander.list`."""
        return self._call(
            lambda client: client.list(
                status=status,
                definition=definition,
                parent=parent,
                limit=limit,
                after=after,
                tenant=tenant,
            )
        )

    def iter_missions(
        self, *, page_size: int = LIST_LIMIT, **filters: Unpack[ListFilters]
    ) -> Iterator[MissionSnapshot]:
        """Every mission, read a page at a time; see
        :meth:`mission_control.core.Commander.iter_missions`."""

        async def open_pages(client: MissionClient) -> Any:
            return client.iter_missions(page_size=page_size, **filters)

        return self._pages(self._call(open_pages))

    def _pages(self, pages: Any) -> Iterator[MissionSnapshot]:
        async def next_of(_: MissionClient) -> MissionSnapshot:
            snapshot: MissionSnapshot = await pages.__anext__()
            return snapshot

        while True:
            try:
                yield self._call(next_of)
            except StopAsyncIteration:
                return

    def signal(
        self, mission_id: str, name: str, payload: Any = None, *, tenant: str | None = None
    ) -> MissionSnapshot:
        """Send the signal ``name``; see :meth:`mission_control.core.Commander.signal`."""
        return self._call(lambda client: client.signal(mission_id, name, payload, tenant=tenant))

    def signal_with_start(
        self,
        definition: MissionDefinition[RawT, Any, Any],
        input: RawT,
        *,
        mission_id: str,
        signal: str,
        payload: Any = None,
        tenant: str | None = None,
    ) -> MissionSnapshot:
        """Send the signal ``signal`` to the mission ``mission_id``, starting it first when it
        does not exist, in one durable operation; see
        :meth:`mission_control.core.Commander.signal_with_start`."""
        return self._call(
            lambda client: client.signal_with_start(
                definition,
                input,
                mission_id=mission_id,
                signal=signal,
                payload=payload,
                tenant=tenant,
            )
        )

    def cancel(
        self,
        mission_id: str,
        reason: str | None = None,
        *,
        compensate: bool = False,
        tenant: str | None = None,
    ) -> MissionSnapshot:
        """Request cancellation; see :meth:`mission_control.core.Commander.cancel`."""
        return self._call(
            lambda client: client.cancel(mission_id, reason, compensate=compensate, tenant=tenant)
        )

    def pause(
        self, mission_id: str, reason: str | None = None, *, tenant: str | None = None
    ) -> MissionSnapshot:
        """Pause a mission (at once if it waits, at its next node boundary if it runs); see
        :meth:`mission_control.core.Commander.pause`."""
        return self._call(lambda client: client.pause(mission_id, reason, tenant=tenant))

    def resume(self, mission_id: str, *, tenant: str | None = None) -> MissionSnapshot:
        """Resume a paused mission; see :meth:`mission_control.core.Commander.resume`."""
        return self._call(lambda client: client.resume(mission_id, tenant=tenant))

    def retry(
        self, mission_id: str, *, from_node: str | None = None, tenant: str | None = None
    ) -> MissionSnapshot:
        """Run a failed or cancelled mission again; see
        :meth:`mission_control.core.Commander.retry`."""
        return self._call(
            lambda client: client.retry(mission_id, from_node=from_node, tenant=tenant)
        )

    def purge(self, *, finished_before: datetime, **options: Unpack[PurgeOptions]) -> PurgeReport:
        """Delete finished missions older than ``finished_before``; see
        :meth:`mission_control.core.Commander.purge` (``on_batch`` is called in the client's
        event loop thread)."""
        return self._call(lambda client: client.purge(finished_before=finished_before, **options))

    def fire_trigger(
        self,
        name: str,
        payload: Any = None,
        *,
        id: str | None = None,
        background: bool = False,
        tenant: str | None = None,
    ) -> TriggerFire:
        """Fire a trigger: a mission of every definition subscribed to it; see
        :meth:`mission_control.core.Commander.fire_trigger`."""
        return self._call(
            lambda client: client.fire_trigger(
                name, payload, id=id, background=background, tenant=tenant
            )
        )

    def replay_trigger(
        self,
        fire_id: str,
        *,
        id: str | None = None,
        background: bool = False,
        tenant: str | None = None,
    ) -> TriggerFire:
        """Fire a recorded fire again; see :meth:`mission_control.core.Commander.replay_trigger`."""
        return self._call(
            lambda client: client.replay_trigger(
                fire_id, id=id, background=background, tenant=tenant
            )
        )

    def get_trigger(self, fire_id: str, *, tenant: str | None = None) -> TriggerFire:
        """A recorded fire (of ``tenant``)."""
        return self._call(lambda client: client.get_trigger(fire_id, tenant=tenant))

    def list_triggers(
        self,
        *,
        name: str | None = None,
        limit: int = LIST_LIMIT,
        after_id: str | None = None,
        tenant: str | None = None,
    ) -> list[TriggerFire]:
        """Recorded fires (of ``tenant``) by id."""
        return self._call(
            lambda client: client.list_triggers(
                name=name, limit=limit, after_id=after_id, tenant=tenant
            )
        )

    def create_schedule(
        self,
        schedule_id: str,
        definition: MissionDefinition[Any, Any, Any] | str,
        trigger: Trigger,
        input: Any = None,
        *,
        paused: bool = False,
        **options: Unpack[ScheduleOptions],
    ) -> Schedule:
        """Store a schedule; see :meth:`mission_control.core.Commander.create_schedule`."""
        return self._call(
            lambda client: client.create_schedule(
                schedule_id, definition, trigger, input, paused=paused, **options
            )
        )

    def update_schedule(
        self, schedule_id: str, *, tenant: str | None = None, **changes: Unpack[ScheduleChanges]
    ) -> Schedule:
        """Change a schedule's settings; see
        :meth:`mission_control.core.Commander.update_schedule`."""
        return self._call(
            lambda client: client.update_schedule(schedule_id, tenant=tenant, **changes)
        )

    def pause_schedule(self, schedule_id: str, *, tenant: str | None = None) -> Schedule:
        """Stop firing a schedule (of ``tenant``) until it is resumed."""
        return self._call(lambda client: client.pause_schedule(schedule_id, tenant=tenant))

    def resume_schedule(self, schedule_id: str, *, tenant: str | None = None) -> Schedule:
        """Fire a paused schedule (of ``tenant``) again, from its next slot."""
        return self._call(lambda client: client.resume_schedule(schedule_id, tenant=tenant))

    def delete_schedule(self, schedule_id: str, *, tenant: str | None = None) -> bool:
        """Delete a schedule (of ``tenant``; its missions stay)."""
        return self._call(lambda client: client.delete_schedule(schedule_id, tenant=tenant))

    def get_schedule(self, schedule_id: str, *, tenant: str | None = None) -> Schedule:
        """A stored schedule (of ``tenant``)."""
        return self._call(lambda client: client.get_schedule(schedule_id, tenant=tenant))

    def list_schedules(
        self, *, limit: int = LIST_LIMIT, after_id: str | None = None, tenant: str | None = None
    ) -> list[Schedule]:
        """Schedules (of ``tenant``) by id."""
        return self._call(
            lambda client: client.list_schedules(limit=limit, after_id=after_id, tenant=tenant)
        )

    def wait_for_completion(
        self, mission_id: str, *, timeout: float | None = None, tenant: str | None = None
    ) -> MissionSnapshot:
        """Wait until the mission ends: its snapshot when it completed, else
        ``MissionFailedError``, ``MissionCancelledError`` or ``MissionCompensatedError``;
        :class:`TimeoutError` after
        ``timeout`` seconds (the mission goes on)."""
        return self._call(
            lambda client: client.wait_for_completion(mission_id, tenant=tenant),
            timeout=timeout,
            waits=True,
        )

    def result(
        self, mission_id: str, *, timeout: float | None = None, tenant: str | None = None
    ) -> MissionSnapshot:
        """Wait until the mission ends and return its final snapshot, however it ended;
        :class:`TimeoutError` after ``timeout`` seconds (the mission goes on)."""
        return self._call(
            lambda client: client.result(mission_id, tenant=tenant), timeout=timeout, waits=True
        )

    def timeline(self, mission_id: str, *, tenant: str | None = None) -> list[TimelineEntry]:
        """What happened to the mission, in order."""
        return self._call(lambda client: client.timeline(mission_id, tenant=tenant))

    # -- several processes on one store (see docs/sqlite.md) -----------------------------------

    @property
    def is_owner(self) -> bool:
        """Whether this process executes the missions of the store now; when another process
        owns it, starts, signals and cancellations are handed to that one as submissions."""
        return self._call(lambda client: _now(client.is_owner))

    def submit_start(
        self,
        definition: str | MissionDefinition[Any, Any, Any],
        input: Any,
        *,
        id: str | None = None,
        tenant: str | None = None,
    ) -> Submission:
        """Hand a start to the store's owner and return at once; see
        :meth:`mission_control.core.Commander.submit_start`."""
        return self._call(
            lambda client: client.submit_start(definition, input, id=id, tenant=tenant)
        )

    def submit_signal(
        self, mission_id: str, name: str, payload: Any = None, *, tenant: str | None = None
    ) -> Submission:
        """Hand a signal to the store's owner and return at once; see
        :meth:`mission_control.core.Commander.submit_signal`."""
        return self._call(
            lambda client: client.submit_signal(mission_id, name, payload, tenant=tenant)
        )

    def submit_cancel(
        self,
        mission_id: str,
        reason: str | None = None,
        *,
        compensate: bool = False,
        tenant: str | None = None,
    ) -> Submission:
        """Hand a cancellation to the store's owner and return at once; see
        :meth:`mission_control.core.Commander.submit_cancel`."""
        return self._call(
            lambda client: client.submit_cancel(
                mission_id, reason, compensate=compensate, tenant=tenant
            )
        )

    def submit_pause(
        self, mission_id: str, reason: str | None = None, *, tenant: str | None = None
    ) -> Submission:
        """Hand a pause to the store's owner and return at once; see
        :meth:`mission_control.core.Commander.submit_pause`."""
        return self._call(lambda client: client.submit_pause(mission_id, reason, tenant=tenant))

    def submit_resume(self, mission_id: str, *, tenant: str | None = None) -> Submission:
        """Hand a resume to the store's owner and return at once; see
        :meth:`mission_control.core.Commander.submit_resume`."""
        return self._call(lambda client: client.submit_resume(mission_id, tenant=tenant))

    def submit_retry(
        self, mission_id: str, *, from_node: str | None = None, tenant: str | None = None
    ) -> Submission:
        """Hand a retry to the store's owner and return at once; see
        :meth:`mission_control.core.Commander.submit_retry`."""
        return self._call(
            lambda client: client.submit_retry(mission_id, from_node=from_node, tenant=tenant)
        )

    def verdict(
        self,
        submission: Submission | int,
        *,
        tenant: str | None = None,
        at_rest: bool = False,
        timeout: float | None = None,
    ) -> MissionSnapshot:
        """Wait for the owner's decision on a submission (with ``at_rest``, and for the owner to
        run the mission to its next wait); see :meth:`mission_control.core.Commander.verdict`.
        :class:`TimeoutError` after ``timeout`` seconds (the submission stays stored)."""
        return self._call(
            lambda client: client.verdict(submission, tenant=tenant, at_rest=at_rest),
            timeout=timeout,
            waits=True,
        )

    def close(self) -> None:
        """Stop cleanly: refuse new calls, end the waits in progress (they raise
        :class:`ClientClosedError`), let the other calls finish, stop the runtime after its
        in-flight tick, close the store and join the loop's thread. Safe to call again.

        Interrupted (Ctrl-C), it abandons the runtime instead: the in-flight tick is cancelled,
        the store closed and the thread joined, and the interruption is raised."""
        self._close(abandon=False)

    def _close(self, *, abandon: bool) -> None:
        self._refuse_loop_thread()
        if os.getpid() != self._pid:
            # A forked copy: the loop, the store and the thread are the parent's (and so may be
            # the lock, held by a parent's thread at the fork).
            self._closed = True
            _open_clients.discard(self)
            return
        self._refuse_worker_thread()
        with self._lock:
            if self._closed:
                return
            error: BaseException | None = None
            try:
                self._closed = True
                _open_clients.discard(self)
                if abandon:
                    self._loop.stop(cancel=True)
                    return
                with suppress(RuntimeError):  # the loop has stopped already: nothing to drain
                    self._portal.start_task_soon(self._calls.close)
                with suppress(CancelledError):  # the loop ended under it
                    error = self._serving.exception()
            except BaseException:
                # Interrupted (Ctrl-C): stop now, as the async runtime does when left on an error.
                self._loop.stop(cancel=True)
                raise
            self._loop.stop(cancel=False)
            stop = self._calls.ended_by or _process_stop_in(self._loop.error)
            if stop is not None:
                raise stop
            if error is not None:
                raise error

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        self._close(abandon=exc is not None)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<BlockingMissionClient {state}, {len(self._definitions)} definitions>"


@attrs.frozen
class BlockingMissionHandle:
    """A reference to one mission through the :class:`BlockingMissionClient` that returned it:
    :class:`~mission_control.core.MissionHandle`'s methods, blocking (``wait_for_completion``
    and ``result`` also take a ``timeout``). Equal to another handle to the same mission through
    the same client."""

    _client: BlockingMissionClient = attrs.field(repr=False, alias="client")
    id: str
    tenant: str | None = None

    def inspect(self) -> MissionSnapshot:
        return self._client.inspect(self.id, tenant=self.tenant)

    def signal(self, name: str, payload: Any = None) -> MissionSnapshot:
        return self._client.signal(self.id, name, payload, tenant=self.tenant)

    def cancel(self, reason: str | None = None, *, compensate: bool = False) -> MissionSnapshot:
        return self._client.cancel(self.id, reason, compensate=compensate, tenant=self.tenant)

    def pause(self, reason: str | None = None) -> MissionSnapshot:
        return self._client.pause(self.id, reason, tenant=self.tenant)

    def resume(self) -> MissionSnapshot:
        return self._client.resume(self.id, tenant=self.tenant)

    def wait_for_completion(self, *, timeout: float | None = None) -> MissionSnapshot:
        return self._client.wait_for_completion(self.id, timeout=timeout, tenant=self.tenant)

    def result(self, *, timeout: float | None = None) -> MissionSnapshot:
        return self._client.result(self.id, timeout=timeout, tenant=self.tenant)

    def timeline(self) -> list[TimelineEntry]:
        return self._client.timeline(self.id, tenant=self.tenant)


def start_blocking_client(
    factory: CommanderFactory,
    *,
    backend: str = "trio",
    backend_options: Mapping[str, Any] | None = None,
    make_runtime: Callable[[Commander], CommanderRuntime] = create_commander_runtime,
) -> BlockingMissionClient:
    """Start an event loop in a thread, make the commander there with ``factory`` and run a
    runtime beside it; return the :class:`BlockingMissionClient` that reaches them.

    ``factory`` is called on the loop (a commander and its store serve the loop that first uses
    them): a function or async function returning a commander, for instance
    ``lambda: SQLiteCommander("missions.sqlite", [approval])``. ``backend`` is ``"trio"`` (the
    default) or ``"asyncio"``; ``backend_options`` are AnyIO's for it (``anyio.run``).
    ``make_runtime`` makes the runtime from the commander; pass
    ``functools.partial(create_commander_runtime, max_concurrency=4)`` for other options.

    Errors raised while making the commander or starting the runtime are raised here, after the
    thread has stopped.
    """
    if backend not in ("trio", "asyncio"):
        raise ConfigurationError(f"backend must be 'trio' or 'asyncio', got {backend!r}")
    if not callable(factory):
        raise ConfigurationError(
            f"factory must be a function that makes a commander, got {factory!r}"
        )
    loop = _LoopThread(backend, dict(backend_options or {}))
    try:
        try:
            serving, calls = loop.portal.start_task(_serve, factory, make_runtime)
        except _LoopStopped as stopped:
            raise stopped.stop from None
    except BaseException:
        # Cancelled, so that a factory still running (interrupted by Ctrl-C) ends with the thread.
        loop.stop(cancel=True)
        raise
    return BlockingMissionClient(loop, serving, calls)
