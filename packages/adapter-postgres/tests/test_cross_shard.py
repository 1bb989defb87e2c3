"""Operations on missions of another runtime's shards: a runtime's commander hands them to the
mission's owner (a start stored for it to run, a signal or cancellation a submission) instead
of refusing them (docs/postgres.md, several runtimes)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import psycopg
import pytest

from mission_control.adapter_postgres import (
    REREAD_INTERVAL,
    PostgresPersistenceAdapter,
    ShardLostError,
    open_postgres_persistence_adapter,
    shard_of,
)
from mission_control.adapter_postgres._listen import Listener, channel_of
from mission_control.core import (
    Commander,
    Context,
    MissionStatus,
    Refusal,
    SubmissionKind,
    SubmissionState,
    create_commander,
    m,
)
from mission_control.core.storage import NewSubmission
from mission_control.runtime import create_commander_runtime

pytestmark = pytest.mark.anyio

ran: list[tuple[str, str]] = []
"""The steps that ran, and for which mission, in order."""


async def first(ctx: Context[Any, Any]) -> int:
    ran.append(("first", ctx.mission_id))
    return int(ctx.input["n"])


WORK = (
    m.define("work")
    .start(parse=dict)
    .step("first", first)
    .sleep("pause", 3600)
    .end(output=lambda ctx: ctx.events["first"].output)
)


async def after(ctx: Context[Any, Any]) -> int:
    ran.append(("after", ctx.mission_id))
    return int(ctx.events["go"].output["n"])


WAITER = (
    m.define("waiter")
    .start(parse=dict)
    .need_to("go", parse=dict)
    .step("after", after)
    .end(output=lambda ctx: ctx.events["after"].output)
)

RECHECK = 3600.0
"""The runtimes' wake_recheck: work stored for a runtime is run well before this only when a
notice told it of the work."""

Raw = Callable[[str], AbstractContextManager[psycopg.Connection[tuple[Any, ...]]]]


def _id_in(shards: set[int], prefix: str) -> str:
    """A mission id whose shard is one of ``shards``."""
    for n in range(100_000):
        if shard_of(f"{prefix}-{n}") in shards:
            return f"{prefix}-{n}"
    raise AssertionError("no id found")


@pytest.fixture
async def runtimes(
    postgres_url: str, postgres_schema: str
) -> AsyncIterator[tuple[Commander, Commander]]:
    """Two commanders, each on a sharded adapter of its own, which split the shards, each
    looking at the store for work it was not told of only every RECHECK seconds."""
    ran.clear()
    adapters: list[PostgresPersistenceAdapter] = []
    for name in ("first", "second"):
        adapters.append(
            await open_postgres_persistence_adapter(
                postgres_url,
                schema=postgres_schema,
                sharded=True,
                name=name,
                wake_recheck=(RECHECK, RECHECK),
            )
        )
    try:
        for _ in range(2):
            for adapter in adapters:
                await adapter.rebalance()
        one, two = (
            create_commander([WORK, WAITER], persistence=adapter, ids=adapter.new_mission_id)
            for adapter in adapters
        )
        yield one, two
    finally:
        for adapter in adapters:
            await adapter.aclose()


def _shards(commander: Commander) -> set[int]:
    persistence = commander.persistence
    assert isinstance(persistence, PostgresPersistenceAdapter)
    return set(persistence.owned_shards)


async def test_a_start_of_a_mission_in_another_runtimes_shard_is_stored_for_it_to_run(
    runtimes: tuple[Commander, Commander],
) -> None:
    """A start (and a fork) with an id in another runtime's shard is stored waiting for its
    start, due now, running nothing here; the owner's due query finds it and the owner runs
    it, while a start in the runtime's own shard runs inline."""
    one, two = runtimes
    theirs = _id_in(_shards(two), "theirs")
    mine = _id_in(_shards(one), "mine")
    assert not one.owns(theirs)
    assert two.owns(theirs)
    assert one.owns(mine)
    handle = await one.start(WORK, {"n": 1}, id=theirs)
    stored = await handle.inspect()
    assert stored.status is MissionStatus.WAITING
    assert stored.current_node == "start"
    assert ran == []
    assert await one.due_missions(10, stored.updated_at) == []
    assert await two.due_missions(10, stored.updated_at) == [theirs]
    moved = await two.advance(theirs)
    assert moved is not None
    assert moved.current_node == "pause"
    assert ran == [("first", theirs)]
    await one.start(WORK, {"n": 2}, id=mine)
    assert ran == [("first", theirs), ("first", mine)]
    fork_id = _id_in(_shards(two), "fork")
    fork = await one.fork(mine, at_node="first", new_id=fork_id)
    forked = await fork.inspect()
    assert forked.status is MissionStatus.WAITING
    assert forked.forked_from == mine
    assert len(ran) == 2
    await two.advance(fork_id)
    assert ran[-1] == ("first", fork_id)


