"""What every adapter that stores a mission as a row does the same way: the snapshot's document
apart from its cancellation and pause requests (kept in columns of their own, which
``request_cancel`` and ``request_pause`` write without touching the snapshot or its revision),
the commits that clear the pause request, the document read back and checked against its row,
the columns of its row, of a commit's compare-and-set and of its timeline entries, a commit's
revision checked before its transaction and its conflict reported, a buffered signal's payload;
and the records stored as one document each (schedules, fired triggers) read back."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Final, TypeVar

import attrs

from ._errors import PersistenceError, RevisionConflictError
from ._serialization import (
    cancel_request_from_json,
    cancel_request_to_json,
    pause_from_json,
    snapshot_from_json,
    snapshot_to_json,
    timeline_entry_to_json,
    value_to_json,
)
from ._snapshot import JsonValue, MissionSnapshot, MissionStatus, TimelineEntry

_Record = TypeVar("_Record")
_Due = TypeVar("_Due")

_SETTLED: Final = frozenset(
    {MissionStatus.PAUSED, *(status for status in MissionStatus if status.is_terminal)}
)


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


def mission_row(
    snapshot: MissionSnapshot, due: _Due
) -> tuple[str, str, int, str, _Due, int, str, str | None]:
    """The columns of the mission's row, in this order: id, definition, definition version,
    status, due time (``due``: ``snapshot.due_at`` as the adapter stores times), revision, the
    snapshot's document and its cancellation request's (:func:`stored_snapshot_to_json`)."""
    text, cancel = stored_snapshot_to_json(snapshot)
    return (
        snapshot.id,
        snapshot.definition,
        snapshot.definition_version,
        str(snapshot.status),
        due,
        snapshot.revision,
        text,
        cancel,
    )


def mission_update(
    snapshot: MissionSnapshot, due: _Due, expected_revision: int
) -> tuple[str, _Due, int, str, str | None, bool, str, int]:
    """The parameters of a commit's compare-and-set, in this order: the new status, due time
    (``due``, as for :func:`mission_row`), revision, snapshot document, cancellation request
    document and whether the stored pause request is cleared (:func:`clears_pause_request`),
    then the mission's id and the revision it must be stored at."""
    text, cancel = stored_snapshot_to_json(snapshot)
    return (
        str(snapshot.status),
        due,
        snapshot.revision,
        text,
        cancel,
        clears_pause_request(snapshot.status),
        snapshot.id,
        expected_revision,
    )


def timeline_rows(
    mission_id: str, revision: int, timeline: Sequence[TimelineEntry], start: int = 0
) -> list[tuple[str, int, int, str]]:
    """The rows of the timeline entries a write at ``revision`` appends: (mission id, revision,
    position, document), positions numbered from ``start`` in the order given. Keyed by
    revision and position, a commit's entries need no read to be numbered (it writes a revision
    no entry has yet); a write that does not change the revision numbers them after the stored
    ones."""
    return [
        (mission_id, revision, start + i, timeline_entry_to_json(entry))
        for i, entry in enumerate(timeline)
    ]


def signal_payload_json(mission_id: str, name: str, payload: JsonValue) -> str:
    """A buffered signal's payload as its document, made before its transaction begins: a
    payload that cannot be written raises :class:`PersistenceError` then, with nothing
    stored."""
    try:
        return value_to_json(payload)
    except (TypeError, ValueError) as error:
        raise PersistenceError(
            f"signal {name!r} for mission {mission_id!r}: its payload cannot be stored as JSON "
            f"({error})"
        ) from error


def revision_conflict(
    mission_id: str, stored_revision: object, expected_revision: int
) -> RevisionConflictError:
    """The error of a commit whose compare-and-set found the mission at ``stored_revision``
    (``None``: not stored at all) instead of ``expected_revision``."""
    if stored_revision is None:
        return RevisionConflictError(f"mission {mission_id!r} does not exist")
    return RevisionConflictError(
        f"mission {mission_id!r} is at revision {stored_revision}, the commit expected "
        f"{expected_revision}"
    )


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
