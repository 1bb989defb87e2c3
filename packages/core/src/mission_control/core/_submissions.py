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
import enum
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Protocol, runtime_checkable

import attrs

from ._errors import MissionControlError, PersistenceError, SubmissionRefusedError
from ._snapshot import JsonValue


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
      unless ``overriding``: a refusal after the application's own write marked it applied).
    - ``count_failure`` counts one more application that raised, and returns the count.
    - ``purge_submissions(decided_before, limit)`` deletes up to ``limit`` decided submissions
      decided before then, oldest first, in one transaction, and returns how many (with
      ``dry_run``, how many there are, deleting none).
    - ``take_ownership`` waits until this process owns the store.
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
    ) -> None: ...

    async def count_failure(self, seq: int) -> int: ...

    async def purge_submissions(
        self, decided_before: datetime, limit: int, *, dry_run: bool = False
    ) -> int: ...

    async def take_ownership(self) -> None: ...

    async def watch_submissions(self, wake: Callable[[], None]) -> None: ...
