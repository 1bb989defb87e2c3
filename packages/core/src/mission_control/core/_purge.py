"""Purge: deleting finished missions older than a cutoff, in short transactions."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from datetime import datetime
from typing import Any, Final, TypedDict

import anyio.lowlevel
import attrs

from ._definition import MissionDefinition
from ._errors import InvalidInputError
from ._persistence import MAX_LIST_LIMIT, PersistenceAdapter
from ._snapshot import MissionSnapshot, MissionStatus
from ._submissions import SubmissionStore
from ._tenants import ANY_TENANT, TenantFilter

PURGE_BATCH: Final = 500
"""How many missions ``purge`` reads, and deletes in one transaction at most, at a time by
default."""

TRANSACTION_TARGET: Final = 0.1
"""Seconds a purge's delete transaction should take at most: the owner's writes wait for it.
The number of missions per transaction follows from the ones before (a mission's timeline may
hold thousands of entries), starting at ``FIRST_TRANSACTION``."""

FIRST_TRANSACTION: Final = 16
"""How many missions a purge deletes in its first transaction (then at most twice as many as
the one before, while they stay under ``TRANSACTION_TARGET``)."""

FINISHED: Final = (
    MissionStatus.COMPLETED,
    MissionStatus.FAILED,
    MissionStatus.CANCELLED,
    MissionStatus.COMPENSATED,
)


@attrs.frozen
class PurgeBatch:
    """What one batch of a purge did (given to ``purge(on_batch=...)`` as each ends)."""

    status: MissionStatus
    """The status of the missions the batch read."""
    read: int
    """How many missions of that status it read."""
    matched: int
    """How many of them finished before the cutoff and may go (with ``dry_run``: would)."""
    deleted: int
    """How many it deleted (0 with ``dry_run``)."""
    kept_for_parent: int
    """How many matched but stay: child missions whose parent has not finished."""
    kept_for_submissions: int = 0
    """How many matched but stay: missions work was submitted for that the owner has not
    applied yet (a retry, a signal)."""


class PurgeOptions(TypedDict, total=False):
    """What ``purge`` takes beside its cutoff, all optional."""

    status: MissionStatus | Collection[MissionStatus] | None
    """The finished statuses to purge (default: all four)."""
    definition: str | MissionDefinition[Any, Any, Any] | None
    batch_size: int
    """How many missions are read at a time, and deleted in one transaction at most (default
    ``PURGE_BATCH``, at most 1,000; fewer when their timelines make a transaction long)."""
    tenant: str | None
    """Only the missions of this tenant (``None``: of no tenant); every tenant's by default."""
    dry_run: bool
    """Count what would go, delete nothing."""
    on_batch: Callable[[PurgeBatch], None] | None
    """Called after each batch (a progress bar)."""


@attrs.frozen
class PurgeReport:
    """What a purge did, summed over its batches."""

    matched: int = 0
    deleted: int = 0
    kept_for_parent: int = 0
    batches: int = 0
    submissions_deleted: int = 0
    """Decided submissions deleted (with ``dry_run``: how many would be)."""
    dry_run: bool = False
    kept_for_submissions: int = 0


def purge_statuses(
    status: MissionStatus | Collection[MissionStatus] | None,
) -> tuple[MissionStatus, ...]:
    """The finished statuses a purge goes through (every one by default)."""
    if status is None:
        return FINISHED
    given = [status] if isinstance(status, str) else list(status)
    found: list[MissionStatus] = []
    for value in given:
        try:
            parsed = MissionStatus(value)
        except ValueError:
            raise InvalidInputError(f"status must be a MissionStatus, got {value!r}") from None
        if not parsed.is_terminal:
            raise InvalidInputError(
                f"purge deletes finished missions only (completed, failed, cancelled, "
                f"compensated), not {parsed.value} ones"
            )
        if parsed not in found:
            found.append(parsed)
    return tuple(found)


