"""``doctor MISSION``: why a mission is not moving, in one line, and the command that would
move it."""

from __future__ import annotations

import enum
import shlex
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, cast

import attrs

from mission_control.core import (
    MissionDefinition,
    MissionSnapshot,
    MissionStatus,
    NodeDescription,
    Submission,
    TimelineEntry,
    TimelineKind,
    WaitKind,
    fingerprint,
)
from mission_control.core.storage import BufferedSignal, local_id

from ._ages import format_age


class Finding(enum.StrEnum):
    """What ``doctor`` found, for scripts (``problem`` in its JSON)."""

    MOVING = "moving"
    """Nothing wrong: running in a live owner, or waiting for a time still to come."""
    ENDED = "ended"
    FAILED = "failed"
    POISONED = "poisoned"
    """Failed after being left running ``max_recovery_attempts`` times in a row."""
    DEFINITION_MISSING = "definition-missing"
    VERSION_MISSING = "version-missing"
    VERSION_CHANGED = "version-changed"
    """(With ``--app``.) The application's version of the mission's definition has another
    shape than the one its missions started on: changed without a new version number."""
    VERSION_UNREGISTERED = "version-unregistered"
    """No owner of the database has registered the mission's version (the store keeps the
    versions owners registered, and not this one): none can move it."""
    NODE_MISSING = "node-missing"
    NO_OWNER = "no-owner"
    """Due, running or with work submitted, but no process owns the database."""
    OVERDUE = "overdue"
    """Due for longer than the margin although an owner runs."""
    RUNNING_LONG = "running-long"
    WAITING_FOR_SIGNAL = "waiting-for-signal"
    SIGNAL_BUFFERED = "signal-buffered"
    """Waiting for a signal that came and is buffered: the owner takes it at its next tick."""
    WAITING_FOR_CHILD = "waiting-for-child"
    WAITING_FOR_SLOT = "waiting-for-slot"
    """Waiting for a slot of its concurrency key, held by other missions of the key."""
    CANCEL_PENDING = "cancel-pending"
    PAUSED = "paused"
    """Paused: it stays where it is until it is resumed."""
    PAUSE_PENDING = "pause-pending"
    """Waiting with a pause requested and not applied: the process moving it stopped as it
    reached its wait, before it paused it."""


@attrs.frozen
class Diagnosis:
    finding: Finding
    line: str
    command: str | None = None
    """What would move the mission: a command to run, or what to do in words."""


@attrs.frozen
class Facts:
    """What ``doctor`` reads about one mission."""

    snapshot: MissionSnapshot
    timeline: Sequence[TimelineEntry]
    buffered: Mapping[str, BufferedSignal]
    """The oldest buffered signal of each name the mission has buffered."""
    pending: Sequence[Submission]
    """Submissions for the mission the owner has not decided yet."""
    owner: int | None
    """The process owning the database, if one does."""
    parent_status: MissionStatus | None
    """The status of the mission's parent (``None``: no parent, or none stored any more)."""
    recorded: Mapping[tuple[str, int], str]
    """The fingerprint the store keeps of each (definition, version): an owner records those of
    every version it registers when it starts."""
    definitions: Sequence[MissionDefinition[Any, Any, Any]] | None
    """The application's definitions (``--app``), if given: several versions of one may be
    registered at once."""
    now: datetime
    margin: timedelta
    db: str


def _ago(facts: Facts, at: datetime) -> str:
    return f"{at.strftime('%Y-%m-%d %H:%M:%SZ')} ({format_age(facts.now - at)} ago)"


def _cli(facts: Facts, *args: str, of_mission: bool = True) -> str:
    """The command line of ``args``; ``of_mission``: about a mission, which is in the diagnosed
    one's tenant (itself, its parent, its child), so it names that tenant: without --tenant
    it would reach the mission of that id of no tenant."""
    tenant = facts.snapshot.tenant
    scope = [] if tenant is None or not of_mission else ["--tenant", tenant]
    return shlex.join(["mission-control", *args, "--db", facts.db, *scope])


_START_OWNER = "start the application that owns the database (its runtime moves what is due)"


def top_level_names(nodes: Sequence[NodeDescription]) -> set[str]:
    return {node.name for node in nodes}


def diagnose(facts: Facts) -> Diagnosis:
    """The first thing that keeps the mission from moving, in the order a fix is needed."""
    snapshot = facts.snapshot
    found = _definition_problem(facts) or _unregistered(facts)
    if found is not None:
        return found
    match snapshot.status:
        case MissionStatus.COMPLETED:
            return Diagnosis(Finding.ENDED, f"completed {_ago(facts, snapshot.updated_at)}")
        case MissionStatus.CANCELLED | MissionStatus.COMPENSATED:
            return Diagnosis(
                Finding.ENDED,
                f"{snapshot.status.value} {_ago(facts, snapshot.updated_at)}"
                + _error_text(snapshot),
            )
        case MissionStatus.FAILED:
            return _failed(facts)
        case MissionStatus.RUNNING:
            found = _running(facts)
            return attrs.evolve(found, line=found.line + _requested_pause(facts))
        case MissionStatus.WAITING:
            return _waiting(facts)
        case MissionStatus.PAUSED:
            return _paused(facts)


