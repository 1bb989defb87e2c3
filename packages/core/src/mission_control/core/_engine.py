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
from collections.abc import Callable
from datetime import UTC, datetime
from types import CoroutineType
from typing import Any

import attrs
import cattrs
import trio

from ._clock import Clock, SystemClock
from ._context import Context
from ._definition import MissionDefinition
from ._draft import Draft
from ._errors import (
    InvalidInputError,
    InvalidSignalPayloadError,
    MissionAlreadyExistsError,
    MissionNotActiveError,
    MissionNotFoundError,
    OutputNotSerializableError,
    RecoveryAttemptsExceededError,
    StepTimeoutError,
    UnknownDefinitionError,
    UnknownEventError,
    UnknownSignalError,
    message_of,
)
from ._nodes import EndNode, NeedToNode, Node, SleepNode, StartNode, StepNode
from ._notices import Notices
from ._persistence import PersistenceAdapter
from ._snapshot import (
    CancelRequest,
    ErrorInfo,
    JsonValue,
    MissionSnapshot,
    MissionStatus,
    TimelineEntry,
    TimelineKind,
    Wait,
    WaitKind,
)
from ._values import INT_FLOOR, INT_LIMIT, STORED_AS_IS, copy_json, is_text, to_json_value

Definition = MissionDefinition[Any, Any, Any]

step_logger = logging.getLogger("mission_control.steps")
"""A WARNING for each failed attempt of a start ``run`` or a step, with its traceback."""
mission_logger = logging.getLogger("mission_control.missions")
"""An ERROR for each mission that fails, with the stored traceback of what failed it."""

# The nodes that run a function (as a tuple: isinstance with ``A | B`` written inline builds the
# union at every call).
_FUNCTION_NODES = (StartNode, StepNode)

# What a plain (not async) user function returns, which can never be awaited: checked by exact
# type before inspect.isawaitable, which for these ends in a slow abc check.
_PLAIN_RESULTS: frozenset[type] = frozenset({type(None), bool, int, float, str, dict, list, tuple})


def _is_awaitable(value: object) -> bool:
    kind = type(value)
    if kind is CoroutineType:
        return True
    return kind not in _PLAIN_RESULTS and inspect.isawaitable(value)


class _Hold:
    """The in-process claim on a mission while a task moves it, and the pokes left for that
    task. Used as ``with _Hold(notices, mission_id) as hold:``; leaving releases the claim."""

    __slots__ = (
        "_holds",
        "_notices",
        "cancel",
        "may_leave_running",
        "mission_id",
        "poked",
        "released",
    )

    def __init__(self, notices: Notices, mission_id: str) -> None:
        self._holds: dict[str, _Hold] = notices.holds
        self._notices = notices
        self.mission_id = mission_id
        self.poked = False
        self.cancel: CancelRequest | None = None
        self.released: trio.Event | None = None
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
        if error is not None and self.may_leave_running and not _stops_process(error):
            # Let go mid-move (a cancelled caller, an error): the mission may be stored running
            # with nobody moving it, which only a tick resumes. Not when the process is
            # stopping: the next start-up resumes it.
            self._notices.left_running(self.mission_id, failed=isinstance(error, Exception))

    async def wait_released(self) -> None:
        if self.released is None:
            self.released = trio.Event()
        await self.released.wait()


_NEVER_RETRIED = (OutputNotSerializableError, UnknownEventError)
"""Errors that say the definition is wrong: another attempt cannot succeed."""

DEFAULT_MAX_RECOVERY_ATTEMPTS = 5
"""How many times, by default, a mission found running with nobody moving it has its node run
again before it fails with :class:`RecoveryAttemptsExceededError`."""

_PROCESS_STOPS = (KeyboardInterrupt, SystemExit)


def _stops_process(error: BaseException) -> bool:
    if isinstance(error, BaseExceptionGroup):
        group: BaseExceptionGroup[BaseException] = error  # pyright: ignore[reportUnknownVariableType]
        return group.subgroup(_PROCESS_STOPS) is not None
    return isinstance(error, _PROCESS_STOPS)


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
    # Raises the task's own cancellation when a scope around this call is cancelled.
    await trio.lowlevel.checkpoint_if_cancelled()
    return raised


