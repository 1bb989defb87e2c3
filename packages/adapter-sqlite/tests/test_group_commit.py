"""Group commit: mission writes that arrive together share a transaction, each still stored
all-or-nothing, and a program writing one mission at a time keeps one transaction per write.

On trio and asyncio: grouping relies on the scheduler letting the tasks that are ready reach
their writes while the first one yields, which each backend does in its own order. On each loop
the writers wait through the loop's own parking, and through the plain (AnyIO) one too, so that
they keep the same promises."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import apsw
import pytest

from mission_control.adapter_sqlite import (
    SQLitePersistenceAdapter,
    _group,
    create_sqlite_persistence_adapter,
)
from mission_control.adapter_sqlite._parking import Parking, PlainParking, Spot
from mission_control.core import (
    MissionSnapshot,
    MissionStatus,
    PersistenceError,
    TimelineEntry,
    create_commander,
    m,
)
from mission_control.core.storage import RevisionConflictError
from mission_control.testing import virtual_time_backend

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["trio", "trio-plain-parking", "asyncio", "asyncio-plain-parking"])
def anyio_backend(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> tuple[str, dict[str, Any]]:
    """The root conftest's backends, and each once more with the plain parking."""
    backend, _, parking = str(request.param).partition("-")
    if parking:
        monkeypatch.setattr(_group, "parking_for_this_loop", PlainParking)
    return virtual_time_backend(backend)


Make = Callable[..., MissionSnapshot]
Entry = Callable[..., TimelineEntry]
Dump = Callable[[Path], dict[str, list[tuple[Any, ...]]]]


async def _insert_all(
    adapter: SQLitePersistenceAdapter, make_snapshot: Make, ids: list[str]
) -> None:
    for mission_id in ids:
        await adapter.insert(make_snapshot(mission_id), [])


async def _warm_up(adapter: SQLitePersistenceAdapter, make_snapshot: Make) -> None:
    """Rounds of concurrent writes, so that the adapter groups from then on (a lone write
    probes for company only every so often)."""
    ids = [f"warm-{i}" for i in range(4)]
    await _insert_all(adapter, make_snapshot, ids)
    for revision in range(2, 22):
        async with anyio.create_task_group() as tasks:
            for mission_id in ids:
                tasks.start_soon(
                    lambda i, r: adapter.commit(
                        make_snapshot(i, revision=r), expected_revision=r - 1, timeline=[]
                    ),
                    mission_id,
                    revision,
                )


async def _commit_concurrently(
    adapter: SQLitePersistenceAdapter,
    writes: list[tuple[MissionSnapshot, int, list[TimelineEntry]]],
) -> dict[str, BaseException | None]:
    """Commit every write from its own task, all started together; each write's outcome."""
    outcomes: dict[str, BaseException | None] = {}
    async with anyio.create_task_group() as tasks:
        for snapshot, expected, entries in writes:
            tasks.start_soon(_commit, adapter, outcomes, snapshot, expected, entries)
    return outcomes


async def _commit(
    adapter: SQLitePersistenceAdapter,
    outcomes: dict[str, BaseException | None],
    snapshot: MissionSnapshot,
    expected: int,
    entries: list[TimelineEntry],
) -> None:
    """One commit, its outcome recorded under the mission's id (``None``: stored)."""
    try:
        await adapter.commit(snapshot, expected_revision=expected, timeline=entries)
    except Exception as error:
        outcomes[snapshot.id] = error
    else:
        outcomes[snapshot.id] = None


async def test_concurrent_commits_share_transactions_and_are_all_stored(
    adapter: SQLitePersistenceAdapter, make_snapshot: Make, make_entry: Entry
) -> None:
    """Commits made by many tasks at once take fewer transactions than writes, and every one of
    them is stored with its timeline."""
    ids = [f"m{i}" for i in range(20)]
    await _insert_all(adapter, make_snapshot, ids)
    await _warm_up(adapter, make_snapshot)
    before = adapter.transactions

    outcomes = await _commit_concurrently(
        adapter,
        [(make_snapshot(i, revision=2), 1, [make_entry(), make_entry()]) for i in ids],
    )

    assert outcomes == dict.fromkeys(ids)
    assert adapter.transactions - before < len(ids)
    for mission_id in ids:
        stored = await adapter.load(mission_id)
        assert stored is not None
        assert stored.revision == 2
        assert len(await adapter.timeline(mission_id)) == 2