def _error_text(snapshot: MissionSnapshot) -> str:
    error = snapshot.error
    return "" if error is None else f": {error.type}: {error.message}"


def _definition_problem(facts: Facts) -> Diagnosis | None:
    snapshot = facts.snapshot
    definitions = facts.definitions
    if definitions is None or snapshot.is_terminal:
        return None
    versions = {d.version: d for d in definitions if d.name == snapshot.definition}
    if not versions:
        known = ", ".join(sorted({d.name for d in definitions})) or "none"
        return Diagnosis(
            Finding.DEFINITION_MISSING,
            f"its definition {snapshot.definition!r} is not among the application's ({known}): "
            "no owner can move it",
            f"register {snapshot.definition!r} (version {snapshot.definition_version}) in the "
            "application again and restart it",
        )
    definition = versions.get(snapshot.definition_version)
    if definition is None:
        has = ", ".join(str(v) for v in sorted(versions))
        return Diagnosis(
            Finding.VERSION_MISSING,
            f"it runs on version {snapshot.definition_version} of {snapshot.definition!r}, but "
            f"the application has version {has}",
            f"register version {snapshot.definition_version} of {snapshot.definition!r} beside "
            f"version {has} until its missions end",
        )
    description = definition.describe()
    names = top_level_names(description.nodes) | top_level_names(description.on_deadline)
    at = {path.split("/", 1)[0] for path in snapshot.active}
    if snapshot.current_node is not None:
        at.add(snapshot.current_node)
    gone = sorted(at - names)
    if gone:
        return Diagnosis(
            Finding.NODE_MISSING,
            f"it is at {', '.join(map(repr, gone))}, a node its definition "
            f"{snapshot.definition!r} (version {definition.version}) no longer has",
            f"give the definition back its node {gone[0]!r} (or a new version of it) and "
            "restart the application",
        )
    # Its node is there, but the shape around it may have changed (below the top level).
    stored = facts.recorded.get((snapshot.definition, snapshot.definition_version))
    mine = fingerprint(definition)
    # Fingerprints of another format (what the digest covers) are not compared, as core's check.
    if stored is not None and stored != mine and stored.split(":")[0] == mine.split(":")[0]:
        return Diagnosis(
            Finding.VERSION_CHANGED,
            f"version {definition.version} of {snapshot.definition!r} in the application has "
            "another shape than the one its missions started on (it was changed without a new "
            "version number): the mission may fail when it next moves",
            f"give the changed definition a new version and keep version {definition.version} "
            "as it was until its missions end; `mission-control check --app ...` names them",
        )
    return None


def _unregistered(facts: Facts) -> Diagnosis | None:
    snapshot = facts.snapshot
    key = (snapshot.definition, snapshot.definition_version)
    # With none recorded at all, no owner has run the check yet: nothing can be told.
    if snapshot.is_terminal or not facts.recorded or key in facts.recorded:
        return None
    has = sorted(v for name, v in facts.recorded if name == snapshot.definition)
    registered = (
        f"the owners registered version {', '.join(map(str, has))} of it"
        if has
        else "the owners registered no version of it"
    )
    owner = "" if facts.owner is None else f"process {facts.owner} owns it now; "
    return Diagnosis(
        Finding.VERSION_UNREGISTERED,
        f"it runs on version {snapshot.definition_version} of {snapshot.definition!r}, which no "
        f"process owning the database has registered ({owner}{registered}): none can move it",
        f"deploy version {snapshot.definition_version} of {snapshot.definition!r} to the "
        "application that owns the database (beside the versions its other missions run on) "
        "and restart it",
    )


def _failed(facts: Facts) -> Diagnosis:
    snapshot = facts.snapshot
    error = snapshot.error
    at = f"failed at {snapshot.current_node!r} {_ago(facts, snapshot.updated_at)}"
    if error is not None and error.type == "RecoveryAttemptsExceededError":
        return Diagnosis(
            Finding.POISONED,
            f"poisoned: {at}, after being left running {snapshot.recovery_attempts} times in a "
            "row (the node stops the process, or its result cannot be stored)",
            f"fix the node {snapshot.current_node!r}, then {_rerun(facts)}",
        )
    return Diagnosis(
        Finding.FAILED, at + _error_text(snapshot), f"fix the cause, then {_rerun(facts)}"
    )


