"""The in-memory adapter beyond the shared conformance suite: finished missions are stored
packed and read back as they were written."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import attrs
import pytest

from mission_control.core import (
    CancelRequest,
    ErrorInfo,
    MissionSnapshot,
    MissionStatus,
    NodeRecord,
    NodeStatus,
    TimelineEntry,
    TimelineKind,
    Wait,
    WaitKind,
)
from mission_control.core.storage import RevisionConflictError
from mission_control.in_memory_commander import InMemoryPersistenceAdapter

pytestmark = pytest.mark.anyio

T0 = datetime(2030, 1, 1, tzinfo=UTC)


def _finished(status: MissionStatus) -> MissionSnapshot:
    failure = ErrorInfo("Boom", "it broke", 2)
    return MissionSnapshot(
        "m-1",
        "flow",
        3,
        status,
        "call",
        {"email": "a@example.com", "tags": ["x", "y"]},
        T0,
        T0 + timedelta(seconds=5),
        {
            "start": NodeRecord(
                "start", "start", NodeStatus.COMPLETED, 1, {"n": 1}, {"ok": True}, None, T0, T0
            ),
            "call": NodeRecord(
                "call",
                "step",
                NodeStatus.FAILED,
                2,
                error=failure,
                started_at=T0,
                finished_at=T0 + timedelta(seconds=5),
                due_at=T0 + timedelta(seconds=3),
            ),
        },
        waits=(Wait(WaitKind.RETRY, "call", None, T0 + timedelta(seconds=3)),),
        output=[1, 2.5, None],
        error=failure,
        revision=4,
    )


async def test_a_finished_mission_reads_back_equal_to_what_was_written() -> None:
    """Every field of a completed, failed or cancelled mission survives being stored packed."""
    for status in (MissionStatus.COMPLETED, MissionStatus.FAILED, MissionStatus.CANCELLED):
        adapter = InMemoryPersistenceAdapter()
        written = _finished(status)
        await adapter.insert(written, [])
        assert await adapter.load("m-1") == written
        listed = await adapter.list_missions(status=status, definition="flow", limit=100)
        assert listed == [written]
        assert await adapter.list_missions(status=MissionStatus.RUNNING, limit=100) == []


async def test_a_finished_mission_reads_back_with_its_cancellation_request() -> None:
    """The cancellation request of a finished mission is read back with it."""
    adapter = InMemoryPersistenceAdapter()
    request = CancelRequest(T0, "no longer needed")
    running = attrs.evolve(_finished(MissionStatus.RUNNING), revision=1)
    await adapter.insert(running, [])
    await adapter.request_cancel("m-1", request, [])
    cancelled = attrs.evolve(running, status=MissionStatus.CANCELLED, revision=2)
    await adapter.commit(cancelled, expected_revision=1, timeline=[])
    assert await adapter.load("m-1") == attrs.evolve(cancelled, cancel_request=request)


async def test_a_conflicting_commit_to_a_finished_mission_changes_nothing() -> None:
    """A commit against a finished (packed) mission with a stale revision raises
    RevisionConflictError, and the mission and its timeline read back as before."""
    adapter = InMemoryPersistenceAdapter()
    written = _finished(MissionStatus.COMPLETED)
    entries = [TimelineEntry(T0, TimelineKind.MISSION_COMPLETED, "end")]
    await adapter.insert(written, entries)
    with pytest.raises(RevisionConflictError, match="is at revision 4"):
        await adapter.commit(
            attrs.evolve(written, revision=4, status=MissionStatus.FAILED),
            expected_revision=3,
            timeline=entries,
        )
    assert await adapter.load("m-1") == written
    assert await adapter.timeline("m-1") == entries