async def test_signals_and_cancellations_of_another_runtimes_missions_are_applied_by_it(
    runtimes: tuple[Commander, Commander], raw: Raw, postgres_schema: str
) -> None:
    """A signal and a cancellation, on one runtime, of missions in another runtime's shards are
    submissions that the other runtime applies, each marked applied once in the write that
    applied it; the caller gets the mission as the owner left it, and result() returns its
    end."""
    one, two = runtimes
    signalled = _id_in(_shards(two), "signalled")
    cancelled = _id_in(_shards(two), "cancelled")
    async with create_commander_runtime(two):
        await one.start(WAITER, {"n": 1}, id=signalled)
        await one.start(WAITER, {"n": 2}, id=cancelled)
        with anyio.fail_after(60):
            after_signal = await one.signal(signalled, "go", {"n": 5})
            assert after_signal.status is MissionStatus.COMPLETED
            assert (await one.result(signalled)).output == 5
            stopped = await one.cancel(cancelled, "not needed")
            assert stopped.status is MissionStatus.CANCELLED
    assert ran == [("after", signalled)]
    with raw(postgres_schema) as db:
        rows = db.execute("SELECT kind, mission_id, state FROM submissions ORDER BY seq").fetchall()
    assert rows == [("signal", signalled, "applied"), ("cancel", cancelled, "applied")]


async def test_the_submissions_table_keeps_decides_counts_and_purges(
    runtimes: tuple[Commander, Commander],
) -> None:
    """A submission is stored pending, listed only by the runtime that owns its mission's
    shard, refused only by that runtime (another is fenced out), counted, and purged once
    decided before the cutoff."""
    one, two = runtimes
    first, second = one.persistence, two.persistence
    assert isinstance(first, PostgresPersistenceAdapter)
    assert isinstance(second, PostgresPersistenceAdapter)
    theirs = _id_in(_shards(two), "submitted")
    now = datetime(2030, 1, 1, tzinfo=UTC)
    stored = await first.submit(
        NewSubmission(
            kind=SubmissionKind.SIGNAL,
            mission_id=theirs,
            name="go",
            payload={"n": 1},
            submitted_at=now,
            submitted_by="test",
        )
    )
    assert await first.load_submission(stored.seq) == stored
    assert await first.pending_submissions(10) == []
    assert await second.pending_submissions(10) == [stored]
    assert await second.count_failure(stored.seq) == 1
    refusal = Refusal("UnknownSignalError", "no need_to 'go'")
    with pytest.raises(ShardLostError):
        await first.decide_submission(stored.seq, SubmissionState.REFUSED, refusal, now)
    assert await first.load_submission(stored.seq) == stored
    await second.decide_submission(stored.seq, SubmissionState.REFUSED, refusal, now)
    decided = await first.load_submission(stored.seq)
    assert decided is not None
    assert decided.state is SubmissionState.REFUSED
    assert decided.refusal == refusal
    assert decided.decided_at == now
    assert await second.pending_submissions(10) == []
    assert await first.purge_submissions(now, 10, dry_run=True) == 0
    later = now + timedelta(seconds=1)
    assert await first.purge_submissions(later, 10, dry_run=True) == 1
    assert await first.purge_submissions(later, 10) == 1
    assert await first.load_submission(stored.seq) is None


