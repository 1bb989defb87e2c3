"""What every adapter that stores a mission as a row does the same way: the snapshot's document
apart from its cancellation request (kept in a column of its own, which ``request_cancel``
writes without touching the snapshot or its revision), the document read back and checked
against its row, and a commit's revision checked before its transaction."""

from __future__ import annotations

import attrs

from ._errors import PersistenceError, RevisionConflictError
from ._serialization import (
    cancel_request_from_json,
    cancel_request_to_json,
    snapshot_from_json,
    snapshot_to_json,
)
from ._snapshot import MissionSnapshot


def stored_snapshot_to_json(snapshot: MissionSnapshot) -> tuple[str, str | None]:
    """The snapshot's document without its cancellation request, and the request's document
    (``None`` without one): the request is stored in its own column only, so that one source of
    truth remains."""
    request = snapshot.cancel_request
    if request is None:
        return snapshot_to_json(snapshot), None
    return (
        snapshot_to_json(attrs.evolve(snapshot, cancel_request=None)),
        cancel_request_to_json(request),
    )


def stored_snapshot_from_json(
    text: str, cancel: str | None, *, mission_id: str, revision: int, store: str
) -> MissionSnapshot:
    """The snapshot of the row ``mission_id`` at ``revision``, with the cancellation request
    of its own column. Raises :class:`PersistenceError` naming the mission and ``store`` (where
    it is stored, for the message) when the document is unreadable or is not the row's."""
    try:
        snapshot = snapshot_from_json(text)
        if cancel is not None:
            snapshot = attrs.evolve(snapshot, cancel_request=cancel_request_from_json(cancel))
    except Exception as error:
        raise corrupt(mission_id, store, "snapshot", error) from error
    if snapshot.id != mission_id or snapshot.revision != revision:
        raise PersistenceError(
            f"mission {mission_id!r} in {store} cannot be read: its stored snapshot says id "
            f"{snapshot.id!r} at revision {snapshot.revision}, its row says revision "
            f"{revision}; other missions are not affected"
        )
    return snapshot


def corrupt(mission_id: str, store: str, what: str, error: BaseException) -> PersistenceError:
    """The error for a mission whose stored ``what`` (its snapshot, timeline, a signal) cannot
    be read."""
    return PersistenceError(
        f"mission {mission_id!r} in {store} cannot be read: its stored {what} is corrupt "
        f"({type(error).__name__}: {error}); other missions are not affected"
    )


def check_commit_revision(snapshot: MissionSnapshot, expected_revision: int) -> None:
    """Refuse a commit whose snapshot does not carry the revision after ``expected_revision``
    (:class:`RevisionConflictError`), before anything is written."""
    if snapshot.revision != expected_revision + 1:
        raise RevisionConflictError(
            f"mission {snapshot.id!r}: a commit expecting revision {expected_revision} must "
            f"carry revision {expected_revision + 1}, not {snapshot.revision}"
        )