def _rerun(facts: Facts) -> str:
    """What runs a failed mission again: a retry, unless the library refuses one for it (the
    cases of ``Commander.retry``'s ``MissionNotRetryableError``)."""
    snapshot = facts.snapshot
    if snapshot.compensating:
        # Some of what it did is undone: only a fresh run from the start is sound.
        return "run it afresh: " + _cli(
            facts, "fork", snapshot.id, "--at", "start", "--app", "MODULE:ATTRIBUTE"
        )
    parent = snapshot.parent
    if parent is None:
        return _cli(facts, "retry", snapshot.id)
    # A child mission is run again by its parent's child node, which starts a new one.
    node = parent.node.partition("/")[0]
    match facts.parent_status:
        case MissionStatus.FAILED | MissionStatus.CANCELLED:
            return _cli(facts, "retry", parent.mission_id, "--from", node)
        case None:
            return f"its parent {parent.mission_id} is gone: nothing runs it again"
        case _:
            return f"see how its parent goes on (its node {node!r} saw it fail): " + _cli(
                facts, "doctor", parent.mission_id
            )


def _owner_problem(facts: Facts, what: str) -> Diagnosis | None:
    if facts.owner is not None:
        return None
    return Diagnosis(
        Finding.NO_OWNER,
        f"{what}, but no process owns the database: nothing moves it",
        _START_OWNER,
    )


def _waiting_submissions(pending: Sequence[Submission]) -> str:
    if len(pending) == 1:
        return f"submission {pending[0].seq} ({pending[0].kind.value}) waits"
    return f"submissions {', '.join(str(s.seq) for s in pending)} wait"


def _pending_text(facts: Facts) -> str:
    return f"; {_waiting_submissions(facts.pending)} for the owner" if facts.pending else ""


def _requested_pause(facts: Facts) -> str:
    """What doctor says of a pause asked for while the mission ran, not applied yet."""
    request = facts.snapshot.pause_request
    if request is None:
        return ""
    why = "" if request.reason is None else f" ({request.reason})"
    return (
        f"; a pause was requested {_ago(facts, request.requested_at)}{why}: it pauses at its "
        "next node boundary (after a crash, before it runs its node again)"
    )


def _running(facts: Facts) -> Diagnosis:
    snapshot = facts.snapshot
    node = snapshot.current_node
    recovered = (
        f" (resumed {snapshot.recovery_attempts} times after crashes)"
        if snapshot.recovery_attempts
        else ""
    )
    found = _owner_problem(facts, f"left running at {node!r} by a process that stopped{recovered}")
    if found is not None:
        return found
    since = snapshot.updated_at
    if facts.now - since > facts.margin:
        return Diagnosis(
            Finding.RUNNING_LONG,
            f"running {node!r} since {_ago(facts, since)} in process {facts.owner}{recovered}: "
            "a step that takes this long, or hangs",
            f"look at what process {facts.owner} does (e.g. py-spy dump --pid {facts.owner}); "
            "as a last resort " + _cli(facts, "cancel", snapshot.id),
        )
    return Diagnosis(
        Finding.MOVING,
        f"running {node!r} in process {facts.owner}{recovered}{_pending_text(facts)}",
    )


def _paused(facts: Facts) -> Diagnosis:
    snapshot = facts.snapshot
    pause = snapshot.pause
    since = "" if pause is None else f" since {_ago(facts, pause.requested_at)}"
    why = "" if pause is None or pause.reason is None else f" ({pause.reason})"
    # Its compensations run to their end once resumed: it cannot be cancelled meanwhile.
    undoing = " while running its compensations" if snapshot.compensating else ""
    return Diagnosis(
        Finding.PAUSED,
        f"paused{since}{why}{undoing} at {snapshot.current_node!r}{_pending_text(facts)}: "
        "nothing moves it, its signals are kept and its timers fire once it is resumed",
        "when it may go on: " + _cli(facts, "resume", snapshot.id),
    )


