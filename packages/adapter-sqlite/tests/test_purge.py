"""Purge on a SQLite file: many missions in short transactions, decided submissions, and the
file's free pages reused (what the conformance suite cannot see: time and space)."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import apsw
import pytest

from mission_control.adapter_sqlite import SQLiteCommander
from mission_control.core import InvalidInputError, MissionStatus, PurgeBatch, SubmissionState, m
from mission_control.in_memory_commander import ManualClock

pytestmark = pytest.mark.anyio

FLOW = m.define("quick").start(parse=dict).need_to("go", parse=bool).end()

MISSIONS = 10_000
LONGEST_BATCH = 1.0
"""Seconds of the event loop thread's CPU time: the longest a batch of 500 may hold the loop (it
takes about 0.1 s). CPU time, not wall-clock time, so that other processes on a loaded machine
(or the other workers of a parallel test run) do not count as time the batch held the loop."""


def _pragma(path: Path, name: str) -> int:
    connection = apsw.Connection(str(path))
    try:
        rows: Any = connection.execute(f"PRAGMA {name}").fetchall()
        return int(rows[0][0])
    finally:
        connection.close()


@pytest.mark.slow
@pytest.mark.real_time
async def test_ten_thousand_missions_are_purged_in_short_batches(db_path: Path) -> None:
    """10,000 finished missions are read in 20 batches of 500 and deleted in short
    transactions (at most 500 missions each), the event loop running other tasks between them
    (the longest it is held stays far below a second), and the pages they freed are reused by
    the missions stored next, so the file stops growing."""
    clock = ManualClock()
    async with SQLiteCommander(db_path, [FLOW], clock=clock, role="owner") as commander:
        for number in range(MISSIONS):
            await commander.start(FLOW, {}, id=f"m-{number:05}")
            await commander.cancel(f"m-{number:05}", "done")
        clock.advance(timedelta(days=1))
        transactions = commander.persistence.transactions  # type: ignore[attr-defined]
        pages = _pragma(db_path, "page_count")
        held: list[float] = []
        batches: list[PurgeBatch] = []
        stamps: list[float] = []
        done = anyio.Event()

        async def watch_the_loop() -> None:
            # How long the loop went without running this task: what a batch holds it for.
            last = time.thread_time()
            while not done.is_set():
                await anyio.lowlevel.checkpoint()
                now = time.thread_time()
                held.append(now - last)
                last = now

        def batch_done(batch: PurgeBatch) -> None:
            batches.append(batch)
            stamps.append(time.perf_counter())

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(watch_the_loop)
            began = time.perf_counter()
            report = await commander.purge(finished_before=clock.now(), on_batch=batch_done)
            took = time.perf_counter() - began
            done.set()

        assert (report.matched, report.deleted, report.batches) == (MISSIONS, MISSIONS, 20)
        assert {(b.read, b.deleted) for b in batches} == {(500, 500)}
        # At least one per batch (the first ones grow from 16 missions), and one that found
        # no decided submission to delete.
        used = commander.persistence.transactions - transactions  # type: ignore[attr-defined]
        print(f"{used} transactions")
        assert used >= 21
        assert await commander.list() == []
        longest_batch = max(b - a for a, b in zip([began, *stamps], stamps, strict=False))
        print(
            f"purged {MISSIONS} in {took:.2f} s, longest batch {longest_batch * 1000:.1f} ms, "
            f"loop held at most {max(held) * 1000:.1f} ms"
        )
        assert max(held) < LONGEST_BATCH
        for number in range(MISSIONS // 2):
            await commander.start(FLOW, {}, id=f"n-{number:05}")
    assert _pragma(db_path, "page_count") <= pages
    assert _pragma(db_path, "freelist_count") > 0


async def test_purge_deletes_decided_submissions_before_the_cutoff(db_path: Path) -> None:
    """Purge also deletes the submissions decided before its cutoff (pending ones and newer
    ones stay), counting them in a dry run; one narrowed to some statuses or a definition
    leaves every submission (they go by age alone)."""
    clock = ManualClock()
    async with (
        SQLiteCommander(db_path, [FLOW], clock=clock, role="owner") as owner,
        SQLiteCommander(db_path, [], clock=clock, role="submitter") as raw,
    ):
        await owner.start(FLOW, {}, id="m-1")
        applied = await owner.submit_signal("m-1", "go", True)
        await owner.start(FLOW, {}, id="m-2")
        refused = await raw.submit_signal("m-2", "stop", True)
        await owner.apply_submissions(10)
        assert (await owner.submission(refused.seq)).state is SubmissionState.REFUSED
        clock.advance(timedelta(days=1))
        cutoff = clock.now()
        await owner.start(FLOW, {}, id="m-3")
        newer = await owner.submit_signal("m-3", "go", True)
        pending = await raw.submit_signal("m-2", "go", True)

        dry = await owner.purge(finished_before=cutoff, dry_run=True)
        assert (dry.submissions_deleted, dry.matched) == (2, 1)
        for narrowed in ({"status": [MissionStatus.COMPLETED]}, {"definition": "quick"}):
            counted = await owner.purge(finished_before=cutoff, dry_run=True, **narrowed)
            assert (counted.submissions_deleted, counted.matched) == (0, 1)
        report = await owner.purge(finished_before=cutoff)

        assert (report.submissions_deleted, report.deleted) == (2, 1)
        for gone in (applied, refused):
            with pytest.raises(InvalidInputError, match="no submission"):
                await owner.submission(gone.seq)
        assert (await owner.submission(newer.seq)).state is SubmissionState.APPLIED
        assert (await owner.submission(pending.seq)).state is SubmissionState.PENDING


async def test_purge_keeps_a_finished_mission_work_was_submitted_for(db_path: Path) -> None:
    """A finished mission with a pending submission (a retry the owner has not applied yet)
    stays, counted as kept; the owner then applies the retry to it."""
    clock = ManualClock()
    async with (
        SQLiteCommander(db_path, [FLOW], clock=clock, role="owner") as owner,
        SQLiteCommander(db_path, [], clock=clock, role="submitter") as raw,
    ):
        await owner.start(FLOW, {}, id="m-1")
        await owner.cancel("m-1", "by mistake")
        await owner.start(FLOW, {}, id="m-2")
        await owner.cancel("m-2", "for good")
        retry = await raw.submit_retry("m-1")
        clock.advance(timedelta(days=1))

        dry = await raw.purge(finished_before=clock.now(), dry_run=True)
        report = await raw.purge(finished_before=clock.now())

        assert (dry.matched, dry.kept_for_submissions) == (2, 1)
        assert (report.matched, report.deleted, report.kept_for_submissions) == (2, 1, 1)
        assert [s.id for s in await owner.list()] == ["m-1"]
        await owner.apply_submissions(10)
        assert (await owner.submission(retry.seq)).state is SubmissionState.APPLIED
        assert (await owner.inspect("m-1")).status is MissionStatus.WAITING


TIMELINE = 3_000
"""Timeline entries of each mission of the long-timeline test (a long loop's history)."""


@pytest.mark.slow
@pytest.mark.real_time
async def test_missions_with_long_timelines_are_purged_a_few_per_transaction(
    db_path: Path,
) -> None:
    """Missions of 3,000 timeline entries each are deleted a few per transaction, each kept
    short, rather than all of a batch at once: the owner's writes never wait behind a
    transaction of a million rows."""
    clock = ManualClock()
    missions = 300
    async with SQLiteCommander(db_path, [FLOW], clock=clock, role="owner") as commander:
        for number in range(missions):
            await commander.start(FLOW, {}, id=f"m-{number:03}")
            await commander.cancel(f"m-{number:03}", "done")
    # A long history for each, written as the engine writes its entries.
    connection = apsw.Connection(str(db_path))
    try:
        entry = connection.execute("SELECT entry FROM timeline LIMIT 1").fetchall()[0][0]
        with connection:
            connection.executemany(
                "INSERT INTO timeline (mission_id, revision, position, entry) VALUES (?, ?, ?, ?)",
                (
                    (f"m-{number:03}", 100, position, entry)
                    for number in range(missions)
                    for position in range(TIMELINE)
                ),
            )
    finally:
        connection.close()
    clock.advance(timedelta(days=1))
    async with SQLiteCommander(db_path, [FLOW], clock=clock, role="owner") as commander:
        store = commander.persistence
        real_delete = store.delete_missions
        calls: list[tuple[int, float]] = []

        async def timed_delete(revisions: Any) -> list[str]:
            # The loop thread's CPU time (see LONGEST_BATCH): the delete runs on that thread.
            began = time.thread_time()
            deleted = await real_delete(revisions)
            calls.append((len(revisions), time.thread_time() - began))
            return deleted

        store.delete_missions = timed_delete  # type: ignore[method-assign]
        report = await commander.purge(finished_before=clock.now())

    assert report.deleted == missions
    print("missions per transaction, seconds:", calls)
    assert max(size for size, _ in calls) < missions
    assert len(calls) > 5
    assert max(took for _, took in calls) < LONGEST_BATCH
