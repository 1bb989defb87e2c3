"""The persistence adapter protocol: what every storage backend implements."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Final, Protocol, runtime_checkable

from ._snapshot import (
    BufferedSignal,
    CancelRequest,
    JsonValue,
    MissionSnapshot,
    MissionStatus,
    NewSignal,
    Pause,
    TimelineEntry,
)
from ._tenants import ANY_TENANT, TenantFilter

LIST_LIMIT: Final = 100
"""How many missions ``list()`` returns by default: one page."""

MAX_LIST_LIMIT: Final = 1000
"""The most missions one ``list()`` call returns, so that no call holds the event loop for long
or loads a large store into memory; ``iter_missions()`` pages through any number."""


@runtime_checkable
class PersistenceAdapter(Protocol):
    """Durable storage of missions, their timelines, signal inboxes, cancellation and pause
    requests.

    Contract every adapter keeps (``PersistenceProtocolConformance`` in
    ``mission_control.testing`` checks it on the adapter alone):

    - Each method that writes is one atomic transaction: all of it is stored, or none.
    - ``commit`` is a compare-and-set on ``revision``: it stores ``snapshot`` only when the stored
      revision equals ``expected_revision`` (and ``snapshot.revision`` is that plus one), else it
      raises ``RevisionConflictError`` and stores nothing. A ``consumed_signal`` the mission has
      not buffered (consumed already, or another mission's) is a conflict too.
    - ``insert(signals=...)`` stores the new mission with those signals (:class:`NewSignal`)
      already in its inbox, in the same transaction (signal-with-start): each is buffered as
      ``append_signal`` would buffer it, in the order given, after every signal buffered before.
      An insert of an id that exists stores none of them.
    - ``append_signal``, ``request_cancel`` and ``request_pause`` for a mission that does not
      exist raise
      ``PersistenceError`` and store nothing.
    - Timeline entries come back in the order they were written, whichever method wrote them.
    - ``delete_missions`` is a compare-and-delete: only finished missions still at the revision
      given go, and nothing of them stays (snapshot, timeline, inbox, cancellation and pause
      requests).
    - A cancellation request is written by ``request_cancel`` (or carried by a committed
      snapshot) and never cleared or replaced: the first one stands, until a commit with
      ``reopened=True`` (a retry) stores the snapshot's instead. ``load`` and
      ``list_missions`` return it in ``snapshot.cancel_request``.
    - A pause request is written by ``request_pause`` only (an insert stores none; ``None``
      withdraws it), replacing the stored one; a commit whose snapshot is paused or finished
      clears it (``mission_control.core.storage.clears_pause_request``), any other commit keeps
      it, whatever its snapshot carries. ``request_pause`` on a mission stored paused or
      finished stores nothing (neither the request nor its timeline entries). ``load`` and
      ``list_missions`` return it in ``snapshot.pause_request``.
    - Queries for due and running missions cost what they return, not what is stored, and so
      does an unfiltered ``list_missions`` page (at most ``limit``, from ``after_id`` on). A
      filtered page costs what the adapter reads to find ``limit`` matches, up to every mission
      after ``after_id`` when few match (SQLite reads one index, the other filter checked row by
      row; the in-memory adapter walks the ids), except a page of one tenant's missions, which
      costs what it returns (an index on tenant and id; the in-memory adapter's walk starts at
      the tenant's keys, ``"<tenant>::"``).
    - A mission's ``tenant`` is set when it is inserted and never changes.
    - A snapshot given to ``insert`` or ``commit`` may be kept as it is: the caller gives up
      its values. An adapter that keeps them (in memory) may hand them out again from ``load``,
      ``list_missions`` and ``insert`` (and a timeline entry's ``detail`` from ``timeline``, a
      payload from ``next_signal``), and says so with a class attribute
      ``keeps_given_values = True``: its callers then treat what it returns as read-only, and
      the commander hands its own callers copies (``mission_control.core.storage.detached``).
      Without the attribute (or with ``False``: an adapter that writes values out and reads
      them back anew), what it returns is the caller's own and nothing is copied. Either way,
      the lists a method returns are new ones.
    - The user values in what is written (inputs, outputs, payloads) have passed the
      commander's checks, so the storage codec (``mission_control.core.storage``) always
      writes them, and reads them back equal.
    """

    async def insert(
        self,
        snapshot: MissionSnapshot,
        timeline: Sequence[TimelineEntry],
        *,
        signals: Sequence[NewSignal] = (),
    ) -> MissionSnapshot | None:
        """Store a new mission, with ``signals`` buffered in its inbox. When its id exists
        already, store nothing and return the existing mission; otherwise return ``None``."""
        ...

    async def load(self, mission_id: str) -> MissionSnapshot | None:
        """The stored mission, or ``None``. Raises ``PersistenceError`` for unreadable data."""
        ...

    async def commit(
        self,
        snapshot: MissionSnapshot,
        *,
        expected_revision: int,
        timeline: Sequence[TimelineEntry],
        consumed_signal: int | None = None,
        reopened: bool = False,
    ) -> None:
        """Replace the mission with ``snapshot``, append ``timeline`` and delete the buffered
        signal ``consumed_signal`` (if given), all in one transaction; or, on a conflict (see
        the contract above), raise ``RevisionConflictError`` and store nothing. With
        ``reopened`` (a retry of a finished mission), the stored cancellation request is
        replaced by the snapshot's, so ``None`` clears it: the one write that may."""
        ...

    async def append_signal(
        self,
        mission_id: str,
        name: str,
        payload: JsonValue,
        received_at: datetime,
        timeline: Sequence[TimelineEntry],
    ) -> BufferedSignal:
        """Buffer a signal for a mission that is not waiting for it (one transaction)."""
        ...

    async def next_signal(self, mission_id: str, name: str) -> BufferedSignal | None:
        """The oldest buffered signal called ``name`` for the mission, if any."""
        ...

    async def request_cancel(
        self, mission_id: str, request: CancelRequest, timeline: Sequence[TimelineEntry]
    ) -> None:
        """Record a cancellation request without changing the mission's revision."""
        ...

    async def request_pause(
        self, mission_id: str, request: Pause | None, timeline: Sequence[TimelineEntry]
    ) -> None:
        """Record a pause request (``None``: withdraw the stored one) without changing the
        mission's revision, with ``timeline``; nothing when the mission is stored paused or
        finished."""
        ...

    async def list_missions(
        self,
        *,
        status: MissionStatus | None = None,
        definition: str | None = None,
        limit: int,
        after_id: str | None = None,
        tenant: TenantFilter = ANY_TENANT,
    ) -> list[MissionSnapshot]:
        """At most ``limit`` missions ordered by id, optionally filtered, starting after
        ``after_id``. ``tenant`` selects the missions whose ``snapshot.tenant`` is that name
        (``None``: no tenant); :data:`ANY_TENANT`, the default, every mission."""
        ...

    async def due_missions(self, now: datetime, limit: int) -> list[str]:
        """Ids of missions whose due time (``snapshot.due_at``, whatever the mission's status: a
        running mission may have a waiting branch) is at or before ``now``, earliest first."""
        ...

    async def next_due_at(self, after: datetime | None = None) -> datetime | None:
        """The earliest due time (``snapshot.due_at``) of any mission; with ``after``, the
        earliest one later than ``after`` (so that due times stuck in the past do not hide the
        next one)."""
        ...

    async def running_missions(self, limit: int, after_id: str | None = None) -> list[str]:
        """Ids of the missions a process that stopped may have left half-moved, by id: those
        stored as running (left mid-node), and those with a pause request stored (a mission
        that reached a wait as the request was stored, its process stopping before it paused
        it: whoever takes it up pauses it)."""
        ...

    async def timeline(self, mission_id: str) -> list[TimelineEntry]:
        """The mission's timeline in the order it was written."""
        ...

    async def delete_missions(self, revisions: Mapping[str, int]) -> list[str]:
        """Delete, in one transaction, each mission of ``revisions`` (id to revision) that is
        still stored at that revision and finished (completed, failed, cancelled or
        compensated), with its timeline, its buffered signals and its cancellation request;
        return the ids deleted, in the order given. A mission that changed since it was read
        (a retry), is not finished or is not stored is left as it is."""
        ...

    async def aclose(self) -> None:
        """Release the store. Calling it again does nothing; every other method called after it
        raises ``PersistenceError``."""
        ...
