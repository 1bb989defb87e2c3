"""The submissions table: its statements, and a stored row as a :class:`Submission`.

A submission is work for the runtime that owns its mission's shard (any runtime of an unsharded
schema): a start, signal, cancellation or retry handed over by a process that does not run the
mission. The owner marks it applied in the transaction of the write that applies it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Final

from psycopg.rows import TupleRow

from mission_control.core import (
    PersistenceError,
    Submission,
    SubmissionKind,
    SubmissionState,
)
from mission_control.core.storage import (
    NewSubmission,
    refusal_from_json,
    submission_payload_json,
)

INSERT: Final = (
    "INSERT INTO submissions (kind, mission_id, name, payload, submitted_at, submitted_by) "
    "VALUES (%s, %s, %s, %s::jsonb, %s, %s) RETURNING seq"
)
_COLUMNS: Final = (
    "seq, kind, mission_id, name, payload::text, submitted_at, submitted_by, state, "
    "decided_at, refusal::text, joined"
)
LOAD: Final = f"SELECT {_COLUMNS} FROM submissions WHERE seq = %s"
# ``state = 'pending'`` matches the partial index submissions_pending.
PENDING: Final = f"SELECT {_COLUMNS} FROM submissions WHERE state = 'pending' ORDER BY seq LIMIT %s"
PENDING_ON: Final = (
    f"SELECT {_COLUMNS} FROM submissions WHERE shard = ANY(%s) AND state = 'pending' "
    "ORDER BY seq LIMIT %s"
)
ANY_PENDING: Final = "SELECT 1 FROM submissions WHERE state = 'pending' LIMIT 1"
ANY_PENDING_ON: Final = (
    "SELECT 1 FROM submissions WHERE shard = ANY(%s) AND state = 'pending' LIMIT 1"
)
MISSION_OF: Final = "SELECT mission_id FROM submissions WHERE seq = %s"
MARK_APPLIED: Final = (
    "UPDATE submissions SET state = 'applied', decided_at = %s WHERE seq = %s AND state = 'pending'"
)
APPLY_JOINED: Final = (
    "UPDATE submissions SET state = 'applied', decided_at = %s, joined = %s "
    "WHERE seq = %s AND state = 'pending'"
)
# The last parameter overrides an application's own mark: a refused signal may have been
# preceded by a write of the same call (an orphaned child cancelled before its signal was
# refused); no other decision is ever changed.
REFUSE: Final = (
    "UPDATE submissions SET state = 'refused', decided_at = %s, refusal = %s::jsonb "
    "WHERE seq = %s AND (state = 'pending' OR %s)"
)
_DECIDED_BEFORE: Final = "state <> 'pending' AND decided_at < %s"
PURGE: Final = (
    "DELETE FROM submissions WHERE seq IN "
    f"(SELECT seq FROM submissions WHERE {_DECIDED_BEFORE} ORDER BY seq LIMIT %s)"
)
COUNT_DECIDED: Final = f"SELECT count(*) FROM submissions WHERE {_DECIDED_BEFORE}"
COUNT_FAILURE: Final = (
    "UPDATE submissions SET failures = failures + 1 WHERE seq = %s RETURNING failures"
)


def submission_row(submission: NewSubmission) -> tuple[Any, ...]:
    """The row of a new submission, made before its transaction begins (a payload that cannot
    be stored raises then, with nothing stored)."""
    submitted_at = submission.submitted_at
    if submitted_at.utcoffset() is None:
        raise ValueError(f"submitted_at must be a timezone-aware datetime, got {submitted_at!r}")
    return (
        str(submission.kind),
        submission.mission_id,
        submission.name,
        submission_payload_json(submission),
        submitted_at,
        submission.submitted_by,
    )


def submission_from_row(row: TupleRow) -> Submission:
    seq, kind, mission_id, name, payload, submitted_at, by, state, decided_at, refusal, joined = row
    try:
        refused = None if refusal is None else refusal_from_json(refusal)
        return Submission(
            seq=int(seq),
            kind=SubmissionKind(kind),
            mission_id=str(mission_id),
            name=name,
            payload=json.loads(payload),
            submitted_at=submitted_at.astimezone(UTC),
            submitted_by=str(by),
            state=SubmissionState(state),
            decided_at=None if decided_at is None else decided_at.astimezone(UTC),
            refusal=refused,
            joined=joined,
        )
    except Exception as error:
        raise PersistenceError(
            f"submission {seq} cannot be read: its stored row is corrupt "
            f"({type(error).__name__}: {error})"
        ) from error


def decided_at(when: datetime) -> datetime:
    if when.utcoffset() is None:
        raise ValueError(f"decided_at must be a timezone-aware datetime, got {when!r}")
    return when
