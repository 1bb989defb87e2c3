"""Submissions: work a process that does not own a store hands to the one that does.

One process executes the missions of a store (its owner); any other process on it (a second
web worker, a script, the CLI) is a submitter: it stores what it wants done (a start, a signal,
a cancellation, a retry, a pause or a resume) as a submission, durable once stored, and the
owner applies it. The owner marks a submission applied in the same transaction as the write
that applies it, so a crash never applies one twice; one it refuses (a signal the mission has
no ``need_to`` for, a payload that does not parse, a mission that has ended) is marked refused
with the error it raised, and the mission stays exactly as it was.
"""

from __future__ import annotations

import builtins
import contextvars
import enum
import json
import logging
from collections.abc import Callable, Generator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from typing import Any, Final, Protocol, TypeVar, runtime_checkable

import attrs

from ._errors import (
    MissionControlError,
    PersistenceError,
    RevisionConflictError,
    SubmissionRefusedError,
)
from ._serialization import value_to_json
from ._snapshot import JsonValue

_log = logging.getLogger("mission_control.core")

_Row = TypeVar("_Row", bound=Sequence[Any])


class SubmissionKind(enum.StrEnum):
    """What a submission asks the owner to do."""

    START = "start"
    """Start a mission: ``name`` is its definition, ``payload`` its input."""
    SIGNAL = "signal"
    """Send the signal ``name`` with ``payload``."""
    CANCEL = "cancel"
    """Cancel the mission: ``payload`` is ``{"reason": ..., "compensate": ...}``."""
    RETRY = "retry"
    """Retry the failed or cancelled mission: ``payload`` is ``{"from_node": ...}``."""
    PAUSE = "pause"
    """Pause the mission: ``payload`` is ``{"reason": ...}``."""
    RESUME = "resume"
    """Resume the paused mission (``payload``: ``None``)."""


class SubmissionState(enum.StrEnum):
    PENDING = "pending"
    """Stored, not applied yet (no owner runs, or it has not got to it)."""
    APPLIED = "applied"
    REFUSED = "refused"
    """The owner raised an error applying it; the mission is as it was."""


@attrs.frozen
class Refusal:
    """Why the owner refused a submission: the error it raised."""

    type: str
    """The exception's class name (one of ``mission_control.core``'s errors, usually)."""
    message: str

    @classmethod
    def of(cls, error: BaseException) -> Refusal:
        return cls(builtins.type(error).__name__, str(error))

    def error(self) -> MissionControlError:
        """The error to raise in the submitter: the owner's class when it is one of
        ``mission_control.core``'s, with the owner's message."""
        classes: list[builtins.type[MissionControlError]] = [MissionControlError]
        while classes:
            found = classes.pop()
            if found.__name__ == self.type and found.__module__.startswith("mission_control."):
                try:
                    return found(self.message)
                except TypeError:
                    break  # an error class that needs more than a message
            classes.extend(found.__subclasses__())
        return SubmissionRefusedError(f"{self.type}: {self.message}")


@attrs.frozen(kw_only=True)
class NewSubmission:
    """A piece of work for the owner of a store, to store (its number and decision are the
    store's)."""

    kind: SubmissionKind
    mission_id: str
    name: str | None
    """The definition (a start) or the signal's name (a signal)."""
    payload: JsonValue
    submitted_at: datetime
    submitted_by: str
    """Who stored it (process id and host)."""


@attrs.frozen(kw_only=True)
class Submission(NewSubmission):
    """A piece of work handed to the owner of a store, as stored: what was submitted, its
    number and the owner's decision."""

    seq: int
    """Its number, in the order submissions were stored."""
    state: SubmissionState = SubmissionState.PENDING
    decided_at: datetime | None = None
    refusal: Refusal | None = None
    tenant: str | None = None
    """The tenant of its mission. The commander hands a tenant's submission out with it and
    with the caller's id as ``mission_id``; a store returns ``None`` and the stored key."""
    joined: str | None = None
    """For an applied start of a joining singleton whose key a mission held (it stored no
    mission of its own): the id of the mission it joined, as ``mission_id`` is given;
    ``None`` otherwise."""

    @property
    def is_decided(self) -> bool:
        return self.state is not SubmissionState.PENDING


