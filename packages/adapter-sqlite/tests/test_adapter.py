"""The adapter's own contract beyond the shared conformance suite: atomic writes that store
nothing on failure, the cancellation column, indexed queries and its lifecycle."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import apsw
import attrs
import pytest

from mission_control.adapter_sqlite import (
    SQLitePersistenceAdapter,
    create_sqlite_persistence_adapter,
)
from mission_control.core import (
    CancelRequest,
    ConfigurationError,
    MissionSnapshot,
    MissionStatus,
    PersistenceError,
    TimelineEntry,
)
from mission_control.core.storage import PersistenceAdapter, RevisionConflictError

pytestmark = pytest.mark.anyio

START = datetime.fromisoformat("2030-01-01T00:00:00+00:00")
Make = Callable[..., MissionSnapshot]
Entry = Callable[..., TimelineEntry]
Dump = Callable[[Path], dict[str, list[tuple[Any, ...]]]]


async def test_the_adapter_satisfies_the_persistence_protocol(
    adapter: SQLitePersistenceAdapter,
) -> None:
    """The SQLite adapter is a ``PersistenceAdapter`` as core defines it."""
    assert isinstance(adapter, PersistenceAdapter)


async def test_a_conflicting_commit_stores_nothing(
    adapter: SQLitePersistenceAdapter,
    db_path: Path,
    make_snapshot: Make,
    make_entry: Entry,
    dump: Dump,
) -> None:
    """A commit expecting a stale revision raises ``RevisionConflictError`` and leaves the
    mission, its timeline and its inbox exactly as they were."""
    await adapter.insert(make_snapshot("m"), [make_entry()])
    await adapter.commit(make_snapshot("m", revision=2), expected_revision=1, timeline=[])
    await adapter.append_signal("m", "go", {"x": 1}, START, [])
    before = dump(db_path)

    stale = make_snapshot("m", revision=2, status=MissionStatus.COMPLETED)
    with pytest.raises(RevisionConflictError, match="at revision 2, the commit expected 1"):
        await adapter.commit(stale, expected_revision=1, timeline=[make_entry()])
    with pytest.raises(RevisionConflictError, match="must carry revision 3"):
        await adapter.commit(stale, expected_revision=2, timeline=[make_entry()])
    with pytest.raises(RevisionConflictError, match="does not exist"):
        await adapter.commit(make_snapshot("other", revision=2), expected_revision=1, timeline=[])

    assert dump(db_path) == before


async def test_a_commit_consuming_a_missing_signal_is_rolled_back(
    adapter: SQLitePersistenceAdapter,
    db_path: Path,
    make_snapshot: Make,
    make_entry: Entry,
    dump: Dump,
) -> None:
    """When the consumed signal is not in the inbox the whole commit, mission update included,
    is rolled back."""
    await adapter.insert(make_snapshot("m", status=MissionStatus.WAITING, signal="go"), [])
    signal = await adapter.append_signal("m", "go", None, START, [])
    await adapter.insert(make_snapshot("other"), [])
    other = await adapter.append_signal("other", "go", None, START, [])
    before = dump(db_path)

    moved = make_snapshot("m", revision=2)
    with pytest.raises(RevisionConflictError, match="no buffered signal"):
        await adapter.commit(
            moved, expected_revision=1, timeline=[make_entry()], consumed_signal=signal.seq + 99
        )
    with pytest.raises(RevisionConflictError, match="no buffered signal"):
        # Another mission's signal is not this mission's to consume.
        await adapter.commit(
            moved, expected_revision=1, timeline=[make_entry()], consumed_signal=other.seq
        )
    assert dump(db_path) == before

    await adapter.commit(moved, expected_revision=1, timeline=[], consumed_signal=signal.seq)
    assert await adapter.next_signal("m", "go") is None
    assert await adapter.next_signal("other", "go") is not None


async def test_signal_sequence_numbers_are_never_reused(
    adapter: SQLitePersistenceAdapter, make_snapshot: Make
) -> None:
    """A consumed signal's sequence number is not handed to a later signal."""
    await adapter.insert(make_snapshot("m"), [])
    first = await adapter.append_signal("m", "go", 1, START, [])
    await adapter.commit(
        make_snapshot("m", revision=2), expected_revision=1, timeline=[], consumed_signal=first.seq
    )
    second = await adapter.append_signal("m", "go", 2, START, [])
    assert second.seq > first.seq


