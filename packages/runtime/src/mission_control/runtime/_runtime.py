"""The single-instance tick runtime: startup recovery, single-flight ticks and explicit
scheduling, on trio or asyncio (through AnyIO)."""

from __future__ import annotations

import enum
import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Self, cast

import anyio
import anyio.abc
import anyio.lowlevel
import attrs
import trio

from mission_control.core import ConfigurationError, DefinitionVersionError, MissionStatus
from mission_control.core.lowlevel import LoopBinding, MissionDriver, Notices

from ._errors import RuntimeStateError, TickFailedError
from ._hooks import (
    LoggingRuntimeLogger,
    NoMetrics,
    RuntimeEvent,
    RuntimeLogger,
    RuntimeMetric,
    RuntimeMetrics,
)
from ._report import TickReport, TickTrigger
from ._schedule import PendingTicks

DEFAULT_MAX_MISSIONS_PER_TICK = 100
DEFAULT_MAX_CONCURRENCY = 10
DEFAULT_STALLED_TICK_DELAY = 10.0
# A tick worker yields to the application's tasks after this many missions: often enough that a
# tick of missions that never block (tens of microseconds each) cannot starve them, rarely
# enough that the yields cost little.
_YIELD_EVERY = 4
# A failing mission's pause doubles with each failure in a row, up to this many times
# stalled_tick_delay (10 minutes at the default): a mission that cannot move is retried, and
# logged, less and less often, yet never more than that long after it could move again.
_MAX_PAUSE_FACTOR = 64
# A mission found running again after this many recoveries in a row was interrupted again right
# after it was resumed: the likely poison, resumed on its own. One recovery proves nothing (a
# crash interrupts every mission under way), so once-recovered missions resume together, unless
# the commander's max_recovery_attempts is so low that a second shared crash would use it up.
_SUSPECT_RECOVERIES = 2


class RuntimeState(enum.StrEnum):
    """Where a runtime is in its life."""

    NEW = "new"
    STARTING = "starting"
    """``start()`` is running the startup tick."""
    RUNNING = "running"
    STOPPING = "stopping"
    """``stop()`` is draining the in-flight tick."""
    STOPPED = "stopped"


@attrs.define(eq=False)
class _TickPass:
    """One run of a tick, shared by every caller that asked for it."""

    trigger: TickTrigger
    resume_all: bool = False
    done: anyio.Event = attrs.field(factory=anyio.Event)
    report: TickReport | None = None
    error: Exception | None = None
    later_due_at: datetime | None = None
    """The store's next due time after the tick ended, read only when work was due and the
    tick did not progress."""

    def result(self) -> TickReport:
        if self.report is not None:
            return self.report
        if self.error is not None:
            raise TickFailedError(
                f"the {self.trigger.value} tick failed: "
                f"{type(self.error).__qualname__}: {self.error}"
            ) from self.error
        raise TickFailedError(f"the {self.trigger.value} tick was cancelled before it finished")


@attrs.frozen
class _Pause:
    """A mission whose resume or advance raised ``failures`` times in a row: ticks pass over it
    until ``until``."""

    until: datetime
    failures: int


@attrs.define
class _Tally:
    """What a tick has done so far."""

    seen: set[str] = attrs.field(factory=set[str])
    resumed: int = 0
    advanced: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    compensated: int = 0
    skipped: int = 0
    errored: list[str] = attrs.field(factory=list[str])
    interrupted_left: bool = False
    submissions: int = 0
    fired: int = 0

    def ended(self, status: MissionStatus) -> None:
        if status is MissionStatus.COMPLETED:
            self.completed += 1
        elif status is MissionStatus.FAILED:
            self.failed += 1
        elif status is MissionStatus.CANCELLED:
            self.cancelled += 1
        elif status is MissionStatus.COMPENSATED:
            self.compensated += 1


class _Listener:
    """The runtime's ear on its commander's notices (a separate object, so that the notice
    methods stay off the runtime's public API): it forwards each notice to the runtime, which
    decides when to tick for it."""

    __slots__ = ("_noticed",)

    def __init__(self, noticed: Callable[[datetime | None, bool], None]) -> None:
        self._noticed = noticed

    def due(self, when: datetime) -> None:
        self._noticed(when, False)

    def left_running(self, mission_id: str, *, failed: bool) -> None:
        self._noticed(None, failed)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


TaskStarter = anyio.abc.TaskGroup | trio.Nursery
"""Where the runtime starts its tasks: an AnyIO task group, or a trio nursery on trio."""


def _describe(error: BaseException) -> str:
    return f"{type(error).__qualname__}: {error}"