class SubmissionDecidedError(PersistenceError):
    """Raised by a write that was to mark a submission applied which is no longer pending
    (another application of it came first): the write is rolled back, nothing is stored."""


class Marking(Protocol):
    """What :meth:`SubmissionStore.applying` gives: whether the write that applied the
    submission has marked it (see there)."""

    @property
    def used(self) -> bool: ...


class _Applying:
    """The submission the calling task is applying: the first write it makes marks it applied
    in its own transaction."""

    __slots__ = ("decided_at", "seq", "used")

    def __init__(self, seq: int, decided_at: datetime) -> None:
        self.seq = seq
        self.decided_at = decided_at
        self.used = False


# A context variable, not an argument: the engine's writes go through the persistence protocol
# unchanged; the task applying a submission (and only it) carries the mark to its first write.
_APPLYING: contextvars.ContextVar[_Applying | None] = contextvars.ContextVar(
    "mission_control_applying", default=None
)


@contextmanager
def applying_submission(seq: int, decided_at: datetime) -> Generator[Marking]:
    """What an adapter's :meth:`SubmissionStore.applying` returns: inside the block, the
    calling task's first write takes the mark (:func:`submission_mark`)."""
    marking = _Applying(seq, decided_at)
    token = _APPLYING.set(marking)
    try:
        yield marking
    finally:
        _APPLYING.reset(token)


class _NoMark:
    """The mark of a write that has none to take: enters as ``None``, leaves nothing to undo."""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc_info: object) -> None:
        return None


class _TakenMark:
    """The mark a write took: given back when the write raised :class:`RevisionConflictError`."""

    __slots__ = ("_marking",)

    def __init__(self, marking: _Applying) -> None:
        self._marking = marking

    def __enter__(self) -> tuple[datetime, int]:
        self._marking.used = True
        return (self._marking.decided_at, self._marking.seq)

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> None:
        if kind is not None and issubclass(kind, RevisionConflictError):
            self._marking.used = False


# Every write of every mission enters submission_mark: without a submission being applied it
# must cost a context variable's read, not a generator's (a generator-based manager per write
# was +3.2% of a SQLite mission's instructions).
_NO_MARK: Final = _NoMark()


def submission_mark() -> AbstractContextManager[tuple[datetime, int] | None]:
    """For an adapter's writes (insert, commit, append_signal, request_cancel, request_pause),
    around the whole write: the submission it must mark applied in its own transaction, as
    ``(decided_at, seq)``, when the calling task is applying one and no write of it marked it
    yet; ``None`` otherwise. Taken once: the task's later writes get ``None``, unless the write
    that took it raised :class:`RevisionConflictError` (its compare-and-set failed: it stored
    nothing, the mark included), which gives it back to the task's next write (the engine's
    retry, or none: the submission is then decided without a write)."""
    marking = _APPLYING.get()
    if marking is None or marking.used:
        return _NO_MARK
    return _TakenMark(marking)