async def test_a_group_takes_one_transaction(
    adapter: SQLitePersistenceAdapter, make_snapshot: Make, make_entry: Entry
) -> None:
    """Once writes have been seen to come together, a burst of ten is stored by one
    transaction."""
    ids = [f"m{i}" for i in range(10)]
    await _insert_all(adapter, make_snapshot, ids)
    await _warm_up(adapter, make_snapshot)
    before = adapter.transactions

    async with anyio.create_task_group() as tasks:
        for mission_id in ids:
            tasks.start_soon(
                lambda i: adapter.commit(
                    make_snapshot(i, revision=2), expected_revision=1, timeline=[make_entry()]
                ),
                mission_id,
            )

    assert adapter.transactions - before == 1


async def test_a_conflict_in_a_group_fails_only_that_write(
    adapter: SQLitePersistenceAdapter,
    db_path: Path,
    make_snapshot: Make,
    make_entry: Entry,
) -> None:
    """A write in a group that expects a stale revision raises RevisionConflictError and stores
    nothing; the other writes of its group are stored."""
    ids = [f"m{i}" for i in range(6)]
    await _insert_all(adapter, make_snapshot, ids)
    await _warm_up(adapter, make_snapshot)
    writes = [(make_snapshot(i, revision=2), 1, [make_entry()]) for i in ids]
    writes[3] = (make_snapshot("m3", revision=6), 5, [make_entry()])

    outcomes = await _commit_concurrently(adapter, writes)

    assert isinstance(outcomes.pop("m3"), RevisionConflictError)
    assert outcomes == dict.fromkeys(i for i in ids if i != "m3")
    stored = await adapter.load("m3")
    assert stored is not None
    assert stored.revision == 1
    assert await adapter.timeline("m3") == []
    for mission_id in ids:
        if mission_id != "m3":
            assert len(await adapter.timeline(mission_id)) == 1


def _rows_of(tables: dict[str, list[tuple[Any, ...]]], mission_id: str) -> list[tuple[Any, ...]]:
    """Every stored row about one mission: its mission row, timeline and inbox."""
    return [
        row
        for table in ("missions", "timeline", "inbox")
        for row in tables[table]
        if mission_id in row[:2]
    ]


async def test_a_database_error_in_a_group_undoes_only_that_write(
    adapter: SQLitePersistenceAdapter,
    db_path: Path,
    make_snapshot: Make,
    make_entry: Entry,
    dump: Dump,
) -> None:
    """A write whose statements fail half-way (its timeline row collides) raises
    PersistenceError with its row and timeline unchanged; its group's other writes are stored."""
    ids = [f"m{i}" for i in range(6)]
    await _insert_all(adapter, make_snapshot, ids)
    # A timeline row already where m2's commit will put its entry: the mission row is updated
    # first, then the entry fails, and the update must be undone with it.
    raw = apsw.Connection(str(db_path))
    raw.execute("INSERT INTO timeline VALUES ('m2', 2, 0, '{}')")
    raw.close()
    await _warm_up(adapter, make_snapshot)
    before = _rows_of(dump(db_path), "m2")

    outcomes = await _commit_concurrently(
        adapter, [(make_snapshot(i, revision=2), 1, [make_entry()]) for i in ids]
    )

    error = outcomes.pop("m2")
    assert isinstance(error, PersistenceError)
    assert "committing mission 'm2'" in str(error)
    assert outcomes == dict.fromkeys(i for i in ids if i != "m2")
    assert _rows_of(dump(db_path), "m2") == before
    for mission_id in ids:
        if mission_id != "m2":
            stored = await adapter.load(mission_id)
            assert stored is not None
            assert stored.revision == 2


