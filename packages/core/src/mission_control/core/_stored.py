"""What every adapter that stores a mission as a row does the same way: the snapshot's document
apart from its cancellation and pause requests (kept in columns of their own, which
``request_cancel`` and ``request_pause`` write without touching the snapshot or its revision),
the commits that clear the pause request, the document read back and checked against its row,
and a commit's revision checked before its transaction; and the records stored as one document
each (schedules, fired triggers) read back."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Final, TypeVar

import attrs

from ._errors import PersistenceError, RevisionConflictError
from ._serialization import (
    cancel_request_from_json,
    cancel_request_to_json,
    pause_from_json,
    snapshot_from_json,
    snapshot_to_json,
)
from ._snapshot import MissionSnapshot, MissionStatus

_SETTLED: Final = frozenset(
    {MissionStatus.PAUSED, *(status for status in MissionStatus if status.is_terminal)}
)

_Record = TypeVar("_Record")


def stored_snapshot_to_json(snapshot: MissionSnapshot) -> tuple[str, str | None]:
    """The snapshot's document without its cancellation and pause requests, and the
    cancellation request's document (``None`` without one): each request is stored in its own
    column only, so that one source of truth remains (the pause request's is written by
    ``request_pause`` alone)."""
    request = snapshot.cancel_request
    if request is None and snapshot.pause_request is None:
        return snapshot_to_json(snapshot), None
    return (
        snapshot_to_json(attrs.evolve(snapshot, cancel_request=None, pause_request=None)),
        None if request is None else cancel_request_to_json(request),
    )


def clears_pause_request(status: MissionStatus) -> bool:
    """Whether a mission stored with ``status`` has no pause request: it paused (the request
    took effect) or ended (nothing is left to pause). A commit of such a snapshot clears the
    stored request, and ``request_pause`` stores none for such a mission; any other commit
    keeps it, its snapshot's ``pause_request`` whatever it is (the task that commits may have
    read the mission before the request came)."""
    return status in _SETTLED


def stored_snapshot_from_json(
    text: str,
    cancel: str | None,
    pause: str | None = None,
    *,
    mission_id: str,
    revision: int,
    store: str,
) -> MissionSnapshot:
    """The snapshot of the row ``mission_id`` at ``revision``, with the cancellation and pause
    requests of their own columns. Raises :class:`PersistenceError` naming the mission and
    ``store`` (where it is stored, for the message) when the document is unreadable or is not
    the row's."""
    try:
        snapshot = snapshot_from_json(text)
        if cancel is not None:
            snapshot = attrs.evolve(snapshot, cancel_request=cancel_request_from_json(cancel))
        if pause is not None:
            snapshot = attrs.evolve(snapshot, pause_request=pause_from_json(pause))
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


def records_from_json(
    documents: Iterable[str], read: Callable[[str], _Record], what: str, store: str
) -> list[_Record]:
    """The records stored as ``documents``, each read by ``read`` (a codec reader such as
    ``schedule_from_json``). Raises :class:`PersistenceError` naming ``what`` (``"a
    schedule"``) and ``store`` (where it is stored, for the message) for one that cannot be
    read."""
    found: list[_Record] = []
    for document in documents:
        try:
            found.append(read(document))
        except Exception as error:
            raise PersistenceError(
                f"{what} in {store} cannot be read: its stored document is corrupt "
                f"({type(error).__name__}: {error})"
            ) from error
    return found