async def test_cancellation_requests_live_outside_the_snapshot(
    adapter: SQLitePersistenceAdapter, db_path: Path, make_snapshot: Make
) -> None:
    """A cancellation request, requested or carried by a committed snapshot, is kept in its own
    column, never in the snapshot's JSON (the protocol battery checks that it stands)."""
    await adapter.insert(make_snapshot("m"), [])
    await adapter.request_cancel("m", CancelRequest(START, "first"), [])
    carrying_another = make_snapshot("m", revision=2, cancel_request=CancelRequest(START, "next"))
    await adapter.commit(carrying_another, expected_revision=1, timeline=[])
    raw = apsw.Connection(str(db_path)).execute("SELECT snapshot FROM missions").fetchall()
    assert json.loads(raw[0][0]).get("cancel_request") is None


async def test_writes_for_unknown_missions_raise_and_store_nothing(
    adapter: SQLitePersistenceAdapter, db_path: Path, make_entry: Entry, dump: Dump
) -> None:
    """Buffering a signal for, or cancelling, a mission that does not exist raises
    ``PersistenceError`` and writes nothing."""
    before = dump(db_path)
    with pytest.raises(PersistenceError, match="unknown mission 'ghost'"):
        await adapter.append_signal("ghost", "go", None, START, [make_entry()])
    with pytest.raises(PersistenceError, match="unknown mission 'ghost'"):
        await adapter.request_cancel("ghost", CancelRequest(START), [make_entry()])
    assert dump(db_path) == before


async def test_list_missions_rejects_a_negative_limit(adapter: SQLitePersistenceAdapter) -> None:
    """``list_missions`` refuses a negative limit (the protocol battery checks its filters and
    paging)."""
    with pytest.raises(ValueError, match="limit"):
        await adapter.list_missions(limit=-1)


async def test_due_and_running_queries(
    adapter: SQLitePersistenceAdapter, make_snapshot: Make
) -> None:
    """Due missions come earliest first up to the limit, only while waiting; running ones by id
    after a cursor; the next due time is the earliest one."""
    await adapter.insert(make_snapshot("late", status=MissionStatus.WAITING, due_in=30), [])
    await adapter.insert(make_snapshot("early", status=MissionStatus.WAITING, due_in=10), [])
    await adapter.insert(make_snapshot("same-b", status=MissionStatus.WAITING, due_in=20), [])
    await adapter.insert(make_snapshot("same-a", status=MissionStatus.WAITING, due_in=20), [])
    await adapter.insert(make_snapshot("signal", status=MissionStatus.WAITING, signal="go"), [])
    await adapter.insert(make_snapshot("r2"), [])
    await adapter.insert(make_snapshot("r1"), [])

    assert await adapter.next_due_at() == START + timedelta(seconds=10)
    now = START + timedelta(seconds=20)
    assert await adapter.due_missions(now, 10) == ["early", "same-a", "same-b"]
    assert await adapter.due_missions(now, 2) == ["early", "same-a"]
    assert await adapter.due_missions(now, 0) == []
    assert await adapter.due_missions(START + timedelta(seconds=20, microseconds=-1), 10) == [
        "early"
    ]
    assert await adapter.running_missions(10) == ["r1", "r2"]
    assert await adapter.running_missions(10, after_id="r1") == ["r2"]
    assert await adapter.running_missions(0) == []

    # A mission that stops waiting leaves the due queries.
    await adapter.commit(make_snapshot("early", revision=2), expected_revision=1, timeline=[])
    assert await adapter.next_due_at() == START + timedelta(seconds=20)
    assert await adapter.running_missions(10) == ["early", "r1", "r2"]
    with pytest.raises(ValueError, match="timezone-aware"):
        await adapter.due_missions(datetime(2030, 1, 1), 10)


async def test_tick_queries_use_their_indexes(adapter: SQLitePersistenceAdapter) -> None:
    """The due, next-due, running and filtered-list queries are index searches, never a scan of
    every mission, so they cost what they return."""
    from mission_control.adapter_sqlite import _adapter as module

    queries: list[tuple[str, tuple[Any, ...]]] = [
        (module._DUE, (0, 10)),
        (module._NEXT_DUE, ()),
        (module._RUNNING, ("", 10)),
        (module._RUNNING, ("x", 10)),
        (module._NEXT_SIGNAL, ("m", "go")),
        (module._TIMELINE, ("m",)),
        ("SELECT id FROM missions WHERE status = ? ORDER BY id LIMIT ?", ("waiting", 10)),
        ("SELECT id FROM missions WHERE definition = ? ORDER BY id LIMIT ?", ("x", 10)),
    ]
    for sql, params in queries:
        plan = " | ".join(
            str(row[3]) for row in adapter._db.execute("EXPLAIN QUERY PLAN " + sql, params)
        )
        assert "SEARCH" in plan, (sql, plan)
        assert "SCAN" not in plan, (sql, plan)
        assert "TEMP B-TREE" not in plan, (sql, plan)


