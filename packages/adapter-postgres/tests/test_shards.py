"""Shards: each mission's shard, the spreading rule between runtimes, takeover of a freed
shard, and fencing of a runtime that lost its lock connection (docs/postgres.md)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import attrs
import psycopg
import pytest
from psycopg import conninfo

from mission_control.adapter_postgres import (
    REBALANCE_INTERVAL,
    SHARDS,
    PostgresPersistenceAdapter,
    ShardLostError,
    open_postgres_persistence_adapter,
    shard_of,
)
from mission_control.adapter_postgres._listen import Listener, channel_of
from mission_control.adapter_postgres._schema import MIGRATIONS, migrate
from mission_control.adapter_postgres._shards import lock_class
from mission_control.core import (
    MissionSnapshot,
    MissionStatus,
    PersistenceError,
    Schedule,
    Wait,
    WaitKind,
    create_commander,
    m,
)
from mission_control.core.storage import RevisionConflictError
from mission_control.runtime import create_commander_runtime

pytestmark = pytest.mark.anyio

T0 = datetime(2030, 1, 1, tzinfo=UTC)

Raw = Callable[[str], AbstractContextManager[psycopg.Connection[tuple[Any, ...]]]]
MakeSchedule = Callable[[str, datetime | None], Schedule]
Opener = Callable[..., Any]


def _snapshot(mission_id: str, *, due_in: float | None = None) -> MissionSnapshot:
    waits: tuple[Wait, ...] = ()
    if due_in is not None:
        waits = (Wait(WaitKind.TIMER, "nap", due_at=T0 + timedelta(seconds=due_in)),)
    return MissionSnapshot(
        id=mission_id,
        definition="test",
        definition_version=1,
        status=MissionStatus.WAITING if waits else MissionStatus.RUNNING,
        current_node="nap" if waits else "work",
        input={"n": 1},
        created_at=T0,
        updated_at=T0,
        waits=waits,
        active=("nap",) if waits else ("work",),
        revision=1,
    )


def _id_in(shards: set[int], prefix: str = "m") -> str:
    """A mission id whose shard is one of ``shards``."""
    for n in range(100_000):
        if shard_of(f"{prefix}-{n}") in shards:
            return f"{prefix}-{n}"
    raise AssertionError("no id found")


async def _ended(raw: Raw, schema: str, pid: int | None) -> None:
    """Return once the server process ``pid`` has ended: a session's locks go with it."""
    assert pid is not None
    with raw(schema) as db, anyio.fail_after(10):
        # Another process (the server) decides: polled.
        while db.execute(  # noqa: ASYNC110
            "SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)
        ).fetchone():
            await anyio.sleep(0.01)


@pytest.fixture
async def open_runtime(
    postgres_url: str, postgres_schema: str
) -> AsyncIterator[Callable[[str], Any]]:
    """``await open_runtime(name)``: a sharded adapter on the test's schema, closed after it."""
    opened: list[PostgresPersistenceAdapter] = []

    async def open_one(name: str) -> PostgresPersistenceAdapter:
        adapter = await open_postgres_persistence_adapter(
            postgres_url, schema=postgres_schema, sharded=True, name=name
        )
        opened.append(adapter)
        return adapter

    yield open_one
    for adapter in opened:
        await adapter.aclose()


async def test_the_shard_of_an_id_is_the_one_postgresql_computes(
    postgres_url: str, postgres_schema: str, raw: Raw
) -> None:
    """shard_of(id) in Python and the generated columns missions.shard and submissions.shard
    agree, for ASCII and other ids, spread ids over every shard, and put a child mission in its
    parent's shard."""
    ids = [f"order-{n}" for n in range(600)] + ["café-1", "日本-2", "", "x" * 300, "a/b/c"]
    async with await open_postgres_persistence_adapter(
        postgres_url, schema=postgres_schema
    ) as adapter:
        for mission_id in ids:
            await adapter.insert(_snapshot(mission_id), [])
    with raw(postgres_schema) as db:
        stored = dict(db.execute("SELECT id, shard FROM missions").fetchall())
        db.cursor().executemany(
            "INSERT INTO submissions (kind, mission_id, payload, submitted_at, submitted_by) "
            "VALUES ('cancel', %s, '{}', now(), 'test')",
            [(mission_id,) for mission_id in ids],
        )
        submitted = dict(db.execute("SELECT mission_id, shard FROM submissions").fetchall())
    assert stored == {mission_id: shard_of(mission_id) for mission_id in ids}
    assert submitted == stored
    assert set(stored.values()) == set(range(SHARDS))
    assert all(shard_of(f"order-{n}/pay#2") == shard_of(f"order-{n}") for n in range(20))
    assert shard_of("order-7/ship/label") == shard_of("order-7")