async def test_writes_other_processes_must_hear_of_send_a_notice_when_they_commit(
    runtimes: tuple[Commander, Commander], postgres_url: str, postgres_schema: str
) -> None:
    """A start stored for another runtime's shard, a submission and a mission's end each send
    a notice on the schema's channel when their transaction commits (the shard and due time,
    the shard, the mission id); a start of a mission in the runtime's own shard sends none."""
    one, two = runtimes
    theirs = _id_in(_shards(two), "notified")
    mine = _id_in(_shards(one), "quiet")
    listener = Listener(postgres_url, channel_of(postgres_schema))
    await listener.open()
    try:
        await one.start(WORK, {"n": 1}, id=mine)
        started = await (await one.start(WAITER, {"n": 1}, id=theirs)).inspect()
        assert started.due_at is not None
        with anyio.fail_after(10):
            assert await listener.wait() == [f"d {shard_of(theirs)} {started.due_at.isoformat()}"]
        await two.advance(theirs)
        submission = await one.submit_signal(theirs, "go", {"n": 3})
        with anyio.fail_after(10):
            assert await listener.wait() == [f"s {shard_of(theirs)}"]
        assert (await two.apply_submissions(10)) == 1
        assert (await one.verdict(submission, at_rest=True)).status is MissionStatus.COMPLETED
        with anyio.fail_after(10):
            assert await listener.wait() == [f"e {theirs}"]
    finally:
        listener.close()


async def test_a_listening_runtime_runs_work_stored_for_it_when_told_not_at_its_recheck(
    runtimes: tuple[Commander, Commander],
) -> None:
    """A runtime that looks at the store itself only every RECHECK seconds runs a start another
    runtime stored in its shard, and applies a signal submitted for it, well before that (its
    notices wake it); and a waiter on the first runtime, which listens too, gets the mission's
    end before its next re-read."""
    one, two = runtimes
    first, second = one.persistence, two.persistence
    assert isinstance(first, PostgresPersistenceAdapter)
    assert isinstance(second, PostgresPersistenceAdapter)
    theirs = _id_in(_shards(two), "woken")
    async with create_commander_runtime(two), anyio.create_task_group() as tasks:
        tasks.start_soon(first.listen)
        with anyio.fail_after(10):
            # Polled: the listeners connect in worker threads.
            while not (first.listening and second.listening):  # noqa: ASYNC110
                await anyio.sleep(0.01)
        # The tick the runtime's first wake-up asked for has run: from here on, only a
        # notice (or the recheck) gets the runtime to look at the store.
        await anyio.sleep(1)

        async def tick_slowly() -> None:
            # Virtual time jumps by at most this at each idle moment (a slow query on this
            # loaded machine), so it cannot reach a recheck while a notice is on its way.
            while True:  # noqa: ASYNC110 (a clock's ticks, not a wait for an event)
                await anyio.sleep(0.1)

        tasks.start_soon(tick_slowly)
        began = anyio.current_time()
        await one.start(WAITER, {"n": 1}, id=theirs)
        with anyio.fail_after(60):
            signalled = await one.signal(theirs, "go", {"n": 4})
            assert signalled.status is MissionStatus.COMPLETED
        with anyio.fail_after(REREAD_INTERVAL[1] / 2):
            assert (await one.result(theirs)).output == 4
        assert anyio.current_time() - began < 60
        tasks.cancel_scope.cancel()


async def test_a_runtime_in_the_manual_mode_applies_submissions_but_ticks_only_when_asked(
    runtimes: tuple[Commander, Commander],
) -> None:
    """A runtime with auto_schedule=False applies a signal another runtime submitted for it as
    it comes, but the wake-ups of its listener schedule no tick: a start stored for it waits
    until the application asks for a tick."""
    one, two = runtimes
    signalled = _id_in(_shards(two), "signalled")
    stored = _id_in(_shards(two), "stored")
    await two.start(WAITER, {"n": 1}, id=signalled)
    async with create_commander_runtime(two, auto_schedule=False) as runtime:
        startup = runtime.last_report
        assert startup is not None
        await one.start(WAITER, {"n": 2}, id=stored)
        with anyio.fail_after(60):
            applied = await one.signal(signalled, "go", {"n": 5})
        assert applied.status is MissionStatus.COMPLETED
        # Time for a tick the wake-ups would have asked for to run.
        await anyio.sleep(1)
        waiting = await one.inspect(stored)
        assert (waiting.status, waiting.current_node) == (MissionStatus.WAITING, "start")
        assert runtime.last_report is startup
        await runtime.tick()
        moved = await one.inspect(stored)
        assert moved.current_node != "start"
    assert ran == [("after", signalled)]
