"""The submissions table: its statements, and its rows."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Final

from mission_control.core import (
    PersistenceError,
    Submission,
    SubmissionKind,
    SubmissionState,
)
from mission_control.core.storage import (
    NewSubmission,
    SubmissionDecidedError,
    refusal_from_json,
    submission_payload_json,
)

from ._sqlite import Row

INSERT: Final = (
    "INSERT INTO submissions (kind, mission_id, name, payload, submitted_at, submitted_by) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)
_COLUMNS: Final = (
    "seq, kind, mission_id, name, payload, submitted_at, submitted_by, state, decided_at, "
    "refusal, joined"
)
# A database read before it was migrated to keep the joined missions (read-only) has none.
_COLUMNS_BEFORE_JOINED: Final = _COLUMNS.replace("joined", "NULL")
LOAD: Final = f"SELECT {_COLUMNS} FROM submissions WHERE seq = ?"
LOAD_BEFORE_JOINED: Final = f"SELECT {_COLUMNS_BEFORE_JOINED} FROM submissions WHERE seq = ?"
# ``state = 'pending'`` lets SQLite use the partial index submissions_pending.
_PENDING: Final = "FROM submissions WHERE state = 'pending' ORDER BY seq LIMIT ?"
PENDING: Final = f"SELECT {_COLUMNS} {_PENDING}"
PENDING_BEFORE_JOINED: Final = f"SELECT {_COLUMNS_BEFORE_JOINED} {_PENDING}"
ANY_PENDING: Final = "SELECT 1 FROM submissions WHERE state = 'pending' LIMIT 1"
MARK_APPLIED: Final = (
    "UPDATE submissions SET state = 'applied', decided_at = ? WHERE seq = ? AND state = 'pending'"
)
APPLY_JOINED: Final = (
    "UPDATE submissions SET state = 'applied', decided_at = ?, joined = ? "
    "WHERE seq = ? AND state = 'pending'"
)
# The last parameter overrides an application's own mark: a refused signal may have been
# preceded by a write of the same call (an orphaned child cancelled before its signal was
# refused); no other decision is ever changed.
REFUSE: Final = (
    "UPDATE submissions SET state = 'refused', decided_at = ?, refusal = ? "
    "WHERE seq = ? AND (state = 'pending' OR ?)"
)
# Decided before a time (decided_at is ISO text, perhaps of several offsets: compared as
# instants); the oldest first, a batch at a time.
_DECIDED_BEFORE: Final = "state != 'pending' AND julianday(decided_at) < julianday(?)"
PURGE: Final = (
    "DELETE FROM submissions WHERE seq IN "
    f"(SELECT seq FROM submissions WHERE {_DECIDED_BEFORE} ORDER BY seq LIMIT ?)"
)
COUNT_DECIDED: Final = f"SELECT count(*) FROM submissions WHERE {_DECIDED_BEFORE}"
COUNT_FAILURE: Final = (
    "UPDATE submissions SET failures = failures + 1 WHERE seq = ? RETURNING failures"
)


def submission_row(submission: NewSubmission) -> tuple[Any, ...]:
    """The row of a new submission, made before its transaction begins (a payload that cannot
    be stored raises then, with nothing stored)."""
    return (
        str(submission.kind),
        submission.mission_id,
        submission.name,
        submission_payload_json(submission),
        submission.submitted_at.isoformat(),
        submission.submitted_by,
    )


def mark_applied(cursor: Any, connection: Any, mark: tuple[datetime, int]) -> None:
    """Mark the submission the write in progress applies; raise (rolling the write back) when
    another application decided it first."""
    cursor.execute(MARK_APPLIED, (mark[0].isoformat(), mark[1]))
    if connection.changes() != 1:
        raise SubmissionDecidedError(f"submission {mark[1]} is no longer pending")


def submission_from_row(row: Row) -> Submission:
    seq, kind, mission_id, name, payload, submitted_at, by, state, decided_at, refusal, joined = row
    try:
        refused = None if refusal is None else refusal_from_json(refusal)
        return Submission(
            seq=int(seq),
            kind=SubmissionKind(kind),
            mission_id=mission_id,
            name=name,
            payload=json.loads(payload),
            submitted_at=datetime.fromisoformat(submitted_at),
            submitted_by=by,
            state=SubmissionState(state),
            decided_at=None if decided_at is None else datetime.fromisoformat(decided_at),
            refusal=refused,
            joined=joined,
        )
    except Exception as error:
        raise PersistenceError(
            f"submission {seq} cannot be read: its stored row is corrupt "
            f"({type(error).__name__}: {error})"
        ) from error
