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
"""Seconds: the longest a batch of 500 may hold the event loop (it takes about 0.1 s)."""


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
    """10,000 finished missions are purged in 20 transactions of 500, the event loop running
    other tasks between them (the longest it is held stays far below a second), and the pages
    they freed are reused by the missions stored next, so the file stops growing."""
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
            last = time.perf_counter()
            while not done.is_set():
                await anyio.lowlevel.checkpoint()
                now = time.perf_counter()
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
        # One per batch, and one that found no decided submission to delete.
        assert commander.persistence.transactions - transactions == 21  # type: ignore[attr-defined]
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
