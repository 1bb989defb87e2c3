"""The persistence protocol battery: the contract of :class:`PersistenceAdapter`, tested on the
adapter alone (no engine, no commander), the way trio's ``check_two_way_stream`` tests a
stream.

Every snapshot it stores is built by :func:`build_snapshot`, so that a change of the snapshot's
fields lands in one place.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, cast

import anyio
import attrs
import pytest

from mission_control.core import (
    CancelRequest,
    ErrorInfo,
    MissionSnapshot,
    MissionStatus,
    NodeRecord,
    NodeStatus,
    Pause,
    PersistenceError,
    TimelineEntry,
    TimelineKind,
    Wait,
    WaitKind,
)
from mission_control.core.storage import (
    DefinitionVersionStore,
    NewSignal,
    PersistenceAdapter,
    RevisionConflictError,
    detached,
)

T0 = datetime(2030, 1, 1, tzinfo=UTC)


def build_snapshot(
    mission_id: str,
    *,
    status: MissionStatus = MissionStatus.RUNNING,
    wait: Wait | None = None,
    revision: int = 1,
    **fields: Any,
) -> MissionSnapshot:
    """The one place the battery builds a :class:`MissionSnapshot`: a mission of the approval
    definition at ``revision``. Where it stands follows from ``status`` and ``wait``: a
    running mission is at its start node, a waiting one at ``wait``'s node, a finished one
    nowhere. ``fields`` sets any other field by name."""
    position = None if status.is_terminal else (wait.node if wait is not None else "start")
    values: dict[str, Any] = {
        "id": mission_id,
        "definition": "approval",
        "definition_version": 1,
        "status": status,
        "current_node": position,
        "active": () if position is None else (position,),
        "waits": () if wait is None else (wait,),
        "input": {"email": "a@example.com"},
        "created_at": T0,
        "updated_at": T0,
        "nodes": {"start": NodeRecord("start", "start", NodeStatus.RUNNING, started_at=T0)},
        "revision": revision,
    }
    return MissionSnapshot(**(values | fields))


def build_waiting(mission_id: str, due: datetime | None, revision: int = 1) -> MissionSnapshot:
    """A mission waiting for a timer due at ``due``, or for a signal when ``due`` is None."""
    wait = (
        Wait(WaitKind.TIMER, "pause", due_at=due)
        if due is not None
        else Wait(WaitKind.SIGNAL, "receive-approval", signal="receive-approval")
    )
    return build_snapshot(mission_id, status=MissionStatus.WAITING, wait=wait, revision=revision)


def build_completed(mission_id: str, revision: int) -> MissionSnapshot:
    return build_snapshot(mission_id, status=MissionStatus.COMPLETED, revision=revision)


def _entry(node: str, kind: TimelineKind = TimelineKind.STEP_COMPLETED) -> TimelineEntry:
    """A timeline entry told apart from the others by ``node``."""
    return TimelineEntry(T0, kind, node=node)


_TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "app.py", line 3, in send\n'
    "    raise TransientError('boom')\n"
    "TransientError: boom \u00e9\n"
)


class PersistenceProtocolConformance:
    """The persistence protocol battery: tests of the :class:`PersistenceAdapter` contract
    itself, calling the adapter directly. Subclass it and provide ``persistence``."""

    @pytest.fixture
    def persistence(self) -> PersistenceAdapter:
        raise NotImplementedError("subclasses of the conformance suite provide this fixture")

    async def _stored(self, persistence: PersistenceAdapter, mission_id: str) -> tuple[Any, ...]:
        """Everything stored for a mission: snapshot, timeline and its oldest buffered signal
        of each name the battery uses."""
        return (
            await persistence.load(mission_id),
            await persistence.timeline(mission_id),
            await persistence.next_signal(mission_id, "receive-approval"),
            await persistence.next_signal(mission_id, "other"),
        )

    # -- insert and load ----------------------------------------------------------------------

    async def test_insert_then_load_round_trips_the_snapshot(
        self, persistence: PersistenceAdapter
    ) -> None:
        """A stored snapshot loads back equal, nested records and datetimes included."""
        snapshot = build_snapshot(
            "m-1",
            status=MissionStatus.WAITING,
            wait=Wait(WaitKind.RETRY, "send", due_at=T0 + timedelta(1)),
            nodes={
                "start": NodeRecord(
                    "start",
                    "start",
                    NodeStatus.COMPLETED,
                    1,
                    input={"a": [1, 2.5, None]},
                    output={"nested": {"x": True}},
                    started_at=T0,
                    finished_at=T0,
                ),
                "send": NodeRecord(
                    "send",
                    "step",
                    NodeStatus.WAITING,
                    2,
                    error=ErrorInfo("TransientError", "boom", 2, traceback=_TRACEBACK),
                    due_at=T0 + timedelta(1),
                ),
            },
        )
        assert (
            await persistence.insert(snapshot, [TimelineEntry(T0, TimelineKind.MISSION_STARTED)])
            is None
        )
        assert await persistence.load("m-1") == snapshot
        assert await persistence.load("missing") is None

    async def test_the_recovery_count_round_trips_running_and_finished(
        self, persistence: PersistenceAdapter
    ) -> None:
        """A snapshot's recovery_attempts loads back as stored, running and once finished."""
        running = build_snapshot("m-1", recovery_attempts=2)
        assert await persistence.insert(running, []) is None
        assert await persistence.load("m-1") == running
        failed = build_snapshot(
            "m-1",
            status=MissionStatus.FAILED,
            error=ErrorInfo("RecoveryAttemptsExceededError", "left running", 1, _TRACEBACK),
            recovery_attempts=6,
            revision=2,
        )
        await persistence.commit(failed, expected_revision=1, timeline=[])
        assert await persistence.load("m-1") == failed

    async def test_insert_of_an_existing_id_returns_it_and_stores_nothing(
        self, persistence: PersistenceAdapter
    ) -> None:
        """Inserting an id that exists returns the stored mission (its cancellation request
        included) and changes nothing."""
        await persistence.insert(build_snapshot("m-1"), [_entry("first")])
        await persistence.request_cancel("m-1", CancelRequest(T0, "stop"), [])
        before = await self._stored(persistence, "m-1")
        other = build_snapshot("m-1", input={"email": "other@example.com"}, revision=5)
        existing = await persistence.insert(other, [_entry("second")])
        assert existing == before[0]
        assert await self._stored(persistence, "m-1") == before

    # -- commit: a compare-and-set on the revision --------------------------------------------

    async def test_two_commits_expecting_the_same_revision_one_wins(
        self, persistence: PersistenceAdapter
    ) -> None:
        """Of two concurrent commits expecting the same revision one is stored; the other raises
        RevisionConflictError and stores nothing (its timeline entries, its consumed signal)."""
        await persistence.insert(build_waiting("m-1", None), [_entry("inserted")])
        signal = await persistence.append_signal("m-1", "receive-approval", {"n": 1}, T0, [])
        by_a = build_snapshot("m-1", revision=2, output="a")
        by_b = build_snapshot("m-1", revision=2, output="b")
        outcomes: dict[str, BaseException | None] = {}

        async def commit(name: str, snapshot: MissionSnapshot, consumed: int | None) -> None:
            try:
                await persistence.commit(
                    snapshot, expected_revision=1, timeline=[_entry(name)], consumed_signal=consumed
                )
            except RevisionConflictError as conflict:
                outcomes[name] = conflict
            else:
                outcomes[name] = None

        async with anyio.create_task_group() as task_group:
            task_group.start_soon(commit, "a", by_a, signal.seq)
            task_group.start_soon(commit, "b", by_b, None)
        winners = [name for name, raised in outcomes.items() if raised is None]
        assert len(winners) == 1, outcomes
        winner = winners[0]
        assert await persistence.load("m-1") == (by_a if winner == "a" else by_b)
        assert await persistence.timeline("m-1") == [_entry("inserted"), _entry(winner)]
        # The signal is consumed only by a's commit, so only when a won.
        left = await persistence.next_signal("m-1", "receive-approval")
        assert left == (None if winner == "a" else signal)

    async def test_a_commit_off_the_stored_revision_raises_and_stores_nothing(
        self, persistence: PersistenceAdapter
    ) -> None:
        """A commit expecting a revision other than the stored one, carrying a revision other
        than expected + 1, or for a mission that does not exist raises RevisionConflictError and
        stores nothing."""
        await persistence.insert(build_waiting("m-1", None), [_entry("inserted")])
        await persistence.commit(
            build_snapshot("m-1", revision=2), expected_revision=1, timeline=[]
        )
        signal = await persistence.append_signal("m-1", "receive-approval", None, T0, [])
        before = await self._stored(persistence, "m-1")
        changed = build_completed("m-1", revision=3)
        bad_commits = [
            (attrs.evolve(changed, revision=2), 1),  # stale: the mission is at 2
            (attrs.evolve(changed, revision=4), 3),  # ahead of the stored revision
            (attrs.evolve(changed, revision=4), 2),  # skips a revision
            (attrs.evolve(changed, revision=2), 2),  # does not move the revision
        ]
        for snapshot, expected in bad_commits:
            with pytest.raises(RevisionConflictError):
                await persistence.commit(
                    snapshot,
                    expected_revision=expected,
                    timeline=[_entry("conflict")],
                    consumed_signal=signal.seq,
                )
            assert await self._stored(persistence, "m-1") == before
        with pytest.raises(RevisionConflictError):
            await persistence.commit(build_completed("ghost", 2), expected_revision=1, timeline=[])
        assert await persistence.load("ghost") is None
        assert await persistence.timeline("ghost") == []

    # -- the signal inbox ---------------------------------------------------------------------

    async def test_next_signal_is_the_oldest_buffered_one_of_that_name(
        self, persistence: PersistenceAdapter
    ) -> None:
        """next_signal returns the oldest buffered signal of a name, with its payload and
        receive time, whatever other names were buffered between; none for a name or mission
        with none."""
        await persistence.insert(build_snapshot("m-1"), [])
        await persistence.insert(build_snapshot("m-2"), [])
        received = T0 + timedelta(seconds=5, microseconds=7)
        await persistence.append_signal("m-1", "other", True, T0, [])
        first = await persistence.append_signal("m-1", "go", {"a": [1, 2.5, None]}, received, [])
        await persistence.append_signal("m-2", "go", "another mission's", T0, [])
        second = await persistence.append_signal("m-1", "go", "second", T0, [])
        assert (first.name, first.payload, first.received_at) == (
            "go",
            {"a": [1, 2.5, None]},
            received,
        )
        assert second.seq > first.seq
        assert await persistence.next_signal("m-1", "go") == first
        await persistence.commit(
            build_snapshot("m-1", revision=2),
            expected_revision=1,
            timeline=[],
            consumed_signal=first.seq,
        )
        assert await persistence.next_signal("m-1", "go") == second
        assert await persistence.next_signal("m-1", "missing") is None
        assert await persistence.next_signal("ghost", "go") is None

    async def test_a_consumed_signal_leaves_the_inbox_in_its_commit_or_nothing_is_stored(
        self, persistence: PersistenceAdapter
    ) -> None:
        """A commit deletes the signal it consumed; a commit consuming a signal the mission does
        not have buffered (consumed already, never sent, another mission's) raises
        RevisionConflictError and stores nothing."""
        await persistence.insert(build_waiting("m-1", None), [])
        await persistence.insert(build_waiting("m-2", None), [])
        first = await persistence.append_signal("m-1", "receive-approval", {"n": 1}, T0, [])
        second = await persistence.append_signal("m-1", "receive-approval", {"n": 2}, T0, [])
        elsewhere = await persistence.append_signal("m-2", "receive-approval", {"n": 3}, T0, [])
        await persistence.commit(
            build_snapshot("m-1", revision=2),
            expected_revision=1,
            timeline=[],
            consumed_signal=first.seq,
        )
        assert await persistence.next_signal("m-1", "receive-approval") == second
        before = await self._stored(persistence, "m-1")
        unknown = max(second.seq, elsewhere.seq) + 99
        for seq in (first.seq, unknown, elsewhere.seq):
            with pytest.raises(RevisionConflictError):
                await persistence.commit(
                    build_snapshot("m-1", revision=3),
                    expected_revision=2,
                    timeline=[_entry("consumed")],
                    consumed_signal=seq,
                )
            assert await self._stored(persistence, "m-1") == before
        assert await persistence.next_signal("m-2", "receive-approval") == elsewhere

    async def test_writes_for_an_unknown_mission_raise_and_store_nothing(
        self, persistence: PersistenceAdapter
    ) -> None:
        """Buffering a signal for, cancelling or pausing a mission that does not exist raises
        PersistenceError and stores nothing."""
        with pytest.raises(PersistenceError):
            await persistence.append_signal("ghost", "go", None, T0, [_entry("signal")])
        with pytest.raises(PersistenceError):
            await persistence.request_cancel("ghost", CancelRequest(T0), [_entry("cancel")])
        with pytest.raises(PersistenceError):
            await persistence.request_pause("ghost", Pause(T0), [_entry("pause")])
        assert await persistence.load("ghost") is None
        assert await persistence.timeline("ghost") == []
        assert await persistence.next_signal("ghost", "go") is None

    # -- signals stored with a new mission ------------------------------------------------------

    async def test_an_insert_stores_the_mission_with_its_signals_in_one_write(
        self, persistence: PersistenceAdapter
    ) -> None:
        """insert(signals=...) stores the new mission with its signals buffered in the order
        given, after every signal buffered before; each is then consumed as any buffered one."""
        await persistence.insert(build_snapshot("m-0"), [])
        earlier = await persistence.append_signal("m-0", "receive-approval", None, T0, [])
        later = T0 + timedelta(seconds=1)
        snapshot = build_waiting("m-1", None)
        signals = [
            NewSignal("receive-approval", {"n": 1}, T0),
            NewSignal("other", [1, "two"], later),
            NewSignal("receive-approval", {"n": 2}, later),
        ]
        assert await persistence.insert(snapshot, [_entry("inserted")], signals=signals) is None
        assert await persistence.load("m-1") == snapshot
        assert [entry.node for entry in await persistence.timeline("m-1")] == ["inserted"]
        first = await persistence.next_signal("m-1", "receive-approval")
        assert first is not None
        assert (first.name, first.payload, first.received_at) == ("receive-approval", {"n": 1}, T0)
        assert first.seq > earlier.seq
        await persistence.commit(
            build_waiting("m-1", None, revision=2),
            expected_revision=1,
            timeline=[],
            consumed_signal=first.seq,
        )
        second = await persistence.next_signal("m-1", "receive-approval")
        assert second is not None
        assert (second.payload, second.received_at) == ({"n": 2}, later)
        assert second.seq > first.seq
        other = await persistence.next_signal("m-1", "other")
        assert other is not None
        assert (other.payload, other.received_at) == ([1, "two"], later)
        assert first.seq < other.seq < second.seq
        assert await persistence.next_signal("m-0", "other") is None

    async def test_an_insert_of_an_existing_id_stores_none_of_its_signals(
        self, persistence: PersistenceAdapter
    ) -> None:
        """An insert of an id that exists returns the stored mission and buffers none of the
        signals it carries."""
        await persistence.insert(build_snapshot("m-1"), [_entry("first")])
        before = await self._stored(persistence, "m-1")
        again = [NewSignal("receive-approval", "again", T0), NewSignal("other", "too", T0)]
        existing = await persistence.insert(build_snapshot("m-1"), [_entry("again")], signals=again)
        assert existing == before[0]
        assert await self._stored(persistence, "m-1") == before

    # -- cancellation requests ----------------------------------------------------------------

    async def test_a_cancel_request_is_kept_and_never_replaced(
        self, persistence: PersistenceAdapter
    ) -> None:
        """request_cancel keeps the revision; the first request stands against a second
        request_cancel, a commit carrying none and a commit carrying another, on load and in
        list_missions."""
        await persistence.insert(build_snapshot("m-1"), [])
        request = CancelRequest(T0, "not needed")
        await persistence.request_cancel("m-1", request, [])
        loaded = await persistence.load("m-1")
        assert loaded is not None
        assert (loaded.cancel_request, loaded.revision) == (request, 1)
        await persistence.request_cancel("m-1", CancelRequest(T0 + timedelta(1), "second"), [])
        await persistence.commit(
            build_snapshot("m-1", revision=2), expected_revision=1, timeline=[]
        )
        carrying_another = build_snapshot(
            "m-1",
            status=MissionStatus.CANCELLED,
            cancel_request=CancelRequest(T0 + timedelta(2), "third"),
            revision=3,
        )
        await persistence.commit(carrying_another, expected_revision=2, timeline=[])
        kept = attrs.evolve(carrying_another, cancel_request=request)
        assert await persistence.load("m-1") == kept
        assert await persistence.list_missions(limit=10) == [kept]

    async def test_a_committed_cancel_request_is_stored_when_none_was(
        self, persistence: PersistenceAdapter
    ) -> None:
        """A committed snapshot carrying a cancellation request stores it when the mission had
        none."""
        await persistence.insert(build_snapshot("m-1"), [])
        cancelled = build_snapshot(
            "m-1",
            status=MissionStatus.CANCELLED,
            cancel_request=CancelRequest(T0, "by the engine"),
            revision=2,
        )
        await persistence.commit(cancelled, expected_revision=1, timeline=[])
        assert await persistence.load("m-1") == cancelled

    async def test_a_reopening_commit_replaces_the_cancel_request(
        self, persistence: PersistenceAdapter
    ) -> None:
        """A commit with reopened=True (a retry) stores the snapshot's cancellation request in
        place of the stored one: none clears it, and a later request stands again."""
        await persistence.insert(build_snapshot("m-1"), [])
        await persistence.request_cancel("m-1", CancelRequest(T0, "first"), [])
        cancelled = build_snapshot("m-1", status=MissionStatus.CANCELLED, revision=2)
        await persistence.commit(cancelled, expected_revision=1, timeline=[])
        reopened = build_snapshot("m-1", revision=3)
        await persistence.commit(reopened, expected_revision=2, timeline=[], reopened=True)
        assert await persistence.load("m-1") == reopened
        again = CancelRequest(T0 + timedelta(1), "again")
        await persistence.request_cancel("m-1", again, [])
        loaded = await persistence.load("m-1")
        assert loaded is not None
        assert loaded.cancel_request == again

    # -- pause requests -------------------------------------------------------------------------

    async def test_a_pause_request_is_kept_by_commits_until_one_pauses_the_mission(
        self, persistence: PersistenceAdapter
    ) -> None:
        """request_pause keeps the revision and appends its entries; load and list_missions
        return the request; a commit of a running or waiting snapshot keeps it, whether that
        snapshot carries none or another; a second request replaces it; the commit of a paused
        snapshot clears it."""
        await persistence.insert(build_snapshot("m-1"), [_entry("inserted")])
        request = Pause(T0, "ops")
        await persistence.request_pause("m-1", request, [_entry("asked")])
        loaded = await persistence.load("m-1")
        assert loaded is not None
        assert (loaded.pause_request, loaded.revision) == (request, 1)
        assert [e.node for e in await persistence.timeline("m-1")] == ["inserted", "asked"]
        await persistence.commit(
            build_snapshot("m-1", revision=2), expected_revision=1, timeline=[]
        )
        carrying_another = build_waiting("m-1", None, revision=3)
        carrying_another = attrs.evolve(
            carrying_another, pause_request=Pause(T0 + timedelta(1), "other")
        )
        await persistence.commit(carrying_another, expected_revision=2, timeline=[])
        kept = attrs.evolve(carrying_another, pause_request=request)
        assert await persistence.load("m-1") == kept
        assert await persistence.list_missions(limit=10) == [kept]
        second = Pause(T0 + timedelta(2), "second")
        await persistence.request_pause("m-1", second, [])
        assert await persistence.list_missions(limit=10) == [
            attrs.evolve(carrying_another, pause_request=second)
        ]
        paused = build_waiting("m-1", None, revision=4)
        paused = attrs.evolve(paused, status=MissionStatus.PAUSED, pause=second)
        await persistence.commit(paused, expected_revision=3, timeline=[])
        assert await persistence.load("m-1") == paused

    async def test_a_pause_request_is_withdrawn_by_none_and_cleared_by_an_end(
        self, persistence: PersistenceAdapter
    ) -> None:
        """request_pause with None withdraws the stored request (its entries appended); the
        commit of a finished snapshot clears it; an insert stores none."""
        inserted = attrs.evolve(build_snapshot("m-1"), pause_request=Pause(T0))
        await persistence.insert(inserted, [])
        assert await persistence.load("m-1") == build_snapshot("m-1")
        await persistence.request_pause("m-1", Pause(T0, "first"), [])
        await persistence.request_pause("m-1", None, [_entry("withdrawn")])
        assert await persistence.load("m-1") == build_snapshot("m-1")
        assert [e.node for e in await persistence.timeline("m-1")] == ["withdrawn"]
        await persistence.request_pause("m-1", Pause(T0, "again"), [])
        await persistence.commit(build_completed("m-1", 2), expected_revision=1, timeline=[])
        assert await persistence.load("m-1") == build_completed("m-1", 2)

    async def test_a_pause_request_for_a_paused_or_finished_mission_stores_nothing(
        self, persistence: PersistenceAdapter
    ) -> None:
        """request_pause (and its withdrawal) for a mission stored paused or finished stores
        nothing, neither the request nor its timeline entries."""
        paused = attrs.evolve(
            build_waiting("m-1", None), status=MissionStatus.PAUSED, pause=Pause(T0)
        )
        await persistence.insert(paused, [])
        await persistence.insert(build_completed("m-2", 1), [])
        for mission_id in ("m-1", "m-2"):
            before = await self._stored(persistence, mission_id)
            await persistence.request_pause(mission_id, Pause(T0, "late"), [_entry("late")])
            await persistence.request_pause(mission_id, None, [_entry("withdrawn")])
            assert await self._stored(persistence, mission_id) == before

    # -- deleting ------------------------------------------------------------------------------

    async def test_delete_missions_removes_finished_missions_at_their_revision_only(
        self, persistence: PersistenceAdapter
    ) -> None:
        """delete_missions deletes, with their timelines and inboxes, the finished missions
        still at the revision given; a running one, one at another revision and an unknown id
        stay, and the ids deleted are returned in the order given."""
        for mission_id in ("done-1", "done-2", "moved"):
            await persistence.insert(build_snapshot(mission_id), [_entry("start")])
            await persistence.append_signal(mission_id, "receive-approval", 1, T0, [])
            await persistence.commit(
                build_completed(mission_id, 2), expected_revision=1, timeline=[_entry("end")]
            )
        await persistence.insert(build_snapshot("running"), [])
        moved = await self._stored(persistence, "moved")
        running = await self._stored(persistence, "running")

        deleted = await persistence.delete_missions(
            {"done-2": 2, "running": 1, "moved": 1, "nobody": 1, "done-1": 2}
        )

        assert deleted == ["done-2", "done-1"]
        for mission_id in deleted:
            assert await self._stored(persistence, mission_id) == (None, [], None, None)
        assert await self._stored(persistence, "moved") == moved
        assert await self._stored(persistence, "running") == running
        assert [s.id for s in await persistence.list_missions(limit=10)] == ["moved", "running"]
        assert await persistence.delete_missions({}) == []

    # -- the timeline -------------------------------------------------------------------------

    async def test_the_timeline_keeps_write_order_with_signals_and_cancels_between_commits(
        self, persistence: PersistenceAdapter
    ) -> None:
        """Entries written by insert, commit, append_signal, request_cancel and request_pause,
        several per write or none, come back in the order they were written, each mission's
        apart."""
        names = iter(f"n{i:02}" for i in range(100))

        def entries(count: int) -> list[TimelineEntry]:
            return [_entry(next(names)) for _ in range(count)]

        await persistence.insert(build_snapshot("m-1"), entries(2))
        await persistence.insert(build_snapshot("m-2"), [_entry("other mission")])
        await persistence.append_signal("m-1", "go", None, T0, entries(1))
        await persistence.request_cancel("m-1", CancelRequest(T0), entries(2))
        await persistence.request_pause("m-1", Pause(T0), entries(1))
        await persistence.append_signal("m-1", "go", None, T0, entries(1))
        await persistence.commit(
            build_snapshot("m-1", revision=2), expected_revision=1, timeline=entries(3)
        )
        await persistence.append_signal("m-2", "go", None, T0, [_entry("other signal")])
        await persistence.append_signal("m-1", "go", None, T0, entries(1))
        await persistence.commit(
            build_snapshot("m-1", revision=3), expected_revision=2, timeline=entries(1)
        )
        await persistence.commit(
            build_snapshot("m-1", revision=4), expected_revision=3, timeline=[]
        )
        await persistence.append_signal("m-1", "go", None, T0, entries(2))
        await persistence.commit(
            build_completed("m-1", 5), expected_revision=4, timeline=entries(1)
        )
        timeline = await persistence.timeline("m-1")
        assert [entry.node for entry in timeline] == [f"n{i:02}" for i in range(15)]
        other = await persistence.timeline("m-2")
        assert [entry.node for entry in other] == ["other mission", "other signal"]
        assert await persistence.timeline("ghost") == []

    # -- values handed out --------------------------------------------------------------------

    async def _handed_out(self, persistence: PersistenceAdapter) -> list[MissionSnapshot]:
        """Two missions with lists and dicts in their values, one active and one finished, and
        every snapshot load, list_missions and insert hand out for them."""
        nodes = {
            "start": NodeRecord(
                "start", "start", NodeStatus.COMPLETED, 1, input={"in": [1]}, output={"out": [2]}
            )
        }
        for mission_id in ("active", "done"):
            await persistence.insert(
                build_snapshot(
                    mission_id,
                    input={"tags": ["a"]},
                    nodes=nodes,
                    progress={"stage": {"parcels": [1]}},
                ),
                [_entry("start")],
            )
        await persistence.commit(
            build_completed("done", 2),
            expected_revision=1,
            timeline=[TimelineEntry(T0, TimelineKind.MISSION_COMPLETED, detail={"d": [1]})],
        )
        handed: list[MissionSnapshot] = []
        for mission_id in ("active", "done"):
            loaded = await persistence.load(mission_id)
            assert loaded is not None
            existing = await persistence.insert(build_snapshot(mission_id), [])
            assert existing is not None
            handed += [loaded, existing]
        handed += await persistence.list_missions(limit=10)
        return handed

    @staticmethod
    def _scribble(snapshot: MissionSnapshot) -> None:
        """Change every list and dict in a snapshot, its nodes mapping included."""
        for value in (snapshot.input, snapshot.output, snapshot.progress):
            if isinstance(value, dict):
                cast("dict[str, Any]", value)["scribbled"] = True
        for record in snapshot.nodes.values():
            for value in (record.input, record.output):
                if isinstance(value, dict):
                    value["scribbled"] = True
        # Typed as a read-only Mapping, but a dict all the same.
        cast("dict[str, Any]", snapshot.nodes).clear()

    async def test_values_handed_out_are_the_callers_own(
        self, persistence: PersistenceAdapter
    ) -> None:
        """For an adapter without keeps_given_values, changing what load, list_missions, insert,
        timeline and next_signal returned (a snapshot's lists, dicts and nodes mapping, an
        entry's detail, a payload) changes nothing stored."""
        if getattr(persistence, "keeps_given_values", False):
            pytest.skip("this adapter keeps given values (see the next test)")
        handed = await self._handed_out(persistence)
        await persistence.append_signal("active", "go", {"p": [1]}, T0, [])
        signal = await persistence.next_signal("active", "go")
        stored = [await self._stored(persistence, i) for i in ("active", "done")]
        for snapshot in handed:
            self._scribble(snapshot)
        for entry in await persistence.timeline("done"):
            if entry.detail is not None:
                cast("dict[str, Any]", entry.detail)["scribbled"] = True
        assert signal is not None
        cast("dict[str, Any]", signal.payload)["scribbled"] = True
        assert [await self._stored(persistence, i) for i in ("active", "done")] == stored
        again = await persistence.next_signal("active", "go")
        assert again is not None
        assert again.payload == {"p": [1]}

    async def test_values_of_an_adapter_that_keeps_them_are_detached_by_copying(
        self, persistence: PersistenceAdapter
    ) -> None:
        """For an adapter with keeps_given_values, what load, list_missions and insert return
        equals what was stored, and ``storage.detached`` of it (what the commander hands out) is
        the caller's own: changing the copy changes nothing stored."""
        if not getattr(persistence, "keeps_given_values", False):
            pytest.skip("this adapter hands out values of the caller's own (see the last test)")
        handed = await self._handed_out(persistence)
        stored = [await self._stored(persistence, i) for i in ("active", "done")]
        by_id = {state[0].id: state[0] for state in stored}
        assert all(snapshot == by_id[snapshot.id] for snapshot in handed)
        for snapshot in handed:
            self._scribble(detached(snapshot))
        assert [await self._stored(persistence, i) for i in ("active", "done")] == stored

    async def test_lists_returned_are_the_callers_own(
        self, persistence: PersistenceAdapter
    ) -> None:
        """Changing a list a query returned (a timeline, a page of missions, due or running
        ids) changes nothing stored, whether or not the adapter keeps given values."""
        await persistence.insert(build_snapshot("m-1"), [_entry("start")])
        await persistence.insert(build_waiting("m-2", T0), [])
        results: list[list[Any]] = [
            await persistence.timeline("m-1"),
            await persistence.list_missions(limit=10),
            await persistence.due_missions(T0, 10),
            await persistence.running_missions(10),
        ]
        for result in results:
            result.clear()
        assert [entry.node for entry in await persistence.timeline("m-1")] == ["start"]
        assert [s.id for s in await persistence.list_missions(limit=10)] == ["m-1", "m-2"]
        assert await persistence.due_missions(T0, 10) == ["m-2"]
        assert await persistence.running_missions(10) == ["m-1"]

    # -- queries ------------------------------------------------------------------------------

    async def test_due_missions_are_the_waiting_ones_past_due_earliest_first(
        self, persistence: PersistenceAdapter
    ) -> None:
        """Due queries return waiting missions at or before now, earliest first, up to limit."""
        await persistence.insert(build_waiting("late", T0 + timedelta(seconds=30)), [])
        await persistence.insert(build_waiting("early", T0 + timedelta(seconds=10)), [])
        await persistence.insert(build_waiting("exact", T0 + timedelta(seconds=20)), [])
        await persistence.insert(build_waiting("future", T0 + timedelta(days=1)), [])
        await persistence.insert(build_waiting("signal", None), [])
        await persistence.insert(build_snapshot("running"), [])
        now = T0 + timedelta(seconds=30)
        assert await persistence.due_missions(now, 10) == ["early", "exact", "late"]
        assert await persistence.due_missions(now, 2) == ["early", "exact"]
        assert await persistence.due_missions(now, 0) == []
        assert await persistence.due_missions(T0, 10) == []
        assert await persistence.next_due_at() == T0 + timedelta(seconds=10)
        await persistence.commit(build_completed("early", 2), expected_revision=1, timeline=[])
        assert await persistence.due_missions(now, 10) == ["exact", "late"]
        assert await persistence.next_due_at() == T0 + timedelta(seconds=20)

    async def test_next_due_at_after_an_instant_is_the_first_due_time_later_than_it(
        self, persistence: PersistenceAdapter
    ) -> None:
        """next_due_at(after=...) skips due times at or before the instant, follows a due time
        that moved and forgets one that ended, so past due times never hide the next one."""
        for n in range(6):
            await persistence.insert(build_waiting(f"past-{n}", T0 + timedelta(seconds=n)), [])
        await persistence.insert(build_waiting("twin-a", T0 + timedelta(seconds=20)), [])
        await persistence.insert(build_waiting("twin-b", T0 + timedelta(seconds=20)), [])
        await persistence.insert(build_waiting("moves", T0 + timedelta(seconds=10)), [])
        await persistence.insert(build_waiting("far", T0 + timedelta(days=1)), [])
        await persistence.insert(build_waiting("signal", None), [])
        await persistence.insert(build_snapshot("running"), [])
        assert await persistence.next_due_at(after=T0 - timedelta(seconds=1)) == T0
        assert await persistence.next_due_at(after=T0 + timedelta(seconds=5)) == T0 + timedelta(
            seconds=10
        )
        assert await persistence.next_due_at(after=T0 + timedelta(seconds=10)) == T0 + timedelta(
            seconds=20
        )
        assert await persistence.next_due_at(after=T0 + timedelta(days=1)) is None
        await persistence.commit(
            build_waiting("moves", T0 + timedelta(seconds=15), revision=2),
            expected_revision=1,
            timeline=[],
        )
        assert await persistence.next_due_at(after=T0 + timedelta(seconds=5)) == T0 + timedelta(
            seconds=15
        )
        for twin in ("twin-a", "twin-b"):
            await persistence.commit(build_completed(twin, 2), expected_revision=1, timeline=[])
        assert await persistence.next_due_at(after=T0 + timedelta(seconds=15)) == T0 + timedelta(
            days=1
        )
        assert await persistence.next_due_at() == T0

    async def test_running_missions_are_found_by_status_and_paged_by_id(
        self, persistence: PersistenceAdapter
    ) -> None:
        """running_missions returns the ids of missions stored as running, by id after a
        cursor, up to limit; a mission leaves it when it stops running."""
        await persistence.insert(build_snapshot("b"), [])
        await persistence.insert(build_waiting("a", None), [])
        await persistence.insert(build_snapshot("d"), [])
        await persistence.insert(build_snapshot("c", definition="other"), [])
        assert await persistence.running_missions(10) == ["b", "c", "d"]
        assert await persistence.running_missions(2) == ["b", "c"]
        assert await persistence.running_missions(10, after_id="b") == ["c", "d"]
        assert await persistence.running_missions(0) == []
        await persistence.commit(
            build_waiting("c", None, revision=2), expected_revision=1, timeline=[]
        )
        await persistence.commit(build_snapshot("a", revision=2), expected_revision=1, timeline=[])
        assert await persistence.running_missions(10) == ["a", "b", "d"]

    async def test_running_missions_include_a_waiting_mission_with_a_pause_request(
        self, persistence: PersistenceAdapter
    ) -> None:
        """running_missions also returns, in id order and pages, a mission not running whose
        pause request is stored (one that reached a wait as the request was stored, left so by
        a process that stopped before it paused it), once, and no longer once the request is
        withdrawn or a commit pauses it."""
        for mission_id in ("a", "c", "e"):
            await persistence.insert(build_waiting(mission_id, None), [])
        await persistence.insert(build_snapshot("b"), [])
        await persistence.insert(build_snapshot("d"), [])
        await persistence.request_pause("c", Pause(T0, "ops"), [])
        await persistence.request_pause("d", Pause(T0, "ops"), [])
        await persistence.request_pause("e", Pause(T0, "ops"), [])
        assert await persistence.running_missions(10) == ["b", "c", "d", "e"]
        assert await persistence.running_missions(2) == ["b", "c"]
        assert await persistence.running_missions(2, after_id="c") == ["d", "e"]
        await persistence.request_pause("e", None, [])
        paused = attrs.evolve(
            build_waiting("c", None, revision=2), status=MissionStatus.PAUSED, pause=Pause(T0)
        )
        await persistence.commit(paused, expected_revision=1, timeline=[])
        assert await persistence.running_missions(10) == ["b", "d"]

    async def test_list_missions_filters_and_pages_by_id(
        self, persistence: PersistenceAdapter
    ) -> None:
        """list_missions orders by id, filters by status, definition or both, and pages with
        limit and after_id, filtered or not."""
        await persistence.insert(build_snapshot("b"), [])
        await persistence.insert(build_waiting("a", None), [])
        await persistence.insert(build_snapshot("c", definition="other"), [])
        await persistence.insert(build_waiting("d", None), [])
        await persistence.insert(build_snapshot("e", definition="other"), [])
        finished = build_snapshot(
            "e", status=MissionStatus.COMPLETED, definition="other", revision=2
        )
        await persistence.commit(finished, expected_revision=1, timeline=[])

        async def ids(**filters: Any) -> list[str]:
            return [s.id for s in await persistence.list_missions(**filters)]

        assert await ids(limit=100) == ["a", "b", "c", "d", "e"]
        assert await ids(limit=2) == ["a", "b"]
        assert await ids(limit=2, after_id="b") == ["c", "d"]
        assert await ids(limit=100, after_id="bb") == ["c", "d", "e"]
        assert await ids(limit=0) == []
        assert await ids(status=MissionStatus.RUNNING, limit=100) == ["b", "c"]
        assert await ids(status=MissionStatus.WAITING, limit=1, after_id="a") == ["d"]
        assert await ids(status=MissionStatus.COMPLETED, limit=100) == ["e"]
        assert await ids(definition="other", limit=100) == ["c", "e"]
        assert await ids(definition="other", limit=1, after_id="c") == ["e"]
        both = await ids(status=MissionStatus.RUNNING, definition="other", limit=100)
        assert both == ["c"]
        assert await ids(status=MissionStatus.FAILED, limit=100) == []
        page = await persistence.list_missions(limit=100)
        assert page == [await persistence.load(s.id) for s in page]

    # -- definition versions (DefinitionVersionStore) -----------------------------------------

    def _versions(self, persistence: PersistenceAdapter) -> DefinitionVersionStore:
        if not isinstance(persistence, DefinitionVersionStore):
            pytest.skip("the adapter keeps no definition fingerprints (no DefinitionVersionStore)")
        return persistence

    async def test_versions_in_use_are_those_of_unfinished_missions(
        self, persistence: PersistenceAdapter
    ) -> None:
        """versions_in_use lists each (definition, version) of running or waiting missions once,
        sorted; a version leaves it when its last mission ends, and missions_on_version gives a
        version's unfinished ids by id, up to limit."""
        store = self._versions(persistence)
        assert await store.versions_in_use() == []
        await persistence.insert(build_snapshot("c", definition_version=2), [])
        await persistence.insert(build_waiting("a", None), [])
        await persistence.insert(build_snapshot("b", definition_version=2), [])
        await persistence.insert(build_snapshot("d", definition="other", definition_version=7), [])
        await persistence.insert(build_completed("e", 1), [])
        assert await store.versions_in_use() == [("approval", 1), ("approval", 2), ("other", 7)]
        assert await store.missions_on_version("approval", 2, 10) == ["b", "c"]
        assert await store.missions_on_version("approval", 2, 1) == ["b"]
        assert await store.missions_on_version("approval", 2, 0) == []
        assert await store.missions_on_version("approval", 3, 10) == []
        await persistence.commit(build_completed("a", 2), expected_revision=1, timeline=[])
        failed = build_snapshot(
            "d", status=MissionStatus.FAILED, definition="other", definition_version=7, revision=2
        )
        await persistence.commit(failed, expected_revision=1, timeline=[])
        assert await store.versions_in_use() == [("approval", 2)]
        assert await store.missions_on_version("approval", 1, 10) == []

    async def test_fingerprints_are_recorded_once_per_version_and_replaced_whole(
        self, persistence: PersistenceAdapter
    ) -> None:
        """record_fingerprints stores one fingerprint per (definition, version), a later one
        replacing it, and fingerprints returns every one stored."""
        store = self._versions(persistence)
        assert await store.fingerprints() == {}
        await store.record_fingerprints({("approval", 1): "1:aa", ("approval", 2): "1:bb"})
        await store.record_fingerprints({})
        await store.record_fingerprints({("approval", 2): "1:cc", ("other", 1): "1:dd"})
        assert await store.fingerprints() == {
            ("approval", 1): "1:aa",
            ("approval", 2): "1:cc",
            ("other", 1): "1:dd",
        }

    # -- closing ------------------------------------------------------------------------------

    async def test_every_method_after_aclose_raises_persistence_error(
        self, persistence: PersistenceAdapter
    ) -> None:
        """After aclose (which may be called again) every other method raises
        PersistenceError."""
        await persistence.insert(build_snapshot("m-1"), [])
        await persistence.aclose()
        await persistence.aclose()
        calls: list[Any] = [
            persistence.insert(build_snapshot("m-2"), []),
            persistence.load("m-1"),
            persistence.commit(build_snapshot("m-1", revision=2), expected_revision=1, timeline=[]),
            persistence.insert(build_snapshot("m-3"), [], signals=[NewSignal("go", None, T0)]),
            persistence.append_signal("m-1", "go", None, T0, []),
            persistence.next_signal("m-1", "go"),
            persistence.request_cancel("m-1", CancelRequest(T0), []),
            persistence.request_pause("m-1", Pause(T0), []),
            persistence.list_missions(limit=10),
            persistence.due_missions(T0, 10),
            persistence.next_due_at(),
            persistence.next_due_at(after=T0),
            persistence.running_missions(10),
            persistence.timeline("m-1"),
            persistence.delete_missions({"m-1": 1}),
        ]
        if isinstance(persistence, DefinitionVersionStore):
            calls += [
                persistence.versions_in_use(),
                persistence.missions_on_version("approval", 1, 10),
                persistence.fingerprints(),
                persistence.record_fingerprints({("approval", 1): "1:aa"}),
            ]
        for call in calls:
            with pytest.raises(PersistenceError):
                await call
