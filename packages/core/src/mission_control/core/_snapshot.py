"""The immutable records a mission is stored and inspected as."""

from __future__ import annotations

import enum
import traceback
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, TypeAlias

import attrs

from ._errors import escape_surrogates, message_of

JsonValue: TypeAlias = Any
"""A value made of ``dict`` (string keys), ``list``, ``str``, ``int``, ``float``, ``bool`` and
``None``: what a mission stores for inputs, outputs and payloads."""


class MissionStatus(enum.StrEnum):
    """Where a mission is in its life."""

    RUNNING = "running"
    """Executing a node now (or left mid-node by a crash, until the runtime resumes it)."""
    WAITING = "waiting"
    """Waiting for a signal, a timer, a retry or a delayed start."""
    PAUSED = "paused"
    """Paused on request (``MissionSnapshot.pause``): nothing moves it until it is resumed. Not
    terminal."""
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    COMPENSATED = "compensated"
    """Failed (or cancelled with ``compensate=True``, or a step asked for it with
    :class:`CompensationRequested`), then ran the compensation of every compensable step that
    had completed, in reverse order. ``error`` keeps what failed it."""

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = frozenset(
    {
        MissionStatus.COMPLETED,
        MissionStatus.FAILED,
        MissionStatus.CANCELLED,
        MissionStatus.COMPENSATED,
    }
)
_NEVER_DUE = _TERMINAL | {MissionStatus.PAUSED}


class NodeStatus(enum.StrEnum):
    """Where one node of a mission is."""

    RUNNING = "running"
    WAITING = "waiting"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"
    """A need_to whose timeout passed before its signal came."""


class WaitKind(enum.StrEnum):
    """What a waiting mission waits for."""

    SIGNAL = "signal"
    TIMER = "timer"
    RETRY = "retry"
    START = "start"
    """A mission started with ``start_at`` that has not run yet."""
    SLOT = "slot"
    """A slot of the mission's concurrency key (a mission of a definition with
    ``.concurrency(...)`` waiting to begin; its ``due_at``: when it looks at its key again by
    itself)."""
    CHILD = "child"
    """A child mission to end (its ``due_at``: when the parent looks at the child again, should
    it not have been told the child ended)."""


TRACEBACK_FRAMES = 10
"""How many of an exception's innermost frames ``ErrorInfo.traceback`` keeps (per exception of
its chain)."""
TRACEBACK_CHARS = 4000
"""The longest ``ErrorInfo.traceback`` text; a longer one keeps its end, where the error was
raised."""


def _traceback_text(error: BaseException) -> str | None:
    if error.__traceback__ is None:
        return None  # never raised: nothing says where it came from
    # TracebackException reads str(error) itself and survives a __str__ that raises.
    text = "".join(traceback.format_exception(error, limit=-TRACEBACK_FRAMES))
    if len(text) > TRACEBACK_CHARS:
        text = "..." + text[len(text) - TRACEBACK_CHARS + 3 :]
    # A lone surrogate (in a message or a source line) could not be written as UTF-8.
    return escape_surrogates(text)


@attrs.frozen
class ErrorInfo:
    """An error as it is stored: its type name, message and the attempt that raised it, and
    where it was raised."""

    type: str
    message: str
    attempt: int = 0
    traceback: str | None = attrs.field(default=None, repr=False)
    """The formatted traceback of the exception, bounded by ``TRACEBACK_FRAMES`` and
    ``TRACEBACK_CHARS``; ``None`` for an error the library recorded without an exception (and in
    records stored before this field existed)."""

    @classmethod
    def from_exception(cls, error: BaseException, attempt: int = 0) -> ErrorInfo:
        return cls(
            type=type(error).__qualname__,
            message=message_of(error),
            attempt=attempt,
            traceback=_traceback_text(error),
        )


@attrs.frozen
class Wait:
    """What one position of a waiting mission waits for: a signal by name, or a due time (a
    signal with a timeout has both)."""

    kind: WaitKind
    node: str
    """The path of the node that waits (see :class:`MissionSnapshot`)."""
    signal: str | None = None
    due_at: datetime | None = None