async def test_a_schema_at_version_1_gets_the_shards_of_its_missions(
    postgres_url: str, postgres_schema: str, raw: Raw
) -> None:
    """Migrating a schema of version 1 that holds missions gives each its shard and every shard
    an epoch row, in one transaction."""
    with raw("public") as db:
        migrate(db, postgres_schema, MIGRATIONS[:1])
    with raw(postgres_schema) as db:
        db.execute(
            "INSERT INTO missions (id, definition, definition_version, status, revision, "
            "snapshot) VALUES ('old-1', 'test', 1, 'running', 1, '{}')"
        )
    adapter = await open_postgres_persistence_adapter(postgres_url, schema=postgres_schema)
    await adapter.aclose()
    with raw(postgres_schema) as db:
        assert db.execute("SELECT shard FROM missions").fetchall() == [(shard_of("old-1"),)]
        epochs = db.execute("SELECT shard, epoch FROM shards ORDER BY shard").fetchall()
    assert epochs == [(shard, 0) for shard in range(SHARDS)]


async def test_two_runtimes_split_the_shards_and_one_alone_takes_them_all(
    open_runtime: Callable[[str], Any], raw: Raw, postgres_schema: str
) -> None:
    """A first runtime takes every shard; with a second one, two rounds of the rule each leave
    both with half the shards, none owned twice; when one leaves, the other's next round takes
    every shard back, each at a new epoch, in its first round once the server ended the leaver's
    session."""
    first: PostgresPersistenceAdapter = await open_runtime("first")
    assert set(first.owned_shards) == set(range(SHARDS))
    second: PostgresPersistenceAdapter = await open_runtime("second")
    assert second.owned_shards == {}
    for _ in range(2):
        await first.rebalance()
        await second.rebalance()
    a, b = set(first.owned_shards), set(second.owned_shards)
    assert len(a) == len(b) == SHARDS // 2
    assert a | b == set(range(SHARDS))
    before = second.owned_shards
    pid = first.lock_backend_pid
    await first.aclose()
    await _ended(raw, postgres_schema, pid)
    await second.rebalance()
    after = second.owned_shards
    assert set(after) == set(range(SHARDS))
    assert all(after[shard] == before[shard] for shard in before)
    # The first runtime's shards were taken at epoch 1, by its first round; taken over, 2.
    assert {after[shard] for shard in a} == {2}


_MY_SHARD_LOCKS = (
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid = %s "
    "AND objsubid = 2 AND classid::int = %s"
)


@pytest.mark.real_time
async def test_a_round_whose_epoch_raise_fails_lets_go_of_every_shard_it_locked(
    open_runtime: Callable[[str], Any], postgres_url: str, postgres_schema: str, raw: Raw
) -> None:
    """A round whose raise of its shards' epochs fails (a lock_timeout while an old owner's
    commit holds one shard's row) lets go of every shard it had locked for it, and takes them
    all in its next round once the row is free: none is left locked and owned by nobody."""
    first: PostgresPersistenceAdapter = await open_runtime("first")
    second = await open_postgres_persistence_adapter(
        conninfo.make_conninfo(postgres_url, options="-c lock_timeout=200"),
        schema=postgres_schema,
        sharded=True,
        name="second",
    )
    try:
        for _ in range(2):  # the first drains its half, then lets it go
            await first.rebalance()
        freed = sorted(set(range(SHARDS)) - set(first.owned_shards))
        assert len(freed) == SHARDS // 2
        shard_class = lock_class(postgres_schema, "shard")
        with raw(postgres_schema) as holder, holder.transaction():
            holder.execute("SELECT epoch FROM shards WHERE shard = %s FOR SHARE", (freed[5],))
            with pytest.raises(PersistenceError, match="rebalancing shards failed"):
                await second.rebalance()
            assert second.owned_shards == {}
            row = holder.execute(_MY_SHARD_LOCKS, (second.lock_backend_pid, shard_class)).fetchone()
            assert row == (0,)
        await second.rebalance()
        assert sorted(second.owned_shards) == freed
        assert set(first.owned_shards) | set(second.owned_shards) == set(range(SHARDS))
    finally:
        await second.aclose()


