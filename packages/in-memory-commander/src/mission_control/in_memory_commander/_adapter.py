"""The in-memory persistence adapter: the full adapter contract, kept in this process."""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Mapping, Sequence
from datetime import datetime

import attrs

from mission_control.core import (
    CancelRequest,
    JsonValue,
    MissionSnapshot,
    MissionStatus,
    Pause,
    PersistenceError,
    Schedule,
    TimelineEntry,
    TimelineKind,
    TriggerFire,
)
from mission_control.core.storage import (
    ANY_TENANT,
    BufferedSignal,
    Gate,
    NewSignal,
    RevisionConflictError,
    TenantFilter,
    check_gate_revision,
    clears_pause_request,
    tenant_key,
)

_Entry = tuple[datetime, str, str | None, int | None, JsonValue]
# Kinds kept as plain strings: an enum member is an object the garbage collector tracks, and so
# would be the tuple holding it.
_KIND_TEXT = {kind: kind.value for kind in TimelineKind}
_TEXT_KIND = {kind.value: kind for kind in TimelineKind}


class InMemoryPersistenceAdapter:
    """Keeps missions in dictionaries. Nothing survives the process; everything else about it
    (atomic writes, compare-and-set, due queries, signal inbox) behaves like a durable store.

    Snapshots are immutable and stored as given, so reads cost nothing: a snapshot given to
    ``insert`` or ``commit`` is kept as it is (the caller gives its values up), and one returned
    shares its lists and dicts with the store (``keeps_given_values``): the commander copies
    what it hands to its callers.
    """

    keeps_given_values = True
    """What ``load`` and ``list_missions`` return may share lists and dicts with the store (an
    active mission is returned as stored): callers treat it as read-only, and the commander
    hands its own callers copies."""

    def __init__(self) -> None:
        self._missions: dict[str, MissionSnapshot] = {}
        # Timeline entries are kept as tuples of their fields, and a finished mission's timeline
        # as a tuple of them: the garbage collector stops tracking such tuples, so a large store
        # does not slow every full collection.
        self._timelines: dict[str, list[_Entry] | tuple[_Entry, ...]] = {}
        self._inboxes: dict[str, list[BufferedSignal]] = {}
        self._cancels: dict[str, CancelRequest] = {}
        self._pauses: dict[str, Pause] = {}
        self._running: set[str] = set()
        # Due times of missions, and a heap over them with stale entries skipped lazily.
        self._due: dict[str, datetime] = {}
        self._due_heap: list[tuple[datetime, str]] = []
        self._signal_seq = 0
        self._closed = False
        # Mission ids in order, for listing a page without sorting the store; None when an id
        # was inserted out of order (sorted again by the next listing).
        self._ordered: list[str] | None = []
        # The ids of the missions that have not ended, by (definition, version), for the
        # version check; and the fingerprint recorded for each version.
        self._unfinished: dict[tuple[str, int], set[str]] = {}
        self._fingerprints: dict[tuple[str, int], str] = {}
        self._schedules: dict[str, Schedule] = {}
        self._gates: dict[str, Gate] = {}
        self._fires: dict[str, TriggerFire] = {}

    def _check_open(self) -> None:
        if self._closed:
            raise PersistenceError("the in-memory adapter is closed")

    def _index(self, snapshot: MissionSnapshot) -> None:
        mission_id = snapshot.id
        if snapshot.status is MissionStatus.RUNNING:
            self._running.add(mission_id)
        else:
            self._running.discard(mission_id)
        version = (snapshot.definition, snapshot.definition_version)
        if snapshot.status.is_terminal:
            on_version = self._unfinished.get(version)
            if on_version is not None:
                on_version.discard(mission_id)
                if not on_version:
                    del self._unfinished[version]
        else:
            self._unfinished.setdefault(version, set()).add(mission_id)
        due = snapshot.due_at
        if due is None:
            self._due.pop(mission_id, None)
        elif self._due.get(mission_id) != due:
            self._due[mission_id] = due
            heapq.heappush(self._due_heap, (due, mission_id))

    def _store(self, snapshot: MissionSnapshot, timeline: Sequence[TimelineEntry]) -> None:
        """Keep the snapshot and append its timeline entries."""
        # The cancellation request has one writer, request_cancel; a snapshot can only add one.
        if snapshot.cancel_request is not None:
            self._cancels.setdefault(snapshot.id, snapshot.cancel_request)
            snapshot = attrs.evolve(snapshot, cancel_request=None)
        # The pause request's one writer is request_pause: a snapshot's is never stored.
        if snapshot.pause_request is not None:
            snapshot = attrs.evolve(snapshot, pause_request=None)
        if self._pauses and clears_pause_request(snapshot.status):
            self._pauses.pop(snapshot.id, None)
        self._missions[snapshot.id] = snapshot
        self._index(snapshot)
        self._log(snapshot.id, timeline, finished=snapshot.status.is_terminal)

    def _log(
        self, mission_id: str, timeline: Sequence[TimelineEntry], *, finished: bool = False
    ) -> None:
        entries = self._timelines[mission_id]
        if isinstance(entries, tuple):
            entries = list(entries)
        kinds = _KIND_TEXT
        entries.extend([(e.at, kinds[e.kind], e.node, e.attempt, e.detail) for e in timeline])
        self._timelines[mission_id] = tuple(entries) if finished else entries

    async def insert(
        self,
        snapshot: MissionSnapshot,
        timeline: Sequence[TimelineEntry],
        *,
        signals: Sequence[NewSignal] = (),
    ) -> MissionSnapshot | None:
        self._check_open()
        if snapshot.id in self._missions:
            return await self.load(snapshot.id)
        self._timelines[snapshot.id] = ()
        self._store(snapshot, timeline)
        for signal in signals:
            self._buffer(snapshot.id, signal.name, signal.payload, signal.received_at)
        ordered = self._ordered
        if ordered is not None:
            if not ordered or snapshot.id > ordered[-1]:
                ordered.append(snapshot.id)
            else:
                self._ordered = None
        return None

    async def load(self, mission_id: str) -> MissionSnapshot | None:
        self._check_open()
        # Read-only for the caller: see keeps_given_values.
        snapshot = self._missions.get(mission_id)
        if snapshot is None:
            return None
        cancel = self._cancels.get(mission_id)
        if cancel is not None:
            snapshot = attrs.evolve(snapshot, cancel_request=cancel)
        if self._pauses and (pause := self._pauses.get(mission_id)) is not None:
            snapshot = attrs.evolve(snapshot, pause_request=pause)
        return snapshot

    async def commit(
        self,
        snapshot: MissionSnapshot,
        *,
        expected_revision: int,
        timeline: Sequence[TimelineEntry],
        consumed_signal: int | None = None,
        reopened: bool = False,
    ) -> None:
        self._check_open()
        stored = self._missions.get(snapshot.id)
        if stored is None:
            raise RevisionConflictError(f"mission {snapshot.id!r} does not exist")
        revision = stored.revision
        if revision != expected_revision or snapshot.revision != expected_revision + 1:
            raise RevisionConflictError(
                f"mission {snapshot.id!r} is at revision {revision}, the commit expected "
                f"{expected_revision} and carried {snapshot.revision}"
            )
        inbox = self._inboxes.get(snapshot.id)
        if consumed_signal is not None:
            if inbox is None or not any(s.seq == consumed_signal for s in inbox):
                raise RevisionConflictError(
                    f"mission {snapshot.id!r} has no buffered signal {consumed_signal}"
                )
            inbox[:] = [s for s in inbox if s.seq != consumed_signal]
        if reopened:
            self._cancels.pop(snapshot.id, None)
        self._store(snapshot, timeline)

    async def append_signal(
        self,
        mission_id: str,
        name: str,
        payload: JsonValue,
        received_at: datetime,
        timeline: Sequence[TimelineEntry],
    ) -> BufferedSignal:
        self._check_open()
        if mission_id not in self._missions:
            raise PersistenceError(f"cannot buffer a signal for unknown mission {mission_id!r}")
        signal = self._buffer(mission_id, name, payload, received_at)
        self._log(mission_id, timeline)
        return signal

    def _buffer(
        self, mission_id: str, name: str, payload: JsonValue, received_at: datetime
    ) -> BufferedSignal:
        self._signal_seq += 1
        signal = BufferedSignal(self._signal_seq, name, payload, received_at)
        self._inboxes.setdefault(mission_id, []).append(signal)
        return signal

    async def next_signal(self, mission_id: str, name: str) -> BufferedSignal | None:
        self._check_open()
        for signal in self._inboxes.get(mission_id, ()):
            if signal.name == name:
                return signal
        return None

    async def request_cancel(
        self, mission_id: str, request: CancelRequest, timeline: Sequence[TimelineEntry]
    ) -> None:
        self._check_open()
        if mission_id not in self._missions:
            raise PersistenceError(f"cannot cancel unknown mission {mission_id!r}")
        self._cancels.setdefault(mission_id, request)
        self._log(mission_id, timeline)

    async def request_pause(
        self, mission_id: str, request: Pause | None, timeline: Sequence[TimelineEntry]
    ) -> None:
        self._check_open()
        stored = self._missions.get(mission_id)
        if stored is None:
            raise PersistenceError(f"cannot pause unknown mission {mission_id!r}")
        if clears_pause_request(stored.status):
            return  # paused or ended: nothing is left to request
        if request is None:
            self._pauses.pop(mission_id, None)
        else:
            self._pauses[mission_id] = request
        self._log(mission_id, timeline)

    async def list_missions(
        self,
        *,
        status: MissionStatus | None = None,
        definition: str | None = None,
        limit: int,
        after_id: str | None = None,
        tenant: TenantFilter = ANY_TENANT,
    ) -> list[MissionSnapshot]:
        self._check_open()
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise ValueError(f"limit must be a whole number >= 0, got {limit!r}")
        ordered = self._ordered
        if ordered is None:
            ordered = self._ordered = sorted(self._missions)
        start = 0 if after_id is None else bisect.bisect_right(ordered, after_id)
        # A tenant's missions are the keys that begin with its prefix (see
        # mission_control.core.storage.tenant_key): the walk starts there and ends past them.
        prefix = tenant_key(tenant, "") if isinstance(tenant, str) else None
        if prefix is not None:
            start = max(start, bisect.bisect_left(ordered, prefix))
        result: list[MissionSnapshot] = []
        for index in range(start, len(ordered)):
            if len(result) >= limit:
                break
            mission_id = ordered[index]
            if prefix is not None and not mission_id.startswith(prefix):
                break
            stored = self._missions[mission_id]
            if tenant is not ANY_TENANT and stored.tenant != tenant:
                continue
            if status is not None and stored.status is not status:
                continue
            if definition is not None and stored.definition != definition:
                continue
            loaded = await self.load(mission_id)
            assert loaded is not None
            result.append(loaded)
        return result

    async def due_missions(self, now: datetime, limit: int) -> list[str]:
        self._check_open()
        heap = self._due_heap
        taken: list[tuple[datetime, str]] = []
        result: list[str] = []
        while heap and len(result) < limit and heap[0][0] <= now:
            due, mission_id = heapq.heappop(heap)
            if self._due.get(mission_id) != due:
                continue
            taken.append((due, mission_id))
            result.append(mission_id)
        for entry in taken:
            heapq.heappush(heap, entry)
        return result

    async def next_due_at(self, after: datetime | None = None) -> datetime | None:
        self._check_open()
        heap = self._due_heap
        while heap and self._due.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)
        if not heap or after is None or heap[0][0] > after:
            return heap[0][0] if heap else None
        # A walk down the heap's tree: a child is never earlier than its parent, so only the
        # entries due by ``after`` (and stale ones) are looked through, and none is moved.
        best: datetime | None = None
        size = len(heap)
        stack = [0]
        while stack:
            index = stack.pop()
            due, mission_id = heap[index]
            if best is not None and due >= best:
                continue
            if due > after and self._due.get(mission_id) == due:
                best = due
                continue
            stack.extend(child for child in (2 * index + 1, 2 * index + 2) if child < size)
        return best

    async def running_missions(self, limit: int, after_id: str | None = None) -> list[str]:
        self._check_open()
        # A pause request is kept only for a mission not paused or ended (see request_pause).
        found = self._running.union(self._pauses) if self._pauses else self._running
        ids = sorted(i for i in found if after_id is None or i > after_id)
        return ids[:limit]

    # -- definition versions (DefinitionVersionStore) ------------------------------------------

    async def versions_in_use(self) -> list[tuple[str, int]]:
        self._check_open()
        return sorted(self._unfinished)

    async def missions_on_version(self, definition: str, version: int, limit: int) -> list[str]:
        self._check_open()
        return sorted(self._unfinished.get((definition, version), ()))[: max(limit, 0)]

    async def fingerprints(self) -> dict[tuple[str, int], str]:
        self._check_open()
        return dict(self._fingerprints)

    async def record_fingerprints(self, fingerprints: Mapping[tuple[str, int], str]) -> None:
        self._check_open()
        self._fingerprints.update(fingerprints)

    async def timeline(self, mission_id: str) -> list[TimelineEntry]:
        self._check_open()
        return [
            TimelineEntry(at, _TEXT_KIND[kind], node, attempt, detail)
            for at, kind, node, attempt, detail in self._timelines.get(mission_id, ())
        ]

    async def delete_missions(self, revisions: Mapping[str, int]) -> list[str]:
        self._check_open()
        deleted: list[str] = []
        for mission_id, revision in revisions.items():
            stored = self._missions.get(mission_id)
            if stored is None or stored.revision != revision or not stored.status.is_terminal:
                continue
            del self._missions[mission_id]
            self._timelines.pop(mission_id, None)
            self._inboxes.pop(mission_id, None)
            self._cancels.pop(mission_id, None)
            self._pauses.pop(mission_id, None)
            self._running.discard(mission_id)
            self._due.pop(mission_id, None)
            deleted.append(mission_id)
        ordered = self._ordered
        if deleted and ordered is not None:
            gone = set(deleted)
            self._ordered = [mission_id for mission_id in ordered if mission_id not in gone]
        return deleted

    # -- concurrency keys (ConcurrencyStore) --------------------------------------------------

    async def load_gate(self, key: str) -> Gate | None:
        self._check_open()
        return self._gates.get(key)

    async def save_gate(self, gate: Gate, *, expected_revision: int) -> None:
        self._check_open()
        self._check_gate(gate, expected_revision)
        self._gates[gate.key] = gate

    async def insert_holding(
        self,
        snapshot: MissionSnapshot,
        timeline: Sequence[TimelineEntry],
        gate: Gate,
        *,
        expected_revision: int,
    ) -> MissionSnapshot | None:
        self._check_open()
        if snapshot.id in self._missions:
            return await self.load(snapshot.id)
        self._check_gate(gate, expected_revision)
        # No checkpoint between the check and the two stores: one step, as a transaction.
        await self.insert(snapshot, timeline)
        self._gates[gate.key] = gate
        return None

    def _check_gate(self, gate: Gate, expected_revision: int) -> None:
        stored = self._gates.get(gate.key)
        if (0 if stored is None else stored.revision) != expected_revision:
            raise RevisionConflictError(
                f"concurrency key {gate.key!r} is not stored at revision {expected_revision}"
            )
        check_gate_revision(gate, expected_revision)

    # -- schedules (ScheduleStore): few per store, so the queries walk them all --------------

    async def insert_schedule(self, schedule: Schedule) -> Schedule | None:
        self._check_open()
        existing = self._schedules.get(schedule.id)
        if existing is None:
            self._schedules[schedule.id] = schedule
        return existing

    async def load_schedule(self, schedule_id: str) -> Schedule | None:
        self._check_open()
        return self._schedules.get(schedule_id)

    async def commit_schedule(self, schedule: Schedule, *, expected_revision: int) -> None:
        self._check_open()
        stored = self._schedules.get(schedule.id)
        if stored is None or stored.revision != expected_revision:
            raise RevisionConflictError(
                f"schedule {schedule.id!r} is not stored at revision {expected_revision}"
            )
        if schedule.revision != expected_revision + 1:
            raise RevisionConflictError(
                f"schedule {schedule.id!r}: a commit expecting revision {expected_revision} "
                f"must carry revision {expected_revision + 1}, not {schedule.revision}"
            )
        self._schedules[schedule.id] = schedule

    async def delete_schedule(self, schedule_id: str) -> bool:
        self._check_open()
        return self._schedules.pop(schedule_id, None) is not None

    async def list_schedules(self, *, limit: int, after_id: str | None = None) -> list[Schedule]:
        self._check_open()
        ids = sorted(i for i in self._schedules if after_id is None or i > after_id)
        return [self._schedules[i] for i in ids[: max(limit, 0)]]

    async def due_schedules(self, now: datetime, limit: int) -> list[Schedule]:
        self._check_open()
        due = [
            s
            for s in self._schedules.values()
            if s.next_fire_at is not None and s.next_fire_at <= now
        ]
        due.sort(key=lambda s: (s.next_fire_at, s.id))
        return due[: max(limit, 0)]

    async def next_schedule_at(self, after: datetime | None = None) -> datetime | None:
        self._check_open()
        times = [
            s.next_fire_at
            for s in self._schedules.values()
            if s.next_fire_at is not None and (after is None or s.next_fire_at > after)
        ]
        return min(times, default=None)

    # -- fired triggers (TriggerStore) ---------------------------------------------------------

    async def record_trigger(self, fire: TriggerFire) -> TriggerFire | None:
        self._check_open()
        existing = self._fires.get(fire.id)
        if existing is None:
            self._fires[fire.id] = fire
        return existing

    async def load_trigger(self, fire_id: str) -> TriggerFire | None:
        self._check_open()
        return self._fires.get(fire_id)

    async def list_triggers(
        self, *, name: str | None = None, limit: int, after_id: str | None = None
    ) -> list[TriggerFire]:
        self._check_open()
        ids = sorted(
            i
            for i, fire in self._fires.items()
            if (after_id is None or i > after_id) and (name is None or fire.name == name)
        )
        return [self._fires[i] for i in ids[: max(limit, 0)]]

    async def aclose(self) -> None:
        self._closed = True