async def test_a_group_whose_transaction_fails_stores_none_of_its_writes(
    adapter: SQLitePersistenceAdapter,
    db_path: Path,
    make_snapshot: Make,
    make_entry: Entry,
    dump: Dump,
) -> None:
    """When SQLite ends a group's transaction (as it does on a full disk), every write of the
    group fails with PersistenceError and the file is exactly as it was."""
    ids = [f"m{i}" for i in range(4)]
    await _insert_all(adapter, make_snapshot, ids)
    await _warm_up(adapter, make_snapshot)
    before = dump(db_path)

    def full_disk() -> None:
        # What a full disk does to a transaction: SQLite rolls it back, and the call fails.
        adapter._cursor.execute("ROLLBACK")  # pyright: ignore[reportPrivateUsage]
        raise apsw.FullError("database or disk is full")

    outcomes: dict[str, BaseException | None] = {}

    async def failing_write() -> None:
        try:
            await adapter._group.run(full_disk, "writing mission 'x'")  # pyright: ignore[reportPrivateUsage]
        except Exception as error:
            outcomes["x"] = error

    async with anyio.create_task_group() as tasks:
        for mission_id in ids[:2]:
            tasks.start_soon(
                _commit, adapter, outcomes, make_snapshot(mission_id, revision=2), 1, [make_entry()]
            )
        tasks.start_soon(failing_write)
        for mission_id in ids[2:]:
            tasks.start_soon(
                _commit, adapter, outcomes, make_snapshot(mission_id, revision=2), 1, [make_entry()]
            )

    assert sorted(outcomes) == [*ids, "x"]
    for error in outcomes.values():
        assert isinstance(error, PersistenceError)
        assert "disk is full" in str(error)
    assert dump(db_path) == before


async def test_writes_made_one_at_a_time_take_one_transaction_each_and_never_yield(
    adapter: SQLitePersistenceAdapter, make_snapshot: Make, make_entry: Entry
) -> None:
    """A task writing on its own, once a burst of concurrent writes is over, gets one
    transaction per write and never lets another task run in the middle of one."""
    await _warm_up(adapter, make_snapshot)
    # Writes that find no company turn grouping off again.
    await _insert_all(adapter, make_snapshot, [f"lone-{i}" for i in range(20)])
    ids = [f"m{i}" for i in range(40)]
    turns = 0

    async def bystander() -> None:
        nonlocal turns
        while True:
            turns += 1
            await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(bystander)
        await anyio.lowlevel.checkpoint()
        turns_before, transactions_before = turns, adapter.transactions
        await _insert_all(adapter, make_snapshot, ids)
        for mission_id in ids:
            await adapter.commit(
                make_snapshot(mission_id, revision=2), expected_revision=1, timeline=[make_entry()]
            )
        assert turns == turns_before
        assert adapter.transactions - transactions_before == 80
        tasks.cancel_scope.cancel()


async def test_missions_moved_by_concurrent_tasks_are_grouped_and_complete(
    db_path: Path,
) -> None:
    """Missions started from many tasks at once all complete, with fewer transactions than
    their writes, and each has its whole timeline."""
    flow = m.define("grouped").start(parse=lambda raw: raw).step("a", _checkpointing).end()
    adapter = create_sqlite_persistence_adapter(db_path)
    async with create_commander([flow], persistence=adapter) as commander:
        async with anyio.create_task_group() as tasks:
            for i in range(50):
                tasks.start_soon(lambda i: commander.start(flow, {"i": i}, id=f"m{i:02}"), i)
        missions = await commander.list(definition=flow)
        assert [s.status for s in missions] == [MissionStatus.COMPLETED] * 50
        # An insert and two commits per mission.
        assert adapter.transactions < 150
        for snapshot in missions:
            kinds = [e.kind for e in await commander.timeline(snapshot.id)]
            assert kinds[0] == "mission-started"
            assert kinds[-1] == "mission-completed"


async def _checkpointing(ctx: object) -> int:
    await anyio.lowlevel.checkpoint()
    return 1


async def test_a_caller_cancelled_while_its_write_is_grouped_learns_it_was_stored(
    adapter: SQLitePersistenceAdapter, make_snapshot: Make, make_entry: Entry
) -> None:
    """A commit made under an already cancelled scope, inside a group, is stored and returns
    normally; the cancellation arrives at the caller's next checkpoint."""
    ids = [f"m{i}" for i in range(4)]
    await _insert_all(adapter, make_snapshot, ids)
    await _warm_up(adapter, make_snapshot)
    returned: list[str] = []

    async def cancelled_commit(mission_id: str) -> None:
        with anyio.CancelScope() as scope:
            scope.cancel()
            await adapter.commit(
                make_snapshot(mission_id, revision=2), expected_revision=1, timeline=[make_entry()]
            )
            returned.append(mission_id)
            await anyio.lowlevel.checkpoint()
        assert scope.cancelled_caught

    async with anyio.create_task_group() as tasks:
        for mission_id in ids:
            tasks.start_soon(cancelled_commit, mission_id)

    assert sorted(returned) == ids
    for mission_id in ids:
        stored = await adapter.load(mission_id)
        assert stored is not None
        assert stored.revision == 2