@attrs.frozen
class Pause:
    """Why and since when a mission is paused (``MissionSnapshot.pause``)."""

    requested_at: datetime
    """When the pause was asked for (a running mission pauses at its next node boundary)."""
    reason: str | None = None


@attrs.frozen
class CancelRequest:
    """A durable request to cancel a mission."""

    requested_at: datetime
    reason: str | None = None
    compensate: bool = False
    """Whether the mission runs the compensations it owes before it ends (then
    ``compensated``), rather than ending ``cancelled`` at once."""


@attrs.frozen
class ParentLink:
    """The mission, and the node in it, that started this mission (kept for child missions)."""

    mission_id: str
    node: str


@attrs.frozen
class Compensation:
    """A compensation a mission owes: the compensable step that completed, and its output."""

    path: str
    """The step's path (see :class:`MissionSnapshot`)."""
    output: JsonValue = None
    """The step's output as stored: what its compensation function is given."""


@attrs.frozen
class Compensations:
    """The compensations a mission owes, and whether it is running them."""

    owed: tuple[Compensation, ...] = ()
    """One per compensable step that completed and whose compensation has not completed, in
    the order the steps completed (compensations run from the last)."""
    since: datetime | None = None
    """When the mission began compensating (``None``: it has not)."""


COMPENSATION_SUFFIX = "/compensate"
"""What a step's path becomes for the compensation of that step (its record in ``nodes``, its
timeline entries, its idempotency key): one segment deeper than any node of a definition."""


KEPT = "kept"
"""Field metadata: the value never changes once stored, so its JSON text may be reused."""


@attrs.frozen
class NodeRecord:
    """What happened at one node of one mission."""

    name: str
    kind: str
    status: NodeStatus
    attempts: int = 0
    input: JsonValue = attrs.field(default=None, metadata={KEPT: True})
    output: JsonValue = None
    error: ErrorInfo | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    due_at: datetime | None = None
    # The record's JSON text, written once: a record never changes, and a mission's records are
    # stored again at every commit, so each is encoded only the first time. A record read from
    # storage keeps the JSON value it was read from until then: encoding that value again is
    # several times cheaper than converting the record (its datetimes above all).
    _json: str | None = attrs.field(default=None, init=False, eq=False, repr=False)
    _source: dict[str, Any] | None = attrs.field(default=None, init=False, eq=False, repr=False)

    def json_text(self, encode: Callable[[NodeRecord, dict[str, Any] | None], str]) -> str:
        """This record encoded by ``encode(record, source)`` on first use, and the same text
        after; ``source`` is the JSON value the record was read from, if any."""
        text = self._json
        if text is None:
            text = encode(self, self._source)
            object.__setattr__(self, "_json", text)
            object.__setattr__(self, "_source", None)
        return text


