"""The working copy of a mission while the engine moves it, and the transitions applied to it.

The engine mutates one draft per run and freezes it into an immutable snapshot only when it
writes, so a transition costs a few attribute assignments rather than a new snapshot each. The
draft is made of the same fields as the snapshot (:class:`MissionFields`, declared once); it
adds what the engine keeps between writes.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

import attrs

from ._nodes import ChildNode, StepNode
from ._snapshot import (
    COMPENSATION_SUFFIX,
    CancelRequest,
    Compensation,
    Compensations,
    ErrorInfo,
    JsonValue,
    MissionFields,
    MissionSnapshot,
    MissionStatus,
    NodeRecord,
    NodeStatus,
    Pause,
    TimelineEntry,
    TimelineKind,
    Wait,
    WaitKind,
)

FIELD_NAMES: tuple[str, ...] = tuple(field.name for field in attrs.fields(MissionFields))
"""The mission's fields in declaration order (the positional order of ``MissionSnapshot``)."""
_field_values = operator.attrgetter(*FIELD_NAMES)


def _compile_snapshot_of() -> Callable[[MissionFields, int], MissionSnapshot]:
    # ``MissionSnapshot(draft.id, ..., dict(draft.nodes), ..., revision, ...)``, written out from
    # the field list once (as attrs writes ``__init__``): a draft is frozen at every write.
    arguments = [
        "dict(d.nodes)" if name == "nodes" else "revision" if name == "revision" else f"d.{name}"
        for name in FIELD_NAMES
    ]
    source = f"def snapshot_of(d, revision):\n    return Snapshot({', '.join(arguments)})\n"
    namespace: dict[str, Any] = {"Snapshot": MissionSnapshot}
    exec(compile(source, "<snapshot of a draft>", "exec"), namespace)
    return namespace["snapshot_of"]


_snapshot_of = _compile_snapshot_of()

_IN_PROGRESS = (NodeStatus.RUNNING, NodeStatus.WAITING)
DONE = (NodeStatus.COMPLETED, NodeStatus.TIMED_OUT)
"""The statuses of a node that ran to its end (a ``need_to`` may time out): the nodes after it
may run, and a retry or a fork does not run it again."""

COMPENSATION_KIND = "compensation"
"""The kind of a compensation's record."""

_STARTS: dict[str, TimelineKind] = {
    StepNode.kind: TimelineKind.STEP_STARTED,
    ChildNode.kind: TimelineKind.STEP_STARTED,
    COMPENSATION_KIND: TimelineKind.COMPENSATION_STARTED,
}
"""The kinds of record a pause may hold back before their function runs (a step's, a child's,
a compensation's), and the entry that says their function starts."""

LOOKED_AT = frozenset({WaitKind.SIGNAL, WaitKind.CHILD, WaitKind.SLOT})
"""The waits the engine looks at in the store (a signal's inbox, a child mission) whenever it
takes a mission up, or is poked: something may have come meanwhile."""


# The drafts' empty collections, made by plain functions: calling a generic alias such as
# ``list[TimelineEntry]`` costs several times as much, and a draft is made for every move.
def _no_entries() -> list[TimelineEntry]:
    return []


def _no_openings() -> dict[str, list[str]]:
    return {}


def _no_orphans() -> list[tuple[str, int]]:
    return []


def _no_iterations() -> dict[str, list[int]]:
    return {}


def _no_paths() -> set[str]:
    return set()


def top_level(path: str) -> str:
    """The top-level node a path is in (the path itself at the top level)."""
    return path.partition("/")[0]