class CommanderRuntime:
    """Drives one commander's missions with explicit ticks, in one process.

    Make one with :func:`create_commander_runtime` and use it as ``async with runtime:`` (it owns
    a task group for its scheduled ticks), or ``await runtime.start(nursery=...)`` and
    ``await runtime.stop()`` with a task group of your own (AnyIO's, or a trio nursery). It runs
    on trio and on asyncio, on the loop that starts it.

    A **tick** resumes missions left mid-node (by a crash or a cancelled caller), then advances
    the missions whose timer, retry or delayed start is due — at most ``max_missions_per_tick``
    of them, ``max_concurrency`` at a time — and returns a :class:`TickReport`. Ticks never
    overlap, and a tick never schedules another tick: the runtime's scheduler does. It runs the
    startup tick in ``start()``; it re-arms at the store's next due time after every tick, and
    whenever the commander's notices say a mission became due or was left mid-node (by any
    commander of this process on the same persistence adapter), so every persisted due time
    gets a tick; and it runs the ticks application code asks for (:meth:`tick`,
    :meth:`set_next_tick_at`, :meth:`set_next_tick_in`). With ``auto_schedule=False`` (the
    manual mode) only the startup tick's follow-up and the application's requests remain.

    The commander's clock says what is due; the runtime sleeps on the event loop's clock. A tick
    due at ``D`` fires once ``commander.clock.now() >= D``: the runtime sleeps ``D - now`` seconds
    of loop time and looks again, so the commander's clock must move with the loop's time (the
    system clock does; in tests use ``mission_control.testing.LoopClock`` with a virtual-time
    loop: trio's ``MockClock``, or the testing package's virtual-time asyncio loop).
    """

    def __init__(
        self,
        commander: MissionDriver,
        *,
        logger: RuntimeLogger,
        metrics: RuntimeMetrics,
        max_missions_per_tick: int,
        max_concurrency: int,
        auto_schedule: bool,
        stalled_tick_delay: float,
    ) -> None:
        self._commander = commander
        # Below the limit, so that a healthy mission never shares the crash that would use up
        # its last attempt.
        self._suspect_recoveries = min(
            _SUSPECT_RECOVERIES, max(commander.max_recovery_attempts - 1, 0)
        )
        self._logger = logger
        self._metrics = metrics
        self._max_missions = max_missions_per_tick
        self._max_concurrency = max_concurrency
        # Missions whose resume or advance raised, and when to try them again: until then a tick
        # passes over them, so that missions that cannot move never crowd out those that can.
        # One record per step of a tick, as each step reads its own list of missions and forgets
        # what is no longer on it.
        self._failing_resumes: dict[str, _Pause] = {}
        self._failing_advances: dict[str, _Pause] = {}
        self._auto_schedule = auto_schedule
        self._stalled_delay = timedelta(seconds=stalled_tick_delay)
        self._state = RuntimeState.NEW
        self._nursery: TaskStarter | None = None
        self._nursery_manager: Any = None
        self._running_pass: _TickPass | None = None
        self._queued_pass: _TickPass | None = None
        self._pending = PendingTicks()
        # Made by the scheduler, inside the loop: a runtime may be made outside one.
        self._wakeup: anyio.Event | None = None
        self._scheduler_done: anyio.Event | None = None
        # The commander's: the runtime serves the loop its store serves.
        self._loop: LoopBinding = commander.notices.loop
        self._last_report: TickReport | None = None
        self._notices: Notices | None = None
        self._listener = _Listener(self._noticed)
        # The tasks beside the ticks (waiting to own the store, watching for submissions),
        # cancelled by stop().
        self._side_scopes: list[anyio.CancelScope] = []
        self._submitted_work: anyio.Event | None = None

    # -- state ---------------------------------------------------------------------------------

    @property
    def commander(self) -> MissionDriver:
        """The commander this runtime drives."""
        return self._commander

    @property
    def state(self) -> RuntimeState:
        return self._state

    @property
    def is_running(self) -> bool:
        """Whether the runtime has started (or is starting) and is not stopping."""
        return self._state in (RuntimeState.STARTING, RuntimeState.RUNNING)

    @property
    def is_tick_running(self) -> bool:
        """Whether a tick is running now."""
        return self._running_pass is not None

    @property
    def auto_schedule(self) -> bool:
        return self._auto_schedule

    @property
    def next_tick_at(self) -> datetime | None:
        """When the next scheduled tick fires (on the commander's clock), if one is scheduled."""
        return self._pending.earliest()

    @property
    def scheduled_ticks(self) -> tuple[datetime, ...]:
        """Every requested tick time that has not been reached by a tick yet, earliest first."""
        return self._pending.sorted()

    @property
    def is_standby(self) -> bool:
        """Whether the runtime runs but moves nothing, because another process owns the
        store (a SQLite database several processes share): it takes the store over, and runs
        its startup tick, when that process goes away."""
        return self.is_running and not self._commander.is_owner

    @property
    def last_report(self) -> TickReport | None:
        """The report of the most recent tick that finished."""
        return self._last_report

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self, *, nursery: TaskStarter) -> TickReport:
        """Run the startup tick and schedule a tick for the earliest persisted due time.

        The startup tick resumes every mission a crash left mid-node (``mission-resume-*``
        events), and pauses those it left with a pause request not applied, then advances what
        is due. Scheduled ticks run as tasks in ``nursery``, which
        stays open until :meth:`stop` is called. ``async with runtime:`` does all this with a
        nursery of its own. Returns the startup tick's report; raises :class:`TickFailedError`
        (after stopping the runtime) when the startup tick cannot run.
        """
        self._loop.check("runtime.start()")
        if not isinstance(nursery, TaskStarter):
            raise ConfigurationError(
                "runtime.start(nursery=...) needs an AnyIO task group (anyio.create_task_group())"
                f" or, on trio, a trio nursery; got {nursery!r} (an asyncio.TaskGroup cannot be "
                "used: use `async with runtime:` or an AnyIO task group)"
            )
        if self._state is not RuntimeState.NEW:
            raise RuntimeStateError(f"start() needs a new runtime; this one is {self._state}")
        # Before anything runs: a version unfinished missions use but the commander lacks (or
        # has changed) raises DefinitionVersionError here, the runtime still new.
        await self._check_versions()
        self._state = RuntimeState.STARTING
        self._nursery = nursery
        self._log(
            RuntimeEvent.RUNTIME_STARTING,
            max_missions_per_tick=self._max_missions,
            max_concurrency=self._max_concurrency,
            auto_schedule=self._auto_schedule,
        )
        self._scheduler_done = anyio.Event()
        owner = await self._first_try_to_own()
        if owner:
            self._begin_owning()
        try:
            nursery.start_soon(self._run_scheduler)
        except BaseException:
            # A task group that cannot start tasks (one that has ended): nothing runs, and
            # stop() must not wait for a scheduler that never started.
            self._abandon()
            self._scheduler_done.set()
            raise
        if not owner:
            self._state = RuntimeState.RUNNING
            self._log(RuntimeEvent.RUNTIME_STANDBY)
            self._start_beside(self._stand_by)
            return self._standby_report(TickTrigger.STARTUP)
        self._serve_submissions()
        startup = self._request_tick(TickTrigger.STARTUP, resume_all=True)
        await startup.done.wait()
        try:
            report = startup.result()
        except TickFailedError:
            await self.stop()
            raise
        if self._state is RuntimeState.STARTING:
            self._state = RuntimeState.RUNNING
            self._log(RuntimeEvent.RUNTIME_STARTED, next_tick_at=_iso(self.next_tick_at))
        return report

    async def _first_try_to_own(self) -> bool:
        """Whether this process owns the store, after one try to take it (which raises at once
        when it never may: a store opened only to submit work)."""
        commander = self._commander
        if not commander.is_owner:
            with anyio.move_on_after(0):
                await commander.take_ownership()
        return commander.is_owner

    def _begin_owning(self) -> None:
        if self._auto_schedule:
            # Before the startup tick: a due time written while it runs is noticed too.
            self._notices = self._commander.notices
            self._notices.listen(self._listener)
            self._arm()

    async def _stand_by(self) -> None:
        await self._retrying("taking over the store", self._commander.take_ownership)
        if not self.is_running:
            return
        self._log(RuntimeEvent.RUNTIME_TOOK_OWNERSHIP)
        # Checked at start already; as the owner now, record the fingerprints of new versions.
        await self._retrying("checking definition versions", self._check_versions_as_owner)
        self._begin_owning()
        self._serve_submissions()
        # What the previous owner left mid-node is resumed here, as after a crash.
        startup = self._request_tick(TickTrigger.STARTUP, resume_all=True)
        await startup.done.wait()

    def _serve_submissions(self) -> None:
        """Listen for work other processes submit, and apply it as it comes, beside the ticks
        (a tick running a slow step never delays it; the ticks apply what is pending too)."""
        self._submitted_work = anyio.Event()
        self._start_beside(self._watch_submissions)
        self._start_beside(self._apply_submitted)
        self._start_beside(self._keep_ownership)

    async def _watch_submissions(self) -> None:
        async def watch() -> None:
            await self._commander.watch_submissions(self._submitted)

        await self._retrying("watching for submissions", watch)

    async def _keep_ownership(self) -> None:
        """The store's upkeep of this process's part of it (the commander's
        ``keep_ownership``: PostgreSQL's shards), beside the ticks; a driver that is no
        commander may have none."""
        keep: Callable[[], Awaitable[None]] | None = getattr(
            self._commander, "keep_ownership", None
        )
        if keep is not None:
            await self._retrying("keeping this process's part of the store", keep)

    def _submitted(self) -> None:
        """Another process submitted work, or stored a mission due now (a start): apply the
        submissions at once, beside the ticks, and (unless in the manual mode, where only the
        application schedules ticks) tick for what is due."""
        if self._submitted_work is not None:
            self._submitted_work.set()
        if self._auto_schedule:
            self._noticed(self._commander.clock.now(), False)

    async def _apply_submitted(self) -> None:
        commander = self._commander
        more = False

        async def apply() -> None:
            nonlocal more
            applied = await commander.apply_submissions(self._max_missions, self._max_concurrency)
            more = applied >= self._max_missions

        while True:
            if not more:
                work = self._submitted_work
                assert work is not None
                await work.wait()
            # Set anew before applying: a wake-up that comes meanwhile is not lost.
            self._submitted_work = anyio.Event()
            await self._retrying("applying submissions", apply)

    async def _retrying(self, what: str, task: Callable[[], Awaitable[None]]) -> None:
        """Run ``task`` until it returns; an error it raises is logged and the task run again
        after ``stalled_tick_delay`` (a task beside the ticks never takes the application's
        task group down; the ticks still apply what was submitted)."""
        while True:
            try:
                await task()
            except Exception:
                logging.getLogger(__name__).exception(
                    "runtime: %s failed, again in %g s", what, self._stalled_delay.total_seconds()
                )
                await anyio.sleep(self._stalled_delay.total_seconds())
            else:
                return

    async def _check_versions(self) -> None:
        """The commander's version check (a driver that is no commander may have none)."""
        check: Callable[[], Awaitable[object]] | None = getattr(
            self._commander, "check_versions", None
        )
        if check is not None:
            await check()

    async def _check_versions_as_owner(self) -> None:
        try:
            await self._check_versions()
        except DefinitionVersionError as error:
            # The previous owner ran these missions: this one takes over all the same (their
            # missions fail when they next move, naming their version).
            logging.getLogger(__name__).warning("runtime took over the store: %s", error)

    def _start_beside(self, task: Callable[[], Awaitable[None]]) -> None:
        assert self._nursery is not None
        scope = anyio.CancelScope()
        self._side_scopes.append(scope)

        async def run() -> None:
            with scope:
                await task()

        self._nursery.start_soon(run)

    def _cancel_beside(self) -> None:
        scopes, self._side_scopes = self._side_scopes, []
        for scope in scopes:
            scope.cancel()

    def _standby_report(self, trigger: TickTrigger) -> TickReport:
        return TickReport(
            trigger=trigger, started_at=self._commander.clock.now(), duration=0.0, standby=True
        )

    async def stop(self) -> None:
        """Stop: drop every scheduled tick, wait for the in-flight tick (and one a caller is
        waiting for) to finish, and let the scheduler end. No scheduled tick remains afterwards.

        Safe to call more than once and from several tasks. To bound the wait, wrap it in
        ``anyio.move_on_after``; an interrupted stop can be called again.
        """
        if self._state is RuntimeState.STOPPED:
            return
        if self._state is RuntimeState.NEW:
            self._pending.clear()
            self._state = RuntimeState.STOPPED
            return
        self._loop.check("runtime.stop()")
        if self._state is not RuntimeState.STOPPING:
            self._state = RuntimeState.STOPPING
            self._log(
                RuntimeEvent.RUNTIME_STOPPING,
                scheduled_ticks=len(self._pending),
                tick_running=self.is_tick_running,
            )
            self._pending.clear()
            self._unlisten()
            self._cancel_beside()
            self._wake_scheduler()
        while (running := self._running_pass) is not None:
            await running.done.wait()
        if self._scheduler_done is not None:
            await self._scheduler_done.wait()
        if self._state is RuntimeState.STOPPING:
            self._state = RuntimeState.STOPPED
            self._log(RuntimeEvent.RUNTIME_STOPPED)

    async def __aenter__(self) -> Self:
        self._loop.check("async with runtime")
        if self._state is not RuntimeState.NEW:
            raise RuntimeStateError(f"async with needs a new runtime; this one is {self._state}")
        manager = anyio.create_task_group()
        nursery = await manager.__aenter__()
        try:
            await self.start(nursery=nursery)
        except BaseException as error:
            self._abandon()
            await _exit_nursery(manager, error)
            raise
        self._nursery_manager = manager
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        manager, self._nursery_manager = self._nursery_manager, None
        if exc is not None:
            # Leaving with an error cancels the in-flight tick, as a nursery does: a step it
            # interrupted committed nothing, so it runs again at the next start.
            self._abandon()
            return await _exit_nursery(manager, exc)
        try:
            await self.stop()
        except BaseException as error:
            self._abandon()
            if not await _exit_nursery(manager, error):
                raise
            return False
        await _exit_nursery(manager, None)
        return False

    def _abandon(self) -> None:
        if self._state is RuntimeState.STOPPED:
            return
        self._pending.clear()
        self._unlisten()
        self._cancel_beside()
        self._wake_scheduler()
        self._state = RuntimeState.STOPPED
        self._log(RuntimeEvent.RUNTIME_STOPPED, abandoned=True)

    # -- ticks ---------------------------------------------------------------------------------

    async def tick(self) -> TickReport:
        """Run one tick and return its report.

        Ticks never overlap. Called while a tick runs, this waits for it and then for one fresh
        tick that every caller who arrived meanwhile shares, so the pass it reports began after
        the call. Cancelling the caller stops the waiting, not the tick. Raises
        :class:`TickFailedError` when the tick cannot run and :class:`RuntimeStateError` when the
        runtime is not running.
        """
        if not self.is_running:
            raise RuntimeStateError(
                f"tick() needs a running runtime (this one is {self._state}): use "
                "`async with runtime:` or `await runtime.start(nursery=...)` first"
            )
        self._loop.check("runtime.tick()")
        tick_pass = self._request_tick(TickTrigger.DIRECT)
        await tick_pass.done.wait()
        return tick_pass.result()

    def _request_tick(self, trigger: TickTrigger, *, resume_all: bool = False) -> _TickPass:
        if self._running_pass is None:
            tick_pass = _TickPass(trigger, resume_all)
            self._launch(tick_pass)
            return tick_pass
        if self._queued_pass is None:
            self._queued_pass = _TickPass(trigger, resume_all)
        return self._queued_pass

    def _launch(self, tick_pass: _TickPass) -> None:
        assert self._nursery is not None
        self._running_pass = tick_pass
        # The pass will start at or after now, so it satisfies every request due by now; dropping
        # them here keeps the scheduler from queueing a second tick for them meanwhile.
        if self._pending.discard_through(self._commander.clock.now()):
            self._wake_scheduler()
            self._arm()
        # The tick runs in the runtime's nursery so that a caller giving up on it (a cancelled
        # web request) does not cancel missions mid-step.
        self._nursery.start_soon(self._run_pass, tick_pass)

    async def _run_pass(self, tick_pass: _TickPass) -> None:
        try:
            tick_pass.report = report = await self._execute(tick_pass)
        except Exception as error:
            tick_pass.error = error
            if self._auto_schedule and self._state is RuntimeState.RUNNING:
                now = self._commander.clock.now()
                when = self._covering_pauses(now + self._stalled_delay, now)
                assert when is not None
                self._schedule(when, source="auto")
        else:
            # The scheduler re-arms after the tick, from what the tick found (a tick itself
            # never schedules).
            if tick_pass.trigger is TickTrigger.STARTUP:
                self._follow_up(tick_pass, report, source="startup")
            elif self._auto_schedule:
                self._follow_up(tick_pass, report, source="auto")
        finally:
            self._running_pass = None
            queued, self._queued_pass = self._queued_pass, None
            if queued is not None:
                self._launch(queued)
            tick_pass.done.set()

    async def _execute(self, tick_pass: _TickPass) -> TickReport:
        clock = self._commander.clock
        started_at = clock.now()
        began = anyio.current_time()
        trigger = tick_pass.trigger
        if not self._commander.is_owner:
            return self._standby_report(trigger)
        self._log(RuntimeEvent.TICK_STARTED, trigger=trigger)
        tally = _Tally()
        try:
            tally.submissions = await self._commander.apply_submissions(
                self._max_missions, self._max_concurrency
            )
            await self._resume_interrupted(tally, everything=tick_pass.resume_all)
            # Before the due missions: the missions a schedule starts are due now, and this
            # tick moves them.
            tally.fired = await self._commander.fire_schedules(self._max_missions)
            await self._advance_due(tally)
            next_due_at = await self._commander.next_due_at()
            now = clock.now()
            more_due = (
                tally.interrupted_left
                or (next_due_at is not None and next_due_at <= now)
                or tally.submissions >= self._max_missions
            )
            # Missions whose move raised are no progress: following such a tick at once would
            # retry and re-read them in a loop.
            if more_due and not (tally.resumed or tally.advanced):
                # Stuck due times hide the next one from next_due_at: look past them (one seek
                # in the due index, only on a tick that did not progress).
                tick_pass.later_due_at = await self._commander.next_due_at(after=now)
        except Exception as error:
            duration = anyio.current_time() - began
            attributes = {"trigger": str(trigger), "outcome": "failed"}
            self._count(RuntimeMetric.TICKS, 1, attributes)
            self._observe(RuntimeMetric.TICK_DURATION, duration, attributes)
            self._log(
                RuntimeEvent.TICK_FAILED,
                error=error,
                trigger=trigger,
                duration=round(duration, 6),
                reason=_describe(error),
            )
            raise
        duration = anyio.current_time() - began
        report = TickReport(
            trigger=trigger,
            started_at=started_at,
            duration=duration,
            resumed=tally.resumed,
            advanced=tally.advanced,
            completed=tally.completed,
            failed=tally.failed,
            cancelled=tally.cancelled,
            compensated=tally.compensated,
            errored=len(tally.errored),
            skipped=tally.skipped,
            errored_missions=tuple(tally.errored),
            more_due=more_due,
            next_due_at=next_due_at,
            submissions=tally.submissions,
            fired=tally.fired,
        )
        self._last_report = report
        attributes = {"trigger": str(trigger), "outcome": "completed"}
        self._count(RuntimeMetric.TICKS, 1, attributes)
        self._observe(RuntimeMetric.TICK_DURATION, duration, attributes)
        self._log(
            RuntimeEvent.TICK_COMPLETED,
            trigger=trigger,
            duration=round(duration, 6),
            resumed=report.resumed,
            advanced=report.advanced,
            completed=report.completed,
            failed=report.failed,
            cancelled=report.cancelled,
            compensated=report.compensated,
            errored=report.errored,
            skipped=report.skipped,
            submissions=report.submissions,
            fired=report.fired,
            more_due=more_due,
            next_due_at=_iso(next_due_at),
        )
        return report

    async def _resume_interrupted(self, tally: _Tally, *, everything: bool) -> None:
        page = self._max_missions
        suspects: list[tuple[int, str]] = []

        async def resume(ids: list[str]) -> None:
            fresh = await self._set_suspects_apart(ids, suspects)
            await self._move_each(fresh, self._resume_one, tally)

        if everything:
            after: str | None = None
            # Page on until a page comes back empty: the commander drops missions this process
            # holds from a page after limiting it, so a short page does not mean the last one.
            while ids := await self._commander.running_missions(page, after):
                await resume(ids)
                after = ids[-1]
        else:
            await resume(await self._running_to_resume(tally))
        # A mission recovered again and again may be the one that takes the process down (a
        # poison step). Run alone (after the others of this tick), it interrupts no other
        # mission, so its neighbours' recovery counts do not climb with its own; fewest
        # recoveries first, so that the likeliest culprit comes last.
        for _, mission_id in sorted(suspects):
            await self._move_each([mission_id], self._resume_one, tally)

    async def _running_to_resume(self, tally: _Tally) -> list[str]:
        """At most ``max_missions_per_tick`` missions left running, to resume in a tick after
        the startup one: pages are read past the missions whose resume raised and is paused, so
        that those never keep the others waiting (the work is bounded by the limit plus the
        paused missions)."""
        limit = self._max_missions
        failing = self._failing_resumes
        found: list[str] = []
        unpaused = 0
        after: str | None = None
        while True:
            ids = await self._commander.running_missions(limit, after)
            found += ids
            unpaused += sum(1 for mission_id in ids if mission_id not in failing)
            if len(ids) < limit or unpaused >= limit:
                break
            after = ids[-1]
        more = len(ids) >= limit
        if failing:
            # A paused mission not found where the pages were read is running no longer.
            listed, last = set(found), found[-1] if more else None
            for mission_id in [key for key in failing if key not in listed]:
                if last is None or mission_id <= last:
                    del failing[mission_id]
        chosen, tally.interrupted_left = self._choose(found, failing, more=more)
        return chosen

    def _choose(
        self, ids: list[str], failing: dict[str, _Pause], *, more: bool
    ) -> tuple[list[str], bool]:
        """Up to ``max_missions_per_tick`` of ``ids`` to move, and whether any that could move
        were left (or, ``more``, may be after ``ids``): missions whose move never raised first,
        then those whose pause is over (longest waiting first, so that failing missions take
        turns instead of crowding out the rest); missions in their pause (in ``failing``) are
        passed over."""
        limit = self._max_missions
        now = self._commander.clock.now()
        chosen: list[str] = []
        again: list[tuple[datetime, str]] = []
        for mission_id in ids:
            pause = failing.get(mission_id)
            if pause is None:
                chosen.append(mission_id)
            elif pause.until <= now:
                again.append((pause.until, mission_id))
        left = more or len(chosen) + len(again) > limit
        if len(chosen) < limit and again:
            # Tried again now, its record kept: a new failure doubles the pause, a move that
            # goes through forgets it.
            again.sort()
            chosen += [mission_id for _, mission_id in again[: limit - len(chosen)]]
        return chosen[:limit], left

    def _pause(self, failing: dict[str, _Pause], mission_id: str) -> None:
        previous = failing.get(mission_id)
        failures = 1 if previous is None else previous.failures + 1
        factor = min(2 ** (failures - 1), _MAX_PAUSE_FACTOR)
        until = self._commander.clock.now() + self._stalled_delay * factor
        failing[mission_id] = _Pause(until, failures)

    def _covering_pauses(self, when: datetime | None, now: datetime) -> datetime | None:
        """``when``, or the earliest end of a pause when that comes first: a paused mission is
        work the runtime owes, armed like a due time. A pause already over that the tick did not
        retry (others filled it) is covered ``stalled_tick_delay`` from now, so it cannot spin."""
        stalled = now + self._stalled_delay
        for failing in (self._failing_resumes, self._failing_advances):
            for pause in failing.values():
                end = pause.until if pause.until > now else stalled
                if when is None or end < when:
                    when = end
        return when

    async def _set_suspects_apart(
        self, ids: list[str], suspects: list[tuple[int, str]]
    ) -> list[str]:
        """The missions of ``ids`` recovered fewer than ``_suspect_recoveries`` times; the
        others go to ``suspects`` with their recovery count."""
        fresh: list[str] = []
        for mission_id in ids:
            try:
                recoveries = (await self._commander.inspect(mission_id)).recovery_attempts
            except Exception:
                # Unreadable here: its resume reports the error.
                recoveries = 0
            if recoveries >= self._suspect_recoveries:
                suspects.append((recoveries, mission_id))
            else:
                fresh.append(mission_id)
        return fresh

    async def _resume_one(self, mission_id: str, tally: _Tally) -> None:
        self._log(RuntimeEvent.MISSION_RESUME_STARTED, mission_id=mission_id)
        self._count(RuntimeMetric.MISSION_RESUMES, 1, {"outcome": "started"})
        began = anyio.current_time()
        try:
            snapshot = await self._commander.advance(mission_id)
        except Exception as error:
            duration = anyio.current_time() - began
            tally.errored.append(mission_id)
            self._pause(self._failing_resumes, mission_id)
            self._count(RuntimeMetric.MISSION_RESUMES, 1, {"outcome": "failed"})
            self._observe(RuntimeMetric.MISSION_RESUME_DURATION, duration, {"outcome": "failed"})
            self._count(RuntimeMetric.MISSIONS_ADVANCED, 1, {"status": "error"})
            self._log(
                RuntimeEvent.MISSION_RESUME_FAILED,
                error=error,
                mission_id=mission_id,
                duration=round(duration, 6),
                reason=_describe(error),
            )
            return
        duration = anyio.current_time() - began
        if self._failing_resumes:
            self._failing_resumes.pop(mission_id, None)
        if snapshot is None:
            tally.skipped += 1
            status = "skipped"
        else:
            tally.resumed += 1
            tally.ended(snapshot.status)
            status = str(snapshot.status)
        self._count(RuntimeMetric.MISSION_RESUMES, 1, {"outcome": "completed"})
        self._observe(RuntimeMetric.MISSION_RESUME_DURATION, duration, {"outcome": "completed"})
        self._count(RuntimeMetric.MISSIONS_ADVANCED, 1, {"status": status})
        self._log(
            RuntimeEvent.MISSION_RESUME_COMPLETED,
            mission_id=mission_id,
            status=status,
            duration=round(duration, 6),
        )

    async def _advance_due(self, tally: _Tally) -> None:
        limit = self._max_missions
        failing = self._failing_advances
        # Enough ids to pass over every paused mission and still fill the tick.
        wanted = limit + len(failing)
        ids = await self._commander.due_missions(wanted)
        if failing:
            # A mission whose pause is over and that is not among the earliest due ones is
            # either not due any more or behind at least ``limit`` others: forgotten, it waits
            # in line like any mission.
            listed = set(ids)
            now = self._commander.clock.now()
            for mission_id in [
                key for key, pause in failing.items() if pause.until <= now and key not in listed
            ]:
                del failing[mission_id]
        chosen, _ = self._choose(ids, failing, more=False)
        await self._move_each(chosen, self._advance_one, tally)

    async def _move_each(
        self,
        ids: list[str],
        move: Callable[[str, _Tally], Awaitable[None]],
        tally: _Tally,
    ) -> None:
        fresh = [mission_id for mission_id in ids if mission_id not in tally.seen]
        tally.seen.update(fresh)
        if not fresh:
            return
        # At most max_concurrency workers share one iterator: that bounds how many missions move
        # at once and costs less than a task per mission. Each worker yields every few missions,
        # so a tick of missions that never block still lets the application's tasks run.
        queue = iter(fresh)

        async def worker() -> None:
            for moved, mission_id in enumerate(queue, 1):
                await move(mission_id, tally)
                if not moved % _YIELD_EVERY:
                    await anyio.lowlevel.checkpoint()

        async with anyio.create_task_group() as nursery:
            for _ in range(min(self._max_concurrency, len(fresh))):
                nursery.start_soon(worker)

    async def _advance_one(self, mission_id: str, tally: _Tally) -> None:
        try:
            snapshot = await self._commander.advance(mission_id)
        except Exception as error:
            tally.errored.append(mission_id)
            self._pause(self._failing_advances, mission_id)
            self._count(RuntimeMetric.MISSIONS_ADVANCED, 1, {"status": "error"})
            self._log(
                RuntimeEvent.MISSION_ADVANCE_FAILED,
                error=error,
                mission_id=mission_id,
                reason=_describe(error),
            )
            return
        if self._failing_advances:
            self._failing_advances.pop(mission_id, None)
        if snapshot is None:
            tally.skipped += 1
            status = "skipped"
        else:
            tally.advanced += 1
            tally.ended(snapshot.status)
            status = str(snapshot.status)
        self._count(RuntimeMetric.MISSIONS_ADVANCED, 1, {"status": status})

    # -- scheduling ----------------------------------------------------------------------------

    def set_next_tick_at(self, when: datetime) -> None:
        """Ask for a tick at ``when`` (an aware datetime on the commander's clock; a past time
        means as soon as possible).

        Requests accumulate: each is kept until a tick starts at or after its time, so a later
        request never cancels an earlier one, and one tick satisfies every request whose time it
        reached (asking twice for the same time gives one tick). Allowed before ``start()``;
        raises :class:`RuntimeStateError` once the runtime is stopping.
        """
        if not isinstance(when, datetime) or when.tzinfo is None or when.utcoffset() is None:
            raise ValueError(f"set_next_tick_at needs a timezone-aware datetime, got {when!r}")
        self._schedule(when.astimezone(UTC), source="explicit")

    def set_next_tick_in(self, seconds: float) -> None:
        """Ask for a tick ``seconds`` from now on the commander's clock; see
        :meth:`set_next_tick_at`."""
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, int | float)
            or not math.isfinite(seconds)
            or seconds < 0
        ):
            raise ValueError(f"set_next_tick_in needs a finite number >= 0, got {seconds!r}")
        when = self._commander.clock.now() + timedelta(seconds=seconds)
        self._schedule(when.astimezone(UTC), source="explicit")

    def _schedule(self, when: datetime, *, source: str) -> None:
        # A synchronous call from another thread would race the scheduler and lose its wake-up.
        self._loop.check_thread("set_next_tick_at()/set_next_tick_in()")
        if self._state in (RuntimeState.STOPPING, RuntimeState.STOPPED):
            raise RuntimeStateError(f"cannot schedule a tick: the runtime is {self._state}")
        if when in self._pending:
            return
        if self._pending.add(when):
            self._wake_scheduler()
            self._arm()
        delay = (when - self._commander.clock.now()).total_seconds()
        self._log(
            RuntimeEvent.TICK_SCHEDULED,
            at=when.isoformat(),
            in_seconds=round(max(delay, 0.0), 6),
            source=source,
        )

    def _noticed(self, when: datetime | None, failed: bool) -> None:
        """A notice of work due at ``when``, or (``None``) of a mission left mid-node, whose move
        raised if ``failed``: arm a tick for it unless one is armed by then (whose own re-arming
        covers it)."""
        if not self.is_running:
            return
        if when is None:
            # A cancelled caller's mission is resumed at once; one whose move raised after a
            # pause, as a due mission whose advance raised is.
            when = self._commander.clock.now()
            if failed:
                when += self._stalled_delay
        earliest = self._pending.earliest()
        if earliest is None or when < earliest:
            self._schedule(when.astimezone(UTC), source="notice")

    def _arm(self) -> None:
        if self._notices is not None:
            self._notices.arm(self._listener, self._pending.earliest())

    def _unlisten(self) -> None:
        notices, self._notices = self._notices, None
        if notices is not None:
            notices.unlisten(self._listener)

    def _follow_up(self, tick_pass: _TickPass, report: TickReport, *, source: str) -> None:
        if self._state in (RuntimeState.STOPPING, RuntimeState.STOPPED):
            return
        now = self._commander.clock.now()
        when: datetime | None
        if report.more_due:
            # Missions that are due but could not be moved (they raise, or another task holds
            # them) would make an immediate follow-up spin; give them a pause instead, but never
            # past a due time still to come: they must not hold the others back.
            progressed = report.resumed or report.advanced or report.submissions
            when = now if progressed else now + self._stalled_delay
            later = tick_pass.later_due_at
            if later is not None and later < when:
                when = later
        else:
            when = report.next_due_at
        when = self._covering_pauses(when, now)
        if when is not None:
            self._schedule(when, source=source)

    def _wake_scheduler(self) -> None:
        if self._wakeup is not None:
            self._wakeup.set()

    async def _run_scheduler(self) -> None:
        clock = self._commander.clock
        assert self._scheduler_done is not None
        try:
            while self.is_running:
                wakeup = self._wakeup = anyio.Event()
                target = self._pending.earliest()
                if target is None:
                    await wakeup.wait()
                    continue
                remaining = (target - clock.now()).total_seconds()
                if remaining > 0:
                    # The commander's clock decides; the loop's only tells when to look again.
                    with anyio.move_on_after(remaining):
                        await wakeup.wait()
                    continue
                scheduled = self._request_tick(TickTrigger.SCHEDULED)
                await scheduled.done.wait()
        finally:
            self._scheduler_done.set()

    # -- hooks ---------------------------------------------------------------------------------

    def _count(self, name: RuntimeMetric, value: int, attributes: Mapping[str, str]) -> None:
        try:
            self._metrics.count(name, value, attributes)
        except Exception:
            logging.getLogger(__name__).exception("runtime metrics hook raised on %s", name)

    def _observe(self, name: RuntimeMetric, value: float, attributes: Mapping[str, str]) -> None:
        try:
            self._metrics.observe(name, value, attributes)
        except Exception:
            logging.getLogger(__name__).exception("runtime metrics hook raised on %s", name)

    def _log(
        self, event: RuntimeEvent, *, error: BaseException | None = None, **fields: Any
    ) -> None:
        try:
            self._logger.log(event, fields, error=error)
        except Exception:
            # A broken log hook must not take the runtime down with it.
            logging.getLogger(__name__).exception("runtime logger hook raised on %s", event)


