"""The working copy of a mission while the engine moves it, and the transitions applied to it.

The engine mutates one draft per run and freezes it into an immutable snapshot only when it
writes, so a transition costs a few attribute assignments rather than a new snapshot each.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

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
)


class Draft:
    """A mission being moved forward, with the timeline entries not yet written."""

    __slots__ = (
        "cancel_request",
        "consumed",
        "created_at",
        "current_node",
        "definition",
        "definition_version",
        "error",
        "id",
        "input",
        "nodes",
        "output",
        "pending",
        "recovery_attempts",
        "revision",
        "status",
        "stored",
        "updated_at",
        "wait",
    )

    def __init__(
        self,
        mission_id: str,
        definition: str,
        definition_version: int,
        status: MissionStatus,
        current_node: str | None,
        input: JsonValue,
        created_at: datetime,
        updated_at: datetime,
        nodes: dict[str, NodeRecord],
        wait: Wait | None,
        output: JsonValue,
        error: ErrorInfo | None,
        cancel_request: CancelRequest | None,
        revision: int,
        *,
        stored: bool,
        recovery_attempts: int = 0,
    ) -> None:
        self.id = mission_id
        self.definition = definition
        self.definition_version = definition_version
        self.status = status
        self.current_node = current_node
        self.input: JsonValue = input
        self.created_at = created_at
        self.updated_at = updated_at
        self.nodes = nodes
        self.wait = wait
        self.output: JsonValue = output
        self.error = error
        self.cancel_request = cancel_request
        self.revision = revision
        self.recovery_attempts = recovery_attempts
        self.stored = stored
        """Whether the mission exists in the store (a fresh start is inserted by its first
        write)."""
        self.pending: list[TimelineEntry] = []
        self.consumed: int | None = None
        """The buffered signal this transition consumes (deleted by the same write)."""

    @classmethod
    def of(cls, snapshot: MissionSnapshot) -> Draft:
        """A stored mission, to move on from."""
        return cls(
            snapshot.id,
            snapshot.definition,
            snapshot.definition_version,
            snapshot.status,
            snapshot.current_node,
            snapshot.input,
            snapshot.created_at,
            snapshot.updated_at,
            dict(snapshot.nodes),
            snapshot.wait,
            snapshot.output,
            snapshot.error,
            snapshot.cancel_request,
            snapshot.revision,
            stored=True,
            recovery_attempts=snapshot.recovery_attempts,
        )

    @classmethod
    def new(
        cls, mission_id: str, definition: str, version: int, input: JsonValue, now: datetime
    ) -> Draft:
        """A mission about to start, not yet stored (its first write inserts it)."""
        return cls(
            mission_id,
            definition,
            version,
            MissionStatus.RUNNING,
            "start",
            input,
            now,
            now,
            {},
            None,
            None,
            None,
            None,
            0,
            stored=False,
        )

    @property
    def dirty(self) -> bool:
        return bool(self.pending) or self.consumed is not None or not self.stored

    @property
    def is_terminal(self) -> bool:
        return self.status.is_terminal

    def freeze(self, revision: int) -> MissionSnapshot:
        return MissionSnapshot(
            self.id,
            self.definition,
            self.definition_version,
            self.status,
            self.current_node,
            self.input,
            self.created_at,
            self.updated_at,
            dict(self.nodes),
            self.wait,
            self.output,
            self.error,
            self.cancel_request,
            revision,
            self.recovery_attempts,
        )

    def log(
        self,
        at: datetime,
        kind: TimelineKind,
        node: str | None = None,
        attempt: int | None = None,
        detail: Any = None,
    ) -> None:
        self.pending.append(TimelineEntry(at, kind, node, attempt, detail))

    # -- transitions ---------------------------------------------------------------------------

    def run_node(self, name: str, kind: str, now: datetime) -> None:
        """Put the cursor on a function node, marking it running (attempts so far are kept)."""
        previous = self.nodes.get(name)
        attempts = previous.attempts if previous is not None else 0
        self.log(now, TimelineKind.STEP_STARTED, name, attempts + 1)
        self.nodes[name] = NodeRecord(
            name,
            kind,
            NodeStatus.RUNNING,
            attempts,
            error=previous.error if previous is not None else None,
            started_at=now,
        )
        self.status = MissionStatus.RUNNING
        self.current_node = name
        self.wait = None
        self.updated_at = now

    def begin_start(self, now: datetime) -> None:
        self.log(now, TimelineKind.MISSION_STARTED, "start")
        self.nodes["start"] = NodeRecord(
            "start", "start", NodeStatus.RUNNING, input=self.input, started_at=now
        )
        self.status = MissionStatus.RUNNING
        self.current_node = "start"
        self.wait = None
        self.updated_at = now

    def retry_due(self, name: str, now: datetime) -> None:
        """A retry's time has come: the node runs again."""
        record = self.nodes[name]
        self.log(now, TimelineKind.STEP_STARTED, name, record.attempts + 1)
        self.nodes[name] = NodeRecord(
            name,
            record.kind,
            NodeStatus.RUNNING,
            record.attempts,
            error=record.error,
            started_at=record.started_at,
        )
        self.status = MissionStatus.RUNNING
        self.wait = None
        self.updated_at = now

    def complete(
        self,
        name: str,
        kind: str,
        now: datetime,
        *,
        attempts: int,
        input: JsonValue = None,
        output: JsonValue = None,
    ) -> None:
        previous = self.nodes.get(name)
        if input is None and previous is not None:
            input = previous.input
        self.nodes[name] = NodeRecord(
            name,
            kind,
            NodeStatus.COMPLETED,
            attempts,
            input=input,
            output=output,
            started_at=previous.started_at if previous is not None else now,
            finished_at=now,
        )
        # Moved past the node: later crashes count afresh.
        self.recovery_attempts = 0
        self.updated_at = now

    def waiting(self, name: str, kind: str, wait: Wait, now: datetime) -> None:
        self.nodes[name] = NodeRecord(
            name, kind, NodeStatus.WAITING, started_at=now, due_at=wait.due_at
        )
        self.status = MissionStatus.WAITING
        self.current_node = name
        self.wait = wait
        self.recovery_attempts = 0
        self.updated_at = now

    def retry_later(
        self, name: str, attempt: int, error: ErrorInfo, due: datetime, wait: Wait, now: datetime
    ) -> None:
        previous = self.nodes[name]
        self.nodes[name] = NodeRecord(
            name,
            previous.kind,
            NodeStatus.WAITING,
            attempt,
            input=previous.input,
            error=error,
            started_at=previous.started_at,
            due_at=due,
        )
        self.status = MissionStatus.WAITING
        self.wait = wait
        self.recovery_attempts = 0
        self.updated_at = now

    def completed(self, output: JsonValue, now: datetime) -> None:
        self.log(now, TimelineKind.MISSION_COMPLETED, "end")
        self.nodes["end"] = NodeRecord(
            "end", "end", NodeStatus.COMPLETED, 1, output=output, started_at=now, finished_at=now
        )
        self.status = MissionStatus.COMPLETED
        self.current_node = None
        self.wait = None
        self.output = output
        self.recovery_attempts = 0
        self.updated_at = now

    def failed(
        self, name: str, kind: str, error: ErrorInfo, now: datetime, *, attempts: int
    ) -> None:
        """The mission fails at node ``name``, which becomes its current node."""
        previous = self.nodes.get(name)
        self.log(
            now,
            TimelineKind.MISSION_FAILED,
            name,
            detail={"type": error.type, "message": error.message},
        )
        self.nodes[name] = NodeRecord(
            name,
            kind,
            NodeStatus.FAILED,
            attempts,
            input=previous.input if previous is not None else None,
            error=error,
            started_at=previous.started_at if previous is not None else now,
            finished_at=now,
        )
        self.status = MissionStatus.FAILED
        self.current_node = name
        self.wait = None
        self.error = error
        self.updated_at = now

    def cancelled(self, request: CancelRequest, now: datetime) -> None:
        current = self.current_node
        self.log(now, TimelineKind.MISSION_CANCELLED, current, detail={"reason": request.reason})
        record = self.nodes.get(current) if current is not None else None
        if current is not None and record is not None and record.status is not NodeStatus.COMPLETED:
            self.nodes[current] = NodeRecord(
                current,
                record.kind,
                NodeStatus.CANCELLED,
                record.attempts,
                input=record.input,
                error=record.error,
                started_at=record.started_at,
                finished_at=now,
            )
        self.status = MissionStatus.CANCELLED
        self.wait = None
        self.cancel_request = request
        self.updated_at = now