@attrs.define
class MissionFields:
    """The fields of a mission, declared once: :class:`MissionSnapshot` is their immutable form,
    the engine's working copy their mutable one, and the storage codec is derived from this
    list (``attrs.fields``)."""

    id: str = attrs.field(metadata={KEPT: True})
    definition: str
    definition_version: int
    status: MissionStatus
    current_node: str | None
    """The top-level node the mission is at (a parallel or choice while its nodes run); after it
    failed or was cancelled, the node where that happened; ``None`` once completed."""
    input: JsonValue = attrs.field(metadata={KEPT: True})
    created_at: datetime
    updated_at: datetime
    nodes: Mapping[str, NodeRecord] = attrs.field(factory=dict[str, NodeRecord])
    """Every node reached so far, keyed by its path: a top-level node's path is its name; a node
    inside a parallel's branch, a choice's path or a timeout's path is
    ``"<container path>/<branch or path name>/<name>"``."""
    active: tuple[str, ...] = ()
    """The paths of the nodes in progress (running or waiting), in the order they were
    entered: one for a mission in a single chain, one per unfinished branch in a parallel."""
    waits: tuple[Wait, ...] = ()
    """What the active nodes wait for, one entry per waiting node (in ``active``'s order)."""
    output: JsonValue = None
    error: ErrorInfo | None = None
    cancel_request: CancelRequest | None = None
    revision: int = 0
    recovery_attempts: int = 0
    """How many times the mission was found running with nobody moving it (after a crash, a
    stopped process or a cancelled caller) and its running nodes run again; back to 0 once one
    of them moves on. See ``max_recovery_attempts`` of :func:`create_commander`."""
    deadline: datetime | None = None
    """When the mission fails (or runs its deadline path) if it has not ended by then."""
    tenant: str | None = None
    """Reserved for tenants (stored, not yet used)."""
    parent: ParentLink | None = None
    """For a child mission, the mission and the node (its path) that started it."""
    definition_fingerprint: str | None = None
    """Reserved for definition versions: a digest of the definition the mission started on."""
    progress: Mapping[str, JsonValue] | None = None
    """The values the mission's functions published (``ctx.publish(name, value)``), the latest
    of each name; ``None`` until one is. Stored with the mission's next write, so readers see
    them once the function that published them has finished, while the mission goes on."""
    compensations: Compensations | None = None
    """The compensations the mission owes (``None`` until a compensable step completes), and
    since when it runs them. Kept apart from ``nodes``: the list is what a failure undoes,
    whatever became of the steps' records. What is owed once the mission ended was not needed
    (it completed, or was cancelled without ``compensate``) or was not run (a compensation
    failed for good: it and those before it stay owed)."""
    retries: int | None = None
    """How many times the mission was retried after it failed or was cancelled
    (``Commander.retry``); ``None`` until it is. The child missions a retried child node starts
    have ids of their own (see ``child_id``)."""
    forked_from: str | None = None
    """For a mission made by ``Commander.fork``, the id of the mission it was forked from."""
    trace_context: Mapping[str, str] | None = None
    """What the commander's observer stored with the mission when it was created: a few short
    strings, propagation headers such as W3C ``traceparent`` that keep one trace across the
    mission's runs (see docs/tracing.md); ``None`` without an observer."""
    pause: Pause | None = None
    """While the mission is paused (its status ``paused``): when the pause was asked for and
    why; ``None`` otherwise."""
    concurrency_key: str | None = None
    """For a mission of a definition with a concurrency key, its key's gate
    (``"<definition>/<key>"``): the mission holds one of its slots from its start to its end."""
    pause_request: Pause | None = None
    """A pause asked for while a task moved the mission (a function of it ran), not yet taken
    effect: stored at once (``PersistenceAdapter.request_pause``), it pauses the mission at its
    next node boundary, also when the process that ran it stopped first (the next one to take
    the mission up pauses it before anything runs); ``None`` once the mission paused or ended,
    or a resume withdrew it."""

    @property
    def compensating(self) -> bool:
        """Whether the mission is running its compensations (or has, when it ended)."""
        saga = self.compensations
        return saga is not None and saga.since is not None


# attrs makes a frozen class of a mutable base's fields (pyright applies dataclasses' rule, which
# forbids it); test_snapshot_is_immutable holds it to being frozen.
@attrs.frozen  # pyright: ignore[reportGeneralTypeIssues]
class MissionSnapshot(MissionFields):
    """One mission as stored: immutable, and round-trips through JSON (see
    :class:`MissionFields` for what each field holds)."""

    @property
    def wait(self) -> Wait | None:
        """The first of ``waits`` (all there is for a mission in a single chain)."""
        waits = self.waits
        return waits[0] if waits else None

    @property
    def due_at(self) -> datetime | None:
        """When the mission is next due to run on its own (``None`` when it is not): the
        earliest due time of its waits and of its deadline. A paused mission is never due: what
        came due meanwhile fires once it is resumed."""
        if self.status in _NEVER_DUE:
            return None
        due = self.deadline
        for wait in self.waits:
            at = wait.due_at
            if at is not None and (due is None or at < due):
                due = at
        return due

    @property
    def is_terminal(self) -> bool:
        return self.status.is_terminal