def _is_only(raised: BaseException, original: BaseException) -> bool:
    if raised is original:
        return True
    if isinstance(raised, BaseExceptionGroup):
        group = cast("BaseExceptionGroup[BaseException]", raised)
        return len(group.exceptions) == 1 and _is_only(group.exceptions[0], original)
    return False


async def _exit_nursery(manager: Any, error: BaseException | None) -> bool:
    """Close a nursery the body of which ended with ``error``; ``True`` when the nursery absorbed
    it. Raises only what is not ``error`` itself, so that callers see their own exception rather
    than the group the task group wraps it in."""
    try:
        if error is None:
            return bool(await manager.__aexit__(None, None, None))
        return bool(await manager.__aexit__(type(error), error, error.__traceback__))
    except BaseException as raised:
        if error is not None and _is_only(raised, error):
            return False
        raise


def create_commander_runtime(
    commander: MissionDriver,
    *,
    logger: RuntimeLogger | logging.Logger | None = None,
    metrics: RuntimeMetrics | None = None,
    max_missions_per_tick: int = DEFAULT_MAX_MISSIONS_PER_TICK,
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
    auto_schedule: bool = True,
    stalled_tick_delay: float = DEFAULT_STALLED_TICK_DELAY,
) -> CommanderRuntime:
    """Make the tick runtime for ``commander``: the commander ``mission_control.core`` makes, or
    any other :class:`mission_control.core.lowlevel.MissionDriver` (the runtime uses no more).

    - ``logger``: a :class:`RuntimeLogger`, or a stdlib logger to write to (default: the stdlib
      logger ``mission_control.runtime``).
    - ``metrics``: a :class:`RuntimeMetrics` (default: record nothing).
    - ``max_missions_per_tick``: how many due missions one tick advances at most; the report's
      ``more_due`` says when more were due.
    - ``max_concurrency``: how many missions a tick advances at the same time.
    - ``auto_schedule``: on (the default), every persisted due time gets a tick: the runtime
      re-arms at the store's next due time after every tick and whenever the commander's
      notices say a mission became due or was left mid-node. ``False`` is the manual mode:
      after the startup tick's follow-up only your calls schedule ticks, and a due time nobody
      asks a tick for waits (see docs/runtime.md).
    - ``stalled_tick_delay``: seconds (> 0) during which ticks pass over a mission whose resume
      or advance raised (so that missions which cannot move never crowd out those that can),
      doubling with each failure in a row up to 64 times this, and seconds to wait before
      ticking again when missions are due but the last tick could move none of them.
    """
    if not isinstance(commander, MissionDriver):
        raise ConfigurationError(
            "create_commander_runtime needs a commander (see create_commander) or another "
            f"mission_control.core.lowlevel.MissionDriver, got {commander!r}"
        )
    for name, value in (
        ("max_missions_per_tick", max_missions_per_tick),
        ("max_concurrency", max_concurrency),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigurationError(f"{name} must be a whole number >= 1, got {value!r}")
    if (
        isinstance(stalled_tick_delay, bool)
        or not isinstance(stalled_tick_delay, int | float)
        or not math.isfinite(stalled_tick_delay)
        or stalled_tick_delay <= 0
    ):
        raise ConfigurationError(
            "stalled_tick_delay must be a finite number of seconds > 0 (it paces the retries of "
            "missions that cannot move; 0 would make the runtime tick without pause), "
            f"got {stalled_tick_delay!r}"
        )
    if logger is None or isinstance(logger, logging.Logger):
        runtime_logger: RuntimeLogger = LoggingRuntimeLogger(logger)
    else:
        runtime_logger = logger
    return CommanderRuntime(
        commander,
        logger=runtime_logger,
        metrics=metrics if metrics is not None else NoMetrics(),
        max_missions_per_tick=max_missions_per_tick,
        max_concurrency=max_concurrency,
        auto_schedule=bool(auto_schedule),
        stalled_tick_delay=float(stalled_tick_delay),
    )
