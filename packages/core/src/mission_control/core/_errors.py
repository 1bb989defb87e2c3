"""The exception hierarchy: every error Mission Control raises on purpose derives from one base."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._snapshot import MissionSnapshot
    from ._versions import VersionReport


def message_of(error: BaseException) -> str:
    """``str(error)``, made safe to store: never raises (an exception's ``__str__`` is user
    code), and a lone surrogate in it is written as its escape."""
    try:
        message = str(error)
    except Exception as failure:
        return f"<str() of {type(error).__qualname__} raised {type(failure).__qualname__}>"
    return escape_surrogates(message)


def escape_surrogates(text: str) -> str:
    """``text`` with any lone surrogate escaped, so that it can be written as UTF-8."""
    if text.isascii():
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def refuse_unknown_options(given: Iterable[str], known: Collection[str], call: str) -> None:
    """Raise :class:`InvalidInputError` for a keyword option ``call`` does not take: a
    ``**options: Unpack[...]`` is checked by a type checker only, and a misspelt option
    ignored would widen what the call does (a purge of every tenant)."""
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise InvalidInputError(
            f"{call} takes no option {', '.join(map(repr, unknown))}; its options are "
            f"{', '.join(sorted(known))}"
        )


class MissionControlError(Exception):
    """Base class of every error Mission Control raises on purpose."""


class ConfigurationError(MissionControlError):
    """A commander or runtime was set up with something missing or inconsistent."""


class EventLoopError(MissionControlError):
    """The library was used where it cannot run: outside a running trio or asyncio event loop
    (synchronous code, a thread without a loop), or on a loop other than the one the object
    serves. Nothing was read or stored."""


class InvalidDefinitionError(MissionControlError):
    """A mission definition is malformed (raised while it is being built)."""


class UnknownDefinitionError(MissionControlError):
    """A mission names a definition the commander was not given."""


class DefinitionVersionError(UnknownDefinitionError):
    """Unfinished missions run on definition versions the commander was not given, or was given
    changed (another shape under the same version number): raised when the commander or runtime
    starts (see ``version_check`` of ``create_commander``). ``report`` has every problem, each
    with the missions on it."""

    def __init__(self, report: VersionReport) -> None:
        self.report = report
        super().__init__(
            "definition versions do not match the unfinished missions: "
            + "; ".join(str(problem) for problem in report.problems)
            + ". Register every version unfinished missions use, and give a changed definition a "
            "new version number (see docs/dsl.md, versions)"
        )


class InvalidInputError(MissionControlError):
    """The input given to ``start`` was rejected (no storable JSON form, or the definition's
    parser refused it), or another argument of a call was (a mission id, a cancel reason)."""


class UnknownSignalError(MissionControlError):
    """A signal names no ``need_to`` node of the mission's definition."""


class InvalidSignalPayloadError(MissionControlError):
    """A signal's payload was rejected by its ``need_to`` parser."""


class MissionNotFoundError(MissionControlError, LookupError):
    """No mission with the given id exists."""


class MissionNotActiveError(MissionControlError):
    """The mission has already finished, so it takes no more signals or cancellation (nor does
    a mission running its compensations take a cancellation)."""


class MissionNotRetryableError(MissionControlError):
    """``retry`` was asked of a mission that is not failed or cancelled (it runs, waits or
    completed), or that ran its compensations: nothing was stored."""


class MissionAlreadyExistsError(MissionControlError):
    """An idempotent start named an id that belongs to a mission of another definition."""


class OutputNotSerializableError(MissionControlError):
    """A node returned a value that cannot be stored as JSON."""


class UnknownEventError(MissionControlError, KeyError):
    """A step read ``ctx.events[...]`` for a node that has not produced an event."""

    def __str__(self) -> str:
        # KeyError's __str__ quotes the message; show it as written.
        return str(self.args[0]) if self.args else ""


class StepTimeoutError(MissionControlError):
    """A step ran longer than its ``timeout``; it counts as a failed attempt."""


class RecoveryAttemptsExceededError(MissionControlError):
    """A mission was found running with nobody moving it more than ``max_recovery_attempts``
    times in a row at the same node, so it failed instead of running that node again (it is
    stored in the failed mission's ``error``, never raised)."""


class SignalTimeoutError(MissionControlError):
    """A need_to's timeout passed before its signal came (stored as the mission's error when the
    need_to has no ``on_timeout`` path)."""


class DeadlineExceededError(MissionControlError):
    """A mission's deadline passed before it ended (stored as its error when the definition has
    no ``on_deadline`` path)."""


class ChoiceError(MissionControlError):
    """A choice's function raised, or named no path of the choice (stored as the mission's
    error)."""


class LoopError(MissionControlError):
    """A loop's ``until`` or a for_each's ``items`` raised or returned what it may not (stored
    as the mission's error)."""


class LoopLimitExceededError(LoopError):
    """A loop ran ``max_iterations`` iterations without its ``until`` holding, or a for_each
    was given more than ``max_iterations`` items (stored as the mission's error)."""


class ChildMissionFailedError(MissionControlError):
    """A child node's child mission failed or was cancelled: a failed attempt of the child node
    (stored as the parent's error when it is not retried)."""


class CompensationRequested(MissionControlError):
    """Raised by a step's function (or the start's or the end's) to fail the mission at once,
    never retried, and run the compensations it owes: the mission then ends ``compensated``,
    with this error (its message the reason given) as its ``error``."""


class CompensationFailedError(MissionControlError):
    """A compensation failed for good (out of its retries), so the mission stopped compensating
    and failed; its message names the compensation, its error and what failed the mission (it
    is stored in the mission's ``error``, never raised)."""


class RevisionConflictError(MissionControlError):
    """A commit expected a revision the stored mission no longer has."""


class PersistenceError(MissionControlError):
    """The store cannot be used (corrupt data, incompatible schema, or another owner)."""


class MissionEndedError(MissionControlError):
    """Base of the errors ``wait_for_completion`` raises for missions that did not complete."""

    def __init__(self, message: str, snapshot: MissionSnapshot) -> None:
        super().__init__(message)
        self.snapshot = snapshot


class MissionFailedError(MissionEndedError):
    """The mission failed; ``snapshot.error`` holds the error that ended it."""


class MissionCancelledError(MissionEndedError):
    """The mission was cancelled; ``snapshot.cancel_request`` holds the reason."""


class MissionCompensatedError(MissionEndedError):
    """The mission failed (or was cancelled with ``compensate=True``) and ran its compensations:
    ``snapshot.error`` holds what failed it (``None`` after a cancellation, whose reason is in
    ``snapshot.cancel_request``)."""


class SubmissionRefusedError(MissionControlError):
    """The owner of the store refused a submission with an error this process cannot rebuild
    as it was (its message names the owner's error)."""


class StoreBusyError(PersistenceError):
    """The store stayed locked by another connection for longer than the adapter waits (its
    busy timeout): nothing was stored, and trying again later may succeed."""


class ScheduleNotFoundError(MissionControlError, LookupError):
    """No schedule of that id is stored."""


class ScheduleExistsError(MissionControlError):
    """A schedule of that id is stored with other settings: ``create_schedule`` is idempotent
    only for the same settings (change a schedule with ``update_schedule``)."""


class TriggerNotFoundError(MissionControlError, LookupError):
    """No fired trigger of that id is recorded."""


class TriggerExistsError(MissionControlError):
    """A fire of that id is recorded with another trigger or payload: firing again under an id
    is idempotent only for the same fire."""