async def test_a_runtime_answers_for_the_missions_of_its_shards_only(
    open_runtime: Callable[[str], Any],
) -> None:
    """A sharded adapter's due and running queries return the missions of its own shards, and
    it refuses to write a mission of another runtime's shard, storing nothing."""
    first: PostgresPersistenceAdapter = await open_runtime("first")
    second: PostgresPersistenceAdapter = await open_runtime("second")
    for _ in range(2):
        await first.rebalance()
        await second.rebalance()
    mine, theirs = set(first.owned_shards), set(second.owned_shards)
    due_mine, due_theirs = _id_in(mine, "due"), _id_in(theirs, "due")
    running_mine, running_theirs = _id_in(mine, "run"), _id_in(theirs, "run")
    await first.insert(_snapshot(due_mine, due_in=10), [])
    await first.insert(_snapshot(running_mine), [])
    await second.insert(_snapshot(due_theirs, due_in=5), [])
    await second.insert(_snapshot(running_theirs), [])
    later = T0 + timedelta(minutes=1)
    assert await first.due_missions(later, 10) == [due_mine]
    assert await second.due_missions(later, 10) == [due_theirs]
    assert await first.next_due_at() == T0 + timedelta(seconds=10)
    assert await first.running_missions(10) == [running_mine]
    assert await second.running_missions(10) == [running_theirs]
    stored = await second.load(due_theirs)
    assert stored is not None
    with pytest.raises(ShardLostError, match="does not own"):
        await first.commit(
            attrs.evolve(stored, revision=2, status=MissionStatus.COMPLETED),
            expected_revision=1,
            timeline=[],
        )
    assert await first.load(due_theirs) == stored


async def test_a_runtime_whose_lock_session_was_ended_is_fenced_once_its_shards_are_taken(
    open_runtime: Callable[[str], Any], raw: Raw, postgres_schema: str
) -> None:
    """A runtime whose lock connection's session is ended by pg_terminate_backend, while it
    keeps running, commits nothing for the shards another runtime took over (ShardLostError,
    the mission as it was), and the new owner commits the mission; the fenced runtime's next
    round opens a new lock connection and joins again."""
    stale: PostgresPersistenceAdapter = await open_runtime("stale")
    survivor: PostgresPersistenceAdapter = await open_runtime("survivor")
    for _ in range(2):
        await stale.rebalance()
        await survivor.rebalance()
    mission_id = _id_in(set(stale.owned_shards))
    await stale.insert(_snapshot(mission_id), [])
    stored = await stale.load(mission_id)
    assert stored is not None
    with raw(postgres_schema) as db:
        db.execute("SELECT pg_terminate_backend(%s)", (stale.lock_backend_pid,))
    await _ended(raw, postgres_schema, stale.lock_backend_pid)
    await survivor.rebalance()
    assert set(survivor.owned_shards) == set(range(SHARDS))
    done = attrs.evolve(stored, revision=2, status=MissionStatus.COMPLETED)
    with pytest.raises(ShardLostError, match="another runtime took over"):
        await stale.commit(done, expected_revision=1, timeline=[])
    assert await survivor.load(mission_id) == stored
    await survivor.commit(done, expected_revision=1, timeline=[])
    assert await survivor.load(mission_id) == done
    await stale.rebalance()
    assert stale.owned_shards == {}
    await survivor.rebalance()
    await survivor.rebalance()
    await stale.rebalance()
    assert len(stale.owned_shards) == len(survivor.owned_shards) == SHARDS // 2