def _waiting(facts: Facts) -> Diagnosis:
    snapshot = facts.snapshot
    request = snapshot.pause_request
    if request is not None and snapshot.cancel_request is None:
        why = "" if request.reason is None else f" ({request.reason})"
        what = (
            f"waiting at {snapshot.current_node!r} with a pause requested "
            f"{_ago(facts, request.requested_at)}{why} and not applied"
        )
        return _owner_problem(facts, what) or Diagnosis(
            Finding.PAUSE_PENDING,
            f"{what}: the process that ran it stopped as it reached its wait; the owner pauses "
            "it at its next tick",
            "to pause it now: " + _cli(facts, "pause", snapshot.id),
        )
    if snapshot.cancel_request is not None:
        what = f"cancellation requested {_ago(facts, snapshot.cancel_request.requested_at)}"
        return _owner_problem(facts, what) or Diagnosis(
            Finding.CANCEL_PENDING, f"{what}: the owner applies it at its next tick"
        )
    due = snapshot.due_at
    if due is not None and due <= facts.now - facts.margin:
        what = f"due since {_ago(facts, due)}"
        return _owner_problem(facts, what) or Diagnosis(
            Finding.OVERDUE,
            f"{what} but not moved although process {facts.owner} owns the database: it runs no "
            "runtime, or its ticks cannot keep up",
            f"make sure process {facts.owner} runs a runtime on it; "
            + _cli(facts, "stats", of_mission=False)
            + " shows how many are due",
        )
    if facts.pending:
        found = _owner_problem(facts, _waiting_submissions(facts.pending))
        if found is not None:
            return found
    for wait in snapshot.waits:
        match wait.kind:
            case WaitKind.SIGNAL:
                return _waiting_for_signal(facts, wait.signal or "", wait.node)
            case WaitKind.CHILD:
                return _waiting_for_child(facts, wait.node)
            case WaitKind.SLOT:
                key = (snapshot.concurrency_key or "").partition("/")[2]
                return Diagnosis(
                    Finding.WAITING_FOR_SLOT,
                    f"waiting for a slot of its concurrency key {key!r}: it begins once a "
                    "mission of the key that holds one ends (in start order)",
                )
            case WaitKind.TIMER | WaitKind.RETRY | WaitKind.START:
                pass
    owner = "" if facts.owner is not None else " (no process owns the database now)"
    due_text = (
        ""
        if due is None
        else f" until {due.strftime('%Y-%m-%d %H:%M:%SZ')} (in {format_age(due - facts.now)})"
    )
    kinds = ", ".join(w.kind.value for w in snapshot.waits) or "its time"
    return Diagnosis(Finding.MOVING, f"waiting for {kinds}{due_text}{owner}")


def _waiting_for_signal(facts: Facts, name: str, node: str) -> Diagnosis:
    snapshot = facts.snapshot
    record = snapshot.nodes.get(node)
    since = record.started_at if record is not None and record.started_at else snapshot.updated_at
    came = facts.buffered.get(name)
    if came is not None:
        # It came before the mission waited for it (or while the owner was down): the owner
        # hands it over when it next moves the mission; sending another would buffer a second.
        what = (
            f"waiting for the signal {name!r} since {_ago(facts, since)}; one sent "
            f"{_ago(facts, came.received_at)} is buffered and not taken yet"
        )
        return _owner_problem(facts, what) or Diagnosis(
            Finding.SIGNAL_BUFFERED,
            f"{what}: the owner takes it at its next tick{_pending_text(facts)}",
        )
    rejected = [
        entry
        for entry in facts.timeline
        if entry.kind is TimelineKind.SIGNAL_REJECTED and entry.node == node
    ]
    sent = (
        f"one was rejected {_ago(facts, rejected[-1].at)}: {rejected[-1].detail}"
        if rejected
        else "never sent"
    )
    others = sorted(n for n in facts.buffered if n != name)
    buffered = f"; buffered: {', '.join(map(repr, others))}" if others else "; nothing buffered"
    return Diagnosis(
        Finding.WAITING_FOR_SIGNAL,
        f"waiting for the signal {name!r} since {_ago(facts, since)}, {sent}{buffered}"
        + _pending_text(facts),
        _cli(facts, "signal", snapshot.id, name, "PAYLOAD-JSON"),
    )


def _waiting_for_child(facts: Facts, node: str) -> Diagnosis:
    child: str | None = None
    for entry in facts.timeline:
        if entry.kind is TimelineKind.CHILD_STARTED and entry.node == node:
            detail: object = entry.detail
            if isinstance(detail, dict) and "mission_id" in detail:
                key = str(cast("dict[str, object]", detail)["mission_id"])
                child = local_id(key, facts.snapshot.tenant)
    return Diagnosis(
        Finding.WAITING_FOR_CHILD,
        f"waiting at {node!r} for its child mission {child or '(not started yet)'} to end",
        None if child is None else _cli(facts, "doctor", child),
    )


def diagnosis_json(facts: Facts, diagnosis: Diagnosis) -> dict[str, Any]:
    snapshot = facts.snapshot
    return {
        "mission": snapshot.id,
        "status": snapshot.status.value,
        "problem": diagnosis.finding.value,
        "diagnosis": diagnosis.line,
        "command": diagnosis.command,
        "owner_pid": facts.owner,
        "buffered_signals": sorted(facts.buffered),
        "pending_submissions": [s.seq for s in facts.pending],
        "recovery_attempts": snapshot.recovery_attempts,
    }