async def test_a_group_waiting_for_a_busy_database_is_stored_though_its_callers_are_cancelled(
    adapter: SQLitePersistenceAdapter, make_snapshot: Make, make_entry: Entry, db_path: Path
) -> None:
    """While another connection holds the lock, a group retries on the loop's clock; cancelling
    every caller meanwhile (the leader's too) neither fails the group nor loses a write: each is
    stored once the lock is free, and the callers' cancellations arrive after that."""
    ids = [f"m{i}" for i in range(4)]
    await _insert_all(adapter, make_snapshot, ids)
    await _warm_up(adapter, make_snapshot)
    intruder = apsw.Connection(str(db_path))
    intruder.execute("BEGIN IMMEDIATE")
    scopes = {mission_id: anyio.CancelScope() for mission_id in ids}
    outcomes: dict[str, str] = {}

    async def commit(mission_id: str) -> None:
        with scopes[mission_id]:
            try:
                await adapter.commit(
                    make_snapshot(mission_id, revision=2),
                    expected_revision=1,
                    timeline=[make_entry()],
                )
            except Exception as error:
                outcomes[mission_id] = type(error).__name__
                return
            outcomes[mission_id] = "stored"

    try:
        async with anyio.create_task_group() as tasks:
            for mission_id in ids:
                tasks.start_soon(commit, mission_id)
            await anyio.sleep(0.02)  # virtual time: the group is retrying by now
            for scope in scopes.values():
                scope.cancel()
            await anyio.sleep(0.02)
            intruder.execute("ROLLBACK")
    finally:
        intruder.close()
    assert all(outcome == "stored" for outcome in outcomes.values()), outcomes
    for mission_id in ids:
        stored = await adapter.load(mission_id)
        assert stored is not None
        assert stored.revision == 2


class _Interrupt(BaseException):
    """Stands for a KeyboardInterrupt delivered at the leader's checkpoint."""


class _InterruptedParking:
    """The loop's parking, with an :class:`_Interrupt` raised at the leader's second yield."""

    def __init__(self, parking: Parking) -> None:
        self._parking = parking
        self._yields = 0

    def spot(self) -> Spot:
        return self._parking.spot()

    async def yield_shielded(self) -> None:
        await self._parking.yield_shielded()
        self._yields += 1
        if self._yields == 2:
            raise _Interrupt


async def test_writers_waiting_on_an_interrupted_leader_are_told_nothing_was_stored(
    adapter: SQLitePersistenceAdapter, make_snapshot: Make, make_entry: Entry
) -> None:
    """When the task leading a group is interrupted before writing it, the writes that joined
    it fail with PersistenceError instead of waiting forever, and nothing of the group is
    stored."""
    ids = [f"m{i}" for i in range(4)]
    await _insert_all(adapter, make_snapshot, ids)
    await _warm_up(adapter, make_snapshot)
    interrupted = _InterruptedParking(_group.parking_for_this_loop())
    outcomes: dict[str, BaseException | None] = {}

    async def all_at_once() -> None:
        async with anyio.create_task_group() as tasks:
            for mission_id in ids:
                tasks.start_soon(
                    _commit,
                    adapter,
                    outcomes,
                    make_snapshot(mission_id, revision=2),
                    1,
                    [make_entry()],
                )

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_group, "parking_for_this_loop", lambda: interrupted)
        with pytest.raises(BaseExceptionGroup) as raised:
            await all_at_once()

    assert raised.group_contains(_Interrupt)
    assert len(outcomes) == 3
    for error in outcomes.values():
        assert isinstance(error, PersistenceError)
        assert "interrupted" in str(error)
    for mission_id in ids:
        stored = await adapter.load(mission_id)
        assert stored is not None
        assert stored.revision == 1
