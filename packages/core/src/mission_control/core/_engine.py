"""The one engine that interprets every node kind, for every adapter.

A mission is moved forward by whoever *holds* it in this process (a ``start`` call, a signal, a
cancellation or the runtime). Only the holder writes the mission's snapshot; callers that find it
held leave their signal or cancellation in the durable mailbox and poke the holder, which looks
again before it lets go. The check and the release happen with no checkpoint in between, so a
poke is never missed.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Generator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import attrs
import trio

from ._clock import Clock
from ._context import Context
from ._definition import MissionDefinition
from ._errors import (
    InvalidInputError,
    InvalidSignalPayloadError,
    MissionAlreadyExistsError,
    MissionNotActiveError,
    MissionNotFoundError,
    OutputNotSerializableError,
    StepTimeoutError,
    UnknownDefinitionError,
    UnknownSignalError,
)
from ._nodes import EndNode, NeedToNode, Node, SleepNode, StartNode, StepNode
from ._persistence import PersistenceAdapter
from ._serialization import to_json_value
from ._snapshot import (
    CancelRequest,
    ErrorInfo,
    JsonValue,
    MissionSnapshot,
    MissionStatus,
    NodeRecord,
    NodeStatus,
    TimelineEntry,
    TimelineKind,
    Wait,
    WaitKind,
)

Definition = MissionDefinition[Any, Any, Any]


@attrs.define
class _Hold:
    """The in-process claim on a mission, and the pokes left for its holder."""

    poked: bool = False
    cancel: CancelRequest | None = None
    released: trio.Event | None = None

    async def wait_released(self) -> None:
        if self.released is None:
            self.released = trio.Event()
        await self.released.wait()


async def _call(function: Callable[..., Any], ctx: Context[Any, Any]) -> Any:
    result = function(ctx)
    if inspect.isawaitable(result):
        result = await result
    return result


class Engine:
    """Moves missions forward and writes each transition through the persistence adapter."""

    def __init__(
        self,
        definitions: dict[str, Definition],
        persistence: PersistenceAdapter,
        clock: Clock,
        new_id: Callable[[], str],
        on_terminal: Callable[[MissionSnapshot], None],
    ) -> None:
        self.definitions = definitions
        self.persistence = persistence
        self.clock = clock
        self.new_id = new_id
        self._on_terminal = on_terminal
        self._holds: dict[str, _Hold] = {}

    # -- holding -------------------------------------------------------------------------------

    def is_held(self, mission_id: str) -> bool:
        return mission_id in self._holds

    @contextmanager
    def _hold(self, mission_id: str) -> Generator[_Hold]:
        assert mission_id not in self._holds, f"mission {mission_id!r} is held already"
        hold = self._holds[mission_id] = _Hold()
        try:
            yield hold
        finally:
            del self._holds[mission_id]
            if hold.released is not None:
                hold.released.set()

    def definition_for(self, snapshot: MissionSnapshot) -> Definition:
        definition = self.definitions.get(snapshot.definition)
        if definition is None:
            raise UnknownDefinitionError(
                f"mission {snapshot.id!r} uses definition {snapshot.definition!r}, which this "
                f"commander was not given (known: {', '.join(sorted(self.definitions)) or 'none'})"
            )
        return definition

    async def load(self, mission_id: str) -> MissionSnapshot:
        snapshot = await self.persistence.load(mission_id)
        if snapshot is None:
            raise MissionNotFoundError(f"no mission with id {mission_id!r}")
        return snapshot

    # -- start ---------------------------------------------------------------------------------

    async def start(
        self,
        definition: Definition,
        raw_input: Any,
        mission_id: str | None,
        start_at: datetime | None,
    ) -> MissionSnapshot:
        try:
            input_json = to_json_value(raw_input, what="mission input")
        except OutputNotSerializableError as error:
            raise InvalidInputError(str(error)) from None
        try:
            definition.parse_input(input_json)
        except Exception as error:
            raise InvalidInputError(
                f"mission {definition.name!r} rejected its input: {error}"
            ) from error
        if mission_id is not None:
            if not isinstance(mission_id, str) or not mission_id:
                raise InvalidInputError(
                    f"mission id must be a non-empty string, got {mission_id!r}"
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
        else:
            mission_id = self.new_id()
        with self._hold(mission_id) as hold:
            now = self.clock.now()
            snapshot = MissionSnapshot(
                id=mission_id,
                definition=definition.name,
                definition_version=definition.version,
                status=MissionStatus.RUNNING,
                current_node="start",
                input=input_json,
                created_at=now,
                updated_at=now,
            )
            if start_at is not None and start_at > now:
                record = NodeRecord("start", "start", NodeStatus.WAITING, due_at=start_at)
                scheduled = attrs.evolve(
                    snapshot,
                    status=MissionStatus.WAITING,
                    wait=Wait(WaitKind.START, "start", due_at=start_at),
                    nodes={"start": record},
                    revision=1,
                )
                entry = TimelineEntry(
                    now,
                    TimelineKind.MISSION_SCHEDULED,
                    "start",
                    detail={"start_at": start_at.isoformat()},
                )
                existing = await self.persistence.insert(scheduled, [entry])
                return existing if existing is not None else scheduled
            snapshot, pending = self._begin_start(snapshot, now)
            snapshot = await self._drive(definition, snapshot, hold, pending, inserted=False)
            return await self._settle(definition, snapshot, hold)

    async def _existing(self, definition: Definition, mission_id: str) -> MissionSnapshot | None:
        existing = await self.persistence.load(mission_id)
        if existing is not None and existing.definition != definition.name:
            raise MissionAlreadyExistsError(
                f"mission id {mission_id!r} belongs to a mission of definition "
                f"{existing.definition!r}, not {definition.name!r}"
            )
        return existing

    def _begin_start(
        self, snapshot: MissionSnapshot, now: datetime
    ) -> tuple[MissionSnapshot, list[TimelineEntry]]:
        record = NodeRecord("start", "start", NodeStatus.RUNNING, started_at=now)
        snapshot = attrs.evolve(
            snapshot,
            status=MissionStatus.RUNNING,
            current_node="start",
            wait=None,
            nodes={**snapshot.nodes, "start": record},
        )
        return snapshot, [TimelineEntry(now, TimelineKind.MISSION_STARTED, "start")]

    # -- advancing -----------------------------------------------------------------------------

    async def advance(self, mission_id: str) -> MissionSnapshot | None:
        """Move a due or interrupted mission forward; ``None`` when it is held in this process
        already (its holder moves it)."""
        if mission_id in self._holds:
            return None
        with self._hold(mission_id) as hold:
            snapshot = await self.load(mission_id)
            if snapshot.is_terminal:
                return snapshot
            definition = self.definition_for(snapshot)
            pending: list[TimelineEntry] = []
            if snapshot.status is MissionStatus.RUNNING:
                pending.append(
                    TimelineEntry(
                        self.clock.now(), TimelineKind.MISSION_RESUMED, snapshot.current_node
                    )
                )
            snapshot = await self._drive(definition, snapshot, hold, pending)
            return await self._settle(definition, snapshot, hold)

    async def _settle(
        self, definition: Definition, snapshot: MissionSnapshot, hold: _Hold
    ) -> MissionSnapshot:
        # Runs until no poke is left; the caller's release follows with no checkpoint between.
        while hold.poked and not snapshot.is_terminal:
            hold.poked = False
            snapshot = await self._drive(definition, snapshot, hold, [])
        if snapshot.is_terminal:
            self._on_terminal(snapshot)
        return snapshot

    async def _drive(
        self,
        definition: Definition,
        snapshot: MissionSnapshot,
        hold: _Hold,
        pending: list[TimelineEntry],
        *,
        inserted: bool = True,
        consumed: int | None = None,
    ) -> MissionSnapshot:
        """Run nodes until the mission waits or ends, committing at each durable boundary.

        ``pending`` holds timeline entries not yet written; ``inserted`` says whether the
        mission exists in the store yet (a fresh start is inserted by its first commit).
        """
        while True:
            cancel = hold.cancel or snapshot.cancel_request
            if cancel is not None and not snapshot.is_terminal:
                snapshot, entries = self._cancelled(snapshot, cancel)
                pending.extend(entries)
                return await self._write(snapshot, pending, inserted, consumed)

            current = snapshot.current_node
            if current is not None and not definition.has_node(current):
                snapshot, entries = self._failed(
                    snapshot,
                    current,
                    ErrorInfo(
                        "MissingNodeError",
                        f"definition {definition.name!r} version {definition.version} has no "
                        f"node {current!r} (the mission was started on version "
                        f"{snapshot.definition_version})",
                    ),
                    self.clock.now(),
                )
                pending.extend(entries)
                return await self._write(snapshot, pending, inserted, consumed)

            if snapshot.status is MissionStatus.WAITING:
                wait = snapshot.wait
                assert wait is not None
                now = self.clock.now()
                if wait.kind is WaitKind.SIGNAL:
                    assert wait.signal is not None
                    signal = await self.persistence.next_signal(snapshot.id, wait.signal)
                    if signal is None:
                        return await self._write(snapshot, pending, inserted, consumed)
                    if consumed is not None:
                        # One consumed signal per transaction: write the earlier one first.
                        snapshot = await self._write(snapshot, pending, inserted, consumed)
                        inserted, consumed = True, None
                        pending = []
                    snapshot = self._receive(
                        definition, snapshot, wait.node, signal.payload, now, pending
                    )
                    consumed = signal.seq
                    snapshot = await self._write(snapshot, pending, inserted, consumed)
                    inserted, consumed, pending = True, None, []
                    continue
                assert wait.due_at is not None
                if wait.due_at > now:
                    return await self._write(snapshot, pending, inserted, consumed)
                # A due time that has passed needs no write of its own: if the process stops
                # before the next write, the mission is still due and does the same again.
                if wait.kind is WaitKind.TIMER:
                    pending.append(TimelineEntry(now, TimelineKind.TIMER_FIRED, wait.node))
                    snapshot = self._complete(snapshot, wait.node, None, None, now, attempts=1)
                    snapshot = await self._enter_after(
                        definition, snapshot, wait.node, now, pending
                    )
                    continue
                if wait.kind is WaitKind.START:
                    snapshot, entries = self._begin_start(snapshot, now)
                    pending.extend(entries)
                else:
                    record = snapshot.nodes[wait.node]
                    snapshot = attrs.evolve(
                        snapshot,
                        status=MissionStatus.RUNNING,
                        wait=None,
                        nodes={
                            **snapshot.nodes,
                            wait.node: attrs.evolve(record, status=NodeStatus.RUNNING, due_at=None),
                        },
                    )
                    pending.append(
                        TimelineEntry(
                            now, TimelineKind.STEP_STARTED, wait.node, attempt=record.attempts + 1
                        )
                    )
                continue

            if snapshot.status is not MissionStatus.RUNNING:
                return await self._write(snapshot, pending, inserted, consumed)

            # Running: execute the current node.
            name = snapshot.current_node
            assert name is not None
            node = definition.node(name)
            if isinstance(node, StartNode | StepNode):
                snapshot = await self._run_node(definition, snapshot, node, pending)
                # A step's result is written together with the transition that follows it.
                if not snapshot.is_terminal and snapshot.status is MissionStatus.RUNNING:
                    snapshot = await self._write(snapshot, pending, inserted, consumed)
                    inserted, consumed, pending = True, None, []
                continue
            # Entered a node that is not a function (after a resume, say): enter it afresh.
            now = self.clock.now()
            snapshot = await self._enter(definition, snapshot, node, now, pending)

    async def _write(
        self,
        snapshot: MissionSnapshot,
        pending: Sequence[TimelineEntry],
        inserted: bool,
        consumed: int | None,
    ) -> MissionSnapshot:
        if not inserted:
            snapshot = attrs.evolve(snapshot, revision=1)
            existing = await self.persistence.insert(snapshot, pending)
            if existing is not None:
                # Lost a race for the same id with another starter; theirs stands.
                return existing
            return snapshot
        if not pending and consumed is None:
            return snapshot
        stored = attrs.evolve(snapshot, revision=snapshot.revision + 1)
        await self.persistence.commit(
            stored, expected_revision=snapshot.revision, timeline=pending, consumed_signal=consumed
        )
        return stored

    # -- node execution ------------------------------------------------------------------------

    async def _run_node(
        self,
        definition: Definition,
        snapshot: MissionSnapshot,
        node: StartNode | StepNode,
        pending: list[TimelineEntry],
    ) -> MissionSnapshot:
        record = snapshot.nodes.get(node.name)
        attempt = (record.attempts if record is not None else 0) + 1
        now = self.clock.now()
        function = node.run
        output: JsonValue = None
        error: BaseException | None = None
        if function is not None:
            ctx: Context[Any, Any] = Context(
                definition=definition, snapshot=snapshot, node=node.name, attempt=attempt, now=now
            )
            try:
                if isinstance(node, StepNode) and node.timeout is not None:
                    try:
                        with trio.fail_after(node.timeout.total_seconds()):
                            result = await _call(function, ctx)
                    except trio.TooSlowError:
                        raise StepTimeoutError(
                            f"step {node.name!r} did not finish within "
                            f"{node.timeout.total_seconds():g} s"
                        ) from None
                else:
                    result = await _call(function, ctx)
                output = to_json_value(result, what=f"output of {node.kind} {node.name!r}")
            except Exception as raised:
                error = raised
        now = self.clock.now()
        if error is None:
            pending.append(TimelineEntry(now, TimelineKind.STEP_COMPLETED, node.name, attempt))
            snapshot = self._complete(snapshot, node.name, None, output, now, attempts=attempt)
            return await self._enter_after(definition, snapshot, node.name, now, pending)
        info = ErrorInfo.from_exception(error, attempt)
        pending.append(
            TimelineEntry(
                now,
                TimelineKind.STEP_FAILED,
                node.name,
                attempt,
                detail={"type": info.type, "message": info.message},
            )
        )
        retryable = (
            isinstance(node, StepNode)
            and not isinstance(error, OutputNotSerializableError)
            and node.retry.should_retry(error, attempt)
        )
        if not retryable:
            snapshot, entries = self._failed(snapshot, node.name, info, now, attempts=attempt)
            pending.extend(entries)
            return snapshot
        assert isinstance(node, StepNode)
        due = now + node.retry.backoff.delay(attempt)
        pending.append(
            TimelineEntry(
                now,
                TimelineKind.RETRY_SCHEDULED,
                node.name,
                attempt + 1,
                detail={"due_at": due.isoformat()},
            )
        )
        previous = snapshot.nodes[node.name]
        return attrs.evolve(
            snapshot,
            status=MissionStatus.WAITING,
            wait=Wait(WaitKind.RETRY, node.name, due_at=due),
            updated_at=now,
            nodes={
                **snapshot.nodes,
                node.name: attrs.evolve(
                    previous, status=NodeStatus.WAITING, attempts=attempt, error=info, due_at=due
                ),
            },
        )

    async def _enter_after(
        self,
        definition: Definition,
        snapshot: MissionSnapshot,
        name: str,
        now: datetime,
        pending: list[TimelineEntry],
    ) -> MissionSnapshot:
        following = definition.next_node(name)
        assert following is not None, "a definition always ends with its end node"
        return await self._enter(definition, snapshot, following, now, pending)

    async def _enter(
        self,
        definition: Definition,
        snapshot: MissionSnapshot,
        node: Node,
        now: datetime,
        pending: list[TimelineEntry],
    ) -> MissionSnapshot:
        """Move the cursor onto ``node``, settling at once what needs no outside event."""
        if isinstance(node, StepNode | StartNode):
            previous = snapshot.nodes.get(node.name)
            attempts = previous.attempts if previous is not None else 0
            pending.append(TimelineEntry(now, TimelineKind.STEP_STARTED, node.name, attempts + 1))
            return attrs.evolve(
                snapshot,
                status=MissionStatus.RUNNING,
                current_node=node.name,
                wait=None,
                updated_at=now,
                nodes={
                    **snapshot.nodes,
                    node.name: NodeRecord(
                        node.name, node.kind, NodeStatus.RUNNING, attempts, started_at=now
                    ),
                },
            )
        if isinstance(node, NeedToNode):
            pending.append(
                TimelineEntry(
                    now, TimelineKind.WAIT_STARTED, node.name, detail={"signal": node.name}
                )
            )
            return self._waiting(
                snapshot, node, Wait(WaitKind.SIGNAL, node.name, signal=node.name), now
            )
        if isinstance(node, SleepNode):
            due = self._sleep_due(definition, snapshot, node, now)
            pending.append(
                TimelineEntry(
                    now, TimelineKind.WAIT_STARTED, node.name, detail={"due_at": due.isoformat()}
                )
            )
            return self._waiting(snapshot, node, Wait(WaitKind.TIMER, node.name, due_at=due), now)
        assert isinstance(node, EndNode)
        output: JsonValue = None
        if node.output is not None:
            ctx: Context[Any, Any] = Context(
                definition=definition, snapshot=snapshot, node=node.name, attempt=1, now=now
            )
            try:
                output = to_json_value(await _call(node.output, ctx), what="mission output")
            except Exception as error:
                snapshot, entries = self._failed(
                    snapshot, node.name, ErrorInfo.from_exception(error, 1), now, attempts=1
                )
                pending.extend(entries)
                return snapshot
        pending.append(TimelineEntry(now, TimelineKind.MISSION_COMPLETED, node.name))
        record = NodeRecord(
            node.name,
            node.kind,
            NodeStatus.COMPLETED,
            1,
            output=output,
            started_at=now,
            finished_at=now,
        )
        return attrs.evolve(
            snapshot,
            status=MissionStatus.COMPLETED,
            current_node=None,
            wait=None,
            output=output,
            updated_at=now,
            nodes={**snapshot.nodes, node.name: record},
        )

    def _sleep_due(
        self, definition: Definition, snapshot: MissionSnapshot, node: SleepNode, now: datetime
    ) -> datetime:
        if node.duration is not None:
            return now + node.duration
        until = node.until
        if isinstance(until, datetime):
            return until
        assert until is not None
        ctx: Context[Any, Any] = Context(
            definition=definition, snapshot=snapshot, node=node.name, attempt=1, now=now
        )
        when = until(ctx)
        if not isinstance(when, datetime) or when.tzinfo is None:
            raise TypeError(
                f"sleep_until {node.name!r} must compute an aware datetime, got {when!r}"
            )
        return when

    def _waiting(
        self, snapshot: MissionSnapshot, node: Node, wait: Wait, now: datetime
    ) -> MissionSnapshot:
        record = NodeRecord(
            node.name, node.kind, NodeStatus.WAITING, started_at=now, due_at=wait.due_at
        )
        return attrs.evolve(
            snapshot,
            status=MissionStatus.WAITING,
            current_node=node.name,
            wait=wait,
            updated_at=now,
            nodes={**snapshot.nodes, node.name: record},
        )

    def _receive(
        self,
        definition: Definition,
        snapshot: MissionSnapshot,
        node_name: str,
        payload: JsonValue,
        now: datetime,
        pending: list[TimelineEntry],
    ) -> MissionSnapshot:
        node = definition.node(node_name)
        assert isinstance(node, NeedToNode)
        parsed = to_json_value(node.parse(payload), what=f"parsed payload of {node_name!r}")
        pending.append(TimelineEntry(now, TimelineKind.SIGNAL_RECEIVED, node_name))
        snapshot = self._complete(snapshot, node_name, payload, parsed, now, attempts=1)
        snapshot = attrs.evolve(snapshot, status=MissionStatus.RUNNING, wait=None)
        following = definition.next_node(node_name)
        assert following is not None
        # Entering a function node here only moves the cursor; it runs on the next loop turn.
        if isinstance(following, StepNode | StartNode):
            previous = snapshot.nodes.get(following.name)
            attempts = previous.attempts if previous is not None else 0
            pending.append(
                TimelineEntry(now, TimelineKind.STEP_STARTED, following.name, attempts + 1)
            )
            return attrs.evolve(
                snapshot,
                current_node=following.name,
                nodes={
                    **snapshot.nodes,
                    following.name: NodeRecord(
                        following.name,
                        following.kind,
                        NodeStatus.RUNNING,
                        attempts,
                        started_at=now,
                    ),
                },
            )
        return attrs.evolve(snapshot, current_node=following.name)

    def _complete(
        self,
        snapshot: MissionSnapshot,
        name: str,
        input: JsonValue,
        output: JsonValue,
        now: datetime,
        *,
        attempts: int,
    ) -> MissionSnapshot:
        previous = snapshot.nodes.get(name)
        record = NodeRecord(
            name,
            previous.kind if previous is not None else "step",
            NodeStatus.COMPLETED,
            attempts,
            input=input if input is not None else (previous.input if previous else None),
            output=output,
            started_at=previous.started_at if previous is not None else now,
            finished_at=now,
        )
        return attrs.evolve(snapshot, updated_at=now, nodes={**snapshot.nodes, name: record})

    def _failed(
        self,
        snapshot: MissionSnapshot,
        name: str,
        error: ErrorInfo,
        now: datetime,
        *,
        attempts: int | None = None,
    ) -> tuple[MissionSnapshot, list[TimelineEntry]]:
        previous = snapshot.nodes.get(name)
        kind = previous.kind if previous is not None else "step"
        record = NodeRecord(
            name,
            kind,
            NodeStatus.FAILED,
            attempts if attempts is not None else (previous.attempts if previous else 0),
            input=previous.input if previous is not None else None,
            error=error,
            started_at=previous.started_at if previous is not None else now,
            finished_at=now,
        )
        failed = attrs.evolve(
            snapshot,
            status=MissionStatus.FAILED,
            wait=None,
            error=error,
            updated_at=now,
            nodes={**snapshot.nodes, name: record},
        )
        entry = TimelineEntry(
            now,
            TimelineKind.MISSION_FAILED,
            name,
            detail={"type": error.type, "message": error.message},
        )
        return failed, [entry]

    def _cancelled(
        self, snapshot: MissionSnapshot, request: CancelRequest
    ) -> tuple[MissionSnapshot, list[TimelineEntry]]:
        now = self.clock.now()
        nodes = dict(snapshot.nodes)
        current = snapshot.current_node
        if current is not None and current in nodes:
            record = nodes[current]
            if record.status is not NodeStatus.COMPLETED:
                nodes[current] = attrs.evolve(
                    record, status=NodeStatus.CANCELLED, finished_at=now, due_at=None
                )
        cancelled = attrs.evolve(
            snapshot,
            status=MissionStatus.CANCELLED,
            wait=None,
            cancel_request=request,
            updated_at=now,
            nodes=nodes,
        )
        entry = TimelineEntry(
            now, TimelineKind.MISSION_CANCELLED, current, detail={"reason": request.reason}
        )
        return cancelled, [entry]

    # -- signals and cancellation -------------------------------------------------------------

    async def signal(self, mission_id: str, name: str, payload: Any) -> MissionSnapshot:
        snapshot = await self.load(mission_id)
        definition = self.definition_for(snapshot)
        node = definition.signals.get(name)
        if node is None:
            raise UnknownSignalError(
                f"mission {snapshot.definition!r} has no need_to {name!r} "
                f"(signals it takes: {', '.join(definition.signals) or 'none'})"
            )
        try:
            payload_json = to_json_value(payload, what=f"signal {name!r} payload")
            node.parse(payload_json)
        except Exception as error:
            raise InvalidSignalPayloadError(
                f"signal {name!r} for mission {mission_id!r} rejected its payload: {error}"
            ) from error
        self._ensure_active(snapshot, f"signal {name!r}")
        now = self.clock.now()
        hold = self._holds.get(mission_id)
        if hold is not None:
            return await self._buffer(snapshot, name, payload_json, now, hold)
        with self._hold(mission_id) as hold:
            snapshot = await self.load(mission_id)
            self._ensure_active(snapshot, f"signal {name!r}")
            wait = snapshot.wait
            if (
                snapshot.status is MissionStatus.WAITING
                and wait is not None
                and wait.kind is WaitKind.SIGNAL
                and wait.signal == name
            ):
                pending: list[TimelineEntry] = []
                snapshot = self._receive(definition, snapshot, name, payload_json, now, pending)
                snapshot = await self._write(snapshot, pending, True, None)
                snapshot = await self._drive(definition, snapshot, hold, [])
                return await self._settle(definition, snapshot, hold)
            return await self._buffer(snapshot, name, payload_json, now, None)

    async def _buffer(
        self,
        snapshot: MissionSnapshot,
        name: str,
        payload: JsonValue,
        now: datetime,
        hold: _Hold | None,
    ) -> MissionSnapshot:
        entry = TimelineEntry(now, TimelineKind.SIGNAL_BUFFERED, name)
        await self.persistence.append_signal(snapshot.id, name, payload, now, [entry])
        if hold is not None:
            holder = self._holds.get(snapshot.id)
            if holder is not None:
                holder.poked = True
            else:
                # The holder let go while the signal was being stored: take the mission over
                # so the signal is not left waiting for a run that already ended.
                return await self.advance(snapshot.id) or snapshot
        return snapshot

    async def cancel(self, mission_id: str, reason: str | None) -> MissionSnapshot:
        snapshot = await self.load(mission_id)
        self._ensure_active(snapshot, "cancel")
        now = self.clock.now()
        request = CancelRequest(requested_at=now, reason=reason)
        entry = TimelineEntry(
            now, TimelineKind.CANCEL_REQUESTED, snapshot.current_node, detail={"reason": reason}
        )
        hold = self._holds.get(mission_id)
        if hold is not None:
            await self.persistence.request_cancel(mission_id, request, [entry])
            holder = self._holds.get(mission_id)
            if holder is not None:
                holder.cancel = request
                holder.poked = True
                return attrs.evolve(snapshot, cancel_request=request)
            return await self.advance(mission_id) or snapshot
        with self._hold(mission_id):
            snapshot = await self.load(mission_id)
            self._ensure_active(snapshot, "cancel")
            # Nothing runs this mission (it waits, or a crash interrupted it), so the cancellation
            # takes effect now, in the same transaction as its request.
            snapshot, entries = self._cancelled(snapshot, request)
            snapshot = await self._write(snapshot, [entry, *entries], True, None)
            self._on_terminal(snapshot)
            return snapshot

    def _ensure_active(self, snapshot: MissionSnapshot, action: str) -> None:
        if snapshot.is_terminal:
            raise MissionNotActiveError(
                f"cannot {action}: mission {snapshot.id!r} is {snapshot.status.value}"
            )