async def purge(
    persistence: PersistenceAdapter,
    is_held: Callable[[str], bool],
    *,
    finished_before: datetime,
    statuses: tuple[MissionStatus, ...],
    definition: str | None,
    batch_size: int,
    dry_run: bool,
    on_batch: Callable[[PurgeBatch], None] | None,
    tenant: TenantFilter = ANY_TENANT,
) -> PurgeReport:
    """Delete the finished missions of ``statuses`` (and ``definition``) last changed before
    ``finished_before``, ``batch_size`` read at a time and deleted in transactions of at most
    that many that each take about ``TRANSACTION_TARGET``, other tasks running between them;
    then, when neither ``statuses``, ``definition`` nor ``tenant`` narrows the purge, the
    submissions decided before then. A child mission whose parent has not finished stays, so
    does a mission with a pending submission (the owner applies it later) and one a task of
    this process holds."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise InvalidInputError(f"batch_size must be a whole number, got {batch_size!r}")
    if not 1 <= batch_size <= MAX_LIST_LIMIT:
        raise InvalidInputError(
            f"batch_size must be from 1 to {MAX_LIST_LIMIT}, got {batch_size!r}"
        )
    matched = deleted_total = kept_total = kept_pending_total = batches = 0
    store = persistence if isinstance(persistence, SubmissionStore) else None
    size = min(batch_size, FIRST_TRANSACTION)
    for status in statuses:
        cursor: str | None = None
        while True:
            page = await persistence.list_missions(
                status=status,
                definition=definition,
                limit=batch_size,
                after_id=cursor,
                tenant=tenant,
            )
            if not page:
                break
            cursor = page[-1].id
            chosen: dict[str, int] = {}
            kept = 0
            for snapshot in page:
                if snapshot.updated_at >= finished_before or is_held(snapshot.id):
                    continue
                if await _parent_runs(persistence, snapshot):
                    kept += 1
                    continue
                chosen[snapshot.id] = snapshot.revision
            awaited = await _awaited(store) if chosen else set[str]()
            kept_pending = 0
            for mission_id in awaited.intersection(chosen):
                del chosen[mission_id]
                kept_pending += 1
            deleted = 0
            todo = list(chosen.items()) if not dry_run else []
            while todo:
                part, todo = todo[:size], todo[size:]
                began = time.perf_counter()
                deleted += len(await persistence.delete_missions(dict(part)))
                size = _next_size(size, len(part), time.perf_counter() - began, batch_size)
                if todo:
                    await anyio.lowlevel.checkpoint()
            batch = PurgeBatch(
                status, len(page), len(chosen) + kept + kept_pending, deleted, kept, kept_pending
            )
            matched += batch.matched
            deleted_total += deleted
            kept_total += kept
            kept_pending_total += kept_pending
            batches += 1
            if on_batch is not None:
                on_batch(batch)
            # The event loop's other tasks run between batches, never inside one.
            await anyio.lowlevel.checkpoint()
            if len(page) < batch_size:
                break
    # Submissions go by age alone: a purge narrowed to some missions leaves them all.
    narrowed = definition is not None or set(statuses) != set(FINISHED) or tenant is not ANY_TENANT
    submissions = (
        await _purge_submissions(store, finished_before, batch_size, dry_run)
        if store is not None and not narrowed
        else 0
    )
    return PurgeReport(
        matched, deleted_total, kept_total, batches, submissions, dry_run, kept_pending_total
    )


def _next_size(size: int, done: int, took: float, most: int) -> int:
    """How many missions the next delete transaction takes, after one of ``done`` missions
    took ``took`` seconds: fewer when it passed ``TRANSACTION_TARGET`` (missions with long
    timelines), up to twice as many when a full one stayed under it."""
    fitting = most if took <= 0 else int(done * TRANSACTION_TARGET / took)
    if took > TRANSACTION_TARGET:
        return max(1, fitting)
    if done < size:
        return size  # a short last part says little about the next one
    return max(size, min(most, size * 2, fitting))


AWAITED_READ: Final = 100_000
"""How many pending submissions a purge reads, at most, to keep the missions they are for."""


async def _awaited(store: SubmissionStore | None) -> set[str]:
    """The missions pending submissions are for (read for each batch, just before it
    deletes: work submitted after that read is refused by the owner as for a mission that
    never existed)."""
    if store is None:
        return set()
    return {submission.mission_id for submission in await store.pending_submissions(AWAITED_READ)}


async def _parent_runs(persistence: PersistenceAdapter, snapshot: MissionSnapshot) -> bool:
    """Whether ``snapshot`` is a child mission whose parent is stored and has not finished
    (it may still look at the child, or retry it)."""
    link = snapshot.parent
    if link is None:
        return False
    parent = await persistence.load(link.mission_id)
    return parent is not None and not parent.is_terminal


async def _purge_submissions(
    store: SubmissionStore, before: datetime, batch_size: int, dry_run: bool
) -> int:
    if dry_run:
        return await store.purge_submissions(before, batch_size, dry_run=True)
    total = 0
    while True:
        deleted = await store.purge_submissions(before, batch_size)
        total += deleted
        if deleted < batch_size:
            return total
        await anyio.lowlevel.checkpoint()
