"""The one engine that interprets every node kind, for every adapter.

A mission is moved forward by whoever *holds* it in this process (a ``start`` call, a signal, a
cancellation or the runtime), through any commander on the same persistence adapter object: the
holds are kept per adapter object, in its notice hub. Only the holder writes the mission's
snapshot; callers that find it held leave their signal or cancellation in the durable mailbox
and poke the holder, which looks again before it lets go. The check and the release happen with
no checkpoint in between, so a poke is never missed.
"""

from __future__ import annotations

import functools
import inspect
import logging
import math
from collections.abc import Callable, Collection, Mapping
from datetime import UTC, datetime, timedelta
from types import CoroutineType
from typing import Any, assert_never, cast

import anyio
import attrs
import cattrs
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ._clock import Clock, SystemClock
from ._concurrency import (
    SLOT_RECHECK,
    ConcurrencyLimitError,
    ConcurrencyStore,
    Gate,
    WhenBusy,
)
from ._context import Context
from ._definition import DEADLINE_CHAIN, TIMEOUT_PATH, MissionDefinition
from ._draft import DONE, LOOKED_AT, Draft, top_level
from ._errors import (
    ChildMissionFailedError,
    ChoiceError,
    CompensationFailedError,
    CompensationRequested,
    ConfigurationError,
    DeadlineExceededError,
    InvalidInputError,
    InvalidSignalPayloadError,
    LoopError,
    LoopLimitExceededError,
    MissionAlreadyExistsError,
    MissionControlError,
    MissionNotActiveError,
    MissionNotFoundError,
    MissionNotRetryableError,
    OutputNotSerializableError,
    RecoveryAttemptsExceededError,
    RevisionConflictError,
    SignalTimeoutError,
    StepTimeoutError,
    UnknownDefinitionError,
    UnknownEventError,
    UnknownSignalError,
    message_of,
)
from ._loop import raise_if_cancelled
from ._nodes import (
    ChildNode,
    ChoiceNode,
    EndNode,
    ForEachNode,
    LoopNode,
    NeedToNode,
    Node,
    ParallelMode,
    ParallelNode,
    SleepNode,
    StartNode,
    StepNode,
)
from ._notices import Notices
from ._observer import ObservedNode, RunTrigger, SafeObserver, SafeRun
from ._persistence import PersistenceAdapter
from ._retry import RetryPolicy
from ._snapshot import (
    COMPENSATION_SUFFIX,
    CancelRequest,
    ErrorInfo,
    JsonValue,
    MissionSnapshot,
    MissionStatus,
    NewSignal,
    NodeRecord,
    NodeStatus,
    ParentLink,
    Pause,
    TimelineEntry,
    TimelineKind,
    Wait,
    WaitKind,
)
from ._tenants import local_id, shown_id, tenant_key
from ._values import (
    INT_FLOOR,
    INT_LIMIT,
    STORED_AS_IS,
    copy_json,
    from_json_value,
    is_text,
    to_json_value,
)

Definition = MissionDefinition[Any, Any, Any]


_CHANGED_IN_PLACE = (
    "(it changed since the mission started on it: a changed definition needs a new version, "
    "registered beside the old one until the old one's missions end)"
)


def unknown_version_message(
    snapshot: MissionSnapshot, definitions: Mapping[tuple[str, int], Definition]
) -> str:
    """Why ``snapshot``'s mission cannot move: its definition, or the version of it the mission
    started on, is not registered."""
    name, version = snapshot.definition, snapshot.definition_version
    versions = sorted(v for n, v in definitions if n == name)
    if versions:
        return (
            f"mission {snapshot.id!r} runs on version {version} of definition {name!r}, which "
            f"this commander was not given (it has version{'s' if len(versions) > 1 else ''} "
            f"{', '.join(map(str, versions))}): a mission keeps the version it started on, so "
            f"give the commander version {version} beside the others until its missions end"
        )
    known = ", ".join(sorted({n for n, _ in definitions})) or "none"
    return (
        f"mission {snapshot.id!r} uses definition {name!r}, which this commander was not given "
        f"(known: {known})"
    )


step_logger = logging.getLogger("mission_control.steps")
"""A WARNING for each failed attempt of a start ``run`` or a step, with its traceback."""
mission_logger = logging.getLogger("mission_control.missions")
"""An ERROR for each mission that fails, with the stored traceback of what failed it."""

# What a plain (not async) user function returns, which can never be awaited: checked by exact
# type before inspect.isawaitable, which for these ends in a slow abc check.
_PLAIN_RESULTS: frozenset[type] = frozenset({type(None), bool, int, float, str, dict, list, tuple})


def _is_singleton(definition: Definition) -> bool:
    """Whether a start of ``definition`` (which has a concurrency key) refuses or joins when
    every slot of its key is held."""
    concurrency = definition.concurrency
    assert concurrency is not None
    return concurrency.when_busy is not WhenBusy.QUEUE


def _gate_name(name: str) -> str:
    """A definition's name as it is written in a gate (see ``Engine._key_of``)."""
    return name.replace("%", "%25").replace("/", "%2F").replace(":", "%3A")


def _is_awaitable(value: object) -> bool:
    kind = type(value)
    if kind is CoroutineType:
        return True
    return kind not in _PLAIN_RESULTS and inspect.isawaitable(value)


class _Hold:
    """The in-process claim on a mission while a task moves it, and the pokes left for that
    task. Used as ``with _Hold(notices, mission_id) as hold:``; leaving releases the claim."""

    __slots__ = (
        "_asking",
        "_holds",
        "_notices",
        "cancel",
        "children",
        "may_leave_running",
        "mission_id",
        "pause",
        "pausing",
        "poked",
        "released",
        "run",
        "status",
        "trigger",
        "wake",
    )

    def __init__(self, notices: Notices, mission_id: str, trigger: RunTrigger) -> None:
        self._holds: dict[str, _Hold] = notices.holds
        self._notices = notices
        self.mission_id = mission_id
        self.trigger = trigger
        self.run: SafeRun | None = None
        """The observer's run, once the engine began to change the mission (with an
        observer)."""
        self.status: MissionStatus | None = None
        """The mission's status as the run last wrote it (kept for the observer only)."""
        self.poked = False
        self.cancel: CancelRequest | None = None
        self.pause: Pause | None = None
        """A pause asked for while the holder runs the mission: applied at its next node
        boundary (once no function of it runs), withdrawn by a resume before that."""
        self.pausing = False
        """Whether the holder paused the mission and is storing that (a resume waits for it to
        let go, then resumes the paused mission)."""
        self._asking: anyio.Lock | None = None
        self.released: anyio.Event | None = None
        self.wake: MemoryObjectSendStream[Any] | None = None
        """Where a poke wakes the holder while it waits on several running nodes."""
        self.children: set[str] = set()
        """The child missions being started, and run to their first wait, in the holder's
        call."""
        self.may_leave_running = False
        """Whether letting go mid-move may leave the mission stored ``running`` with nobody
        moving it: set once a user function may have started, a write may have been tried, or
        the hold took over a mission stored ``running``. A refusal before that leaves the
        mission as it was."""

    def __enter__(self) -> _Hold:
        assert self.mission_id not in self._holds, f"mission {self.mission_id!r} is held already"
        self._holds[self.mission_id] = self
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, error: BaseException | None, *tb: object
    ) -> None:
        del self._holds[self.mission_id]
        if self.released is not None:
            self.released.set()
        if self.run is not None:
            self.run.ended(self.status, error)
        if error is not None and self.may_leave_running and not _stops_process(error):
            # Let go mid-move (a cancelled caller, an error): the mission may be stored running
            # with nobody moving it, which only a tick resumes. Not when the process is
            # stopping: the next start-up resumes it.
            self._notices.left_running(self.mission_id, failed=isinstance(error, Exception))

    def poke(self) -> None:
        """Ask the holder to look at the mission again (a signal, a cancellation or a due time
        came) before it lets go."""
        self.poked = True
        if self.wake is not None:
            self.wake.send_nowait(None)

    def asking(self) -> anyio.Lock:
        """Held by a pause or a resume while it looks at the held mission and writes its
        request: one at a time, so that each acts on what the one before left, in the store and
        in the holder alike (a resume between a pause's write and its word to the holder would
        withdraw the stored request while the holder still pauses)."""
        if self._asking is None:
            self._asking = anyio.Lock()
        return self._asking

    async def wait_released(self) -> None:
        if self.released is None:
            self.released = anyio.Event()
        await self.released.wait()


_NEVER_RETRIED = (OutputNotSerializableError, UnknownEventError, CompensationRequested)
"""Errors no other attempt is made for: the definition is wrong (another attempt cannot
succeed), or the function asked for the mission's compensation."""

DEFAULT_MAX_RECOVERY_ATTEMPTS = 5
"""How many times, by default, a mission found running with nobody moving it has its node run
again before it fails with :class:`RecoveryAttemptsExceededError`."""

_PROCESS_STOPS = (KeyboardInterrupt, SystemExit)


def _stops_process(error: BaseException) -> bool:
    if isinstance(error, BaseExceptionGroup):
        group: BaseExceptionGroup[BaseException] = error  # pyright: ignore[reportUnknownVariableType]
        return group.subgroup(_PROCESS_STOPS) is not None
    return isinstance(error, _PROCESS_STOPS)


def _first_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first exception in ``group`` that is no group itself."""
    first = group.exceptions[0]
    if isinstance(first, BaseExceptionGroup):
        return _first_leaf(first)  # pyright: ignore[reportUnknownArgumentType]
    return first


async def _raised_by_function(raised: BaseException) -> BaseException:
    """``raised``, a BaseException that is no Exception, as the failure of the user function
    that raised it; re-raised when it stops the process, and a cancellation of this task
    propagates instead.

    A cancellation is told apart by the cancel scopes around the function, not by the
    exception's type: a function may raise a cancellation exception it caught itself (or
    GeneratorExit, or its own BaseException subclass) while nothing around it is cancelled.
    """
    if _stops_process(raised):
        raise raised
    await raise_if_cancelled(raised)
    return raised


async def _within_timeout(
    node: StepNode, seconds: float, function: Callable[[Any], Any], ctx: Context[Any, Any]
) -> Any:
    """What the step's function gave, or :class:`StepTimeoutError` once ``seconds`` passed."""
    # The scope tells its own timeout from a TimeoutError the function raised.
    with anyio.move_on_after(seconds):
        result = function(ctx)
        return (await result) if _is_awaitable(result) else result
    raise StepTimeoutError(f"step {node.name!r} did not finish within {seconds:g} s")


class _LostRace(Exception):
    """Internal: another start inserted the same mission id first."""

    def __init__(self, existing: MissionSnapshot) -> None:
        super().__init__(existing.id)
        self.existing = existing


def check_id(mission_id: object) -> None:
    if not isinstance(mission_id, str) or not mission_id or not is_text(mission_id):
        raise InvalidInputError(
            f"mission id must be a non-empty string UTF-8 can encode, got {mission_id!r}"
        )


def _check_owner(definition: Definition, existing: MissionSnapshot, tenant: str | None) -> None:
    """Refuse to take a stored mission of another definition (or tenant) for one of
    ``definition``."""
    if existing.tenant != tenant:
        # Only a mission stored before tenants, under an id of a tenant's form, gets here;
        # what it is stays unsaid.
        raise MissionAlreadyExistsError(f"mission id {existing.id!r} is taken")
    if existing.definition != definition.name:
        raise MissionAlreadyExistsError(
            f"mission id {shown_id(existing)!r} belongs to a mission of definition "
            f"{existing.definition!r}, not {definition.name!r}"
        )


def _fork_of(existing: MissionSnapshot, source_id: str) -> MissionSnapshot:
    """``existing``, stored under the id a fork of ``source_id`` was to take, if it is such a
    fork (forking again returns it); :class:`MissionAlreadyExistsError` otherwise."""
    if existing.forked_from != source_id:
        raise MissionAlreadyExistsError(
            f"mission id {shown_id(existing)!r} is taken by a mission that is not a fork of "
            f"{local_id(source_id, existing.tenant)!r}"
        )
    return existing


def _first_not_done(definition: Definition, snapshot: MissionSnapshot) -> str:
    """The first top-level node that did not complete in ``snapshot``: where a retry runs
    again from by default. Not simply the node the mission stopped at: a cancellation (or the
    deadline) that came while a step ran leaves the mission there with that step completed,
    and its output must not be made again."""
    for node in definition.nodes:
        record = snapshot.nodes.get(node.name)
        if record is None or record.status not in DONE:
            return node.name
    return definition.nodes[-1].name


def _check_nothing_undone(
    definition: Definition, source: MissionSnapshot, at_node: str, again: set[str]
) -> None:
    """Refuse a fork that would copy a step whose compensation ran (or began) in the source:
    its output no longer holds, and the fork would owe nothing for it."""
    undone = [
        path.removesuffix(COMPENSATION_SUFFIX)
        for path in source.nodes
        if path.endswith(COMPENSATION_SUFFIX)
        and top_level(path.removesuffix(COMPENSATION_SUFFIX)) not in again
    ]
    if undone:
        tops = {top_level(path) for path in undone}
        first = next(node.name for node in definition.nodes if node.name in tops)
        raise InvalidInputError(
            f"cannot fork mission {shown_id(source)!r} at {at_node!r}: the compensation of "
            f"{', '.join(repr(p) for p in undone)} before it ran in that mission, so what it "
            f"made no longer holds; fork at {first!r} or an earlier node (at 'start' to run "
            "the mission afresh)"
        )


def _log_attempt_failed(
    mission_id: str,
    node: StartNode | StepNode | ChildNode,
    attempt: int,
    error: BaseException,
    then: str,
) -> None:
    if isinstance(error, CompensationRequested):
        # Asked for, not a fault: one line, no traceback.
        step_logger.info(
            "%s %r of mission %r asked for compensation: %s",
            node.kind,
            node.name,
            mission_id,
            message_of(error),
        )
        return
    of = f" of {node.retry.max_attempts}" if isinstance(node, _RETRIED_NODES) else ""
    step_logger.warning(
        "%s %r of mission %r failed on attempt %d%s: %s",
        node.kind,
        node.name,
        mission_id,
        attempt,
        of,
        then,
        exc_info=error,
    )