async def test_a_commit_racing_a_takeover_waits_for_it_and_is_refused(
    open_runtime: Callable[[str], Any], raw: Raw, postgres_schema: str
) -> None:
    """A commit that comes while another runtime's raise of the shard's epoch is under way (not
    committed yet) waits for it, then is refused with ShardLostError, nothing stored; a commit
    with a stale revision is a RevisionConflictError, not a lost shard."""
    runtime: PostgresPersistenceAdapter = await open_runtime("racing")
    mission_id = _id_in(set(runtime.owned_shards))
    await runtime.insert(_snapshot(mission_id), [])
    stored = await runtime.load(mission_id)
    assert stored is not None
    done = attrs.evolve(stored, revision=2, status=MissionStatus.COMPLETED)
    with pytest.raises(RevisionConflictError):
        await runtime.commit(attrs.evolve(done, revision=3), expected_revision=2, timeline=[])
    refused: list[BaseException] = []

    async def commit() -> None:
        try:
            await runtime.commit(done, expected_revision=1, timeline=[])
        except ShardLostError as error:
            refused.append(error)

    with raw(postgres_schema) as taker, raw(postgres_schema) as looker:
        async with anyio.create_task_group() as tasks:
            with taker.transaction():
                taker.execute(
                    "UPDATE shards SET epoch = epoch + 1 WHERE shard = %s", (shard_of(mission_id),)
                )
                tasks.start_soon(commit)
                with anyio.fail_after(30):
                    # The server decides when the commit waits for the raise's lock: polled.
                    while not looker.execute(_WAITING_FOR_A_LOCK).fetchone():  # noqa: ASYNC110
                        await anyio.sleep(0.01)
    assert len(refused) == 1
    assert await runtime.load(mission_id) == stored


_WAITING_FOR_A_LOCK = (
    "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
)


async def test_a_runtime_fires_the_schedules_of_its_shards_and_any_runtime_changes_any(
    open_runtime: Callable[[str], Any], make_schedule: MakeSchedule
) -> None:
    """Each of two runtimes finds due, and arms its next tick for, only the schedules whose ids
    are in its own shards; either lists them all and changes one in the other's shard (a
    compare-and-set, as the application's changes are)."""
    first: PostgresPersistenceAdapter = await open_runtime("first")
    second: PostgresPersistenceAdapter = await open_runtime("second")
    for _ in range(2):
        await first.rebalance()
        await second.rebalance()
    mine = make_schedule(_id_in(set(first.owned_shards), "nightly"), T0 + timedelta(minutes=2))
    theirs = make_schedule(_id_in(set(second.owned_shards), "hourly"), T0 + timedelta(minutes=1))
    assert await first.insert_schedule(theirs) is None
    assert await second.insert_schedule(mine) is None
    later = T0 + timedelta(minutes=5)
    assert await first.due_schedules(later, 10) == [mine]
    assert await second.due_schedules(later, 10) == [theirs]
    assert await first.next_schedule_at() == mine.next_fire_at
    assert await second.next_schedule_at() == theirs.next_fire_at
    assert await first.next_schedule_at(after=mine.next_fire_at) is None
    assert {s.id for s in await first.list_schedules(limit=10)} == {mine.id, theirs.id}
    paused = attrs.evolve(theirs, paused=True, next_fire_at=None, revision=2)
    await first.commit_schedule(paused, expected_revision=1)
    assert await second.load_schedule(theirs.id) == paused
    assert await second.due_schedules(later, 10) == []
    with pytest.raises(RevisionConflictError):
        await second.commit_schedule(attrs.evolve(theirs, revision=2), expected_revision=1)


async def test_a_fire_recorded_by_a_runtime_that_lost_the_schedules_shard_is_refused(
    open_runtime: Callable[[str], Any], raw: Raw, postgres_schema: str, make_schedule: MakeSchedule
) -> None:
    """Once the lock session of the runtime that fires a schedule is ended and another runtime
    took its shards over, the new owner finds the schedule due, and the stale runtime's record
    of a fire is refused (ShardLostError, the schedule as it was) while the new owner's lands."""
    stale: PostgresPersistenceAdapter = await open_runtime("stale")
    survivor: PostgresPersistenceAdapter = await open_runtime("survivor")
    for _ in range(2):
        await stale.rebalance()
        await survivor.rebalance()
    schedule = make_schedule(_id_in(set(stale.owned_shards), "nightly"), T0)
    await stale.insert_schedule(schedule)
    assert await stale.due_schedules(T0, 10) == [schedule]
    assert await survivor.due_schedules(T0, 10) == []
    with raw(postgres_schema) as db:
        db.execute("SELECT pg_terminate_backend(%s)", (stale.lock_backend_pid,))
    await _ended(raw, postgres_schema, stale.lock_backend_pid)
    await survivor.rebalance()
    assert await survivor.due_schedules(T0, 10) == [schedule]
    fired = attrs.evolve(
        schedule, next_fire_at=T0 + timedelta(minutes=1), last_fire_at=T0, fires=1, revision=2
    )
    with pytest.raises(ShardLostError, match="another runtime took over"):
        await stale.commit_schedule(fired, expected_revision=1)
    assert await survivor.load_schedule(schedule.id) == schedule
    await survivor.commit_schedule(fired, expected_revision=1)
    assert await stale.load_schedule(schedule.id) == fired
    await stale.rebalance()
    assert await stale.due_schedules(T0 + timedelta(minutes=1), 10) == []