class TimelineKind(enum.StrEnum):
    """The kinds of entries a mission's timeline holds."""

    MISSION_SCHEDULED = "mission-scheduled"
    MISSION_STARTED = "mission-started"
    STEP_STARTED = "step-started"
    STEP_COMPLETED = "step-completed"
    STEP_FAILED = "step-failed"
    RETRY_SCHEDULED = "retry-scheduled"
    SIGNAL_RECEIVED = "signal-received"
    SIGNAL_BUFFERED = "signal-buffered"
    SIGNAL_REJECTED = "signal-rejected"
    """A buffered signal whose payload the need_to's parser refused when it came to use it."""
    WAIT_STARTED = "wait-started"
    TIMER_FIRED = "timer-fired"
    CANCEL_REQUESTED = "cancel-requested"
    MISSION_RESUMED = "mission-resumed"
    """The mission was found running with nobody moving it (a crash) and runs again."""
    MISSION_PAUSED = "mission-paused"
    """A pause took effect (``detail``: ``{"reason": ...}``)."""
    MISSION_UNPAUSED = "mission-unpaused"
    """``resume()`` took the mission out of its pause."""
    PAUSE_REQUESTED = "pause-requested"
    """A pause was asked for while a function of the mission ran: it takes effect at the next
    node boundary (``detail``: ``{"reason": ...}``)."""
    PAUSE_WITHDRAWN = "pause-withdrawn"
    """``resume()`` came before a requested pause took effect, and withdrew it."""
    MISSION_RETRIED = "mission-retried"
    """A failed or cancelled mission was retried (``node``: the node it runs again from;
    ``detail``: ``{"status": what it was, "retry": the how-manyth}``)."""
    MISSION_FORKED = "mission-forked"
    """The mission was made by forking another (``node``: where it starts; ``detail``:
    ``{"from": the source mission's id, "copied": the node paths whose records were copied}``)."""
    PATH_CHOSEN = "path-chosen"
    """A choice picked its path (``detail``: the path's name)."""
    ITERATION_STARTED = "iteration-started"
    """A loop or for_each began an iteration (``attempt``: its number, from 1; ``detail``: for a
    loop after its first, ``{"until": false}``, the recorded verdict that asked for it)."""
    CHILD_STARTED = "child-started"
    """A child node started its child mission (``detail``: the child's ``mission_id``)."""
    CHILD_ENDED = "child-ended"
    """A child node's child mission ended (``detail``: its ``mission_id`` and ``status``)."""
    BRANCH_CANCELLED = "branch-cancelled"
    """A parallel's unfinished branch was cancelled (another ended first, or one failed)."""
    SIGNAL_TIMED_OUT = "signal-timed-out"
    DEADLINE_PASSED = "deadline-passed"
    MISSION_COMPENSATING = "mission-compensating"
    """The mission failed, was cancelled with ``compensate=True`` or a step raised
    :class:`CompensationRequested`: it runs the compensations it owes (``detail``: ``reason``,
    one of ``"failed"``, ``"requested"``, ``"cancelled"``, and ``owed``, the steps' paths)."""
    COMPENSATION_STARTED = "compensation-started"
    """An attempt of a step's compensation began (``node``: ``"<step path>/compensate"``)."""
    COMPENSATION_COMPLETED = "compensation-completed"
    COMPENSATION_FAILED = "compensation-failed"
    """An attempt of a compensation raised (``detail``: its type and message); a
    ``retry-scheduled`` follows when its retry policy allows another."""
    MISSION_COMPLETED = "mission-completed"
    MISSION_FAILED = "mission-failed"
    MISSION_CANCELLED = "mission-cancelled"
    MISSION_COMPENSATED = "mission-compensated"


@attrs.frozen
class TimelineEntry:
    """One thing that happened to a mission, in the order it happened."""

    at: datetime
    kind: TimelineKind
    node: str | None = None
    attempt: int | None = None
    detail: JsonValue = None


@attrs.frozen
class BufferedSignal:
    """A signal stored for a mission that was not yet waiting for it."""

    seq: int
    name: str
    payload: JsonValue
    received_at: datetime


@attrs.frozen
class NewSignal:
    """A signal stored with a new mission, in its inbox from the start
    (``PersistenceAdapter.insert(signals=...)``): a :class:`BufferedSignal` before the store has
    given it its ``seq``."""

    name: str
    payload: JsonValue
    received_at: datetime