def _log_mission_failed(snapshot: MissionSnapshot) -> None:
    error = snapshot.error
    if error is None:
        return
    if error.type == CompensationRequested.__qualname__:
        mission_logger.info(
            "mission %r (%s) asked at %r for compensation%s: %s",
            snapshot.id,
            snapshot.definition,
            snapshot.current_node,
            " and was compensated" if snapshot.status is MissionStatus.COMPENSATED else "",
            error.message,
        )
        return
    mission_logger.error(
        "mission %r (%s) failed at %r%s: %s: %s%s",
        snapshot.id,
        snapshot.definition,
        snapshot.current_node,
        " and was compensated" if snapshot.status is MissionStatus.COMPENSATED else "",
        error.type,
        error.message,
        "" if error.traceback is None else "\n" + error.traceback.rstrip("\n"),
    )


def _fail(
    draft: Draft,
    node: Node,
    path: str,
    error: BaseException,
    info: ErrorInfo,
    attempts: int,
    now: datetime,
) -> None:
    """Fail the mission at the node at ``path`` with ``info``, the record of ``error`` (which,
    a :class:`CompensationRequested`, has the mission compensate even with nothing owed)."""
    compensate = isinstance(error, CompensationRequested)
    draft.failed(path, node.name, node.kind, info, now, attempts=attempts, compensate=compensate)


def _next_attempt_at(
    policy: RetryPolicy,
    error: BaseException,
    attempt: int,
    info: ErrorInfo,
    now: datetime,
    what: str,
) -> datetime | ErrorInfo | None:
    """When the attempt after ``attempt`` of ``what``, which failed with ``error`` (``info`` its
    record), is due as ``policy`` says; ``None`` when no other attempt is made. A custom backoff
    that raises cannot schedule the retry: then the error to fail with for good, the backoff's
    and ``error`` both in it."""
    if isinstance(error, _NEVER_RETRIED) or not policy.should_retry(error, attempt):
        return None
    try:
        return now + policy.backoff.delay(attempt)
    except Exception as backoff_error:
        failure = ErrorInfo.from_exception(backoff_error, attempt)
        return attrs.evolve(
            failure,
            message=f"retry backoff of {what} failed ({failure.message}) after: "
            f"{info.type}: {info.message}",
        )


# As a tuple: isinstance with ``A | B`` written inline builds the union at every call.
_FUNCTION_NODES = (StartNode, StepNode, ChildNode)
_RETRIED_NODES = (StepNode, ChildNode)

CHILD_CHECK = timedelta(minutes=1)
"""How long after starting its child a parent looks at the child by itself, should the wake-up
the child's end gives it have been lost (a crash between the two); each later look waits as long
again as the child has run so far, up to ``CHILD_CHECK_MAX``."""
CHILD_CHECK_MAX = timedelta(hours=1)


def child_of(record: NodeRecord) -> str | None:
    """The id of the child mission a child node's record says it waits for (``None``: not
    started yet)."""
    started: Any = record.input
    if not isinstance(started, dict):
        return None
    mission_id = cast(dict[str, Any], started).get("mission_id")
    return mission_id if isinstance(mission_id, str) else None


def child_id(parent_id: str, path: str, attempt: int, retries: int | None = None) -> str:
    """The id of the child mission the child node at ``path`` starts on attempt ``attempt``;
    after the parent was retried (``retries`` times), one of its own, since the attempts of the
    retried node count from 1 again while the children of the run before are kept."""
    base = f"{parent_id}/{path}"
    if retries:
        return f"{base}#r{retries}.{attempt}"
    return base if attempt == 1 else f"{base}#{attempt}"


_Outcome = tuple[JsonValue, BaseException | None, int]
"""What running a node's function gave: its output as JSON, the error it raised, the attempt."""
_Message = tuple[str, anyio.CancelScope, _Outcome | BaseException]
"""A branch function's outcome, sent to the drive: its path, its task's scope, the outcome (or
the process stop it raised, for the drive to raise)."""