@runtime_checkable
class SubmissionStore(Protocol):
    """What a persistence adapter implements when several processes share its store: one of
    them owns it (executes missions), the others submit work to the owner.

    - ``is_owner``: whether this process owns the store now (it may become the owner later,
      when the owner goes away: :meth:`take_ownership`).
    - ``submit`` stores a submission durably and wakes the owner; ``load_submission`` reads one.
    - ``pending_submissions`` lists pending ones in the order they were stored.
    - ``applying(seq)``: inside the ``with`` block, the first write (insert, commit,
      append_signal, request_cancel) of the calling task marks the submission applied in the
      same transaction; ``marking.used`` says whether one did.
    - ``applying``'s write raises :class:`SubmissionDecidedError` (and stores nothing) when the
      submission is no longer pending.
    - ``decide_submission`` marks a pending one applied or refused (a no-op on a decided one,
      unless ``overriding``: a refusal after the application's own write marked it applied);
      an applied start that joined a mission (``joined``, its stored key) keeps that mission's
      key, and the submission read back has it as ``joined``.
    - ``count_failure`` counts one more application that raised, and returns the count.
    - ``purge_submissions(decided_before, limit)`` deletes up to ``limit`` decided submissions
      decided before then, oldest first, in one transaction, and returns how many (with
      ``dry_run``, how many there are, deleting none).
    - ``take_ownership`` waits until this process owns the store (for a store split between
      owners, :class:`MissionOwnership`: some of it).
    - ``watch_submissions(wake)``: on the owner, calls ``wake()`` whenever another process
      submitted work (and now and then when a wake-up might have been lost); runs until
      cancelled.
    """

    @property
    def is_owner(self) -> bool: ...

    async def submit(self, submission: NewSubmission) -> Submission: ...

    async def load_submission(self, seq: int) -> Submission | None: ...

    async def pending_submissions(self, limit: int) -> list[Submission]: ...

    def applying(self, seq: int, decided_at: datetime) -> AbstractContextManager[Marking]: ...

    async def decide_submission(
        self,
        seq: int,
        state: SubmissionState,
        refusal: Refusal | None,
        decided_at: datetime,
        *,
        overriding: bool = False,
        joined: str | None = None,
    ) -> None: ...

    async def count_failure(self, seq: int) -> int: ...

    async def purge_submissions(
        self, decided_before: datetime, limit: int, *, dry_run: bool = False
    ) -> int: ...

    async def take_ownership(self) -> None: ...

    async def watch_submissions(self, wake: Callable[[], None]) -> None: ...


@runtime_checkable
class MissionOwnership(Protocol):
    """What a store implements when its missions are split between several owners (PostgreSQL's
    shards, each run by one runtime process): ``owns(mission_id)`` says whether this process
    executes that mission now. Without it, a process that owns the store (``is_owner``) owns
    every mission in it.

    ``keep_ownership`` keeps this process's part up to date as processes join and leave, until
    cancelled (a runtime runs it beside its ticks).

    A commander on such a store runs a mission only where it is owned: a start or fork whose
    mission another process owns is stored waiting for its start (that owner's runtime runs
    it), and a signal, cancellation or retry of such a mission is a submission its owner
    applies, as from a process that owns nothing (:class:`SubmissionStore`).
    """

    def owns(self, mission_id: str) -> bool: ...

    async def keep_ownership(self) -> None:
        """Keep this process's part of the store up to date as processes join and leave
        (PostgreSQL: the spreading rule's rounds), until cancelled. A runtime on the store
        runs it beside its ticks."""
        ...


# -- for adapters: what every SubmissionStore writes and reads the same way -------------------


def submission_payload_json(submission: NewSubmission) -> str:
    """The submission's payload as JSON text, made before its transaction begins: a payload
    that cannot be stored raises :class:`PersistenceError` naming the submission, with nothing
    stored."""
    try:
        return value_to_json(submission.payload)
    except (TypeError, ValueError) as error:
        raise PersistenceError(
            f"{submission.kind} submission for mission {submission.mission_id!r}: its payload "
            f"cannot be stored as JSON ({error})"
        ) from error


def refusal_to_json(refusal: Refusal) -> str:
    return json.dumps({"type": refusal.type, "message": refusal.message}, ensure_ascii=False)


def refusal_from_json(text: str) -> Refusal:
    found = json.loads(text)
    return Refusal(str(found["type"]), str(found["message"]))


async def readable_submissions(
    store: SubmissionStore,
    rows: Sequence[_Row],
    read: Callable[[_Row], Submission],
) -> list[Submission]:
    """The submissions of ``rows`` (each row's first column its number), as ``read`` makes
    them. One it cannot read (:class:`PersistenceError`: a kind a newer version wrote, a
    damaged row) is left out and, on the owner, refused saying so: the others never wait behind
    it."""
    found: list[Submission] = []
    for row in rows:
        try:
            found.append(read(row))
        except PersistenceError as error:
            if not store.is_owner:
                continue
            _log.warning("%s: refused", error)
            await store.decide_submission(
                int(row[0]),
                SubmissionState.REFUSED,
                Refusal("SubmissionRefusedError", f"the owner cannot read it: {error}"),
                datetime.now(UTC),
            )
    return found