async def test_a_closed_adapter_says_so(db_path: Path) -> None:
    """After ``aclose``, ``closed`` is true and a call's ``PersistenceError`` names the file
    (the protocol battery checks that every method raises)."""
    adapter = create_sqlite_persistence_adapter(db_path)
    assert not adapter.closed
    await adapter.aclose()
    assert adapter.closed
    with pytest.raises(PersistenceError, match=f"{db_path.name} is closed"):
        await adapter.load("m")


async def test_a_busy_database_fails_with_a_clear_error_and_stores_nothing(
    db_path: Path, make_snapshot: Make, dump: Dump
) -> None:
    """When another connection holds the write lock past ``busy_timeout``, a write raises
    ``PersistenceError`` naming the timeout, and nothing is stored."""
    async with create_sqlite_persistence_adapter(db_path, busy_timeout=0) as adapter:
        await adapter.insert(make_snapshot("m"), [])
        before = dump(db_path)
        intruder = apsw.Connection(str(db_path))
        intruder.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(PersistenceError, match="busy_timeout=0"):
                await adapter.commit(
                    make_snapshot("m", revision=2), expected_revision=1, timeline=[]
                )
        finally:
            intruder.execute("ROLLBACK")
            intruder.close()
        assert dump(db_path) == before
        await adapter.commit(make_snapshot("m", revision=2), expected_revision=1, timeline=[])


async def test_durability_settings_are_applied(db_path: Path) -> None:
    """The database is in WAL mode, ``synchronous`` is NORMAL by default or FULL on request,
    and the busy timeout is kept by the adapter, SQLite itself not waiting for locks."""
    async with create_sqlite_persistence_adapter(db_path) as adapter:
        assert adapter.synchronous == "NORMAL"
        assert adapter._db.pragma("synchronous") == 1
        assert adapter._db.pragma("journal_mode") == "wal"
        assert adapter.busy_timeout == 5.0
        assert adapter._db.pragma("busy_timeout") == 0
    async with create_sqlite_persistence_adapter(
        db_path, synchronous="FULL", busy_timeout=0.25
    ) as adapter:
        assert adapter.synchronous == "FULL"
        assert adapter._db.pragma("synchronous") == 2
        assert adapter.busy_timeout == 0.25


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"synchronous": "EXTRA"}, "synchronous"),
        ({"synchronous": None}, "synchronous"),
        ({"busy_timeout": -1}, "busy_timeout"),
        ({"busy_timeout": True}, "busy_timeout"),
        ({"busy_timeout": "5"}, "busy_timeout"),
    ],
)
def test_bad_settings_raise_configuration_error_before_touching_the_disk(
    tmp_path: Path, arguments: dict[str, Any], message: str
) -> None:
    """Unknown durability modes and bad timeouts are refused before any file is created."""
    with pytest.raises(ConfigurationError, match=message):
        create_sqlite_persistence_adapter(tmp_path / "x.sqlite", **arguments)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("path", [b"x.sqlite", "", 42])
def test_bad_paths_raise_configuration_error(path: Any) -> None:
    """A path that is not a non-empty ``str`` or ``os.PathLike`` is refused."""
    with pytest.raises(ConfigurationError, match="path"):
        create_sqlite_persistence_adapter(path)


async def test_an_in_memory_database_works_for_quick_tests(make_snapshot: Make) -> None:
    """``":memory:"`` gives a private, lock-free database with the same behaviour."""
    async with create_sqlite_persistence_adapter(":memory:") as adapter:
        await adapter.insert(make_snapshot("m"), [])
        assert await adapter.running_missions(5) == ["m"]
    with pytest.raises(ConfigurationError, match="read-only"):
        create_sqlite_persistence_adapter(":memory:", read_only=True)


async def test_snapshots_round_trip_exactly(
    adapter: SQLitePersistenceAdapter, make_snapshot: Make
) -> None:
    """A snapshot with nested JSON values, unicode and microsecond times loads back equal."""
    snapshot = make_snapshot(
        "ünïcødé/id 1",
        status=MissionStatus.WAITING,
        due_in=0.000001,
        input={"list": [1, 2.5, None, True], "text": "日本語 \u2028", "nested": {"a": {}}},
    )
    await adapter.insert(snapshot, [])
    assert await adapter.load(snapshot.id) == snapshot
    later = attrs.evolve(snapshot, revision=2, output=[{"k": "v"}])
    await adapter.commit(later, expected_revision=1, timeline=[])
    assert await adapter.load(snapshot.id) == later
    assert await adapter.due_missions(START + timedelta(microseconds=1), 1) == [snapshot.id]
