"""Static typing checks of retry, fork and purge, run by pyright (not pytest): their options
are keyword-only and typed; what they return is typed. Marked lines must be errors (see
check_dsl_types.py)."""

from __future__ import annotations

from datetime import UTC, datetime

from mission_control.core import (
    Commander,
    MissionHandle,
    MissionSnapshot,
    MissionStatus,
    PurgeBatch,
    PurgeReport,
    Submission,
)


def show(batch: PurgeBatch) -> None:
    print(batch.status, batch.deleted)


async def operate(commander: Commander) -> None:
    retried: MissionSnapshot = await commander.retry("m-1")
    await commander.retry("m-1", from_node="charge")
    await commander.retry("m-1", "charge")  # pyright: ignore[reportCallIssue]
    await commander.retry("m-1", from_node=3)  # pyright: ignore[reportArgumentType]
    submitted: Submission = await commander.submit_retry("m-1", from_node=None)
    fork: MissionHandle = await commander.fork("m-1", at_node="charge", new_id="m-2")
    await commander.fork("m-1")  # pyright: ignore[reportCallIssue]
    await commander.fork("m-1", "charge")  # pyright: ignore[reportCallIssue]
    cutoff = datetime.now(UTC)
    report: PurgeReport = await commander.purge(finished_before=cutoff, on_batch=show)
    await commander.purge(finished_before=cutoff, status=[MissionStatus.FAILED], dry_run=True)
    await commander.purge(finished_before="yesterday")  # pyright: ignore[reportArgumentType]
    await commander.purge(cutoff)  # pyright: ignore[reportCallIssue]
    await commander.purge(finished_before=cutoff, on_batch=print)
    del retried, submitted, fork, report