async def test_a_schedule_written_for_another_runtimes_shard_wakes_that_runtime(
    open_runtime: Callable[[str], Any],
    postgres_url: str,
    postgres_schema: str,
    make_schedule: MakeSchedule,
) -> None:
    """A schedule stored or changed by a runtime in another runtime's shard sends, when its
    transaction commits, the notice that wakes that shard's owner for its next slot (the shard
    and the time); one in the writer's own shard, or paused, sends none."""
    first: PostgresPersistenceAdapter = await open_runtime("first")
    second: PostgresPersistenceAdapter = await open_runtime("second")
    for _ in range(2):
        await first.rebalance()
        await second.rebalance()
    mine = make_schedule(_id_in(set(first.owned_shards), "nightly"), T0)
    theirs = make_schedule(_id_in(set(second.owned_shards), "hourly"), T0 + timedelta(minutes=1))
    listener = Listener(postgres_url, channel_of(postgres_schema))
    await listener.open()
    try:
        await first.insert_schedule(mine)
        await first.insert_schedule(attrs.evolve(theirs, id="paused", next_fire_at=None))
        await first.insert_schedule(theirs)
        with anyio.fail_after(10):
            assert await listener.wait() == [
                f"d {shard_of(theirs.id)} {(T0 + timedelta(minutes=1)).isoformat()}"
            ]
        later = T0 + timedelta(minutes=5)
        await first.commit_schedule(
            attrs.evolve(theirs, next_fire_at=later, revision=2), expected_revision=1
        )
        with anyio.fail_after(10):
            assert await listener.wait() == [f"d {shard_of(theirs.id)} {later.isoformat()}"]
    finally:
        listener.close()


def _end_sleeps(raw: Raw, schema: str) -> int:
    """End the sessions sleeping on the server (pg_terminate_backend): those of the runtime's
    timers, which sleep a second at a time; how many."""
    with raw(schema) as db:
        return len(
            db.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE query LIKE 'SELECT pg_sleep%%' AND state = 'active' "
                "AND pid <> pg_backend_pid() AND datname = current_database()"
            ).fetchall()
        )


@pytest.mark.real_time
async def test_a_runtime_whose_timers_sessions_the_server_ended_keeps_its_rounds(
    postgres_url: str, postgres_schema: str, raw: Raw
) -> None:
    """The sessions timing a runtime's upkeep ended by the server (pg_terminate_backend, as a
    restart or a failover does) cost it no round: its shard rounds go on every
    REBALANCE_INTERVAL, on new sessions, instead of stopping until the runtime restarts its
    upkeep (stalled_tick_delay, 10 s)."""
    flow = m.define("flow").start(parse=dict).need_to("go", parse=dict).end()
    adapter = await open_postgres_persistence_adapter(
        postgres_url, schema=postgres_schema, sharded=True
    )
    commander = create_commander([flow], persistence=adapter, ids=adapter.new_mission_id)
    try:
        async with create_commander_runtime(commander):
            with anyio.fail_after(10):
                while not (adapter.listening and adapter.rebalance_rounds >= 2):  # noqa: ASYNC110
                    await anyio.sleep(0.05)
                # Polled: the timers' sleeps are a second each, begun when they please.
                while not _end_sleeps(raw, postgres_schema):  # noqa: ASYNC110
                    await anyio.sleep(0.05)
            ended_at = adapter.rebalance_rounds
            with anyio.fail_after(3 * REBALANCE_INTERVAL + 2):
                while adapter.rebalance_rounds < ended_at + 2:  # noqa: ASYNC110
                    await anyio.sleep(0.05)
            started = await commander.start(flow, {})
            assert (await commander.inspect(started.id)).status is MissionStatus.WAITING
    finally:
        await adapter.aclose()