class Engine:
    """Moves missions forward and writes each transition through the persistence adapter.

    How a mission moves: a mission has one or more *positions* (``draft.active``), each a node in
    progress. :meth:`_enter` puts a position on a node, :meth:`_apply` applies what a node's
    function gave, :meth:`_leave` moves past a finished node (to the next in its chain, or out of
    a branch), and :meth:`_settle` applies everything that needs no function call (cancellation,
    the deadline, due timers and retries, buffered signals). :meth:`_drive` runs the functions and
    :meth:`_write` is the one place a transition is committed; when it happens is decided by
    :meth:`_write_before_running`.
    """

    def __init__(
        self,
        definitions: dict[tuple[str, int], Definition],
        persistence: PersistenceAdapter,
        clock: Clock,
        new_id: Callable[[], str],
        notices: Notices,
        max_recovery_attempts: int,
        converter: cattrs.Converter,
        observer: SafeObserver | None = None,
    ) -> None:
        self.definitions = definitions
        self.observer = observer
        self.max_recovery_attempts = max_recovery_attempts
        # The user's converter: user types in inputs, outputs and payloads, never the records.
        self.converter = converter
        self.persistence = persistence
        # The engine reads the clock at every transition: the system clock is read by calling
        # datetime.now from C, at half the cost of the method that does the same.
        self.now: Callable[[], datetime] = (
            functools.partial(datetime.now, UTC) if type(clock) is SystemClock else clock.now
        )
        self.new_id = new_id
        # On a store whose missions are split between owners (MissionOwnership), whether this
        # process runs a mission: a new one it does not is stored for its owner to start.
        self.owns: Callable[[str], bool] | None = None
        self.notices = notices
        self.loop = notices.loop
        # Shared by every engine on this adapter object, so that none moves a mission another
        # holds.
        self._holds: dict[str, _Hold] = notices.holds
        self.plain_turns = True
        """Whether :meth:`_drive` takes the plain turn when it can (see :meth:`_plain_position`
        and :meth:`_applied_plainly`); without it, every turn is the general one, which the
        tests hold the plain turn equal to."""

    # -- holding -------------------------------------------------------------------------------

    def is_held(self, mission_id: str) -> bool:
        return mission_id in self._holds

    def _hold(self, mission_id: str, trigger: RunTrigger) -> _Hold:
        return _Hold(self.notices, mission_id, trigger)

    # -- the observer (only with one: the engine pays one ``is None`` test where it may call it)

    def _begin_run(self, draft: Draft, hold: _Hold) -> None:
        """Tell the observer the held mission of ``draft`` is about to change (once per hold),
        giving the mission a context first if it has none."""
        observer = self.observer
        if observer is None or hold.run is not None:
            return
        if draft.trace_context is None:
            # Written with the mission's next write (its insert, for a new mission).
            draft.trace_context = observer.context_for(draft, is_new=not draft.stored)
        hold.run = observer.run_started(draft, hold.trigger)

    def _run_of(self, draft: Draft) -> SafeRun | None:
        hold = self._holds.get(draft.id)
        return None if hold is None else hold.run

    def _waited(
        self,
        draft: Draft,
        path: str,
        outcome: NodeStatus,
        now: datetime,
        error: ErrorInfo | None = None,
    ) -> None:
        """Tell the observer the wait at ``path`` (its record as it waited) ended."""
        run = self._run_of(draft)
        if run is not None:
            record = draft.nodes[path]
            node = ObservedNode(path, record.name, record.kind, record.attempts or 1)
            run.node_waited(node, record.started_at, now, outcome, error)

    def definition_for(self, snapshot: MissionSnapshot) -> Definition:
        """The version of its definition the mission started on: a mission runs on it until it
        ends, whatever later versions are registered beside it."""
        definition = self.definitions.get((snapshot.definition, snapshot.definition_version))
        if definition is None:
            raise UnknownDefinitionError(unknown_version_message(snapshot, self.definitions))
        return definition

    async def load(self, mission_id: str) -> MissionSnapshot:
        # An id UTF-8 cannot encode was never stored (start refuses it), and a store cannot
        # even be asked about it.
        if type(mission_id) is str and not is_text(mission_id):
            raise MissionNotFoundError(f"no mission with id {mission_id!r}")
        snapshot = await self.persistence.load(mission_id)
        if snapshot is None:
            raise MissionNotFoundError(f"no mission with id {mission_id!r}")
        return snapshot

    # -- entry points --------------------------------------------------------------------------

    async def start(
        self,
        definition: Definition,
        raw_input: Any,
        mission_id: str | None,
        start_at: datetime | None,
        background: bool = False,
        parent: ParentLink | None = None,
        tenant: str | None = None,
    ) -> MissionSnapshot:
        """Store a new mission (or return the one stored under ``mission_id``) and run it until
        its first wait; with ``start_at`` in the future, or ``background``, store it waiting for
        its start (due then, or now) and run nothing: the runtime starts it. ``mission_id`` is
        the stored key (of ``tenant``'s form, see ``_tenants``)."""
        input_json = self.checked_input(definition, raw_input)
        key = self._key_of(definition, input_json, tenant)
        if mission_id is None:
            mission_id = self.new_id()
        else:
            check_id(mission_id)
            existing = await self._existing_or_free(definition, mission_id, tenant)
            if existing is not None:
                return existing
        # A singleton's start takes its slot in the write that stores it (see _insert_holding).
        # A key busy already refuses or joins here, before an observer hears of a run: only
        # another start taking the slot meanwhile is found by that write. One that begins
        # later is only checked now, and waits for a slot when it begins.
        singleton = key is not None and _is_singleton(definition)
        if key is not None and singleton:
            if (joined := await self._when_busy(definition, key, tenant)) is not None:
                return joined
            if start_at is not None and start_at > self.now():
                singleton = False
        if not background and self.owns is not None and not self.owns(mission_id):
            background = True
        # No checkpoint since the mission was found free: nobody else holds it yet.
        with self._hold(mission_id, RunTrigger.START) as hold:
            now = self.now()
            begins = start_at if start_at is not None and start_at > now else None
            if background and begins is None:
                begins = now
            deadline = (
                None if definition.deadline is None else (begins or now) + definition.deadline
            )
            draft = Draft.new(
                mission_id, definition.name, definition.version, input_json, now, deadline
            )
            draft.parent = parent
            draft.tenant = tenant
            draft.concurrency_key = key
            if self.observer is not None:
                self._begin_run(draft, hold)
            if begins is not None:
                self._schedule_start(draft, begins, now)
            else:
                self._begin_start(draft, now)
            try:
                if singleton:
                    snapshot = await self._insert_holding(definition, draft, tenant)
                    if not background:
                        snapshot = await self._drive(definition, draft, hold)
                elif background:
                    # Stored as it is, even when due now: driving it would fire the start.
                    snapshot = await self._write(draft)
                else:
                    snapshot = await self._drive(definition, draft, hold)
            except _LostRace as race:
                # Another process stored the id first (it must be this definition's too), or
                # the singleton joins the mission that holds its key.
                _check_owner(definition, race.existing, tenant)
                return race.existing
            if background:
                # A tick that found the mission while it was held asked for it again (a poke):
                # the notice gets it a tick of its own instead of a run in the caller's task.
                self.notices.due(begins or now)
                return await self._pause_asked(draft, hold) or snapshot
            return await self._finish(definition, snapshot, hold)

    async def signal_with_start(
        self,
        definition: Definition,
        raw_input: Any,
        mission_id: str,
        name: str,
        payload: Any,
        *,
        background: bool = False,
        tenant: str | None = None,
    ) -> MissionSnapshot | None:
        """Send the signal ``name`` to the mission ``mission_id``, starting it first with
        ``raw_input`` when it does not exist: then it is stored with the signal in its inbox, in
        one write, and runs until its first wait (it takes the signal at its need_to). Input and
        payload are checked against ``definition`` before anything is read or stored.

        With ``background`` (a process that does not own the store) a new mission is stored
        waiting for its start, due now, with the signal in its inbox, and nothing runs; for a
        mission that exists nothing is sent and ``None`` is returned (the caller submits the
        signal)."""
        input_json = self.checked_input(definition, raw_input)
        key = self._key_of(definition, input_json, tenant)
        check_id(mission_id)
        self._check_signal_name(definition, name)
        payload_json, _ = self._checked_payload(definition, mission_id, name, payload)
        if await self._existing_or_free(definition, mission_id, tenant) is None:
            # No checkpoint since the mission was found free: nobody else holds it yet.
            with self._hold(mission_id, RunTrigger.START) as hold:
                now = self.now()
                deadline = None if definition.deadline is None else now + definition.deadline
                draft = Draft.new(
                    mission_id, definition.name, definition.version, input_json, now, deadline
                )
                draft.tenant = tenant
                draft.concurrency_key = key
                if self.observer is not None:
                    self._begin_run(draft, hold)
                if background:
                    self._schedule_start(draft, now, now)
                else:
                    self._begin_start(draft, now)
                draft.log(now, TimelineKind.SIGNAL_BUFFERED, name)
                snapshot = draft.freeze(1)
                # Stored running once inserted: a caller cancelled during the insert leaves it
                # to the runtime (a mission another process stored first is not this task's).
                hold.may_leave_running = not background
                existing = await self.persistence.insert(
                    snapshot, draft.pending, signals=[NewSignal(name, payload_json, now)]
                )
                if existing is not None:
                    hold.may_leave_running = False
                elif background:
                    self.notices.due(now)
                    draft.wrote(snapshot)
                    return await self._pause_asked(draft, hold) or snapshot
                if existing is None:
                    draft.wrote(snapshot)
                    snapshot = await self._drive(definition, draft, hold)
                    return await self._finish(definition, snapshot, hold)
                # Another process stored the mission first: the signal goes to that one.
                _check_owner(definition, existing, tenant)
        if background:
            return None
        return await self.signal(mission_id, name, payload)

    @staticmethod
    def _schedule_start(draft: Draft, begins: datetime, now: datetime) -> None:
        """Make the new mission of ``draft`` wait for its start at ``begins``."""
        draft.log(
            now, TimelineKind.MISSION_SCHEDULED, "start", detail={"start_at": begins.isoformat()}
        )
        draft.wait_at("start", "start", "start", Wait(WaitKind.START, "start", due_at=begins), now)

    def checked_input(self, definition: Definition, raw_input: Any) -> JsonValue:
        """The mission input as JSON, once the definition's parser accepted it."""
        try:
            input_json = to_json_value(raw_input, what="mission input", converter=self.converter)
        except OutputNotSerializableError as error:
            raise InvalidInputError(str(error)) from None
        try:
            definition.parse_input(input_json)
        except Exception as error:
            raise InvalidInputError(
                f"mission {definition.name!r} rejected its input: {message_of(error)}"
            ) from error
        return input_json

    async def _existing_or_free(
        self, definition: Definition, mission_id: str, tenant: str | None
    ) -> MissionSnapshot | None:
        """The stored mission ``mission_id`` (of ``definition``, else
        :class:`MissionAlreadyExistsError`), or ``None`` once it is neither stored nor being
        inserted by another task: the caller then holds it before its next checkpoint."""
        while True:
            # Read first: a stored mission is returned at once, even while a task moves it.
            existing = await self.persistence.load(mission_id)
            if existing is not None:
                _check_owner(definition, existing, tenant)
                return existing
            other = self._holds.get(mission_id)
            if other is None:
                return None
            # Another start is inserting this mission now: wait, then look again.
            await other.wait_released()

    async def advance(self, mission_id: str) -> MissionSnapshot | None:
        """Move a due or interrupted mission forward; ``None`` when it is held in this process
        already (its holder is asked to look at it again, and moves it)."""
        holder = self._holds.get(mission_id)
        if holder is not None:
            holder.poke()
            return None
        with self._hold(mission_id, RunTrigger.ADVANCE) as hold:
            snapshot = await self.load(mission_id)
            if snapshot.is_terminal:
                return snapshot
            if snapshot.parent is not None:
                snapshot = await self._cancel_if_orphaned(snapshot, snapshot.parent, hold)
                if snapshot.is_terminal:
                    return snapshot
            running = snapshot.status is MissionStatus.RUNNING
            # Set before the definition is looked up: a running mission whose definition is
            # unknown here is still left running when that raises.
            hold.may_leave_running = running
            definition = self.definition_for(snapshot)
            draft = Draft.of(snapshot)
            if self.observer is not None:
                if running:
                    hold.trigger = RunTrigger.RESUME
                self._begin_run(draft, hold)
            if running:
                if (
                    snapshot.cancel_request is None or snapshot.compensating
                ) and snapshot.pause_request is None:
                    # (A compensation a cancellation began is counted like any node.)
                    await self._recover(definition, draft)
                else:
                    # Cancelled or paused at once by the drive, nothing runs again now.
                    draft.log(self.now(), TimelineKind.MISSION_RESUMED, snapshot.current_node)
            snapshot = await self._drive(definition, draft, hold)
            return await self._finish(definition, snapshot, hold)

    # -- retry and fork ------------------------------------------------------------------------

    def retry_node(
        self, snapshot: MissionSnapshot, from_node: str | None
    ) -> tuple[Definition, str]:
        """The definition and the top-level node a retry of ``snapshot`` runs again from, or
        the error the retry earns (nothing is stored by then)."""
        self.ensure_retryable(snapshot)
        definition = self.definition_for(snapshot)
        path = _first_not_done(definition, snapshot) if from_node is None else from_node
        self.check_top_level(definition, snapshot, path, "retry", "from_node")
        return definition, path

    @staticmethod
    def check_retry_point(snapshot: MissionSnapshot, from_node: str) -> None:
        """Refuse a ``from_node`` that the mission's records alone show a retry cannot run
        from, for a process without the mission's definition (the owner checks the rest): a
        nested node, or a node the mission never reached past a node that did not complete.
        The records of top-level nodes always cover the top-level chain from its start, up to
        where the mission stopped."""
        top = {path: record for path, record in snapshot.nodes.items() if "/" not in path}
        if from_node in top:
            return
        inside = next(
            (
                path
                for path in snapshot.nodes
                if (path == from_node or path.endswith(f"/{from_node}"))
                and not path.endswith(COMPENSATION_SUFFIX)
            ),
            None,
        )
        if inside is None and "/" in from_node:
            raise InvalidInputError(
                f"cannot retry mission {shown_id(snapshot)!r} at {from_node!r}: only a top-level "
                "node can be run again from, and a node's name has no '/'"
            )
        if inside is not None:
            raise InvalidInputError(
                f"cannot retry mission {shown_id(snapshot)!r} at {from_node!r}: only a top-level "
                "node can be run again from (not one inside a parallel, a choice, a loop's body or "
                f"the deadline path); the top-level node it is in is {top_level(inside)!r}"
            )
        stopped = next((p for p, r in top.items() if r.status not in DONE), None)
        if stopped is not None:
            raise InvalidInputError(
                f"cannot retry mission {shown_id(snapshot)!r} at {from_node!r}: the mission never "
                f"reached a node of that name, and its node {stopped!r} did not complete "
                f"({top[stopped].status.value}); pick {stopped!r} or a node before it"
            )

    @staticmethod
    def ensure_retryable(snapshot: MissionSnapshot) -> None:
        """Refuse a retry of a mission that is not failed or cancelled, ran compensations or is
        a child (what needs no definition to say)."""
        status = snapshot.status
        if status is not MissionStatus.FAILED and status is not MissionStatus.CANCELLED:
            raise MissionNotRetryableError(
                f"cannot retry mission {shown_id(snapshot)!r}: it is {status.value}; only a failed "
                "or cancelled mission is retried"
                + (
                    " (its compensations undid what it had done: fork it at 'start' to run it "
                    "afresh)"
                    if status is MissionStatus.COMPENSATED
                    else ""
                )
            )
        if snapshot.compensating:
            raise MissionNotRetryableError(
                f"cannot retry mission {shown_id(snapshot)!r}: it ran some of its compensations "
                "before it failed, so what it had done is partly undone (fork it at 'start' to "
                "run it afresh)"
            )
        if snapshot.parent is not None:
            raise MissionNotRetryableError(
                f"cannot retry mission {shown_id(snapshot)!r}: it is a child of mission "
                f"{local_id(snapshot.parent.mission_id, snapshot.tenant)!r}, which no longer "
                "waits for it; retry the parent "
                f"from its child node {snapshot.parent.node.partition('/')[0]!r} instead"
            )

    @staticmethod
    def check_top_level(
        definition: Definition, snapshot: MissionSnapshot, path: str, action: str, argument: str
    ) -> list[str]:
        """Refuse ``path`` unless it is a top-level node of ``definition`` every node before
        which completed in ``snapshot``; return the top-level nodes from ``path`` on."""
        if not isinstance(path, str):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise InvalidInputError(f"{argument} must be a node name (a str), got {path!r}")
        names = [node.name for node in definition.nodes]
        if path not in names:
            nested = definition.path_of(path) or (
                path if definition.place_or_none(path) is not None else None
            )
            if nested is not None:
                raise InvalidInputError(
                    f"cannot {action} mission {shown_id(snapshot)!r} at {path!r}: only a "
                    "top-level node can be run again from (not one inside a parallel, a choice, "
                    "a loop's body or the deadline path); the top-level node it is in is "
                    f"{top_level(nested)!r}"
                )
            raise InvalidInputError(
                f"cannot {action} mission {shown_id(snapshot)!r} at {path!r}: definition "
                f"{definition.name!r} version {definition.version} has no such node (top-level "
                f"nodes: {', '.join(names)})"
            )
        index = names.index(path)
        for before in names[:index]:
            record = snapshot.nodes.get(before)
            if record is None or record.status not in DONE:
                got = "never reached" if record is None else record.status.value
                raise InvalidInputError(
                    f"cannot {action} mission {shown_id(snapshot)!r} at {path!r}: node {before!r} "
                    f"before it has not completed ({got}); pick a node at or before {before!r}"
                )
        return names[index:]

    async def retry(self, mission_id: str, from_node: str | None) -> MissionSnapshot:
        """Run a failed or cancelled mission again from the top-level node it stopped at (or
        ``from_node``), keeping the records of the nodes before it; until its first wait or its
        end, as ``start`` runs a new one."""
        if mission_id in self._holds:
            snapshot = await self.load(mission_id)
            raise MissionNotRetryableError(
                f"cannot retry mission {mission_id!r}: a task of this process is moving it "
                f"(it is {snapshot.status.value})"
            )
        with self._hold(mission_id, RunTrigger.RETRY) as hold:
            snapshot = await self.load(mission_id)
            definition, path = self.retry_node(snapshot, from_node)
            again = set(self.check_top_level(definition, snapshot, path, "retry", "from_node"))
            now = self.now()
            draft = Draft.of(snapshot)
            deadline = None if definition.deadline is None else now + definition.deadline
            draft.reopen(path, lambda p: top_level(p) in again, deadline, now)
            hold.may_leave_running = True
            self._begin_at(definition, draft, path, now)
            snapshot = await self._drive(definition, draft, hold)
            return await self._finish(definition, snapshot, hold)

    async def fork(
        self, source_id: str, at_node: str, new_id: str | None, background: bool
    ) -> MissionSnapshot:
        """Store a new mission of the source's definition and input holding the records of the
        top-level nodes before ``at_node`` (copied, not run again) and run it from ``at_node``
        until its first wait; with ``background``, store it waiting for its start at
        ``at_node``, due now (the runtime starts it). A mission stored under ``new_id`` that is
        a fork of the source is returned as it is."""
        source = await self.load(source_id)
        definition = self.definition_for(source)
        again = set(self.check_top_level(definition, source, at_node, "fork", "at_node"))
        _check_nothing_undone(definition, source, at_node, again)
        if new_id is None:
            # In the source's tenant, as every id the caller gives is (made so by the commander).
            new_id = tenant_key(source.tenant, self.new_id())
        else:
            check_id(new_id)
            existing = await self._existing_or_free(definition, new_id, source.tenant)
            if existing is not None:
                return _fork_of(existing, source_id)
        if not background and self.owns is not None and not self.owns(new_id):
            background = True
        # No checkpoint since the mission was found free: nobody else holds it yet.
        with self._hold(new_id, RunTrigger.START) as hold:
            now = self.now()
            deadline = None if definition.deadline is None else now + definition.deadline
            draft = Draft.new(
                new_id, definition.name, source.definition_version, source.input, now, deadline
            )
            copied = {p: r for p, r in source.nodes.items() if top_level(p) not in again}
            # Not the compensations the copied steps made owed: what they did is the source's
            # to undo (a fork that compensated would undo a mission that may have completed).
            draft.nodes = copied
            draft.forked_from = source_id
            draft.tenant = source.tenant
            draft.concurrency_key = source.concurrency_key
            if self.observer is not None:
                # Made here, in the caller's span, even when the owner's runtime runs it.
                draft.trace_context = self.observer.context_for(
                    draft, is_new=True, forked_from_context=source.trace_context
                )
            draft.log(
                now,
                TimelineKind.MISSION_FORKED,
                at_node,
                # In the definition's order: a store may give the records back in another one
                # (PostgreSQL's JSONB orders an object's keys its own way).
                detail={
                    "from": source_id,
                    "copied": [n.name for n in definition.nodes if n.name in copied],
                },
            )
            try:
                if background:
                    node = definition.places[at_node].node
                    wait = Wait(WaitKind.START, at_node, due_at=now)
                    draft.wait_at(at_node, node.name, node.kind, wait, now)
                    snapshot = await self._write(draft)
                    self.notices.due(now)
                    return await self._pause_asked(draft, hold) or snapshot
                self._begin_at(definition, draft, at_node, now)
                snapshot = await self._drive(definition, draft, hold)
            except _LostRace as race:
                return _fork_of(race.existing, source_id)
            return await self._finish(definition, snapshot, hold)

    async def _recover(self, definition: Definition, draft: Draft) -> None:
        """Count a re-run of the nodes a mission was left running at, or fail the mission when it
        has had ``max_recovery_attempts`` already.

        The count is written before the nodes run again, so that a node which takes the process
        down with it (SIGKILL, KeyboardInterrupt, SystemExit) or whose result cannot be written is
        counted all the same, and stops being re-run after the limit.
        """
        now = self.now()
        running = [p for p in draft.active if draft.nodes[p].status is NodeStatus.RUNNING]
        path = running[0] if running else draft.current_node or "start"
        attempts = draft.recovery_attempts + 1
        draft.recovery_attempts = attempts
        if attempts <= self.max_recovery_attempts:
            draft.log(
                now,
                TimelineKind.MISSION_RESUMED,
                draft.current_node,
                detail={"recovery_attempt": attempts},
            )
            await self._write(draft)
            return
        record = draft.nodes.get(path)
        found = definition.find(path)
        kind = record.kind if record is not None else found.kind if found is not None else "node"
        name = record.name if record is not None else path
        tried = (record.attempts if record is not None else 0) + 1
        error = RecoveryAttemptsExceededError(
            f"mission {draft.id!r} was left running at {kind} {path!r} {attempts} times in a row "
            f"(max_recovery_attempts={self.max_recovery_attempts}), so it is not run again: "
            f"the {kind} stops the process (a crash, SIGKILL, KeyboardInterrupt, SystemExit) or "
            f"its result cannot be stored. Fix the {kind} and start the mission again; if these "
            f"were unrelated crashes, raise max_recovery_attempts"
        )
        draft.failed(path, name, kind, ErrorInfo.from_exception(error, tried), now, attempts=tried)
        await self._write(draft)

    async def _finish(
        self, definition: Definition, snapshot: MissionSnapshot, hold: _Hold
    ) -> MissionSnapshot:
        # Runs until no poke is left; the caller's release follows with no checkpoint between.
        while hold.poked and not snapshot.is_terminal:
            hold.poked = False
            snapshot = await self._drive(definition, Draft.of(snapshot), hold)
        if snapshot.is_terminal:
            status = snapshot.status
            if status is MissionStatus.FAILED or status is MissionStatus.COMPENSATED:
                _log_mission_failed(snapshot)
            await self._ended(snapshot)
        elif (due := snapshot.due_at) is not None:
            self.notices.due(due)
        return snapshot

    # -- the drive loop ------------------------------------------------------------------------

    async def _drive(self, definition: Definition, draft: Draft, hold: _Hold) -> MissionSnapshot:
        """Run the mission's functions until it waits or ends, writing at each durable
        boundary; returns the last snapshot written (or read, when nothing changed)."""
        hold.may_leave_running = True
        if self.observer is not None:
            self._begin_run(draft, hold)
        if draft.pause_request is not None:
            self._take_pause_request(draft, hold)
        while True:
            path = self._plain_position(definition, draft, hold)
            if path is None:
                runnable = await self._settle(definition, draft, hold)
                if draft.ended or not runnable:
                    if draft.ended and draft.status is MissionStatus.RUNNING:
                        # Stopped to compensate (an ended mission is no longer running): the
                        # compensations run on this drive.
                        draft.ended = False
                        continue
                    if draft.dirty:
                        return await self._write(draft)
                    return draft.last if draft.last is not None else draft.freeze(draft.revision)
                if len(draft.active) > 1:
                    await self._run_together(definition, draft, hold)
                    continue
                # One position: its function runs here, as it would alone in a task of its own.
                path = runnable[0]
            if self._write_before_running(draft):
                await self._write(draft)
            if draft.compensations is not None and draft.compensating:
                await self._compensate(definition, draft, path)
                continue
            outcome = await self._call(definition, draft, path)
            if not self._applied_plainly(definition, draft, path, outcome, hold):
                self._apply(definition, draft, path, outcome, hold)

    # The plain turn: most turns of most missions are a start, a step or an end's function run
    # at the mission's one position, with nothing pending, followed by a step or the end. Such a
    # turn is recognised in a few checks and applied directly, where the general turn asks each
    # question (a cancellation, a pause, the deadline, waits, every position, every kind of node)
    # through several calls. The general turn is the reference: the plain one must change the
    # draft exactly as it would (tests/test_plain_turns.py runs missions of every shape both ways
    # and compares them).

    def _plain_position(self, definition: Definition, draft: Draft, hold: _Hold) -> str | None:
        """The path of the mission's one position when :meth:`_settle` would return just it and
        change nothing (one position, on a node whose function is to run, and no poke,
        cancellation, pause, deadline or wait); ``None`` when the general turn is to look."""
        active = draft.active
        if (
            len(active) != 1
            or not self.plain_turns
            or draft.waits
            or draft.ended
            or hold.poked
            or hold.cancel is not None
            or hold.pause is not None
            or draft.cancel_request is not None
            or draft.pause is not None
            or draft.deadline is not None
        ):
            return None
        path = active[0]
        place = definition.places.get(path)
        if place is None or place.function is None:
            return None
        record = draft.nodes[path]
        if record.status is not NodeStatus.RUNNING or record.kind != place.node.kind:
            return None
        return path

    def _applied_plainly(
        self, definition: Definition, draft: Draft, path: str, outcome: _Outcome, hold: _Hold
    ) -> bool:
        """Apply ``outcome`` as :meth:`_apply` would, when it is plain: the start, or a step
        with no compensation, completed, with no cancellation or deadline, and the node after it
        is a step or an end without an output function (``Place.plain_next``). Whether it was
        (if not, nothing changed)."""
        output, error, attempt = outcome
        place = definition.places[path]
        after = place.plain_next
        if (
            after is None
            or error is not None
            or not self.plain_turns
            or hold.cancel is not None
            or draft.cancel_request is not None
            or draft.deadline is not None
        ):
            return False
        node = place.node
        now = self.now()
        draft.log(now, TimelineKind.STEP_COMPLETED, path, attempt)
        draft.complete(path, node.name, node.kind, now, attempts=attempt, output=output)
        if isinstance(node, StepNode):
            draft.must_write = True
        if isinstance(after, StepNode):
            assert place.next is not None
            draft.run_node(place.next, after.name, after.kind, now)
        else:
            draft.completed(None, now)
        return True

    @staticmethod
    def _write_before_running(draft: Draft) -> bool:
        """The durability rule: a function runs only once the mission is stored, and once the
        result of every step and every choice before it is stored too (a step's result is
        written with the transition that follows it; a choice is never made twice). The start's
        and the end's functions are the exception: their results go with the next write, so a
        mission costs one write per step; a crash before that write runs them again, as it would
        any node (at least once). So is a due time that fired: a mission still stored waiting
        for it does the same again after a crash."""
        return not draft.stored or draft.must_write

    @staticmethod
    def _take_pause_request(draft: Draft, hold: _Hold) -> None:
        """Make the stored pause request the mission was read with the holder's: it pauses the
        mission at the next boundary, and a resume withdraws it from the holder. (It was asked
        for while another task held the mission, which let go before that boundary: its
        process stopped, or its caller was cancelled.)"""
        if hold.pause is None:
            hold.pause = draft.pause_request
        draft.pause_request = None

    def _stopping(self, draft: Draft, hold: _Hold) -> bool:
        """Whether no new function may start: a cancellation, a pause or the deadline waits for
        the running ones to finish (a running function is never interrupted by them); nor is a
        buffered signal taken then."""
        return (
            hold.cancel is not None
            or hold.pause is not None
            or draft.pause is not None
            or draft.stopping(self.now())
        )

    async def _run_together(self, definition: Definition, draft: Draft, hold: _Hold) -> None:
        """Run the functions of several positions at once (the branches of a parallel), each in
        a task of its own, applying and writing each result as it comes; returns once at most
        one position is left and nothing runs."""
        send, receive = anyio.create_memory_object_stream[_Message | None](math.inf)
        hold.wake = send
        try:
            with send, receive:
                await self._run_in_tasks(definition, draft, hold, send, receive)
        except BaseExceptionGroup as group:
            # What escapes the tasks' nursery (an error of the store, a step's SystemExit)
            # reaches the caller as itself, as it does from a mission in one chain; a process
            # stop first, whatever else came with it.
            stops = group.subgroup(_PROCESS_STOPS)
            first = _first_leaf(stops if stops is not None else group)
            if stops is not None or len(group.exceptions) == 1:
                raise first from None
            raise
        finally:
            hold.wake = None

    async def _run_in_tasks(
        self,
        definition: Definition,
        draft: Draft,
        hold: _Hold,
        send: MemoryObjectSendStream[_Message | None],
        receive: MemoryObjectReceiveStream[_Message | None],
    ) -> None:
        running: dict[str, anyio.CancelScope] = {}
        runnable = await self._settle(definition, draft, hold)
        async with anyio.create_task_group() as nursery:
            while True:
                if not self._stopping(draft, hold):
                    for path in runnable:
                        if path in running:
                            continue
                        if self._write_before_running(draft):
                            await self._write(draft)
                        scope = anyio.CancelScope()
                        running[path] = scope
                        nursery.start_soon(self._call_into, definition, draft, path, scope, send)
                if not running:
                    return
                if draft.dirty:
                    # Before waiting on the functions, what was decided is stored (a due time
                    # above all: the runtime ticks only for due times it can read).
                    await self._write(draft)
                message = await receive.receive()
                if message is not None:
                    path, scope, outcome = message
                    if isinstance(outcome, BaseException):
                        raise outcome
                    if running.get(path) is scope:
                        del running[path]
                        self._apply(definition, draft, path, outcome, hold)
                runnable = await self._settle(definition, draft, hold, busy=running)
                # Nodes a transition stopped (a branch cancelled, the mission ended).
                for path in [p for p in running if p not in draft.active]:
                    running.pop(path).cancel()
                if draft.dirty:
                    await self._write(draft)
                if not running and (draft.ended or len(draft.active) <= 1):
                    return

    async def _call_into(
        self,
        definition: Definition,
        draft: Draft,
        path: str,
        scope: anyio.CancelScope,
        send: MemoryObjectSendStream[_Message | None],
    ) -> None:
        with scope:
            try:
                outcome = await self._call(definition, draft, path)
            except _PROCESS_STOPS as stop:
                # Raised by the drive's task instead: asyncio raises a KeyboardInterrupt or
                # SystemExit out of the whole loop from the task it ended, after the caller got
                # it too; from the drive's task it propagates once, as on trio.
                send.send_nowait((path, scope, stop))
                return
            send.send_nowait((path, scope, outcome))

    async def _write(self, draft: Draft) -> MissionSnapshot:
        """Commit the draft: the one place a transition becomes durable."""
        if not draft.stored:
            snapshot = draft.freeze(1)
            existing = await self.persistence.insert(snapshot, draft.pending)
            if existing is not None:
                raise _LostRace(existing)
        elif draft.reopened:
            # A retry: the one commit that may take a stored cancellation request away.
            snapshot = draft.freeze(draft.revision + 1)
            await self.persistence.commit(
                snapshot,
                expected_revision=draft.revision,
                timeline=draft.pending,
                reopened=True,
            )
        else:
            snapshot = draft.freeze(draft.revision + 1)
            await self.persistence.commit(
                snapshot,
                expected_revision=draft.revision,
                timeline=draft.pending,
                consumed_signal=draft.consumed,
            )
        draft.wrote(snapshot)
        if self.observer is not None and (hold := self._holds.get(draft.id)) is not None:
            hold.status = snapshot.status
        if draft.orphans:
            # Stored as stopped: their children go too (a crash before this leaves them running,
            # and each cancels itself when it is next moved: see _cancel_if_orphaned).
            orphans, draft.orphans = draft.orphans, []
            # Shielded: a caller that gives up now must not leave the other children running.
            with anyio.CancelScope(shield=True):
                for path, attempt in orphans:
                    await self._cancel_child(
                        child_id(draft.id, path, attempt, draft.retries),
                        draft.id,
                        compensate=draft.compensating,
                    )
        if len(draft.active) > 1 and (due := snapshot.due_at) is not None:
            # The mission stays held while other positions run: the runtime is told now (with
            # one position, a due time means the mission waits, and _finish tells it).
            self.notices.due(due)
        return snapshot

    # -- transitions ---------------------------------------------------------------------------

    async def _settle(
        self, definition: Definition, draft: Draft, hold: _Hold, busy: Collection[str] = ()
    ) -> list[str]:
        """Apply every transition that needs no function call, until none is left: a
        cancellation, the deadline, due timers, retries and delayed starts, buffered signals and
        signal timeouts, and the nodes that complete by themselves. ``busy`` are the positions
        whose function runs now (a cancellation and the deadline wait for them). Returns the
        positions whose function is to run (``busy`` among them)."""
        runnable = self._settle_in_memory(definition, draft, hold, busy)
        # Only signal waits need the store (their inbox): most turns have none.
        while (
            draft.waits
            and not draft.ended
            and not self._stopping(draft, hold)
            and await self._settle_signals(definition, draft, self.now())
        ):
            runnable = self._settle_in_memory(definition, draft, hold, busy)
        return runnable

    def _settle_in_memory(
        self, definition: Definition, draft: Draft, hold: _Hold, busy: Collection[str]
    ) -> list[str]:
        """What :meth:`_settle` does without the store: all but buffered signals."""
        while not draft.ended:
            if hold.poked:
                hold.poked = False
                draft.unchecked.update(w.node for w in draft.waits if w.kind in LOOKED_AT)
            cancel = hold.cancel or draft.cancel_request
            # (Compensations run to their end: a cancellation no longer applies to them.)
            if cancel is not None and not draft.compensating:
                if not busy:
                    draft.cancelled(cancel, self.now())
                return []
            if draft.pause is not None or hold.pause is not None:
                # Paused: nothing fires, even when due (see pause()). A pause asked for while
                # functions run takes effect once they have returned.
                if draft.pause is None and not busy:
                    assert hold.pause is not None
                    draft.paused(hold.pause, self.now())
                    hold.pause = None
                    hold.pausing = True
                return []
            if draft.deadline is not None and draft.deadline_passed(self.now()):
                if not busy:
                    self._deadline_passed(definition, draft, self.now())
                    continue
                return []
            runnable = self._settle_positions(definition, draft)
            if runnable is not None:
                return runnable
        return []

    def _settle_positions(self, definition: Definition, draft: Draft) -> list[str] | None:
        """Settle one position that needs neither a function nor the store and return
        ``None``; when none does, the positions whose function is to run."""
        records = draft.nodes
        places = definition.places
        runnable: list[str] = []
        first_due: tuple[str, Wait, datetime] | None = None
        for path in draft.active:
            place = places.get(path) or definition.place_or_none(path)
            record = records[path]
            if place is None or place.node.kind != record.kind:
                if place is None and draft.compensating:
                    # Its one position is a compensation, no node of the definition.
                    return self._settle_compensation(draft)
                has = (
                    f"has no node {path!r}"
                    if place is None
                    else f"has a {place.node.kind} at {path!r}, where the mission is at a "
                    f"{record.kind}"
                )
                draft.failed(
                    path,
                    record.name,
                    record.kind,
                    ErrorInfo(
                        "MissingNodeError",
                        f"definition {definition.name!r} version {definition.version} {has} "
                        f"{_CHANGED_IN_PLACE}",
                    ),
                    self.now(),
                    attempts=record.attempts,
                )
                return None
            if record.status is NodeStatus.RUNNING:
                if place.function is not None:
                    runnable.append(path)
                    continue
                # A start without a function, or an end without one: nothing to wait for.
                if isinstance(place.node, EndNode):
                    draft.completed(None, self.now())
                else:
                    self._apply(definition, draft, path, (None, None, 1), None)
                return None
            wait = draft.wait_of(path)
            if wait is None or wait.due_at is None or wait.kind in LOOKED_AT:
                continue  # (a signal, child or slot wait is looked at in _settle_signals)
            # The earliest due wait fires first, whichever branch it is in: after a pause or
            # a runtime that was down, timers fire in the order they came due.
            if first_due is None or wait.due_at < first_due[2]:
                first_due = (path, wait, wait.due_at)
        if first_due is None:
            return runnable
        path, wait, due_at = first_due
        now = self.now()
        if due_at > now:
            return runnable
        place = places.get(path) or definition.place(path)
        # A due time that has passed needs no write of its own: if the process stops before
        # the next write, the mission is still due and does the same again.
        match wait.kind:
            case WaitKind.TIMER:
                if self.observer is not None:
                    self._waited(draft, path, NodeStatus.COMPLETED, now)
                draft.log(now, TimelineKind.TIMER_FIRED, path)
                node = place.node
                draft.complete(path, node.name, node.kind, now, attempts=1)
                self._leave(definition, draft, path, now)
            case WaitKind.RETRY:
                draft.retry_due(path, now)
                if isinstance(place.node, ChildNode):
                    draft.must_write = True  # as when the node is entered: see _enter
            case WaitKind.START if path != "start":
                # A fork stored by a process that does not own the store: it starts at the
                # node it was forked at.
                draft.unwait(path)
                self._begin_at(definition, draft, path, now)
                draft.must_write = True
            case WaitKind.START:
                self._begin_start(draft, now)
                # Stored running before its first function runs, so that a start that
                # takes the process down is counted as a recovery like any node left
                # running (a background start sends every start through here).
                draft.must_write = True
            case WaitKind.SIGNAL | WaitKind.CHILD | WaitKind.SLOT:
                raise AssertionError("looked at in the store, not here")
            case _:
                assert_never(wait.kind)
        return None

    async def _settle_signals(self, definition: Definition, draft: Draft, now: datetime) -> bool:
        """Use one buffered signal, or time out one signal wait; whether one was."""
        for wait in draft.waits:
            if wait.kind not in LOOKED_AT:
                continue
            path = wait.node
            due_at = wait.due_at
            due = due_at is not None and due_at <= now
            if path not in draft.unchecked and not due:
                continue
            draft.unchecked.discard(path)
            if wait.kind is WaitKind.CHILD:
                if await self._settle_child(definition, draft, wait, due, now):
                    return True
                continue
            if wait.kind is WaitKind.SLOT:
                if not draft.stored:
                    # Stored before its key's gate names it: the gate never names a mission
                    # that does not exist.
                    await self._write(draft)
                if await self._take_slot(definition, draft):
                    if path == "start":
                        draft.begin_start(now)
                    else:
                        # A retry's or a fork's node: it runs from there.
                        draft.unwait(path)
                        self._enter(definition, draft, path, now)
                    # Stored running before its start runs, as a start that came due.
                    draft.must_write = True
                    return True
                if due:
                    self._wait_for_slot(draft, now, definition, path)
                    return True
                continue
            assert wait.signal is not None
            signal = (
                await self.persistence.next_signal(draft.id, wait.signal) if draft.stored else None
            )
            if signal is not None and due_at is not None and signal.received_at >= due_at:
                signal = None  # came after the timeout: the timeout wins, the signal stays
            if signal is not None:
                if draft.consumed is not None:
                    # One consumed signal per write: write the earlier one first.
                    await self._write(draft)
                try:
                    parsed = self._parse_payload(definition, wait.signal, signal.payload)
                except Exception as error:
                    # Accepted when it was sent, rejected now (the parser changed since): the
                    # signal is used up with a record of why, and the node keeps waiting.
                    draft.log(
                        now,
                        TimelineKind.SIGNAL_REJECTED,
                        path,
                        detail={"type": type(error).__qualname__, "message": message_of(error)},
                    )
                    draft.unchecked.add(path)
                else:
                    self._receive(definition, draft, path, signal.payload, parsed, now)
                draft.consumed = signal.seq
                await self._write(draft)
                return True
            if due:
                self._time_out(definition, draft, path, now)
                return True
        return False

    def _enter(self, definition: Definition, draft: Draft, path: str, now: datetime) -> None:
        """Put a position on the node at ``path``, settling at once what needs no outside event
        or function call."""
        node = definition.places[path].node
        match node:
            case StartNode():
                draft.begin_start(now)
            case StepNode():
                draft.run_node(path, node.name, node.kind, now)
            case ChildNode():
                draft.run_node(path, node.name, node.kind, now)
                # Stored at the node before its child exists: a child found after a crash is
                # then known as this node's (see _cancel_if_orphaned), never taken for an orphan.
                draft.must_write = True
            case EndNode(output=None) if draft.cancel_request is None:
                draft.completed(None, now)
            case EndNode():
                # Its output function runs on the drive loop's next turn (or a cancellation
                # that came meanwhile ends the mission there instead).
                draft.at_end(now)
            case NeedToNode(timeout=timeout):
                due = None if timeout is None else now + timeout
                detail: dict[str, Any] = {"signal": node.name}
                if due is not None:
                    detail["due_at"] = due.isoformat()
                draft.log(now, TimelineKind.WAIT_STARTED, path, detail=detail)
                wait = Wait(WaitKind.SIGNAL, path, signal=node.name, due_at=due)
                draft.wait_at(path, node.name, node.kind, wait, now)
                draft.unchecked.add(path)
            case SleepNode():
                try:
                    due = self._sleep_due(definition, draft, node, path, now)
                except Exception as error:
                    self._decision_failed(draft, node, path, error, now)
                    return
                draft.log(now, TimelineKind.WAIT_STARTED, path, detail={"due_at": due.isoformat()})
                wait = Wait(WaitKind.TIMER, path, due_at=due)
                draft.wait_at(path, node.name, node.kind, wait, now)
            case ParallelNode(branches=branches):
                draft.open(path, node.name, node.kind, now)
                # Every branch is entered before any that ends at once (an empty branch, an
                # empty path chosen) can end the parallel: see _branch_ended.
                ended = draft.opening[path] = []
                for branch in branches:
                    if draft.ended or (ended and node.mode is ParallelMode.FIRST):
                        break  # (with "first", a branch that ended already won)
                    first = definition.first_in(path, branch)
                    if first is None:
                        ended.append(branch)
                    else:
                        self._enter(definition, draft, first, now)
                del draft.opening[path]
                if not draft.ended and ended:
                    self._branch_ended(definition, draft, path, ended[0], now)
            case ChoiceNode():
                try:
                    picked = self._choose(definition, draft, node, path, now)
                except Exception as error:
                    self._decision_failed(draft, node, path, error, now)
                    return
                draft.log(now, TimelineKind.PATH_CHOSEN, path, detail={"path": picked})
                draft.open(path, node.name, node.kind, now, output=picked)
                # Never made again: written before anything on the path runs.
                draft.must_write = True
                first = definition.first_in(path, picked)
                if first is None:
                    self._branch_ended(definition, draft, path, picked, now)
                else:
                    self._enter(definition, draft, first, now)
            case LoopNode():
                draft.open_loop(path, node.name, node.kind, now)
                self._begin_iteration(definition, draft, path, 1, now)
            case ForEachNode():
                try:
                    items = self._items(definition, draft, node, path, now)
                except Exception as error:
                    self._decision_failed(draft, node, path, error, now)
                    return
                draft.open_loop(path, node.name, node.kind, now, items)
                # Never computed again: written before anything in the body runs.
                draft.must_write = True
                self._fill(definition, draft, node, path, now)
            case _:
                assert_never(node)

    def _leave(self, definition: Definition, draft: Draft, path: str, now: datetime) -> None:
        """Move past the finished node at ``path``: to the next node of its chain, or out of
        the branch (or path) the chain is."""
        if draft.ended:
            return
        if draft.stopping(now):
            # Nothing new is entered (no choice made, no time computed, no end reached): the
            # drive's next turn applies the cancellation or the deadline first.
            return
        place = definition.places[path]
        if place.next is not None:
            self._enter(definition, draft, place.next, now)
        elif place.container is None:
            raise AssertionError(f"the top-level chain ends with its end node, not {path!r}")
        else:
            self._branch_ended(definition, draft, place.container, place.branch, now)

    def _branch_ended(
        self,
        definition: Definition,
        draft: Draft,
        container: str,
        branch: str | None,
        now: datetime,
    ) -> None:
        """The chain ``branch`` of the node at ``container`` has run to its end."""
        node = definition.places[container].node
        match node:
            case ParallelNode(branches=branches, mode=mode):
                opening = draft.opening.get(container)
                if opening is not None:
                    opening.append(branch or "")
                    return  # looked at once every branch is entered
                if mode is ParallelMode.FIRST:
                    draft.stop_under(container, now)
                elif draft.under(container):
                    return  # other branches still run
                ended = [branch or ""] if mode is ParallelMode.FIRST else branches
                output = {
                    name: self._chain_output(definition, draft, container, name) for name in ended
                }
                draft.complete(container, node.name, node.kind, now, attempts=1, output=output)
            case ChoiceNode():
                picked = draft.nodes[container].output
                draft.complete(container, node.name, node.kind, now, attempts=1, output=picked)
            case NeedToNode():
                pass  # its record says it timed out; the mission goes on after it
            case EndNode():
                # The deadline path has run: the mission ends as its end node says.
                draft.at_end(now)
                return
            case LoopNode():
                self._loop_again(definition, draft, node, container, int(branch or 0), now)
                return
            case ForEachNode():
                result = self._chain_output(definition, draft, container, branch or "")
                draft.end_iteration(container, int(branch or 0), now, result=result)
                self._fill(definition, draft, node, container, now)
                return
            case StartNode() | StepNode() | SleepNode() | ChildNode():
                raise AssertionError(f"a {node.kind} holds no chain")
            case _:
                assert_never(node)
        self._leave(definition, draft, container, now)

    def _begin_iteration(
        self,
        definition: Definition,
        draft: Draft,
        path: str,
        iteration: int,
        now: datetime,
        detail: Any = None,
    ) -> None:
        """Begin iteration ``iteration`` of the loop at ``path`` (counted at once) and enter its
        first node. An iteration that ends while it is being entered (its body settles by
        itself) begins the next one from here, in a loop: never by recursion, which a loop of
        many such iterations would exhaust."""
        draft.begin_iteration(path, iteration, now, detail)
        queue = draft.iterating.get(path)
        if queue is not None:
            queue.append(iteration)
            return
        queue = draft.iterating[path] = [iteration]
        try:
            while queue and not draft.ended and draft.nodes[path].status is NodeStatus.RUNNING:
                first = definition.first_in(path, str(queue.pop(0)))
                assert first is not None  # a loop's body is never empty
                self._enter(definition, draft, first, now)
        finally:
            del draft.iterating[path]

    def _loop_again(
        self,
        definition: Definition,
        draft: Draft,
        node: LoopNode,
        path: str,
        iteration: int,
        now: datetime,
    ) -> None:
        """Iteration ``iteration`` of the loop at ``path`` has run: ask its ``until``, then begin
        the next iteration or let the loop complete. The verdict is written before anything of
        the next iteration runs, so it is never asked again."""
        try:
            done = self._until(definition, draft, node, path, iteration, now)
        except LoopError as error:
            self._decision_failed(draft, node, path, error, now, attempts=iteration)
            return
        if not done and iteration >= node.max_iterations:
            error = LoopLimitExceededError(
                f"loop {node.name!r} ran its max_iterations={node.max_iterations} "
                "iterations and its until never held"
            )
            self._decision_failed(draft, node, path, error, now, attempts=iteration)
            return
        draft.must_write = True
        if done:
            output = self._chain_output(definition, draft, path, str(iteration))
            self._loop_done(definition, draft, path, output, now)
            return
        draft.end_iteration(path, iteration, now)
        self._begin_iteration(definition, draft, path, iteration + 1, now, {"until": False})

    def _fill(
        self, definition: Definition, draft: Draft, node: ForEachNode, path: str, now: datetime
    ) -> None:
        """Begin the for_each's next items while fewer than its ``concurrency`` run, or let it
        complete once every item has run."""
        prefix = path + "/"
        while not draft.ended:
            record = draft.nodes[path]
            if record.status is not NodeStatus.RUNNING:
                return  # completed (or stopped) by an iteration that ended while entered
            running = len(draft.iterating.get(path, ())) + len(
                {p[len(prefix) :].partition("/")[0] for p in draft.active if p.startswith(prefix)}
            )
            if record.attempts == len(record.input):
                if not running:
                    self._loop_done(definition, draft, path, record.output, now)
                return
            if running >= node.concurrency:
                return
            self._begin_iteration(definition, draft, path, record.attempts + 1, now)

    def _loop_done(
        self, definition: Definition, draft: Draft, path: str, output: JsonValue, now: datetime
    ) -> None:
        record = draft.nodes[path]
        draft.complete(
            path,
            record.name,
            record.kind,
            now,
            attempts=record.attempts,
            input=record.input,
            output=output,
        )
        self._leave(definition, draft, path, now)

    def _until(
        self,
        definition: Definition,
        draft: Draft,
        node: LoopNode,
        path: str,
        iteration: int,
        now: datetime,
    ) -> bool:
        # Seen from the iteration that just ran: its events are the ones read.
        done = self._decide(
            definition,
            draft,
            node,
            f"{path}/{iteration}",
            now,
            node.until,
            LoopError,
            f"loop {node.name!r} until raised",
        )
        if not isinstance(done, bool):
            raise LoopError(
                f"loop {node.name!r} until must return a bool, got "
                f"{type(done).__qualname__} {done!r}"
            )
        return done

    def _items(
        self, definition: Definition, draft: Draft, node: ForEachNode, path: str, now: datetime
    ) -> list[JsonValue]:
        items = self._decide(
            definition,
            draft,
            node,
            path,
            now,
            node.items,
            LoopError,
            f"for_each {node.name!r} items raised",
        )
        if not isinstance(items, list | tuple):
            raise LoopError(
                f"for_each {node.name!r} items must return a list (or tuple), got "
                f"{type(items).__qualname__}"
            )
        count = len(items)  # pyright: ignore[reportUnknownArgumentType]
        if count > node.max_iterations:
            raise LoopLimitExceededError(
                f"for_each {node.name!r} got {count} items, more than its "
                f"max_iterations={node.max_iterations}"
            )
        try:
            stored = to_json_value(
                list(items),  # pyright: ignore[reportUnknownArgumentType]
                what=f"items of for_each {node.name!r}",
                converter=self.converter,
            )
        except OutputNotSerializableError as error:
            raise LoopError(str(error)) from None
        assert isinstance(stored, list)
        return stored  # pyright: ignore[reportUnknownVariableType]

    @staticmethod
    def _chain_output(
        definition: Definition, draft: Draft, container: str, branch: str
    ) -> JsonValue:
        """The output of the last node of a chain that has run (``None`` for an empty one)."""
        path = definition.first_in(container, branch)
        last = None
        while path is not None:
            last = path
            place = definition.places[path]
            path = place.next
        record = draft.nodes.get(last) if last is not None else None
        return None if record is None else record.output

    def _time_out(self, definition: Definition, draft: Draft, path: str, now: datetime) -> None:
        node = definition.places[path].node
        assert isinstance(node, NeedToNode)
        assert node.timeout is not None
        if self.observer is not None:
            self._waited(draft, path, NodeStatus.TIMED_OUT, now)
        draft.timed_out(path, now)
        if node.on_timeout is None:
            error = SignalTimeoutError(
                f"need_to {node.name!r} of mission {draft.id!r} got no signal within "
                f"{node.timeout.total_seconds():g} s"
            )
            draft.failed(
                path, node.name, node.kind, ErrorInfo.from_exception(error, 1), now, attempts=1
            )
            return
        first = definition.first_in(path, TIMEOUT_PATH)
        if first is None:
            self._leave(definition, draft, path, now)
        else:
            self._enter(definition, draft, first, now)

    def _deadline_passed(self, definition: Definition, draft: Draft, now: datetime) -> None:
        deadline = draft.deadline
        assert deadline is not None
        draft.deadline = None
        draft.log(
            now,
            TimelineKind.DEADLINE_PASSED,
            draft.current_node,
            detail={"deadline": deadline.isoformat()},
        )
        in_progress = [
            p
            for p, r in draft.nodes.items()
            if r.status in (NodeStatus.RUNNING, NodeStatus.WAITING)
        ]
        if definition.on_deadline is None:
            path = draft.active[0] if draft.active else draft.current_node or "start"
            record = draft.nodes.get(path)
            error = DeadlineExceededError(
                f"mission {draft.id!r} did not end by its deadline {deadline.isoformat()}"
            )
            draft.failed(
                path,
                record.name if record is not None else path,
                record.kind if record is not None else "node",
                ErrorInfo.from_exception(error, 1),
                now,
                attempts=record.attempts if record is not None else 0,
            )
            return
        draft.stop(in_progress, now)
        first = definition.first_in(*DEADLINE_CHAIN)
        if first is None:
            draft.at_end(now)
        else:
            self._enter(definition, draft, first, now)

    def _receive(
        self,
        definition: Definition,
        draft: Draft,
        path: str,
        payload: JsonValue,
        parsed: JsonValue,
        now: datetime,
    ) -> None:
        """Complete the need_to at ``path`` with ``payload`` and move past it (a function node
        after it runs on the drive loop's next turn, after this is written)."""
        node = definition.places[path].node
        if self.observer is not None:
            self._waited(draft, path, NodeStatus.COMPLETED, now)
        draft.log(now, TimelineKind.SIGNAL_RECEIVED, path)
        draft.complete(path, node.name, node.kind, now, attempts=1, input=payload, output=parsed)
        self._leave(definition, draft, path, now)

    # -- node functions ------------------------------------------------------------------------

    def _context(
        self,
        definition: Definition,
        draft: Draft,
        node: Node,
        path: str,
        attempt: int,
        now: datetime,
    ) -> Context[Any, Any]:
        return Context(
            definition=definition,
            mission=draft,
            node=node.name,
            attempt=attempt,
            now=now,
            converter=self.converter,
            path=path,
        )

    async def _call(self, definition: Definition, draft: Draft, path: str) -> _Outcome:
        """Run the function of the node at ``path``: what it returned (as JSON) or raised."""
        place = definition.places[path]
        node = place.node
        function = place.function
        assert function is not None
        record = draft.nodes.get(path)
        attempt = (record.attempts if record is not None else 0) + 1
        ctx = self._context(definition, draft, node, path, attempt, self.now())
        end = None if self.observer is None else self._node_started(draft, node, path, attempt)
        try:
            if isinstance(node, StepNode) and node.timeout is not None:
                result = await _within_timeout(node, node.timeout.total_seconds(), function, ctx)
            else:
                result = function(ctx)
                if _is_awaitable(result):
                    result = await result
            kind: type[Any] = type(result)  # pyright: ignore[reportUnknownVariableType]
            output = (
                result
                if kind in STORED_AS_IS or (kind is int and INT_FLOOR < result < INT_LIMIT)
                else to_json_value(
                    result,
                    what="mission output"
                    if isinstance(node, EndNode)
                    else f"input of {node.kind} {node.name!r}"
                    if isinstance(node, ChildNode)
                    else f"output of {node.kind} {node.name!r}",
                    converter=self.converter,
                )
            )
            if isinstance(node, ChildNode):
                output = await self._start_child(draft, node, path, attempt, output)
        except Exception as raised:
            if end is not None:
                end(raised)
            return None, raised, attempt
        except BaseException as raised:
            if end is not None:
                end(raised)
            return None, await _raised_by_function(raised), attempt
        finally:
            ctx.close()
        if end is not None:
            end(None)
        return output, None, attempt

    def _node_started(
        self, draft: Draft, node: Node, path: str, attempt: int, kind: str | None = None
    ) -> Callable[[BaseException | None], None] | None:
        run = self._run_of(draft)
        if run is None:
            return None
        return run.node_started(ObservedNode(path, node.name, kind or node.kind, attempt))

    def _apply(
        self,
        definition: Definition,
        draft: Draft,
        path: str,
        outcome: _Outcome,
        hold: _Hold | None,
    ) -> None:
        """Apply what the function of the node at ``path`` gave: move past the node, retry it
        later, or fail the mission."""
        output, error, attempt = outcome
        node = definition.places[path].node
        now = self.now()
        if hold is not None and hold.cancel is not None:
            # A cancellation acknowledged while the function ran ends the mission at this
            # boundary: known to the draft now, nothing after the node completes it first.
            draft.cancel_request = hold.cancel
        if isinstance(node, EndNode):
            if error is not None:
                _fail(draft, node, path, error, ErrorInfo.from_exception(error, 1), 1, now)
            elif draft.cancel_request is None:
                # (A cancellation that came meanwhile ends the mission instead, on the next turn.)
                draft.completed(output, now)
            return
        assert isinstance(node, _FUNCTION_NODES)
        if error is None and isinstance(node, ChildNode):
            self._wait_for_child(draft, node, path, attempt, output, now)
            return
        if error is None:
            draft.log(now, TimelineKind.STEP_COMPLETED, path, attempt)
            draft.complete(path, node.name, node.kind, now, attempts=attempt, output=output)
            if isinstance(node, StepNode):
                draft.must_write = True
                if node.compensate is not None:
                    draft.owe(path, output)
            self._leave(definition, draft, path, now)
            return
        self._attempt_failed(draft, node, path, error, attempt, now)

    def _attempt_failed(
        self,
        draft: Draft,
        node: StartNode | StepNode | ChildNode,
        path: str,
        error: BaseException,
        attempt: int,
        now: datetime,
    ) -> None:
        """Attempt ``attempt`` of the node at ``path`` failed with ``error``: retry it later, as
        its policy says, or fail the mission."""
        info = ErrorInfo.from_exception(error, attempt)
        draft.log(
            now,
            TimelineKind.STEP_FAILED,
            path,
            attempt,
            detail={"type": info.type, "message": info.message},
        )
        due = (
            _next_attempt_at(node.retry, error, attempt, info, now, f"step {node.name!r}")
            if isinstance(node, _RETRIED_NODES)
            else None
        )
        if isinstance(due, ErrorInfo):
            _log_attempt_failed(draft.id, node, attempt, error, "its retry backoff raised")
            draft.failed(path, node.name, node.kind, due, now, attempts=attempt)
        elif due is not None:
            _log_attempt_failed(draft.id, node, attempt, error, f"retry at {due.isoformat()}")
            draft.log(
                now,
                TimelineKind.RETRY_SCHEDULED,
                path,
                attempt + 1,
                detail={"due_at": due.isoformat()},
            )
            draft.retry_later(path, attempt, info, Wait(WaitKind.RETRY, path, due_at=due), now)
            # The failed attempt is written with the retry's due time.
            draft.must_write = True
        else:
            _log_attempt_failed(draft.id, node, attempt, error, "not retried")
            _fail(draft, node, path, error, info, attempt, now)

    # -- child missions ------------------------------------------------------------------------

    async def _start_child(
        self, draft: Draft, node: ChildNode, path: str, attempt: int, child_input: JsonValue
    ) -> JsonValue:
        """Start (or find, after a crash) this attempt's child mission and run it until its
        first wait, as ``start`` does; the child node's record input: the child's id and
        input."""
        child = self.definitions[(node.definition.name, node.definition.version)]
        mission_id = child_id(draft.id, path, attempt, draft.retries)
        link = ParentLink(draft.id, path)
        # Found first (after a crash): its input is not checked again, since the input
        # function may give another now.
        started = await self.persistence.load(mission_id)
        if started is None:
            hold = self._holds[draft.id]
            hold.children.add(mission_id)
            try:
                started = await self.start(
                    child, child_input, mission_id, None, parent=link, tenant=draft.tenant
                )
            finally:
                hold.children.discard(mission_id)
        if started.parent != link:
            raise ChildMissionFailedError(
                f"mission id {mission_id!r} is taken by a mission that is not the child of "
                f"{node.kind} {node.name!r} (started by hand, or by another parent): the node "
                "starts no child under it"
            )
        # The stored input: after a crash the input function may have given another.
        return {"mission_id": mission_id, "input": started.input}

    def _wait_for_child(
        self,
        draft: Draft,
        node: ChildNode,
        path: str,
        attempt: int,
        started: JsonValue,
        now: datetime,
    ) -> None:
        draft.log(
            now, TimelineKind.CHILD_STARTED, path, attempt, {"mission_id": started["mission_id"]}
        )
        wait = Wait(WaitKind.CHILD, path, due_at=now + CHILD_CHECK)
        draft.wait_at(path, node.name, node.kind, wait, now, attempts=attempt, input=started)
        # The child may have ended already, in the call that started it.
        draft.unchecked.add(path)

    async def _settle_child(
        self, definition: Definition, draft: Draft, wait: Wait, due: bool, now: datetime
    ) -> bool:
        """Look at the child the node of ``wait`` waits for: apply its end, or, when the wait
        is due and the child runs on, look again later. Whether anything changed."""
        path = wait.node
        record = draft.nodes[path]
        node = definition.places[path].node
        assert isinstance(node, ChildNode)
        mission_id = child_of(record)
        assert mission_id is not None
        child = await self.persistence.load(mission_id)
        if child is not None and not child.is_terminal:
            if not due:
                return False
            # Runs on: look again after as long as it has run so far (within the bounds).
            ran = now - (record.started_at or now)
            draft.move_due(path, now + min(max(ran, CHILD_CHECK), CHILD_CHECK_MAX))
            return True
        if self.observer is not None:
            error = None
            if child is None or child.status is not MissionStatus.COMPLETED:
                error = (child.error if child is not None else None) or ErrorInfo(
                    ChildMissionFailedError.__qualname__,
                    f"child mission {mission_id!r} "
                    + ("does not exist" if child is None else child.status.value),
                    record.attempts,
                )
            outcome = NodeStatus.COMPLETED if error is None else NodeStatus.FAILED
            self._waited(draft, path, outcome, now, error)
        status = "missing" if child is None else child.status.value
        detail = {"mission_id": mission_id, "status": status}
        draft.log(now, TimelineKind.CHILD_ENDED, path, record.attempts, detail)
        if child is not None and child.status is MissionStatus.COMPLETED:
            draft.complete(
                path,
                node.name,
                node.kind,
                now,
                attempts=record.attempts,
                input=record.input,
                output=copy_json(child.output),
            )
            # Written before the next function runs, as a step's result is.
            draft.must_write = True
            self._leave(definition, draft, path, now)
            return True
        if child is None:
            why = "does not exist"
        elif child.error is not None:
            why = f"{child.status.value}: {child.error.type}: {child.error.message}"
        else:
            reason = child.cancel_request.reason if child.cancel_request is not None else None
            why = f"{child.status.value}: {reason or 'no reason given'}"
        error = ChildMissionFailedError(f"child mission {mission_id!r} {why}")
        self._attempt_failed(draft, node, path, error, record.attempts, now)
        return True

    async def _ended(self, snapshot: MissionSnapshot) -> None:
        """``snapshot`` has just been stored ended: tell whoever waits for it, and give its
        concurrency slot (or its place in the queue) up."""
        self.notices.ended(snapshot.id)
        if snapshot.concurrency_key is not None:
            await self._release_slot(snapshot)
        if snapshot.parent is not None:
            await self._wake_parent(snapshot, snapshot.parent)

    async def _cancel_if_orphaned(
        self, child: MissionSnapshot, parent: ParentLink, hold: _Hold
    ) -> MissionSnapshot:
        """The held ``child``, cancelled if its parent no longer waits for it: the parent ended,
        or its node was stopped or moved on, as when a crash came between the parent's stop and
        the child's cancellation. A parent whose node is starting the child (running) still
        wants it; a parent running its compensations has its children run theirs."""
        stored = await self.persistence.load(parent.mission_id)
        record = None if stored is None else stored.nodes.get(parent.node)
        if stored is not None and not stored.is_terminal and record is not None:
            match record.status:
                case NodeStatus.RUNNING:
                    return child
                case NodeStatus.WAITING if child_of(record) == child.id:
                    # (Its input names the child it waits for: see _start_child.)
                    return child
                case _:
                    pass
        return await self._cancel_now(
            child,
            f"its parent {parent.mission_id!r} no longer waits for it",
            hold,
            compensate=stored is not None and stored.compensating,
        )

    async def _wake_parent(self, child: MissionSnapshot, parent: ParentLink) -> None:
        """Tell the parent of ``child``, which has ended, to look at it now: a parent held here
        is poked; another is moved on in this task. The parent's own due time covers a wake-up
        lost to a crash, and what goes wrong here is the parent's, never the child's caller's."""
        holder = self._holds.get(parent.mission_id)
        if holder is not None:
            holder.poke()
            return
        try:
            await self.advance(parent.mission_id)
        except Exception:
            mission_logger.exception(
                "mission %r ended, and moving its parent %r on failed (it looks at its child "
                "again when its own due time comes)",
                child.id,
                parent.mission_id,
            )

    async def _cancel_child(self, mission_id: str, parent_id: str, *, compensate: bool) -> None:
        """Cancel a child its parent stopped waiting for; with ``compensate`` (the parent runs
        its compensations), the child runs its own."""
        try:
            await self.cancel(
                mission_id, f"its parent {parent_id!r} stopped waiting for it", compensate
            )
        except (MissionNotFoundError, MissionNotActiveError):
            pass  # never started (a crash before), or ended already
        except MissionControlError:
            mission_logger.exception(
                "cancelling child mission %r of %r failed", mission_id, parent_id
            )

    def _choose(
        self, definition: Definition, draft: Draft, node: ChoiceNode, path: str, now: datetime
    ) -> str:
        picked = self._decide(
            definition,
            draft,
            node,
            path,
            now,
            node.choose,
            ChoiceError,
            f"choice {node.name!r} could not pick a path",
        )
        if not isinstance(picked, str):
            raise ChoiceError(
                f"choice {node.name!r} must pick a path by its name, a str; it returned a "
                f"{type(picked).__qualname__} (paths: {', '.join(map(repr, node.paths))})"
            )
        if picked not in node.paths:
            raise ChoiceError(
                f"choice {node.name!r} picked {picked!r}, which is none of its paths "
                f"({', '.join(map(repr, node.paths))})"
            )
        return picked

    @staticmethod
    def _decision_failed(
        draft: Draft,
        node: Node,
        path: str,
        error: Exception,
        now: datetime,
        *,
        attempts: int = 1,
    ) -> None:
        """The mission fails at ``path``: what decides how it goes (a sleep's time, a choice's
        pick, a loop's verdict or items) raised ``error``; never retried."""
        info = ErrorInfo.from_exception(error, 1)
        draft.failed(path, node.name, node.kind, info, now, attempts=attempts)

    def _decide(
        self,
        definition: Definition,
        draft: Draft,
        node: Node,
        path: str,
        now: datetime,
        decide: Callable[[Context[Any, Any]], Any],
        failure: type[Exception],
        what: str,
    ) -> Any:
        """What a function that decides how the mission goes (a choice's ``choose``, a loop's
        ``until``, a for_each's ``items``) returns for a context at ``path``; what it raises
        becomes a ``failure`` saying ``what``, then the exception (chained)."""
        ctx = self._context(definition, draft, node, path, 1, now)
        try:
            return decide(ctx)
        except Exception as error:
            raise failure(f"{what}: {type(error).__qualname__}: {message_of(error)}") from error
        finally:
            ctx.close()

    def _sleep_due(
        self, definition: Definition, draft: Draft, node: SleepNode, path: str, now: datetime
    ) -> datetime:
        if node.duration is not None:
            return now + node.duration
        until = node.until
        if isinstance(until, datetime):
            return until
        assert until is not None
        ctx = self._context(definition, draft, node, path, 1, now)
        try:
            when = until(ctx)
        finally:
            ctx.close()
        if not isinstance(when, datetime) or when.utcoffset() is None:
            raise TypeError(
                f"sleep_until {node.name!r} must compute an aware datetime, got {when!r}"
            )
        return when.astimezone(UTC)

    def _parse_payload(self, definition: Definition, name: str, payload: JsonValue) -> JsonValue:
        """The need_to's parser applied to ``payload``, as JSON (raises what the parser does)."""
        node = definition.signals[name]
        return to_json_value(
            node.parse(copy_json(payload)),
            what=f"parsed payload of {name!r}",
            converter=self.converter,
        )

    # -- compensation --------------------------------------------------------------------------

    def _settle_compensation(self, draft: Draft) -> list[str]:
        """The compensation to run now (``[]``: its retry is not due yet)."""
        path = draft.active[0]
        if draft.nodes[path].status is NodeStatus.RUNNING:
            return [path]
        wait = draft.wait_of(path)
        now = self.now()
        if wait is not None and wait.due_at is not None and wait.due_at <= now:
            # As a step's retry: a due time needs no write of its own.
            draft.compensation_retry_due(path, now)
            return [path]
        return []

    async def _compensate(self, definition: Definition, draft: Draft, path: str) -> None:
        """Run the compensation at ``path`` (``"<step path>/compensate"``, the last owed) and
        apply what it gave: the next compensation, a retry later, or the mission failed."""
        step_path = path[: -len(COMPENSATION_SUFFIX)]
        saga = draft.compensations
        assert saga is not None
        assert saga.owed
        assert saga.owed[-1].path == step_path
        owed = saga.owed[-1]
        record = draft.nodes[path]
        attempt = record.attempts + 1
        place = definition.place_or_none(step_path)
        node = None if place is None else place.node
        if not isinstance(node, StepNode) or node.compensate is None:
            error = ErrorInfo(
                "MissingNodeError",
                f"definition {definition.name!r} version {definition.version} has no "
                f"compensation for step {step_path!r} {_CHANGED_IN_PLACE}",
                attempt,
            )
            self._compensation_failed(draft, path, error, attempt)
            return
        ctx = self._context(definition, draft, node, path, attempt, self.now())
        end = (
            None
            if self.observer is None
            else self._node_started(draft, node, path, attempt, "compensation")
        )
        try:
            output = copy_json(owed.output)
            if node.output_type is not None:
                output = from_json_value(output, node.output_type, converter=self.converter)
            result = node.compensate(ctx, output)
            if _is_awaitable(result):
                await result
        except Exception as raised:
            error = raised
            if end is not None:
                end(raised)
        except BaseException as raised:
            if end is not None:
                end(raised)
            error = await _raised_by_function(raised)
        else:
            if end is not None:
                end(None)
            draft.compensation_completed(path, attempt, self.now())
            return
        finally:
            ctx.close()
        now = self.now()
        info = ErrorInfo.from_exception(error, attempt)
        draft.log(
            now,
            TimelineKind.COMPENSATION_FAILED,
            path,
            attempt,
            detail={"type": info.type, "message": info.message},
        )
        policy = node.compensate_retry
        what = f"the compensation of step {node.name!r}"
        due = _next_attempt_at(policy, error, attempt, info, now, what)
        if isinstance(due, ErrorInfo):
            info = due
        elif due is not None:
            step_logger.warning(
                "compensation of step %r of mission %r failed on attempt %d of %d: retry at %s",
                step_path,
                draft.id,
                attempt,
                policy.max_attempts,
                due.isoformat(),
                exc_info=error,
            )
            draft.log(
                now,
                TimelineKind.RETRY_SCHEDULED,
                path,
                attempt + 1,
                detail={"due_at": due.isoformat()},
            )
            draft.compensation_retry_later(path, attempt, info, due, now)
            return
        step_logger.warning(
            "compensation of step %r of mission %r failed on attempt %d of %d: not retried",
            step_path,
            draft.id,
            attempt,
            policy.max_attempts,
            exc_info=error,
        )
        self._compensation_failed(draft, path, info, attempt)

    def _compensation_failed(self, draft: Draft, path: str, error: ErrorInfo, attempt: int) -> None:
        """The compensation at ``path`` failed for good: the mission stops compensating (those
        owed before it may depend on it) and fails, all of them still owed."""
        record = draft.nodes[path]
        saga = draft.compensations
        assert saga is not None
        first = draft.error
        then = (
            "" if first is None else f"; the mission had failed with {first.type}: {first.message}"
        )
        if first is None and draft.cancel_request is not None:
            then = "; the mission had been cancelled"
        owed = ", ".join(repr(o.path) for o in saga.owed[:-1]) or "none"
        failure = ErrorInfo(
            CompensationFailedError.__qualname__,
            f"the compensation of step {path[: -len(COMPENSATION_SUFFIX)]!r} failed for good "
            f"(attempt {attempt}): {error.type}: {error.message}{then}. Compensations not run: "
            f"{owed}",
            attempt,
            error.traceback,
        )
        draft.failed(path, record.name, record.kind, failure, self.now(), attempts=attempt)

    # -- signals and cancellation -------------------------------------------------------------

    def check_signal(
        self, snapshot: MissionSnapshot, name: str, payload: Any
    ) -> tuple[Definition, JsonValue, JsonValue]:
        """The definition, the payload as JSON and as parsed, or the error the signal earns."""
        definition = self.definition_for(snapshot)
        self._check_signal_name(definition, name)
        self.ensure_active(snapshot, f"signal {name!r}")
        payload_json, parsed = self._checked_payload(definition, snapshot.id, name, payload)
        return definition, payload_json, parsed

    @staticmethod
    def _check_signal_name(definition: Definition, name: str) -> None:
        if name not in definition.signals:
            raise UnknownSignalError(
                f"mission {definition.name!r} has no need_to {name!r} "
                f"(signals it takes: {', '.join(definition.signals) or 'none'})"
            )

    def _checked_payload(
        self, definition: Definition, mission_id: str, name: str, payload: Any
    ) -> tuple[JsonValue, JsonValue]:
        """The payload of the signal ``name`` as JSON and as parsed by its need_to."""
        try:
            payload_json = to_json_value(
                payload, what=f"signal {name!r} payload", converter=self.converter
            )
            parsed = self._parse_payload(definition, name, payload_json)
        except Exception as error:
            raise InvalidSignalPayloadError(
                f"signal {name!r} for mission {mission_id!r} rejected its payload: "
                f"{message_of(error)}"
            ) from error
        return payload_json, parsed

    async def signal(self, mission_id: str, name: str, payload: Any) -> MissionSnapshot:
        if mission_id in self._holds:
            snapshot = await self.load(mission_id)
            _, payload_json, _ = self.check_signal(snapshot, name, payload)
            return await self._buffer(snapshot, name, payload_json, self.now(), held=True)
        # Held from before the load, so the snapshot checked is the one acted on.
        with self._hold(mission_id, RunTrigger.SIGNAL) as hold:
            snapshot = await self.load(mission_id)
            if snapshot.parent is not None and not snapshot.is_terminal:
                # An orphan takes no more signals: it is cancelled, and the signal refused.
                snapshot = await self._cancel_if_orphaned(snapshot, snapshot.parent, hold)
            definition, payload_json, parsed = self.check_signal(snapshot, name, payload)
            now = self.now()
            wait = next(
                (w for w in snapshot.waits if w.kind is WaitKind.SIGNAL and w.signal == name),
                None,
            )
            # Taken at once only while nothing of the mission is due (its deadline, a timer in
            # another branch, this wait's own timeout): otherwise the drive settles those first.
            due = snapshot.due_at
            in_time = wait is not None and (due is None or now < due)
            if snapshot.status is MissionStatus.WAITING and wait is not None:
                if (
                    in_time
                    and snapshot.pause_request is None
                    and await self.persistence.next_signal(mission_id, name) is None
                ):
                    draft = Draft.of(snapshot)
                    draft.unchecked.discard(wait.node)
                    if self.observer is not None:
                        self._begin_run(draft, hold)
                    self._receive(definition, draft, wait.node, payload_json, parsed, now)
                    hold.may_leave_running = True
                    await self._write(draft)
                    snapshot = await self._drive(definition, draft, hold)
                    return await self._finish(definition, snapshot, hold)
                # An older signal of this name is still buffered (a crash came between its
                # buffering and its use): it goes first, this one queues behind it. Or the wait
                # timed out before this signal came: the drive applies the timeout. Or a pause
                # request is stored: the drive pauses the mission first.
                await self._buffer(snapshot, name, payload_json, now, held=False)
                snapshot = await self._drive(definition, Draft.of(snapshot), hold)
                return await self._finish(definition, snapshot, hold)
            return await self._buffer(snapshot, name, payload_json, now, held=False)

    async def _buffer(
        self, snapshot: MissionSnapshot, name: str, payload: JsonValue, now: datetime, *, held: bool
    ) -> MissionSnapshot:
        entry = TimelineEntry(now, TimelineKind.SIGNAL_BUFFERED, name)
        await self.persistence.append_signal(snapshot.id, name, payload, now, [entry])
        if held:
            holder = self._holds.get(snapshot.id)
            if holder is not None:
                holder.poke()
            else:
                # The holder let go while the signal was being stored: take the mission over
                # so the signal is not left waiting for a run that already ended.
                return await self.advance(snapshot.id) or snapshot
        return snapshot

    async def cancel(
        self, mission_id: str, reason: str | None, compensate: bool = False
    ) -> MissionSnapshot:
        if mission_id in self._holds:
            snapshot = await self.load(mission_id)
            self.ensure_cancellable(snapshot)
            request, entry = self._cancel_request(snapshot, reason, compensate)
            await self.persistence.request_cancel(mission_id, request, [entry])
            holder = self._holds.get(mission_id)
            if holder is not None:
                holder.cancel = request
                holder.poke()
                # A child being started in the holder's call runs until its first wait before
                # the holder sees the request: it is stopped at its own next boundary instead.
                for child in list(holder.children):
                    await self._cancel_child(child, mission_id, compensate=compensate)
                return attrs.evolve(snapshot, cancel_request=request)
            return await self.advance(mission_id) or snapshot
        with self._hold(mission_id, RunTrigger.CANCEL) as hold:
            snapshot = await self.load(mission_id)
            self.ensure_cancellable(snapshot)
            return await self._cancel_now(snapshot, reason, hold, compensate)

    async def _cancel_now(
        self, snapshot: MissionSnapshot, reason: str | None, hold: _Hold, compensate: bool = False
    ) -> MissionSnapshot:
        """Cancel the held ``snapshot`` at once, request and effect in one transaction: nothing
        runs it (it waits, or a crash interrupted it). With ``compensate``, the compensations it
        owes run here, as a signal's next nodes do."""
        # Looked up before anything changes: compensations run the definition's functions.
        definition = self.definition_for(snapshot) if compensate else None
        request, entry = self._cancel_request(snapshot, reason, compensate)
        draft = Draft.of(snapshot)
        if self.observer is not None:
            self._begin_run(draft, hold)
        draft.pending.append(entry)
        draft.cancelled(request, request.requested_at)
        hold.may_leave_running = True
        if definition is not None and not draft.status.is_terminal:
            snapshot = await self._drive(definition, draft, hold)
            return await self._finish(definition, snapshot, hold)
        snapshot = await self._write(draft)
        await self._ended(snapshot)
        return snapshot

    # -- concurrency keys (see _concurrency.py) ------------------------------------------------

    def _key_of(
        self, definition: Definition, input_json: JsonValue, tenant: str | None
    ) -> str | None:
        """The gate of a new mission of ``definition`` with ``input_json`` (checked already):
        ``"<definition>/<key>"`` (a tenant's: ``"<tenant>::<definition>/<key>"``, so that
        tenants never share slots), or ``None`` without a concurrency key. The definition's
        name is written with ``%``, ``/`` and ``:`` escaped, so that no other definition's or
        tenant's gate is spelt the same: the first ``/`` ends the name, and only a tenant's
        gate has a ``::`` before it."""
        concurrency = definition.concurrency
        if concurrency is None:
            return None
        if not isinstance(self.persistence, ConcurrencyStore):
            raise ConfigurationError(
                f"mission {definition.name!r} has a concurrency key, and "
                f"{type(self.persistence).__name__} keeps none (no ConcurrencyStore)"
            )
        try:
            key = concurrency.key(definition.parse_input(input_json))
        except Exception as error:
            raise InvalidInputError(
                f"mission {definition.name!r}: its concurrency key could not be computed from "
                f"its input: {message_of(error)}"
            ) from error
        if not isinstance(key, str) or not key or not is_text(key):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise InvalidInputError(
                f"mission {definition.name!r}: its concurrency key must be a non-empty str, got "
                f"{key!r}"
            )
        return tenant_key(tenant, f"{_gate_name(definition.name)}/{key}")

    def _gates(self) -> ConcurrencyStore:
        store = self.persistence
        assert isinstance(store, ConcurrencyStore)  # checked by _key_of before any mission
        return store

    async def _when_busy(
        self, definition: Definition, key: str, tenant: str | None
    ) -> MissionSnapshot | None:
        """Before a singleton's start: refuse it (``"refuse"``) or return the mission it joins
        (``"join"``) when every slot is held now; ``None`` to go on (its write then takes the
        slot, or, beginning later, it waits for one when it begins)."""
        concurrency = definition.concurrency
        assert concurrency is not None
        gate = await self._gates().load_gate(key)
        if gate is None:
            return None
        running = await self._live(gate.running)
        if len(running) < concurrency.limit:
            return None
        return await self._busy(definition, key, running, tenant)

    async def _busy(
        self, definition: Definition, key: str, running: tuple[str, ...], tenant: str | None
    ) -> MissionSnapshot:
        """The mission a singleton's start joins (``"join"``), or :class:`ConcurrencyLimitError`
        (``"refuse"``), when ``running`` hold every slot of ``key``."""
        concurrency = definition.concurrency
        assert concurrency is not None
        if concurrency.when_busy is WhenBusy.JOIN:
            return await self.load(running[0])
        ids = ", ".join(local_id(mission_id, tenant) for mission_id in running)
        raise ConcurrencyLimitError(
            f"definition {definition.name!r}: concurrency key {key.partition('/')[2]!r} has "
            f"{len(running)} of {concurrency.limit} running ({ids}), and it refuses a start "
            "while they run"
        )

    async def _insert_holding(
        self, definition: Definition, draft: Draft, tenant: str | None
    ) -> MissionSnapshot:
        """Store the new mission of ``draft``, a singleton's (``"refuse"`` or ``"join"``), with
        a slot of its key taken in the same write: the check that a slot is free and the taking
        of it are one compare-and-set of the gate, so that of several starts at once, in this
        process or others, one alone takes the last slot. When every slot is held, raise
        :class:`ConcurrencyLimitError` or, joining, ``_LostRace`` with the mission that holds
        it, storing nothing; ``_LostRace`` too when the id was stored first by another start.
        Missions queued for a slot (retried or forked ones) take the free slots first."""
        concurrency = definition.concurrency
        key = draft.concurrency_key
        assert concurrency is not None
        assert key is not None
        store = self._gates()
        # Stored holding its slot: should the process stop before it begins, the next tick
        # begins it (it is due), not the slot's recheck.
        draft.move_due("start", self.now())
        snapshot = draft.freeze(1)
        while True:
            gate = await store.load_gate(key) or Gate(key, concurrency.limit)
            live = await self._live(gate.running)
            after = await self._promote(gate, concurrency.limit, live, gate.queued) or gate
            if len(after.running) >= concurrency.limit:
                raise _LostRace(await self._busy(definition, key, after.running, tenant))
            taken = Gate(
                key,
                concurrency.limit,
                (*after.running, draft.id),
                after.queued,
                gate.revision + 1,
            )
            try:
                existing = await store.insert_holding(
                    snapshot, draft.pending, taken, expected_revision=gate.revision
                )
            except RevisionConflictError:
                continue  # the gate changed meanwhile: decide again
            if existing is not None:
                raise _LostRace(existing)
            draft.wrote(snapshot)
            await self._wake_for_slot([m for m in after.running if m not in gate.running])
            return snapshot

    async def _live(self, ids: tuple[str, ...]) -> tuple[str, ...]:
        """The missions of ``ids`` that are stored and have not ended."""
        live: list[str] = []
        for mission_id in ids:
            snapshot = await self.persistence.load(mission_id)
            if snapshot is not None and not snapshot.is_terminal:
                live.append(mission_id)
        return tuple(live)

    def _begin_start(self, draft: Draft, now: datetime) -> None:
        """Begin the new mission of ``draft`` now, or, with a concurrency key, once it holds a
        slot of it."""
        if draft.concurrency_key is None:
            draft.begin_start(now)
        else:
            self._wait_for_slot(draft, now)
            draft.unchecked.add("start")  # looked at in this run: a slot may be free

    @staticmethod
    def _wait_for_slot(
        draft: Draft, now: datetime, definition: Definition | None = None, path: str = "start"
    ) -> None:
        """Make the mission of ``draft`` wait for a slot of its key before it begins at the
        top-level node ``path`` (its start, or the node a retry or a fork runs from), looking
        at its gate again after ``SLOT_RECHECK``."""
        wait = Wait(WaitKind.SLOT, path, due_at=now + SLOT_RECHECK)
        if path == "start":
            draft.wait_at("start", "start", "start", wait, now)
            return
        assert definition is not None
        node = definition.places[path].node
        draft.wait_at(path, node.name, node.kind, wait, now)

    def _begin_at(self, definition: Definition, draft: Draft, path: str, now: datetime) -> None:
        """Begin the mission of ``draft`` at the top-level node ``path`` (a retry's or a fork's),
        once it holds a slot when its definition has a concurrency key."""
        if draft.concurrency_key is not None:
            self._wait_for_slot(draft, now, definition, path)
            draft.unchecked.add(path)  # looked at in this run: a slot may be free
        elif path == "start":
            draft.begin_start(now)
        else:
            self._enter(definition, draft, path, now)

    async def _take_slot(self, definition: Definition, draft: Draft) -> bool:
        """Whether the mission of ``draft`` (stored, waiting for a slot) holds one of its key now:
        it joins the queue if it is not in it, and the first of the queue take the slots of
        missions that ended (its own among them, maybe)."""
        concurrency = definition.concurrency
        key = draft.concurrency_key
        if concurrency is None or key is None:
            return True  # a definition that lost its key since: nothing holds it back
        store = self._gates()
        while True:
            gate = await store.load_gate(key) or Gate(key, concurrency.limit)
            if draft.id in gate.running:
                return True
            queued = gate.queued if draft.id in gate.queued else (*gate.queued, draft.id)
            live = await self._live(gate.running)
            changed = await self._promote(gate, concurrency.limit, live, queued)
            if changed is None:
                return False
            try:
                await store.save_gate(changed, expected_revision=gate.revision)
            except RevisionConflictError:
                continue  # another mission changed the gate meanwhile: look again
            promoted = [m for m in changed.running if m not in gate.running and m != draft.id]
            await self._wake_for_slot(promoted)
            return draft.id in changed.running

    async def _promote(
        self, gate: Gate, limit: int, running: tuple[str, ...], queued: tuple[str, ...]
    ) -> Gate | None:
        """The gate with ``running`` holding its slots and the first of ``queued`` (those that
        have not ended) taking the free ones; ``None`` when that is the gate as stored."""
        running_now = list(running)
        waiting: list[str] = []
        for mission_id in queued:
            if len(running_now) < limit:
                snapshot = await self.persistence.load(mission_id)
                if snapshot is None or snapshot.is_terminal:
                    continue  # ended while it waited: it leaves the queue
                if snapshot.pause is None:
                    running_now.append(mission_id)
                    continue
                # Paused while it waits: passed over, it keeps its place (and takes a free
                # slot when it is resumed), so that it does not hold up its key's queue.
            waiting.append(mission_id)
        new = Gate(gate.key, limit, tuple(running_now), tuple(waiting), gate.revision + 1)
        if (new.running, new.queued, new.limit) == (gate.running, gate.queued, gate.limit):
            return None
        return new

    async def _release_slot(self, snapshot: MissionSnapshot) -> None:
        """Give the slot (or the place in the queue) of ``snapshot``, which has ended, to the
        first of its key's queue, and wake that one. What goes wrong here is the next
        mission's: the ones waiting look at the gate again by themselves."""
        key = snapshot.concurrency_key
        assert key is not None
        store = self._gates()
        try:
            while True:
                gate = await store.load_gate(key)
                if gate is None or (
                    snapshot.id not in gate.running and snapshot.id not in gate.queued
                ):
                    return
                running = tuple(m for m in gate.running if m != snapshot.id)
                queued = tuple(m for m in gate.queued if m != snapshot.id)
                changed = await self._promote(gate, gate.limit, running, queued)
                assert changed is not None  # the mission left it, at least
                try:
                    await store.save_gate(changed, expected_revision=gate.revision)
                except RevisionConflictError:
                    continue
                await self._wake_for_slot([m for m in changed.running if m not in gate.running])
                return
        except Exception:
            mission_logger.exception(
                "mission %r ended, and giving its slot of concurrency key %r up failed (the "
                "missions waiting for one look at the key again by themselves)",
                snapshot.id,
                key,
            )

    async def _wake_for_slot(self, ids: list[str]) -> None:
        """Have the missions of ``ids``, which hold a slot now and may still wait for it, look
        at it at once: a mission held here is poked; another is made due now (the runtime moves
        it in its next tick)."""
        for mission_id in ids:
            holder = self._holds.get(mission_id)
            if holder is not None:
                holder.poke()
                continue
            try:
                await self._make_due_for_slot(mission_id)
            except Exception:
                # (A mission this process may not write, in another runtime's shard, say.)
                mission_logger.warning(
                    "mission %r holds a slot of its concurrency key now, and waking it failed "
                    "(it looks at its key again by itself within SLOT_RECHECK)",
                    mission_id,
                    exc_info=True,
                )

    async def _make_due_for_slot(self, mission_id: str) -> None:
        """Make the mission, waiting for a slot it holds now, due at once (the runtime's next
        tick begins it)."""
        with self._hold(mission_id, RunTrigger.ADVANCE):
            snapshot = await self.persistence.load(mission_id)
            if snapshot is None or snapshot.status is not MissionStatus.WAITING:
                return
            wait = snapshot.wait
            now = self.now()
            if wait is None or wait.kind is not WaitKind.SLOT:
                return
            if wait.due_at is None or wait.due_at > now:
                draft = Draft.of(snapshot)
                record = snapshot.nodes[wait.node]
                draft.wait_at(
                    wait.node, record.name, record.kind, attrs.evolve(wait, due_at=now), now
                )
                try:
                    await self._write(draft)
                except RevisionConflictError:
                    return  # moved meanwhile by another process: it looks at its key itself
        self.notices.due(now)

    # -- pause and resume ---------------------------------------------------------------------

    async def pause(self, mission_id: str, reason: str | None) -> MissionSnapshot:
        """Pause the mission: at once when nobody moves it (it waits, or a crash left it
        running), else at its next node boundary, by the task that moves it (the snapshot
        returned is then the one stored now, not yet paused, with its ``pause_request``). The
        request is stored before this returns, so that a stop of the process before that
        boundary does not lose it: whoever takes the mission up next pauses it. Pausing a
        paused mission changes nothing."""
        while (holder := self._holds.get(mission_id)) is not None:
            async with holder.asking():
                snapshot = await self.load(mission_id)
                self.ensure_active(snapshot, "pause")
                if self._holds.get(mission_id) is not holder:
                    continue  # let go (or taken again) meanwhile: look again
                if snapshot.pause is not None or holder.pause is not None or holder.pausing:
                    return snapshot  # pausing twice keeps the first pause
                request = snapshot.pause_request
                if request is None:
                    request = Pause(self.now(), reason)
                    entry = TimelineEntry(
                        request.requested_at,
                        TimelineKind.PAUSE_REQUESTED,
                        snapshot.current_node,
                        detail={"reason": reason},
                    )
                    await self.persistence.request_pause(mission_id, request, [entry])
                    if self._holds.get(mission_id) is not holder:
                        # Let go meanwhile: the request is stored, and applied by whoever holds
                        # the mission now, or by this call (it pauses a mission nobody moves).
                        continue
                # (A request stored already, which the holder read before it came, is told to
                # the holder too.)
                holder.pause = request
                holder.poke()
                return attrs.evolve(snapshot, pause_request=request)
        with self._hold(mission_id, RunTrigger.PAUSE) as hold:
            snapshot = await self.load(mission_id)
            self.ensure_active(snapshot, "pause")
            if snapshot.pause is not None:
                return snapshot
            now = self.now()
            draft = Draft.of(snapshot)
            if self.observer is not None:
                self._begin_run(draft, hold)
            # A request stored earlier (its holder let go before its boundary) is the pause.
            draft.paused(snapshot.pause_request or Pause(now, reason), now)
            hold.pausing = True
            # A mission a crash left running stays so, for the runtime, if this write fails.
            hold.may_leave_running = snapshot.status is MissionStatus.RUNNING
            return await self._write(draft)

    async def _pause_asked(self, draft: Draft, hold: _Hold) -> MissionSnapshot | None:
        """The mission paused, when a pause was asked for while it was held by a call that
        stores it and lets go without running it (a background start); else ``None``."""
        if hold.pause is None:
            return None
        draft.paused(hold.pause, self.now())
        hold.pause = None
        hold.pausing = True
        return await self._write(draft)

    async def resume(self, mission_id: str) -> MissionSnapshot:
        """Take the paused mission out of its pause (stored first) and run it on from where it
        stopped, as a signal does: what came due or was buffered meanwhile is taken now. A
        mission that is not paused is returned as it is; a pause not yet taken effect (the
        holder's function still runs) is withdrawn."""
        while (holder := self._holds.get(mission_id)) is not None:
            async with holder.asking():
                snapshot = await self.load(mission_id)
                self.ensure_active(snapshot, "resume")
                if self._holds.get(mission_id) is not holder:
                    continue
                if not holder.pausing and (
                    holder.pause is not None or snapshot.pause_request is not None
                ):
                    holder.pause = None
                    if snapshot.pause_request is not None:
                        await self._withdraw_pause(snapshot)
                        snapshot = attrs.evolve(snapshot, pause_request=None)
                    if self._holds.get(mission_id) is not holder:
                        continue  # let go meanwhile: look at what it left
                if not holder.pausing and snapshot.pause is None:
                    return snapshot
            # Its holder is storing the pause it applied, or has just paused it and is letting go
            # (or moves it for a cancellation): resume it once it has let go.
            await holder.wait_released()
        with self._hold(mission_id, RunTrigger.UNPAUSE) as hold:
            snapshot = await self.load(mission_id)
            self.ensure_active(snapshot, "resume")
            if snapshot.pause is None:
                if snapshot.pause_request is not None:
                    # Asked while a task held it, which let go before its boundary.
                    await self._withdraw_pause(snapshot)
                    return attrs.evolve(snapshot, pause_request=None)
                return snapshot
            if snapshot.parent is not None:
                # A child whose parent stopped waiting for it while it was paused ends now.
                snapshot = await self._cancel_if_orphaned(snapshot, snapshot.parent, hold)
                if snapshot.is_terminal:
                    return snapshot
            definition = self.definition_for(snapshot)
            draft = Draft.of(snapshot)
            if self.observer is not None:
                self._begin_run(draft, hold)
            draft.unpaused(self.now())
            hold.may_leave_running = True
            # Stored before anything runs: a crash after this resumes it as any mission.
            await self._write(draft)
            snapshot = await self._drive(definition, draft, hold)
            return await self._finish(definition, snapshot, hold)

    async def _withdraw_pause(self, snapshot: MissionSnapshot) -> None:
        entry = TimelineEntry(self.now(), TimelineKind.PAUSE_WITHDRAWN, snapshot.current_node)
        await self.persistence.request_pause(snapshot.id, None, [entry])

    def _cancel_request(
        self, snapshot: MissionSnapshot, reason: str | None, compensate: bool
    ) -> tuple[CancelRequest, TimelineEntry]:
        now = self.now()
        detail: dict[str, Any] = {"reason": reason}
        if compensate:
            detail["compensate"] = True
        entry = TimelineEntry(
            now, TimelineKind.CANCEL_REQUESTED, snapshot.current_node, detail=detail
        )
        return CancelRequest(requested_at=now, reason=reason, compensate=compensate), entry

    def ensure_cancellable(self, snapshot: MissionSnapshot) -> None:
        self.ensure_active(snapshot, "cancel")
        if snapshot.compensating:
            raise MissionNotActiveError(
                f"cannot cancel: mission {shown_id(snapshot)!r} is running its compensations, "
                "which run to their end"
            )

    def ensure_active(self, snapshot: MissionSnapshot, action: str) -> None:
        if snapshot.is_terminal:
            raise MissionNotActiveError(
                f"cannot {action}: mission {shown_id(snapshot)!r} is {snapshot.status.value}"
            )