class _LostRace(Exception):
    """Internal: another start inserted the same mission id first."""

    def __init__(self, existing: MissionSnapshot) -> None:
        super().__init__(existing.id)
        self.existing = existing


def _log_attempt_failed(
    mission_id: str, node: StartNode | StepNode, attempt: int, error: BaseException, then: str
) -> None:
    of = f" of {node.retry.max_attempts}" if isinstance(node, StepNode) else ""
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
    mission_logger.error(
        "mission %r (%s) failed at %r: %s: %s%s",
        snapshot.id,
        snapshot.definition,
        snapshot.current_node,
        error.type,
        error.message,
        "" if error.traceback is None else "\n" + error.traceback.rstrip("\n"),
    )


class Engine:
    """Moves missions forward and writes each transition through the persistence adapter."""

    def __init__(
        self,
        definitions: dict[str, Definition],
        persistence: PersistenceAdapter,
        clock: Clock,
        new_id: Callable[[], str],
        notices: Notices,
        max_recovery_attempts: int,
        converter: cattrs.Converter,
    ) -> None:
        self.definitions = definitions
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
        self.notices = notices
        # Shared by every engine on this adapter object, so that none moves a mission another
        # holds.
        self._holds: dict[str, _Hold] = notices.holds

    # -- holding -------------------------------------------------------------------------------

    def is_held(self, mission_id: str) -> bool:
        return mission_id in self._holds

    def _hold(self, mission_id: str) -> _Hold:
        return _Hold(self.notices, mission_id)

    def definition_for(self, snapshot: MissionSnapshot) -> Definition:
        definition = self.definitions.get(snapshot.definition)
        if definition is None:
            raise UnknownDefinitionError(
                f"mission {snapshot.id!r} uses definition {snapshot.definition!r}, which this "
                f"commander was not given (known: {', '.join(sorted(self.definitions)) or 'none'})"
            )
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
    ) -> MissionSnapshot:
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
        if mission_id is None:
            mission_id = self.new_id()
        else:
            if not isinstance(mission_id, str) or not mission_id or not is_text(mission_id):
                raise InvalidInputError(
                    f"mission id must be a non-empty string UTF-8 can encode, got {mission_id!r}"
                )
            while True:
                while (other := self._holds.get(mission_id)) is not None:
                    # Another call is writing this mission now: wait, then look again.
                    await other.wait_released()
                existing = await self._existing(definition, mission_id)
                if existing is not None:
                    return existing
                if mission_id not in self._holds:
                    break
        with self._hold(mission_id) as hold:
            now = self.now()
            draft = Draft.new(mission_id, definition.name, definition.version, input_json, now)
            if start_at is not None and start_at > now:
                draft.log(
                    now,
                    TimelineKind.MISSION_SCHEDULED,
                    "start",
                    detail={"start_at": start_at.isoformat()},
                )
                draft.waiting("start", "start", Wait(WaitKind.START, "start", due_at=start_at), now)
            else:
                draft.begin_start(now)
            try:
                snapshot = await self._drive(definition, draft, hold)
            except _LostRace as race:
                return race.existing
            return await self._settle(definition, snapshot, hold)

    async def _existing(self, definition: Definition, mission_id: str) -> MissionSnapshot | None:
        existing = await self.persistence.load(mission_id)
        if existing is not None and existing.definition != definition.name:
            raise MissionAlreadyExistsError(
                f"mission id {mission_id!r} belongs to a mission of definition "
                f"{existing.definition!r}, not {definition.name!r}"
            )
        return existing

    async def advance(self, mission_id: str) -> MissionSnapshot | None:
        """Move a due or interrupted mission forward; ``None`` when it is held in this process
        already (its holder moves it)."""
        if mission_id in self._holds:
            return None
        with self._hold(mission_id) as hold:
            snapshot = await self.load(mission_id)
            if snapshot.is_terminal:
                return snapshot
            running = snapshot.status is MissionStatus.RUNNING
            # Set before the definition is looked up: a running mission whose definition is
            # unknown here is still left running when that raises.
            hold.may_leave_running = running
            definition = self.definition_for(snapshot)
            draft = Draft.of(snapshot)
            if running:
                if snapshot.cancel_request is None:
                    snapshot = await self._recover(definition, draft)
                else:
                    # Cancelled at once by the drive, nothing runs again.
                    draft.log(self.now(), TimelineKind.MISSION_RESUMED, snapshot.current_node)
            snapshot = await self._drive(definition, draft, hold, snapshot)
            return await self._settle(definition, snapshot, hold)

    async def _recover(self, definition: Definition, draft: Draft) -> MissionSnapshot:
        """Count a re-run of the node a mission was left running at, or fail the mission when it
        has had ``max_recovery_attempts`` already.

        The count is written before the node runs again, so that a node which takes the process
        down with it (SIGKILL, KeyboardInterrupt, SystemExit) or whose result cannot be written is
        counted all the same, and stops being re-run after the limit.
        """
        now = self.now()
        name = draft.current_node
        assert name is not None, "a running mission is at a node"
        attempts = draft.recovery_attempts + 1
        draft.recovery_attempts = attempts
        if attempts <= self.max_recovery_attempts:
            draft.log(
                now,
                TimelineKind.MISSION_RESUMED,
                name,
                detail={"recovery_attempt": attempts},
            )
            return await self._write(draft)
        record = draft.nodes.get(name)
        found = definition.find(name)
        kind = record.kind if record is not None else found.kind if found is not None else "node"
        tried = (record.attempts if record is not None else 0) + 1
        error = RecoveryAttemptsExceededError(
            f"mission {draft.id!r} was left running at {kind} {name!r} {attempts} times in a row "
            f"(max_recovery_attempts={self.max_recovery_attempts}), so it is not run again: "
            f"the {kind} stops the process (a crash, SIGKILL, KeyboardInterrupt, SystemExit) or "
            f"its result cannot be stored. Fix the {kind} and start the mission again; if these "
            f"were unrelated crashes, raise max_recovery_attempts"
        )
        draft.failed(name, kind, ErrorInfo.from_exception(error, tried), now, attempts=tried)
        return await self._write(draft)

    async def _settle(
        self, definition: Definition, snapshot: MissionSnapshot, hold: _Hold
    ) -> MissionSnapshot:
        # Runs until no poke is left; the caller's release follows with no checkpoint between.
        while hold.poked and not snapshot.is_terminal:
            hold.poked = False
            snapshot = await self._drive(definition, Draft.of(snapshot), hold, snapshot)
        if snapshot.is_terminal:
            if snapshot.status is MissionStatus.FAILED:
                _log_mission_failed(snapshot)
            self.notices.ended(snapshot.id)
        elif (due := snapshot.due_at) is not None:
            self.notices.due(due)
        return snapshot

    # -- the drive loop ------------------------------------------------------------------------

    async def _drive(
        self,
        definition: Definition,
        draft: Draft,
        hold: _Hold,
        last: MissionSnapshot | None = None,
    ) -> MissionSnapshot:
        """Run nodes until the mission waits or ends, writing at each durable boundary.

        ``last`` is the stored snapshot the draft was made from, returned as is when nothing
        changes.
        """
        hold.may_leave_running = True
        while True:
            cancel = hold.cancel or draft.cancel_request
            if cancel is not None and not draft.is_terminal:
                draft.cancelled(cancel, self.now())
                return await self._write(draft)

            current = draft.current_node
            node = definition.find(current) if current is not None else None
            if current is not None and node is None:
                record = draft.nodes.get(current)
                draft.failed(
                    current,
                    record.kind if record is not None else "unknown",
                    ErrorInfo(
                        "MissingNodeError",
                        f"definition {definition.name!r} version {definition.version} has no "
                        f"node {current!r} (the mission was started on version "
                        f"{draft.definition_version})",
                    ),
                    self.now(),
                    attempts=record.attempts if record is not None else 0,
                )
                return await self._write(draft)

            status = draft.status
            if status is MissionStatus.RUNNING:
                assert node is not None
                if isinstance(node, _FUNCTION_NODES):
                    if draft.stored or node.run is None:
                        await self._run_node(definition, draft, node, hold)
                        # A step's result is written with the transition that follows it, before
                        # the next step runs (a cancellation is that transition, on the next turn).
                        if (
                            draft.status is MissionStatus.RUNNING
                            and hold.cancel is None
                            and isinstance(
                                definition.find(draft.current_node or ""), _FUNCTION_NODES
                            )
                        ):
                            last = await self._write(draft)
                    else:
                        # The write rule for a start that runs a function: the mission is
                        # inserted before the function runs, so it is durable from the moment
                        # start accepted its input, and the start's result goes with the next
                        # transition (after the first step, when one follows). A mission thus
                        # costs the same writes as when it was inserted after its start; a crash
                        # inside the first step runs the start again (at least once, as any
                        # node).
                        last = await self._write(draft)
                        await self._run_node(definition, draft, node, hold)
                elif isinstance(node, EndNode) and node.output is not None:
                    if not draft.stored:
                        # Right after a start: stored before the output function runs, as for a
                        # start's function.
                        last = await self._write(draft)
                    await self._end(definition, draft, node, hold)
                else:
                    # A node entered without being settled (after a signal, or a resume).
                    self._enter(definition, draft, node, self.now())
                continue

            if status is not MissionStatus.WAITING:
                return await self._write(draft) if draft.dirty else self._unchanged(draft, last)

            wait = draft.wait
            assert wait is not None
            if wait.kind is WaitKind.SIGNAL:
                assert wait.signal is not None
                signal = (
                    await self.persistence.next_signal(draft.id, wait.signal)
                    if draft.stored
                    else None
                )
                if signal is None:
                    return await self._write(draft) if draft.dirty else self._unchanged(draft, last)
                if draft.consumed is not None:
                    # One consumed signal per write: write the earlier one first.
                    last = await self._write(draft)
                now = self.now()
                try:
                    parsed = self._parse_payload(definition, wait.node, signal.payload)
                except Exception as error:
                    # Accepted when it was sent, rejected now (the parser changed since): the
                    # signal is used up with a record of why, and the mission keeps waiting.
                    draft.log(
                        now,
                        TimelineKind.SIGNAL_REJECTED,
                        wait.node,
                        detail={"type": type(error).__qualname__, "message": message_of(error)},
                    )
                else:
                    self._receive(definition, draft, wait.node, signal.payload, parsed, now)
                draft.consumed = signal.seq
                last = await self._write(draft)
                continue

            now = self.now()
            assert wait.due_at is not None
            if wait.due_at > now:
                return await self._write(draft) if draft.dirty else self._unchanged(draft, last)
            # A due time that has passed needs no write of its own: if the process stops before
            # the next write, the mission is still due and does the same again.
            if wait.kind is WaitKind.TIMER:
                node = definition.node(wait.node)
                draft.log(now, TimelineKind.TIMER_FIRED, wait.node)
                draft.complete(wait.node, node.kind, now, attempts=1)
                self._enter_after(definition, draft, wait.node, now)
            elif wait.kind is WaitKind.START:
                draft.begin_start(now)
            else:
                draft.retry_due(wait.node, now)

    def _unchanged(self, draft: Draft, last: MissionSnapshot | None) -> MissionSnapshot:
        return last if last is not None else draft.freeze(draft.revision)

    async def _write(self, draft: Draft) -> MissionSnapshot:
        if not draft.stored:
            snapshot = draft.freeze(1)
            existing = await self.persistence.insert(snapshot, draft.pending)
            if existing is not None:
                raise _LostRace(existing)
            draft.stored = True
        else:
            snapshot = draft.freeze(draft.revision + 1)
            await self.persistence.commit(
                snapshot,
                expected_revision=draft.revision,
                timeline=draft.pending,
                consumed_signal=draft.consumed,
            )
        draft.revision = snapshot.revision
        draft.pending = []
        draft.consumed = None
        return snapshot

    # -- node execution ------------------------------------------------------------------------

    def _context(
        self, definition: Definition, draft: Draft, node: str, attempt: int, now: datetime
    ) -> Context[Any, Any]:
        return Context(
            definition=definition,
            mission=draft,
            node=node,
            attempt=attempt,
            now=now,
            converter=self.converter,
        )

    async def _run_node(
        self, definition: Definition, draft: Draft, node: StartNode | StepNode, hold: _Hold
    ) -> None:
        record = draft.nodes.get(node.name)
        attempt = (record.attempts if record is not None else 0) + 1
        function = node.run
        output: JsonValue = None
        error: BaseException | None = None
        if function is not None:
            ctx = self._context(definition, draft, node.name, attempt, self.now())
            try:
                if isinstance(node, StepNode) and node.timeout is not None:
                    try:
                        with trio.fail_after(node.timeout.total_seconds()):
                            result = function(ctx)
                            if _is_awaitable(result):
                                result = await result
                    except trio.TooSlowError:
                        raise StepTimeoutError(
                            f"step {node.name!r} did not finish within "
                            f"{node.timeout.total_seconds():g} s"
                        ) from None
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
                        what=f"output of {node.kind} {node.name!r}",
                        converter=self.converter,
                    )
                )
            except Exception as raised:
                error = raised
            except BaseException as raised:
                error = await _raised_by_function(raised)
        now = self.now()
        if error is None:
            draft.log(now, TimelineKind.STEP_COMPLETED, node.name, attempt)
            draft.complete(node.name, node.kind, now, attempts=attempt, output=output)
            following = definition.next_node(node.name)
            assert following is not None, "a definition always ends with its end node"
            # A cancellation acknowledged while the node ran ends the mission at this boundary
            # (on the drive loop's next turn): entering the end node would complete it first.
            if hold.cancel is None or not isinstance(following, EndNode):
                self._enter(definition, draft, following, now)
            return
        info = ErrorInfo.from_exception(error, attempt)
        draft.log(
            now,
            TimelineKind.STEP_FAILED,
            node.name,
            attempt,
            detail={"type": info.type, "message": info.message},
        )
        if (
            isinstance(node, StepNode)
            and not isinstance(error, _NEVER_RETRIED)
            and node.retry.should_retry(error, attempt)
        ):
            try:
                due = now + node.retry.backoff.delay(attempt)
            except Exception as backoff_error:
                # A custom backoff that raises cannot schedule the retry: the step fails for
                # good, with the backoff's error and the step's error both in the record.
                failure = ErrorInfo.from_exception(backoff_error, attempt)
                failure = attrs.evolve(
                    failure,
                    message=f"retry backoff of step {node.name!r} failed ({failure.message}) "
                    f"after: {info.type}: {info.message}",
                )
                _log_attempt_failed(draft.id, node, attempt, error, "its retry backoff raised")
                draft.failed(node.name, node.kind, failure, now, attempts=attempt)
                return
            _log_attempt_failed(draft.id, node, attempt, error, f"retry at {due.isoformat()}")
            draft.log(
                now,
                TimelineKind.RETRY_SCHEDULED,
                node.name,
                attempt + 1,
                detail={"due_at": due.isoformat()},
            )
            draft.retry_later(
                node.name, attempt, info, due, Wait(WaitKind.RETRY, node.name, due_at=due), now
            )
        else:
            _log_attempt_failed(draft.id, node, attempt, error, "not retried")
            draft.failed(node.name, node.kind, info, now, attempts=attempt)

    def _enter_after(self, definition: Definition, draft: Draft, name: str, now: datetime) -> None:
        following = definition.next_node(name)
        assert following is not None, "a definition always ends with its end node"
        self._enter(definition, draft, following, now)

    def _enter(self, definition: Definition, draft: Draft, node: Node, now: datetime) -> None:
        """Move the cursor onto ``node``, settling at once what needs no outside event or
        function call."""
        if isinstance(node, _FUNCTION_NODES):
            draft.run_node(node.name, node.kind, now)
        elif isinstance(node, NeedToNode):
            draft.log(now, TimelineKind.WAIT_STARTED, node.name, detail={"signal": node.name})
            draft.waiting(
                node.name, node.kind, Wait(WaitKind.SIGNAL, node.name, signal=node.name), now
            )
        elif isinstance(node, SleepNode):
            try:
                due = self._sleep_due(definition, draft, node, now)
            except Exception as error:
                draft.failed(
                    node.name, node.kind, ErrorInfo.from_exception(error, 1), now, attempts=1
                )
                return
            draft.log(now, TimelineKind.WAIT_STARTED, node.name, detail={"due_at": due.isoformat()})
            draft.waiting(node.name, node.kind, Wait(WaitKind.TIMER, node.name, due_at=due), now)
        else:
            assert isinstance(node, EndNode)
            if node.output is None:
                draft.completed(None, now)
            else:
                # The output function runs on the drive loop's next turn.
                draft.status = MissionStatus.RUNNING
                draft.wait = None
                draft.current_node = node.name

    async def _end(self, definition: Definition, draft: Draft, node: EndNode, hold: _Hold) -> None:
        """Compute the mission's output with the end node's function, and complete (unless a
        cancellation came meanwhile: the drive loop's next turn applies it)."""
        assert node.output is not None
        now = self.now()
        ctx = self._context(definition, draft, node.name, 1, now)
        try:
            result = node.output(ctx)
            if _is_awaitable(result):
                result = await result
            output = to_json_value(result, what="mission output", converter=self.converter)
        except BaseException as raised:
            error = raised if isinstance(raised, Exception) else await _raised_by_function(raised)
            draft.failed(node.name, node.kind, ErrorInfo.from_exception(error, 1), now, attempts=1)
            return
        if hold.cancel is None:
            draft.completed(output, now)

    def _sleep_due(
        self, definition: Definition, draft: Draft, node: SleepNode, now: datetime
    ) -> datetime:
        if node.duration is not None:
            return now + node.duration
        until = node.until
        if isinstance(until, datetime):
            return until
        assert until is not None
        ctx = self._context(definition, draft, node.name, 1, now)
        when = until(ctx)
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

    def _receive(
        self,
        definition: Definition,
        draft: Draft,
        name: str,
        payload: JsonValue,
        parsed: JsonValue,
        now: datetime,
    ) -> None:
        """Complete the need_to ``name`` with ``payload`` and put the cursor on the next node
        (a function node there runs on the drive loop's next turn, after this is written)."""
        node = definition.node(name)
        draft.log(now, TimelineKind.SIGNAL_RECEIVED, name)
        draft.complete(name, node.kind, now, attempts=1, input=payload, output=parsed)
        # Settled in the same write as the signal: a wait or the end that follows needs no write
        # of its own; a function node runs on the drive loop's next turn, after this write.
        self._enter_after(definition, draft, name, now)

    # -- signals and cancellation -------------------------------------------------------------

    def _check_signal(
        self, snapshot: MissionSnapshot, name: str, payload: Any
    ) -> tuple[Definition, JsonValue, JsonValue]:
        """The definition, the payload as JSON and as parsed, or the error the signal earns."""
        definition = self.definition_for(snapshot)
        if name not in definition.signals:
            raise UnknownSignalError(
                f"mission {snapshot.definition!r} has no need_to {name!r} "
                f"(signals it takes: {', '.join(definition.signals) or 'none'})"
            )
        self._ensure_active(snapshot, f"signal {name!r}")
        try:
            payload_json = to_json_value(
                payload, what=f"signal {name!r} payload", converter=self.converter
            )
            parsed = self._parse_payload(definition, name, payload_json)
        except Exception as error:
            raise InvalidSignalPayloadError(
                f"signal {name!r} for mission {snapshot.id!r} rejected its payload: "
                f"{message_of(error)}"
            ) from error
        return definition, payload_json, parsed

    async def signal(self, mission_id: str, name: str, payload: Any) -> MissionSnapshot:
        if mission_id in self._holds:
            snapshot = await self.load(mission_id)
            _, payload_json, _ = self._check_signal(snapshot, name, payload)
            return await self._buffer(snapshot, name, payload_json, self.now(), held=True)
        # Held from before the load, so the snapshot checked is the one acted on.
        with self._hold(mission_id) as hold:
            snapshot = await self.load(mission_id)
            definition, payload_json, parsed = self._check_signal(snapshot, name, payload)
            now = self.now()
            wait = snapshot.wait
            if (
                snapshot.status is MissionStatus.WAITING
                and wait is not None
                and wait.kind is WaitKind.SIGNAL
                and wait.signal == name
            ):
                if await self.persistence.next_signal(mission_id, name) is None:
                    draft = Draft.of(snapshot)
                    self._receive(definition, draft, name, payload_json, parsed, now)
                    hold.may_leave_running = True
                    snapshot = await self._write(draft)
                    snapshot = await self._drive(definition, draft, hold, snapshot)
                    return await self._settle(definition, snapshot, hold)
                # An older signal of this name is still buffered (a crash came between its
                # buffering and its use): it goes first, this one queues behind it.
                await self._buffer(snapshot, name, payload_json, now, held=False)
                snapshot = await self._drive(definition, Draft.of(snapshot), hold, snapshot)
                return await self._settle(definition, snapshot, hold)
            return await self._buffer(snapshot, name, payload_json, now, held=False)

    async def _buffer(
        self, snapshot: MissionSnapshot, name: str, payload: JsonValue, now: datetime, *, held: bool
    ) -> MissionSnapshot:
        entry = TimelineEntry(now, TimelineKind.SIGNAL_BUFFERED, name)
        await self.persistence.append_signal(snapshot.id, name, payload, now, [entry])
        if held:
            holder = self._holds.get(snapshot.id)
            if holder is not None:
                holder.poked = True
            else:
                # The holder let go while the signal was being stored: take the mission over
                # so the signal is not left waiting for a run that already ended.
                return await self.advance(snapshot.id) or snapshot
        return snapshot

    async def cancel(self, mission_id: str, reason: str | None) -> MissionSnapshot:
        if mission_id in self._holds:
            snapshot = await self.load(mission_id)
            self._ensure_active(snapshot, "cancel")
            request, entry = self._cancel_request(snapshot, reason)
            await self.persistence.request_cancel(mission_id, request, [entry])
            holder = self._holds.get(mission_id)
            if holder is not None:
                holder.cancel = request
                holder.poked = True
                return attrs.evolve(snapshot, cancel_request=request)
            return await self.advance(mission_id) or snapshot
        with self._hold(mission_id) as hold:
            snapshot = await self.load(mission_id)
            self._ensure_active(snapshot, "cancel")
            request, entry = self._cancel_request(snapshot, reason)
            # Nothing runs this mission (it waits, or a crash interrupted it), so the cancellation
            # takes effect now, in the same transaction as its request.
            draft = Draft.of(snapshot)
            draft.pending.append(entry)
            draft.cancelled(request, request.requested_at)
            hold.may_leave_running = True
            snapshot = await self._write(draft)
            self.notices.ended(snapshot.id)
            return snapshot

    def _cancel_request(
        self, snapshot: MissionSnapshot, reason: str | None
    ) -> tuple[CancelRequest, TimelineEntry]:
        now = self.now()
        entry = TimelineEntry(
            now, TimelineKind.CANCEL_REQUESTED, snapshot.current_node, detail={"reason": reason}
        )
        return CancelRequest(requested_at=now, reason=reason), entry

    def _ensure_active(self, snapshot: MissionSnapshot, action: str) -> None:
        if snapshot.is_terminal:
            raise MissionNotActiveError(
                f"cannot {action}: mission {snapshot.id!r} is {snapshot.status.value}"
            )