@attrs.define
class Draft(MissionFields):
    """A mission being moved forward, with the timeline entries not yet written."""

    stored: bool = attrs.field(default=True, kw_only=True)
    """Whether the mission exists in the store (a fresh start is inserted by its first write)."""
    pending: list[TimelineEntry] = attrs.field(init=False, factory=_no_entries)
    consumed: int | None = attrs.field(init=False, default=None)
    """The buffered signal this transition consumes (deleted by the same write)."""
    changed: bool = attrs.field(init=False, default=False)
    """Whether anything changed since the last write."""
    must_write: bool = attrs.field(init=False, default=False)
    """Whether a step's result or a choice waits for the next write, which must come before
    another function runs (see ``Engine._write_before_running``)."""
    opening: dict[str, list[str]] = attrs.field(init=False, factory=_no_openings)
    """The parallels whose branches are being entered, each with the branches that ended while
    it was (they are looked at once every branch has been entered)."""
    orphans: list[tuple[str, int]] = attrs.field(init=False, factory=_no_orphans)
    """The child nodes stopped since the last write, each with the attempt whose child mission
    is to be cancelled once the stop is written."""
    iterating: dict[str, list[int]] = attrs.field(init=False, factory=_no_iterations)
    """The loops whose iterations are being entered, each with the iterations begun meanwhile
    and not yet entered (see ``Engine._begin_iteration``)."""
    unchecked: set[str] = attrs.field(init=False, factory=_no_paths)
    """The signal waits whose inbox has not been looked at since they began (or since a poke)."""
    last: MissionSnapshot | None = attrs.field(init=False, default=None)
    """The snapshot last written or read, returned when nothing changes."""
    reopened: bool = attrs.field(init=False, default=False)
    """Whether the next write reopens a finished mission (a retry): it may drop the stored
    cancellation request."""
    ended: bool = attrs.field(init=False, default=False)
    """Whether the mission has ended (completed, failed, cancelled or compensated), or has just
    stopped to run its compensations (its status not terminal: see ``_begin_compensating``)."""

    @classmethod
    def of(cls, snapshot: MissionSnapshot) -> Draft:
        """A stored mission, to move on from."""
        draft = cls(*_field_values(snapshot))
        draft.nodes = dict(snapshot.nodes)
        draft.last = snapshot
        draft.ended = snapshot.status.is_terminal
        # A signal may have been buffered while nobody held the mission.
        draft.unchecked = {wait.node for wait in snapshot.waits if wait.kind in LOOKED_AT}
        return draft

    @classmethod
    def new(
        cls,
        mission_id: str,
        definition: str,
        version: int,
        input: JsonValue,
        now: datetime,
        deadline: datetime | None,
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
            deadline=deadline,
            stored=False,
        )

    def deadline_passed(self, now: datetime) -> bool:
        return self.deadline is not None and self.deadline <= now

    def stopping(self, now: datetime) -> bool:
        """Whether the mission is to stop where it is: a cancellation was acknowledged or the
        deadline has passed (what runs finishes; nothing new is entered or started)."""
        return self.cancel_request is not None or self.deadline_passed(now)

    @property
    def dirty(self) -> bool:
        return self.changed or bool(self.pending) or self.consumed is not None or not self.stored

    def freeze(self, revision: int) -> MissionSnapshot:
        if self.ended:
            pass
        elif self.pause is not None:
            self.status = MissionStatus.PAUSED
        else:
            # Running while any position runs a function; waiting when every one waits.
            records = self.nodes
            active = self.active
            if len(active) == 1:
                waiting = records[active[0]].status is NodeStatus.WAITING
            else:
                waiting = bool(active) and all(
                    records[path].status is NodeStatus.WAITING for path in active
                )
            self.status = MissionStatus.WAITING if waiting else MissionStatus.RUNNING
        return _snapshot_of(self, revision)

    def wrote(self, snapshot: MissionSnapshot) -> None:
        """``snapshot``, frozen from this draft, is stored now."""
        self.stored = True
        self.revision = snapshot.revision
        self.pending = []
        self.consumed = None
        self.changed = False
        self.must_write = False
        self.reopened = False
        self.last = snapshot

    def log(
        self,
        at: datetime,
        kind: TimelineKind,
        node: str | None = None,
        attempt: int | None = None,
        detail: Any = None,
    ) -> None:
        self.pending.append(TimelineEntry(at, kind, node, attempt, detail))

    def wait_of(self, path: str) -> Wait | None:
        for wait in self.waits:
            if wait.node == path:
                return wait
        return None

    def under(self, container: str) -> list[str]:
        """The active paths inside the node at ``container``."""
        prefix = container + "/"
        return [path for path in self.active if path.startswith(prefix)]

    # -- positions -----------------------------------------------------------------------------

    # The mission's status follows from its positions: ``freeze`` sets it from them.

    def _begin(self, path: str, record: NodeRecord, now: datetime) -> None:
        self.nodes[path] = record  # pyright: ignore[reportIndexIssue] (the draft's own dict)
        active = self.active
        if path not in active:
            self.active = (*active, path)
        self.current_node = path if "/" not in path else top_level(path)
        self.updated_at = now
        self.changed = True

    def _end(self, path: str, record: NodeRecord, now: datetime) -> None:
        self.nodes[path] = record  # pyright: ignore[reportIndexIssue] (the draft's own dict)
        active = self.active
        if len(active) == 1 and active[0] == path:
            self.active = ()
        elif path in active:
            self.active = tuple(p for p in active if p != path)
        if self.waits:
            self.waits = tuple(w for w in self.waits if w.node != path)
            self.unchecked.discard(path)
        self.updated_at = now
        self.changed = True

    def publish(self, name: str, value: JsonValue) -> None:
        """Keep ``value`` (JSON already) as the mission's latest ``name``, written before the
        next function runs (a start's values are not held back until the step after it ends).
        A new mapping each time: a snapshot frozen earlier keeps the values it had. Dropped once
        the mission has ended (a cancelled branch cleaning up): a finished mission is never
        written again."""
        if self.status.is_terminal:
            return
        self.progress = {**(self.progress or {}), name: value}
        self.changed = True
        if self.stored:
            self.must_write = True

    # -- transitions ---------------------------------------------------------------------------

    def run_node(self, path: str, name: str, kind: str, now: datetime) -> None:
        """Put a position on a function node, marking it running (attempts so far are kept)."""
        previous = self.nodes.get(path)
        attempts = previous.attempts if previous is not None else 0
        self.log(now, TimelineKind.STEP_STARTED, path, attempts + 1)
        self._begin(
            path,
            NodeRecord(
                name,
                kind,
                NodeStatus.RUNNING,
                attempts,
                error=previous.error if previous is not None else None,
                started_at=now,
            ),
            now,
        )

    def at_end(self, now: datetime) -> None:
        """Put a position on the end node (completed by the engine, after its output function
        when it has one)."""
        self._begin("end", NodeRecord("end", "end", NodeStatus.RUNNING, started_at=now), now)

    def begin_start(self, now: datetime) -> None:
        self.log(now, TimelineKind.MISSION_STARTED, "start")
        self.waits = ()
        self._begin(
            "start",
            NodeRecord("start", "start", NodeStatus.RUNNING, input=self.input, started_at=now),
            now,
        )

    def open(
        self, path: str, name: str, kind: str, now: datetime, output: JsonValue = None
    ) -> None:
        """Mark a parallel or choice running; its nodes are positions of their own."""
        self.nodes[path] = NodeRecord(  # pyright: ignore[reportIndexIssue]
            name, kind, NodeStatus.RUNNING, 1, output=output, started_at=now
        )
        self.current_node = top_level(path)
        self.updated_at = now
        self.changed = True

    def open_loop(
        self, path: str, name: str, kind: str, now: datetime, items: JsonValue = None
    ) -> None:
        """Mark a loop (or a for_each, with its ``items``) running, before its first iteration;
        its record counts the iterations begun (``attempts``) and holds a for_each's results."""
        results = None if items is None else [None] * len(items)
        self.nodes[path] = NodeRecord(  # pyright: ignore[reportIndexIssue]
            name, kind, NodeStatus.RUNNING, 0, input=items, output=results, started_at=now
        )
        self.current_node = top_level(path)
        self.updated_at = now
        self.changed = True

    def begin_iteration(self, path: str, iteration: int, now: datetime, detail: Any = None) -> None:
        """The loop at ``path`` begins iteration ``iteration`` (its nodes are entered next)."""
        self.log(now, TimelineKind.ITERATION_STARTED, path, iteration, detail)
        self.nodes[path] = attrs.evolve(self.nodes[path], attempts=iteration)  # pyright: ignore[reportIndexIssue]
        self.changed = True

    def end_iteration(
        self, path: str, iteration: int, now: datetime, *, result: JsonValue = None
    ) -> None:
        """Iteration ``iteration`` of the loop at ``path`` has run: its node records leave the
        snapshot (the timeline keeps what happened), so that a mission's size and the cost of
        its writes do not grow with the iterations it has run. A for_each keeps ``result``, the
        iteration's output, in its own record."""
        prefix = f"{path}/{iteration}/"
        records = self.nodes
        for done in [p for p in records if p.startswith(prefix)]:
            del records[done]  # pyright: ignore[reportIndexIssue]
        loop = records[path]
        if isinstance(loop.output, list):
            results: list[JsonValue] = list(loop.output)  # pyright: ignore[reportUnknownArgumentType, reportUnknownMemberType]
            results[iteration - 1] = result
            records[path] = attrs.evolve(loop, output=results)  # pyright: ignore[reportIndexIssue]
        self.updated_at = now
        self.changed = True

    def unwait(self, path: str) -> None:
        """Take the position waiting at ``path`` away, with its record (a fork stored waiting
        for its start at that node, about to enter it)."""
        self.waits = tuple(w for w in self.waits if w.node != path)
        self.active = tuple(p for p in self.active if p != path)
        del self.nodes[path]  # pyright: ignore[reportIndexIssue] (the draft's own dict)
        self.changed = True

    def retry_due(self, path: str, now: datetime) -> None:
        """A retry's time has come: the node runs again."""
        record = self.nodes[path]
        self.log(now, TimelineKind.STEP_STARTED, path, record.attempts + 1)
        self.waits = tuple(w for w in self.waits if w.node != path)
        self._begin(
            path,
            NodeRecord(
                record.name,
                record.kind,
                NodeStatus.RUNNING,
                record.attempts,
                error=record.error,
                started_at=record.started_at,
            ),
            now,
        )

    def complete(
        self,
        path: str,
        name: str,
        kind: str,
        now: datetime,
        *,
        attempts: int,
        input: JsonValue = None,
        output: JsonValue = None,
    ) -> None:
        previous = self.nodes.get(path)
        if input is None and previous is not None:
            input = previous.input
        self._end(
            path,
            NodeRecord(
                name,
                kind,
                NodeStatus.COMPLETED,
                attempts,
                input=input,
                output=output,
                started_at=previous.started_at if previous is not None else now,
                finished_at=now,
            ),
            now,
        )
        # Moved past the node: later crashes count afresh.
        self.recovery_attempts = 0

    def timed_out(self, path: str, now: datetime) -> None:
        record = self.nodes[path]
        self.log(now, TimelineKind.SIGNAL_TIMED_OUT, path)
        self._end(
            path,
            NodeRecord(
                record.name,
                record.kind,
                NodeStatus.TIMED_OUT,
                record.attempts,
                started_at=record.started_at,
                finished_at=now,
                due_at=record.due_at,
            ),
            now,
        )
        self.recovery_attempts = 0

    def wait_at(
        self,
        path: str,
        name: str,
        kind: str,
        wait: Wait,
        now: datetime,
        *,
        attempts: int = 0,
        input: JsonValue = None,
    ) -> None:
        self.waits = (*(w for w in self.waits if w.node != path), wait)
        self._begin(
            path,
            NodeRecord(
                name,
                kind,
                NodeStatus.WAITING,
                attempts,
                input=input,
                started_at=now,
                due_at=wait.due_at,
            ),
            now,
        )
        self.recovery_attempts = 0

    def move_due(self, path: str, due_at: datetime) -> None:
        """The wait of the node at ``path`` comes due at ``due_at`` now (and its record says so)."""
        self.waits = tuple(
            attrs.evolve(w, due_at=due_at) if w.node == path else w for w in self.waits
        )
        self.nodes[path] = attrs.evolve(self.nodes[path], due_at=due_at)  # pyright: ignore[reportIndexIssue]
        self.changed = True

    def retry_later(
        self, path: str, attempt: int, error: ErrorInfo, wait: Wait, now: datetime
    ) -> None:
        previous = self.nodes[path]
        self.waits = (*(w for w in self.waits if w.node != path), wait)
        self._begin(
            path,
            NodeRecord(
                previous.name,
                previous.kind,
                NodeStatus.WAITING,
                attempt,
                input=previous.input,
                error=error,
                started_at=previous.started_at,
                due_at=wait.due_at,
            ),
            now,
        )
        self.recovery_attempts = 0

    def stop(self, paths: Iterable[str], now: datetime, *, branches: bool = False) -> None:
        """Cancel the nodes at ``paths`` (in progress, or parallels and choices left open), and
        their positions; with ``branches``, each is logged as a cancelled branch."""
        for path in list(paths):
            record = self.nodes.get(path)
            if record is None or record.status not in _IN_PROGRESS:
                continue
            if branches:
                self.log(now, TimelineKind.BRANCH_CANCELLED, path)
            self._orphan(path, record)
            self._end(
                path,
                NodeRecord(
                    record.name,
                    record.kind,
                    NodeStatus.CANCELLED,
                    record.attempts,
                    input=record.input,
                    output=record.output,
                    error=record.error,
                    started_at=record.started_at,
                    finished_at=now,
                ),
                now,
            )

    def _orphan(self, path: str, record: NodeRecord) -> None:
        """The node at ``path`` stops while in progress: if it is a child node, its child (the
        one it waits for, or the one it is starting) is to be cancelled once that is written."""
        if record.kind == ChildNode.kind and record.status in _IN_PROGRESS:
            attempt = record.attempts + (record.status is NodeStatus.RUNNING)
            self.orphans.append((path, attempt))

    def stop_under(self, container: str, now: datetime) -> None:
        """Cancel every node in progress inside the node at ``container`` (its branches'
        positions and the parallels and choices open in them), each logged as a cancelled
        branch node."""
        prefix = container + "/"
        self.stop(
            [p for p, r in self.nodes.items() if p.startswith(prefix) and r.status in _IN_PROGRESS],
            now,
            branches=True,
        )

    def _stop_everything(self, now: datetime) -> None:
        in_progress = [p for p, r in self.nodes.items() if r.status in _IN_PROGRESS]
        if in_progress:
            self.stop(in_progress, now)
        self.active = ()
        self.waits = ()
        self.unchecked.clear()

    def completed(self, output: JsonValue, now: datetime) -> None:
        self.log(now, TimelineKind.MISSION_COMPLETED, "end")
        self._end(
            "end",
            NodeRecord(
                "end",
                "end",
                NodeStatus.COMPLETED,
                1,
                output=output,
                started_at=now,
                finished_at=now,
            ),
            now,
        )
        self.status = MissionStatus.COMPLETED
        self.ended = True
        self.current_node = None
        self.output = output
        self.recovery_attempts = 0
        if self.active:
            # A position left in progress (a container holds no other: each ends with its
            # chains) is stopped with the mission.
            self._stop_everything(now)

    def failed(
        self,
        path: str,
        name: str,
        kind: str,
        error: ErrorInfo,
        now: datetime,
        *,
        attempts: int,
        compensate: bool = False,
    ) -> None:
        """The mission fails at the node at ``path``; whatever else is in progress is
        cancelled. It then runs the compensations it owes, if any (or, with ``compensate``, a
        step asked for them: even if none); a failure while compensating ends it failed."""
        previous = self.nodes.get(path)
        if previous is not None:
            # A child node the mission fails at (its deadline, its recoveries) leaves its child.
            self._orphan(path, previous)
        saga = self.compensations
        compensating = saga is not None and saga.since is not None
        begins = not compensating and (compensate or (saga is not None and bool(saga.owed)))
        if not begins:
            self.log(
                now,
                TimelineKind.MISSION_FAILED,
                path,
                detail={"type": error.type, "message": error.message},
            )
        if previous is None or previous.status is not NodeStatus.COMPLETED or path in self.active:
            self._end(
                path,
                NodeRecord(
                    name,
                    kind,
                    NodeStatus.FAILED,
                    attempts,
                    input=previous.input if previous is not None else None,
                    error=error,
                    started_at=previous.started_at if previous is not None else now,
                    finished_at=now,
                ),
                now,
            )
        # Otherwise the mission fails after that node (its deadline passed while the node's
        # function ran): the node keeps its record and output, and a retry does not run it again.
        self.error = error
        if not compensating:
            self.current_node = top_level(path)
        if begins:
            self._begin_compensating("requested" if compensate else "failed", path, now)
            return
        self.status = MissionStatus.FAILED
        self.ended = True
        self._stop_everything(now)

    def cancelled(self, request: CancelRequest, now: datetime) -> None:
        """The mission is cancelled where it is; with ``request.compensate``, it then runs the
        compensations it owes. A paused mission is no longer paused."""
        self.pause = None
        if request.compensate:
            self.cancel_request = request
            self._begin_compensating("cancelled", self.current_node, now)
            return
        self.log(
            now,
            TimelineKind.MISSION_CANCELLED,
            self.current_node,
            detail={"reason": request.reason},
        )
        self.status = MissionStatus.CANCELLED
        self.ended = True
        self.cancel_request = request
        self.changed = True
        self._stop_everything(now)

    def paused(self, pause: Pause, now: datetime) -> None:
        """The mission pauses where it is: its positions, waits and records stay as they are,
        and nothing moves it until :meth:`unpaused`. A function node (or compensation) entered
        and not run yet (a pause lands once no function runs) has not started: its
        ``step-started`` (``compensation-started``) entry, if not yet written, is dropped (the
        resume logs it)."""
        entered = self._not_run()
        if entered and self.pending:
            self.pending = [
                entry
                for entry in self.pending
                if entry.node not in entered
                or entry.kind is not _STARTS[self.nodes[entry.node].kind]
            ]
        self.log(
            now, TimelineKind.MISSION_PAUSED, self.current_node, detail={"reason": pause.reason}
        )
        self.pause = pause
        self.updated_at = now
        self.changed = True

    def _not_run(self) -> list[str]:
        """The positions on a function node (or compensation) marked running whose function
        has not run (with no function running, as when a mission pauses: every such one)."""
        return [
            path
            for path in self.active
            if (record := self.nodes[path]).status is NodeStatus.RUNNING and record.kind in _STARTS
        ]

    def unpaused(self, now: datetime) -> None:
        """The mission goes on from where it paused: the function nodes (or compensation) it
        had entered and not run start now."""
        self.log(now, TimelineKind.MISSION_UNPAUSED, self.current_node)
        for path in self._not_run():
            record = self.nodes[path]
            self.log(now, _STARTS[record.kind], path, record.attempts + 1)
            self.nodes[path] = attrs.evolve(record, started_at=now)  # pyright: ignore[reportIndexIssue] (the draft's own dict)
        self.pause = None
        self.updated_at = now
        self.changed = True

    def reopen(
        self,
        path: str,
        dropped: Callable[[str], bool],
        deadline: datetime | None,
        now: datetime,
    ) -> None:
        """Take a failed or cancelled mission up again from the top-level node at ``path`` (a
        retry): the records ``dropped`` says go (that node's and those after it) go; the
        compensations they made owed stay owed (what they did still stands) until a step of
        the same path completes again (see :meth:`owe`). The mission is running again, its
        error, output and cancellation request gone, its deadline ``deadline``. The caller
        enters the node."""
        previous = self.status
        self.nodes = {p: r for p, r in self.nodes.items() if not dropped(p)}
        self.retries = (self.retries or 0) + 1
        self.log(
            now,
            TimelineKind.MISSION_RETRIED,
            path,
            detail={"status": previous.value, "retry": self.retries},
        )
        self.status = MissionStatus.RUNNING
        self.ended = False
        self.error = None
        self.output = None
        self.cancel_request = None
        self.active = ()
        self.waits = ()
        self.unchecked.clear()
        self.current_node = path
        self.recovery_attempts = 0
        self.deadline = deadline
        self.updated_at = now
        self.changed = True
        self.reopened = True
        # Stored reopened before anything of the retry runs.
        self.must_write = True

    # -- compensation --------------------------------------------------------------------------

    def owe(self, path: str, output: JsonValue) -> None:
        """The compensable step at ``path`` completed with ``output``: its compensation is owed
        (kept apart from ``nodes``, whose records may go), in place of one a run of the same
        step before a retry made owed (the step ran again with the same idempotency key: its
        new output is what there is to undo)."""
        saga = self.compensations
        owed = Compensation(path, output)
        self.compensations = (
            Compensations((owed,))
            if saga is None
            else Compensations((*(o for o in saga.owed if o.path != path), owed), saga.since)
        )

    def _begin_compensating(self, reason: str, node: str | None, now: datetime) -> None:
        """Stop everything and run the compensations owed, the last owed first (each a position
        of its own, ``"<step path>/compensate"``). The deadline no longer applies.

        The draft is marked ``ended`` (still ``running``): what is being entered or left stops
        there, as for a mission that failed; the drive loop then takes it up again to run the
        compensations."""
        self._stop_everything(now)
        self.status = MissionStatus.RUNNING
        self.ended = True
        self.deadline = None
        saga = self.compensations or Compensations()
        self.compensations = Compensations(saga.owed, now)
        self.log(
            now,
            TimelineKind.MISSION_COMPENSATING,
            node,
            detail={"reason": reason, "owed": [owed.path for owed in saga.owed]},
        )
        self.updated_at = now
        self.changed = True
        # Stored compensating before any compensation runs.
        self.must_write = True
        self._next_compensation(now)

    def _next_compensation(self, now: datetime) -> None:
        saga = self.compensations
        assert saga is not None
        if not saga.owed:
            self.log(now, TimelineKind.MISSION_COMPENSATED, self.current_node)
            self.status = MissionStatus.COMPENSATED
            self.ended = True
            self.recovery_attempts = 0
            self.changed = True
            return
        owed = saga.owed[-1]
        path = owed.path + COMPENSATION_SUFFIX
        self.log(now, TimelineKind.COMPENSATION_STARTED, path, 1)
        self._compensation_at(
            path,
            NodeRecord(
                owed.path.rpartition("/")[2],
                COMPENSATION_KIND,
                NodeStatus.RUNNING,
                input=owed.output,
                started_at=now,
            ),
            now,
        )

    def _compensation_at(self, path: str, record: NodeRecord, now: datetime) -> None:
        """Put the mission's one position on the compensation at ``path`` (``current_node``
        stays where the mission failed or was cancelled)."""
        self.nodes[path] = record  # pyright: ignore[reportIndexIssue] (the draft's own dict)
        self.active = (path,)
        self.updated_at = now
        self.changed = True

    def compensation_completed(self, path: str, attempts: int, now: datetime) -> None:
        """The compensation at ``path`` completed: it is owed no more (written before the next
        one runs), and the next one begins, or the mission ends compensated."""
        saga = self.compensations
        assert saga is not None
        assert saga.owed
        self.log(now, TimelineKind.COMPENSATION_COMPLETED, path, attempts)
        record = self.nodes[path]
        self._end(
            path,
            attrs.evolve(
                record,
                status=NodeStatus.COMPLETED,
                attempts=attempts,
                due_at=None,
                finished_at=now,
            ),
            now,
        )
        self.compensations = Compensations(saga.owed[:-1], saga.since)
        self.recovery_attempts = 0
        self.must_write = True
        self._next_compensation(now)

    def compensation_retry_later(
        self, path: str, attempt: int, error: ErrorInfo, due: datetime, now: datetime
    ) -> None:
        record = self.nodes[path]
        self.waits = (Wait(WaitKind.RETRY, path, due_at=due),)
        self._compensation_at(
            path,
            attrs.evolve(
                record, status=NodeStatus.WAITING, attempts=attempt, error=error, due_at=due
            ),
            now,
        )
        self.recovery_attempts = 0
        # The failed attempt is written with the retry's due time.
        self.must_write = True

    def compensation_retry_due(self, path: str, now: datetime) -> None:
        record = self.nodes[path]
        self.log(now, TimelineKind.COMPENSATION_STARTED, path, record.attempts + 1)
        self.waits = ()
        self._compensation_at(
            path, attrs.evolve(record, status=NodeStatus.RUNNING, due_at=None), now
        )
