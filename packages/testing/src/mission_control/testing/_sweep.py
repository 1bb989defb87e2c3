"""The crash sweep: does a mission end the same however a crash interrupts it?

:func:`sweep_crashes` runs a mission once, uninterrupted, through a store that records every
write (its commit points), then runs it again once per commit point and side of it: the process
"dies" right before that write (it never happens) or right after it. Dying is simulated the way a
crash looks from the store: every task of the process stops at once, nothing it held in memory is
kept, and no later write reaches the store. A new commander and runtime on the same store (for a
file, a newly opened adapter) then recover the mission, the rest of the script is played, and the
end is compared with the uninterrupted run's.

The store is wrapped, not reached into: :class:`_CrashingStore` implements the public
``PersistenceAdapter`` protocol over any adapter, and node runs are counted through the public
observer hook (``mission_control.core.lowlevel.MissionObserver``).
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import importlib.util
import json
import math
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, Protocol, TypedDict, assert_never, cast

import anyio
import attrs
import trio
import trio.testing

from mission_control.core import (
    MAX_LIST_LIMIT,
    CancelRequest,
    ErrorInfo,
    JsonValue,
    MissionDefinition,
    MissionSnapshot,
    MissionStatus,
    NodeStatus,
    Pause,
    TimelineEntry,
    TimelineKind,
    create_commander,
)
from mission_control.core.lowlevel import (
    NodeEnd,
    ObservedMission,
    ObservedNode,
    RunObserver,
    RunTrigger,
)
from mission_control.core.storage import (
    ANY_TENANT,
    BufferedSignal,
    ConcurrencyStore,
    DefinitionVersionStore,
    Gate,
    NewSignal,
    PersistenceAdapter,
    TenantFilter,
    VersionKey,
)
from mission_control.in_memory_commander import InMemoryPersistenceAdapter, SequentialIds
from mission_control.runtime import create_commander_runtime

from ._clocks import LoopClock
from ._tasks import wait_all_tasks_blocked
from ._virtual_loop import VirtualTimeEventLoop

SWEPT_ID = "swept"
"""The id the swept mission gets in every run (its idempotency keys are the same in each)."""

SWEEP_START = datetime(2026, 1, 1, tzinfo=UTC)
"""Where the commander's clock starts in every run."""

Side = Literal["before", "after"]
"""Which side of a write the simulated crash is on: ``before`` (the write never happens) or
``after`` (it is stored, and the process dies before anything else)."""

WriteKind = Literal[
    "insert",
    "commit",
    "append_signal",
    "request_cancel",
    "request_pause",
    "save_gate",
    "insert_holding",
]


class SimulatedCrash(BaseException):
    """The crash a sweep simulates, raised where the process dies. A ``BaseException``, like
    the ``SystemExit`` of a dying process, so that no ``except Exception`` (the library's or a
    step's) carries on past it."""


# -- the script ----------------------------------------------------------------------------------


@attrs.frozen
class SendSignal:
    """A script action: send the signal ``name`` with ``payload`` to the swept mission (or to
    the mission ``mission``, a child's id for instance)."""

    name: str
    payload: Any = None
    mission: str | None = None


@attrs.frozen
class AdvanceClock:
    """A script action: let ``seconds`` pass (a ``timedelta`` is taken too), while the runtime
    fires what comes due."""

    seconds: float = attrs.field(
        converter=lambda value: (
            value.total_seconds() if isinstance(value, timedelta) else float(value)  # pyright: ignore[reportUnknownLambdaType, reportUnknownMemberType, reportUnknownArgumentType]
        )
    )

    def __attrs_post_init__(self) -> None:
        if not (math.isfinite(self.seconds) and self.seconds >= 0):
            raise ValueError(f"AdvanceClock needs a finite number of seconds >= 0, got {self}")


@attrs.frozen
class CancelMission:
    """A script action: cancel the swept mission (or ``mission``), as ``commander.cancel``."""

    reason: str | None = None
    compensate: bool = False
    mission: str | None = None


ScriptAction = SendSignal | AdvanceClock | CancelMission
"""What a sweep's script is made of, played in order after the mission starts."""


# -- the report ----------------------------------------------------------------------------------


@attrs.frozen
class CommitPoint:
    """One write of the uninterrupted run: where a crash is simulated."""

    number: int
    """Its place among the run's writes, from 1."""
    kind: WriteKind
    mission: str
    """The mission written (for a ``save_gate``, the concurrency key whose gate it is)."""
    occurrence: int
    """The how-manyth write of this kind for this mission (from 1): what a later run matches,
    since the writes of several missions or branches may interleave differently."""
    revision: int | None
    """The mission's revision after the write (``None`` for a buffered signal, a cancellation
    or a pause request, which do not change it; for a ``save_gate``, the gate's)."""
    what: str
    """The timeline entries it wrote, as ``kind node`` (``"step-completed charge"``)."""
    action: int
    """The script action under way when it was written: 0 for the start, ``i`` for the
    script's ``i``-th action (from 1)."""

    def __str__(self) -> str:
        return f"#{self.number} {self.kind} of {self.mission!r} ({self.what or 'no entries'})"


@attrs.frozen
class CrashRun:
    """A run with a crash at one side of one commit point, recovered and played to the end."""

    point: CommitPoint
    side: Side
    reached: bool
    """Whether the run came to the point (a run whose writes differ from the uninterrupted
    run's, through steps that are not deterministic, may not)."""
    repeated: Mapping[str, int]
    """Node runs made more often than in the uninterrupted run, keyed by the node's idempotency
    key (``"<mission id>:<path>"``): how many runs more (the same attempt run again)."""
    differences: tuple[str, ...]
    """How its end differs from the uninterrupted run's (empty: the same)."""

    def __str__(self) -> str:
        return f"crash {self.side} {self.point}"


@attrs.frozen
class SweepReport:
    """What :func:`sweep_crashes` found."""

    points: tuple[CommitPoint, ...]
    """The writes of the uninterrupted run, in order."""
    runs: tuple[CrashRun, ...]
    """One run per point and side: before and after each point in turn."""
    outcome: Mapping[str, object]
    """The end of the uninterrupted run, as compared: per mission id its status, output, error
    type, positions, waits, node records (statuses, outputs and error types) and the signals
    left buffered; and under ``"outside world"`` what ``outside`` returned."""

    @property
    def failures(self) -> tuple[CrashRun, ...]:
        """The runs that ended differently from the uninterrupted run."""
        return tuple(run for run in self.runs if run.differences)

    def runs_repeating(self, node: str, *, mission: str = SWEPT_ID) -> tuple[CrashRun, ...]:
        """The runs in which the node at path ``node`` of ``mission`` ran again."""
        key = f"{mission}:{node}"
        return tuple(run for run in self.runs if key in run.repeated)

    def repeated_nodes(self) -> dict[str, tuple[CrashRun, ...]]:
        """Every node that ran again at some crash point (by idempotency key), with those runs:
        where idempotency matters."""
        found: dict[str, list[CrashRun]] = {}
        for run in self.runs:
            for key in run.repeated:
                found.setdefault(key, []).append(run)
        return {key: tuple(runs) for key, runs in sorted(found.items())}

    def assert_consistent(self) -> None:
        """Raise ``AssertionError`` naming every crash run that ended differently from the
        uninterrupted run, and how."""
        failures = self.failures
        if failures:
            lines = [f"{len(failures)} of {len(self.runs)} crash runs ended differently:"]
            for run in failures:
                lines.append(f"- {run}:")
                lines.extend(f"    {difference}" for difference in run.differences)
            raise AssertionError("\n".join(lines))

    def assert_never_repeated(self, *nodes: str, mission: str = SWEPT_ID) -> None:
        """Raise ``AssertionError`` when a node at one of the paths ``nodes`` of ``mission`` ran
        again at some crash point, naming the points."""
        lines: list[str] = []
        for node in nodes:
            lines.extend(
                f"{node!r} ran {run.repeated[f'{mission}:{node}']} more time(s) at {run}"
                for run in self.runs_repeating(node, mission=mission)
            )
        if lines:
            raise AssertionError("\n".join(lines))


# -- stores --------------------------------------------------------------------------------------


class SweepStore(Protocol):
    """Where a sweep keeps the missions of each run: a new, empty store per run, which each
    simulated process opens anew."""

    async def create(self, run: str) -> None:
        """Make a new, empty store for the run called ``run`` (a short name, usable in a file
        name), the one :meth:`open` opens until the next call."""
        ...

    async def open(self) -> PersistenceAdapter:
        """Open the current run's store, as a process starting up would."""
        ...

    async def close(self, adapter: PersistenceAdapter) -> None:
        """Let go of an adapter :meth:`open` gave (also after a simulated crash)."""
        ...


class InMemorySweepStore:
    """The in-memory adapter as a :class:`SweepStore`: the adapter object is the store and
    outlives a simulated crash; each process sees it through a new wrapper (so that nothing a
    process kept beside it, the missions it held, survives)."""

    def __init__(self) -> None:
        self._adapter = InMemoryPersistenceAdapter()

    async def create(self, run: str) -> None:
        self._adapter = InMemoryPersistenceAdapter()

    async def open(self) -> PersistenceAdapter:
        return self._adapter

    async def close(self, adapter: PersistenceAdapter) -> None:
        pass


class FileSweepStore:
    """A store in a file per run, in ``directory``, opened by ``open`` (for instance
    ``mission_control.adapter_sqlite.create_sqlite_persistence_adapter``): each simulated
    process opens the file anew and closes it when it dies."""

    def __init__(
        self,
        directory: str | Path,
        open: Callable[[Path], PersistenceAdapter],
        *,
        suffix: str = ".sqlite",
    ) -> None:
        self._directory = Path(directory)
        self._open = open
        self._suffix = suffix
        self._path: Path | None = None

    @property
    def path(self) -> Path | None:
        """The current run's file."""
        return self._path

    async def create(self, run: str) -> None:
        self._directory.mkdir(parents=True, exist_ok=True)
        path = self._directory / f"{run}{self._suffix}"
        if path.exists():
            raise FileExistsError(f"the sweep's file {path} exists already")
        self._path = path

    async def open(self) -> PersistenceAdapter:
        if self._path is None:
            raise RuntimeError("FileSweepStore.open() before create()")
        return self._open(self._path)

    async def close(self, adapter: PersistenceAdapter) -> None:
        await adapter.aclose()


# -- the crashing store --------------------------------------------------------------------------


@attrs.frozen
class _Write:
    kind: WriteKind
    mission: str
    revision: int | None
    entries: tuple[TimelineEntry, ...]
    action: int
    consumed: int | None = None
    signal: str | None = None


@attrs.frozen
class CrashTarget:
    kind: WriteKind
    mission: str
    occurrence: int
    side: Side


class _CrashingStore:
    """A ``PersistenceAdapter`` over another that records every write and, given a target,
    dies at it: the write is made or not (the side), then every task of the process is
    cancelled (``crash``) and every later call raises :class:`SimulatedCrash`."""

    def __init__(
        self,
        inner: PersistenceAdapter,
        *,
        target: CrashTarget | None,
        crash: Callable[[], None],
    ) -> None:
        self.inner = inner
        self.target = target
        self.dead = False
        self.reached = False
        self.writes: list[_Write] = []
        self.action = 0
        """The script action under way (0: the start), set by the run."""
        self._counts: Counter[tuple[WriteKind, str]] = Counter()
        self._crash = crash
        self.on_write: Callable[[_Write], None] | None = None
        """Told of each write once stored (a child process reports them to the sweep)."""
        keeps = getattr(inner, "keeps_given_values", False)
        self.keeps_given_values = bool(keeps)

    def _alive(self) -> None:
        if self.dead:
            raise SimulatedCrash("the process is gone")

    def _die(self) -> None:
        self.dead = True
        self._crash()
        raise SimulatedCrash("simulated crash")

    async def _write(self, write: _Write, perform: Callable[[], Awaitable[object]]) -> object:
        self._alive()
        key = (write.kind, write.mission)
        self._counts[key] += 1
        target = self.target
        hit = (
            target is not None
            and not self.reached
            and (target.kind, target.mission, target.occurrence)
            == (write.kind, write.mission, self._counts[key])
        )
        if hit:
            self.reached = True
            if target is not None and target.side == "before":
                self._die()
        result = await perform()
        self.writes.append(write)
        if self.on_write is not None:
            self.on_write(write)
        if hit:
            self._die()
        return result

    async def insert(
        self,
        snapshot: MissionSnapshot,
        timeline: Sequence[TimelineEntry],
        *,
        signals: Sequence[NewSignal] = (),
    ) -> MissionSnapshot | None:
        write = _Write("insert", snapshot.id, snapshot.revision, tuple(timeline), self.action)
        result = await self._write(
            write, lambda: self.inner.insert(snapshot, timeline, signals=signals)
        )
        assert result is None or isinstance(result, MissionSnapshot)
        return result

    async def commit(
        self,
        snapshot: MissionSnapshot,
        *,
        expected_revision: int,
        timeline: Sequence[TimelineEntry],
        consumed_signal: int | None = None,
        reopened: bool = False,
    ) -> None:
        write = _Write(
            "commit",
            snapshot.id,
            snapshot.revision,
            tuple(timeline),
            self.action,
            consumed=consumed_signal,
        )
        await self._write(
            write,
            lambda: self.inner.commit(
                snapshot,
                expected_revision=expected_revision,
                timeline=timeline,
                consumed_signal=consumed_signal,
                reopened=reopened,
            ),
        )

    async def append_signal(
        self,
        mission_id: str,
        name: str,
        payload: JsonValue,
        received_at: datetime,
        timeline: Sequence[TimelineEntry],
    ) -> BufferedSignal:
        write = _Write("append_signal", mission_id, None, tuple(timeline), self.action, signal=name)
        result = await self._write(
            write,
            lambda: self.inner.append_signal(mission_id, name, payload, received_at, timeline),
        )
        assert isinstance(result, BufferedSignal)
        return result

    async def request_cancel(
        self, mission_id: str, request: CancelRequest, timeline: Sequence[TimelineEntry]
    ) -> None:
        write = _Write("request_cancel", mission_id, None, tuple(timeline), self.action)
        await self._write(write, lambda: self.inner.request_cancel(mission_id, request, timeline))

    async def request_pause(
        self, mission_id: str, request: Pause | None, timeline: Sequence[TimelineEntry]
    ) -> None:
        write = _Write("request_pause", mission_id, None, tuple(timeline), self.action)
        await self._write(write, lambda: self.inner.request_pause(mission_id, request, timeline))

    async def load(self, mission_id: str) -> MissionSnapshot | None:
        self._alive()
        return await self.inner.load(mission_id)

    async def next_signal(self, mission_id: str, name: str) -> BufferedSignal | None:
        self._alive()
        return await self.inner.next_signal(mission_id, name)

    async def list_missions(
        self,
        *,
        status: MissionStatus | None = None,
        definition: str | None = None,
        limit: int,
        after_id: str | None = None,
        tenant: TenantFilter = ANY_TENANT,
    ) -> list[MissionSnapshot]:
        self._alive()
        return await self.inner.list_missions(
            status=status, definition=definition, limit=limit, after_id=after_id, tenant=tenant
        )

    async def due_missions(self, now: datetime, limit: int) -> list[str]:
        self._alive()
        return await self.inner.due_missions(now, limit)

    async def next_due_at(self, after: datetime | None = None) -> datetime | None:
        self._alive()
        return await self.inner.next_due_at(after)

    async def running_missions(self, limit: int, after_id: str | None = None) -> list[str]:
        self._alive()
        return await self.inner.running_missions(limit, after_id)

    async def timeline(self, mission_id: str) -> list[TimelineEntry]:
        self._alive()
        return await self.inner.timeline(mission_id)

    async def delete_missions(self, revisions: Mapping[str, int]) -> list[str]:
        self._alive()
        return await self.inner.delete_missions(revisions)

    async def aclose(self) -> None:
        # The sweep store closes the adapter it opened: a commander closing this one (at the
        # end of `async with`) must not close the store under the next process.
        pass


class _CrashingVersionStore(_CrashingStore):
    """:class:`_CrashingStore` over an adapter that keeps definition fingerprints."""

    def __init__(
        self,
        inner: DefinitionVersionStore,
        *,
        target: CrashTarget | None,
        crash: Callable[[], None],
    ) -> None:
        assert isinstance(inner, PersistenceAdapter)
        super().__init__(inner, target=target, crash=crash)
        self.versions = inner

    async def versions_in_use(self) -> list[VersionKey]:
        self._alive()
        return await self.versions.versions_in_use()

    async def missions_on_version(self, definition: str, version: int, limit: int) -> list[str]:
        self._alive()
        return await self.versions.missions_on_version(definition, version, limit)

    async def fingerprints(self) -> dict[VersionKey, str]:
        self._alive()
        return await self.versions.fingerprints()

    async def record_fingerprints(self, fingerprints: Mapping[VersionKey, str]) -> None:
        self._alive()
        await self.versions.record_fingerprints(fingerprints)


class _CrashingGateStore(_CrashingStore):
    """:class:`_CrashingStore` over an adapter that keeps concurrency gates: a gate's writes
    (a slot taken or given back, a mission queued) and a singleton's insert that takes its slot
    are commit points too."""

    @property
    def _gates(self) -> ConcurrencyStore:
        gates = self.inner
        assert isinstance(gates, ConcurrencyStore)  # chosen by _wrap for such an adapter
        return gates

    async def load_gate(self, key: str) -> Gate | None:
        self._alive()
        return await self._gates.load_gate(key)

    async def save_gate(self, gate: Gate, *, expected_revision: int) -> None:
        write = _Write("save_gate", gate.key, gate.revision, (), self.action)
        await self._write(
            write, lambda: self._gates.save_gate(gate, expected_revision=expected_revision)
        )

    async def insert_holding(
        self,
        snapshot: MissionSnapshot,
        timeline: Sequence[TimelineEntry],
        gate: Gate,
        *,
        expected_revision: int,
    ) -> MissionSnapshot | None:
        write = _Write(
            "insert_holding", snapshot.id, snapshot.revision, tuple(timeline), self.action
        )
        result = await self._write(
            write,
            lambda: self._gates.insert_holding(
                snapshot, timeline, gate, expected_revision=expected_revision
            ),
        )
        assert result is None or isinstance(result, MissionSnapshot)
        return result


class _CrashingVersionGateStore(_CrashingVersionStore, _CrashingGateStore):
    """:class:`_CrashingStore` over an adapter that keeps definition fingerprints and
    concurrency gates."""


def _wrap(
    inner: PersistenceAdapter, target: CrashTarget | None, crash: Callable[[], None]
) -> _CrashingStore:
    gates = isinstance(inner, ConcurrencyStore)
    if isinstance(inner, DefinitionVersionStore):
        kind = _CrashingVersionGateStore if gates else _CrashingVersionStore
        return kind(inner, target=target, crash=crash)
    if gates:
        return _CrashingGateStore(inner, target=target, crash=crash)
    return _CrashingStore(inner, target=target, crash=crash)


# -- counting node runs --------------------------------------------------------------------------


class _RunCounter:
    """A ``MissionObserver`` that counts the runs of each node attempt."""

    def __init__(self) -> None:
        self.runs: Counter[tuple[str, str, int]] = Counter()
        self.on_run: Callable[[str, str, int], None] | None = None
        """Told of each node run as it starts (a child process reports them to the sweep)."""

    def context_for(self, mission: ObservedMission) -> Mapping[str, str] | None:
        return None

    def run_started(self, mission: ObservedMission, trigger: RunTrigger) -> RunObserver | None:
        return _CountingRun(self, mission.id)

    def count(self, mission: str, path: str, attempt: int) -> None:
        self.runs[(mission, path, attempt)] += 1
        if self.on_run is not None:
            self.on_run(mission, path, attempt)


class _CountingRun:
    def __init__(self, counter: _RunCounter, mission: str) -> None:
        self._counter = counter
        self._mission = mission

    def node_started(self, node: ObservedNode) -> NodeEnd | None:
        self._counter.count(self._mission, node.path, node.attempt)
        return None

    def node_waited(
        self,
        node: ObservedNode,
        since: datetime | None,
        until: datetime,
        outcome: NodeStatus,
        error: ErrorInfo | None,
    ) -> None:
        pass

    def ended(self, status: MissionStatus | None, error: BaseException | None) -> None:
        pass


def _repeated(
    runs: Counter[tuple[str, str, int]], baseline: Counter[tuple[str, str, int]]
) -> dict[str, int]:
    more: Counter[str] = Counter()
    for (mission, path, attempt), count in runs.items():
        extra = count - max(baseline[(mission, path, attempt)], 1)
        if extra > 0:
            more[f"{mission}:{path}"] += extra
    return dict(sorted(more.items()))


# -- comparing ends ------------------------------------------------------------------------------


def _error(error: ErrorInfo | None) -> JsonValue:
    return None if error is None else error.type


def _outcome(snapshot: MissionSnapshot) -> dict[str, JsonValue]:
    """What a run's end is compared on: timestamps, attempt counts and revisions aside."""
    return {
        "status": snapshot.status.value,
        "output": snapshot.output,
        "error": _error(snapshot.error),
        "active": sorted(snapshot.active),
        "waits": sorted(f"{wait.kind.value} {wait.node}" for wait in snapshot.waits),
        "nodes": {
            path: {
                "status": record.status.value,
                "output": record.output,
                "error": _error(record.error),
            }
            for path, record in sorted(snapshot.nodes.items())
        },
    }


async def _outcomes(adapter: PersistenceAdapter, signals: Collection[str]) -> dict[str, object]:
    """Every mission's end; with, for each of the script's signal names, the payload of the
    oldest such signal still buffered (one sent twice would be left over)."""
    found: dict[str, object] = {}
    after: str | None = None
    while True:
        page = await adapter.list_missions(limit=MAX_LIST_LIMIT, after_id=after)
        for snapshot in page:
            outcome = _outcome(snapshot)
            left: dict[str, JsonValue] = {}
            for name in sorted(signals):
                buffered = await adapter.next_signal(snapshot.id, name)
                if buffered is not None:
                    left[name] = buffered.payload
            outcome["buffered signals"] = left
            found[snapshot.id] = outcome
        if len(page) < MAX_LIST_LIMIT:
            return found
        after = page[-1].id


def _differences(expected: object, got: object, where: str) -> list[str]:
    if isinstance(expected, dict) and isinstance(got, dict):
        before = cast("dict[str, object]", expected)
        after = cast("dict[str, object]", got)
        lines: list[str] = []
        for key in {*before, *after}:
            inner = f"{where} {key}" if where else key
            if key not in after:
                lines.append(f"{inner}: missing (uninterrupted: {before[key]!r})")
            elif key not in before:
                lines.append(f"{inner}: {after[key]!r}, not in the uninterrupted run")
            else:
                lines.extend(_differences(before[key], after[key], inner))
        return sorted(lines)
    if expected != got:
        return [f"{where}: {got!r} (uninterrupted: {expected!r})"]
    return []


# -- the runs ------------------------------------------------------------------------------------


class SweepOptions(TypedDict, total=False):
    """The options of :func:`sweep_crashes` other than the mission."""

    script: Sequence[ScriptAction]
    store: SweepStore
    mission_id: str
    reset: Callable[[], object] | None
    outside: Callable[[], object] | None
    max_recovery_attempts: int
    processes: ChildProcesses | None


CHILD_REPORT = "mission-control-sweep: "
"""What begins each line a sweep's child process reports on its standard output (the other lines
are the mission's own)."""


@attrs.frozen
class ChildProcesses:
    """Crash in real child processes: each crash run's first process is a new Python process
    (``python -m mission_control.testing._sweep_child``) that SIGKILLs itself right before or
    right after the write, on the store's file; the recovery runs in the sweep's own process.

    The child imports what it runs by reference, ``"module:attribute"`` or
    ``"path/to/file.py:attribute"``: ``definition``, the swept definition, and ``open``, the
    function opening the store's file (SQLite's by default). The input and the script's
    payloads must be JSON. ``timeout``: seconds a child may take (a watchdog, in real time)."""

    definition: str
    open: str = "mission_control.adapter_sqlite:create_sqlite_persistence_adapter"
    timeout: float = 60.0


def load_reference(reference: str) -> Any:
    """What ``"module:attribute"`` or ``"path/to/file.py:attribute"`` names."""
    module_name, colon, attribute = reference.rpartition(":")
    if not colon or not module_name or not attribute:
        raise ValueError(
            f"a reference is 'module:attribute' or 'file.py:attribute', not {reference!r}"
        )
    if module_name.endswith(".py"):
        path = Path(module_name)
        spec = importlib.util.spec_from_file_location(f"_swept_{path.stem}", path)
        if spec is None or spec.loader is None:
            raise ValueError(f"cannot load {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    else:
        module = importlib.import_module(module_name)
    value: Any = module
    for part in attribute.split("."):
        value = getattr(value, part)
    return value


def action_to_json(action: ScriptAction) -> JsonValue:
    match action:
        case SendSignal(name=name, payload=payload, mission=mission):
            return {"signal": name, "payload": payload, "mission": mission}
        case AdvanceClock(seconds=seconds):
            return {"advance": seconds}
        case CancelMission(reason=reason, compensate=compensate, mission=mission):
            return {"cancel": reason, "compensate": compensate, "mission": mission}
        case _:
            assert_never(action)


def action_from_json(value: Any) -> ScriptAction:
    if "signal" in value:
        return SendSignal(value["signal"], value["payload"], value["mission"])
    if "advance" in value:
        return AdvanceClock(value["advance"])
    return CancelMission(value["cancel"], value["compensate"], value["mission"])


def write_to_json(write: _Write) -> JsonValue:
    return {
        "kind": write.kind,
        "mission": write.mission,
        "revision": write.revision,
        "entries": [[entry.kind.value, entry.node] for entry in write.entries],
        "action": write.action,
        "consumed": write.consumed,
        "signal": write.signal,
    }


def write_from_json(value: dict[str, Any]) -> _Write:
    return _Write(
        kind=value["kind"],
        mission=value["mission"],
        revision=value["revision"],
        entries=tuple(
            TimelineEntry(SWEEP_START, TimelineKind(kind), node) for kind, node in value["entries"]
        ),
        action=value["action"],
        consumed=value["consumed"],
        signal=value["signal"],
    )


@attrs.define
class _Play:
    """Where a run is in its script: the next action, and the writes since the current one
    began (to tell whether a crash came after a signal or a cancellation was stored)."""

    next: int = 0
    write_mark: int = 0


def _check_virtual_time() -> None:
    if trio.lowlevel.in_trio_run():
        clock = trio.lowlevel.current_clock()
        if isinstance(clock, trio.testing.MockClock) and clock.autojump_threshold == 0:
            return
    elif isinstance(asyncio.get_running_loop(), VirtualTimeEventLoop):
        return
    raise RuntimeError(
        "sweep_crashes runs in virtual time: on trio with MockClock(autojump_threshold=0) "
        "(pytest-trio's autojump_clock), on asyncio on virtual_time_loop() (an anyio_backend "
        "from virtual_time_backend); see docs/testing.md"
    )


def _delivered(action: ScriptAction, mission_id: str, writes: Sequence[_Write]) -> bool:
    """Whether a write in ``writes`` stored what ``action`` sends."""
    match action:
        case SendSignal(name=name, mission=mission):
            target = mission if mission is not None else mission_id
            for write in writes:
                if write.mission != target:
                    continue
                if write.kind == "append_signal" and write.signal == name:
                    return True
                if write.consumed is None and any(
                    entry.kind is TimelineKind.SIGNAL_RECEIVED
                    and (entry.node or "").rsplit("/", 1)[-1] == name
                    for entry in write.entries
                ):
                    return True
            return False
        case CancelMission(mission=mission):
            target = mission if mission is not None else mission_id
            return any(
                write.mission == target
                and any(entry.kind is TimelineKind.CANCEL_REQUESTED for entry in write.entries)
                for write in writes
            )
        case AdvanceClock():
            return False
        case _:
            assert_never(action)


class SweepRun:
    """One run of the mission: a process, and after a crash another on the same store."""

    def __init__(
        self,
        definition: MissionDefinition[Any, Any, Any],
        input: Any,
        script: Sequence[ScriptAction],
        store: SweepStore,
        mission_id: str,
        max_recovery_attempts: int,
    ) -> None:
        self.definition = definition
        self.input = input
        self.script = script
        self.store = store
        self.mission_id = mission_id
        self.max_recovery_attempts = max_recovery_attempts
        self.counter = _RunCounter()
        self.play = _Play()
        self.origin = 0.0
        # The loop time each clock move ends at: a move a crash interrupted goes on after it.
        self.targets: list[float] = []
        self.clock = LoopClock(SWEEP_START)
        self.writes: list[_Write] = []
        """The writes of the first process."""
        self.reached = False
        # What a child process reports as it goes (None in the sweep's own process).
        self.on_write: Callable[[_Write], None] | None = None
        self.on_run: Callable[[str, str, int], None] | None = None
        self.on_action: Callable[[int, int], None] | None = None

    def begin(self, elapsed: float = 0.0) -> None:
        """Set the clock for a process starting ``elapsed`` seconds into the run."""
        self.origin = anyio.current_time() - elapsed
        at = self.origin
        self.targets = [at]
        for action in self.script:
            if isinstance(action, AdvanceClock):
                at += action.seconds
            self.targets.append(at)
        self.clock = LoopClock(SWEEP_START + timedelta(seconds=elapsed))

    async def go(self, target: CrashTarget | None) -> None:
        """Play the script from the start in one process, dying at ``target``; after a crash,
        recover in a second process and play the rest."""
        self.begin()
        first = await self.process(target, crash=None)
        self.writes = first.writes
        self.reached = first.reached
        if first.dead:
            await self.recover()

    async def go_in_child(self, target: CrashTarget, child: ChildProcesses, path: Path) -> None:
        """As :meth:`go`, with the first process a real child process that SIGKILLs itself at
        ``target`` (the write made or not), reporting what it did on its standard output."""
        spec = {
            "definition": child.definition,
            "open": child.open,
            "path": str(path),
            "input": self.input,
            "script": [action_to_json(action) for action in self.script],
            "mission_id": self.mission_id,
            "max_recovery_attempts": self.max_recovery_attempts,
            "target": attrs.asdict(target),
            "backend": "trio" if trio.lowlevel.in_trio_run() else "asyncio",
        }
        command = [sys.executable, "-m", "mission_control.testing._sweep_child", json.dumps(spec)]
        # In a worker thread, with a real timeout: a virtual clock would fire a deadline at once.
        result = await anyio.to_thread.run_sync(
            functools.partial(
                subprocess.run, command, capture_output=True, text=True, timeout=child.timeout
            )
        )
        elapsed = 0.0
        for line in result.stdout.splitlines():
            if not line.startswith(CHILD_REPORT):
                continue  # the mission's own output (a step that prints)
            report: Any = json.loads(line.removeprefix(CHILD_REPORT))
            match report:
                case {"action": int(index), "writes": int(mark)}:
                    self.play.next, self.play.write_mark = index, mark
                case {"write": dict()}:
                    self.writes.append(write_from_json(report["write"]))
                case {"run": [str(mission), str(node), int(attempt)]}:
                    self.counter.count(mission, node, attempt)
                case {"dying": float(at)} | {"dying": int(at)}:
                    elapsed = float(at)
                    self.reached = True
                case _:
                    raise RuntimeError(f"the sweep's child process said {line!r}")
        if result.returncode == 0:
            return
        if result.returncode != -signal.SIGKILL or not self.reached:
            raise RuntimeError(
                f"the sweep's child process ({' '.join(command[:3])}) ended with "
                f"{result.returncode}:\n{result.stderr}"
            )
        self.begin(elapsed)
        await self.recover()

    async def recover(self) -> None:
        """Start the process after the crash: redo the interrupted action unless the store has
        it, and play the rest."""
        interrupted = self.play.next
        if 0 < interrupted <= len(self.script):
            action = self.script[interrupted - 1]
            if _delivered(action, self.mission_id, self.writes[self.play.write_mark :]):
                self.play.next += 1
        await self.process(None, crash=None)

    async def process(
        self, target: CrashTarget | None, *, crash: Callable[[], None] | None
    ) -> _CrashingStore:
        """One process on the store: dies at ``target`` by stopping every task (or by calling
        ``crash``)."""
        inner = await self.store.open()
        scope = anyio.CancelScope()
        crashing = _wrap(inner, target, scope.cancel if crash is None else crash)
        crashing.on_write = self.on_write
        self.counter.on_run = self.on_run
        try:
            with scope:
                try:
                    await self._serve(crashing)
                except BaseException as error:
                    if not (crashing.dead and _only_crashes(error)):
                        raise
        finally:
            with anyio.CancelScope(shield=True):
                await self.store.close(inner)
        return crashing

    async def _serve(self, persistence: _CrashingStore) -> None:
        commander = create_commander(
            [self.definition],
            persistence=persistence,
            clock=self.clock,
            ids=SequentialIds(),
            max_recovery_attempts=self.max_recovery_attempts,
            observer=self.counter,
        )
        async with create_commander_runtime(commander):
            while self.play.next <= len(self.script):
                self.play.write_mark = len(persistence.writes)
                index = self.play.next
                persistence.action = index
                if self.on_action is not None:
                    self.on_action(index, self.play.write_mark)
                if index == 0:
                    await commander.start(self.definition, self.input, id=self.mission_id)
                else:
                    action = self.script[index - 1]
                    match action:
                        case SendSignal(name=name, payload=payload, mission=mission):
                            await commander.signal(
                                mission if mission is not None else self.mission_id,
                                name,
                                payload,
                            )
                        case AdvanceClock():
                            left = self.targets[index] - anyio.current_time()
                            if left > 0:
                                await anyio.sleep(left)
                        case CancelMission(reason=reason, compensate=compensate, mission=mission):
                            await commander.cancel(
                                mission if mission is not None else self.mission_id,
                                reason,
                                compensate=compensate,
                            )
                        case _:
                            assert_never(action)
                await wait_all_tasks_blocked()
                self.play.next += 1


def _only_crashes(error: BaseException) -> bool:
    if isinstance(error, BaseExceptionGroup):
        return all(_only_crashes(inner) for inner in error.exceptions)  # pyright: ignore[reportUnknownVariableType, reportUnknownArgumentType, reportUnknownMemberType]
    return isinstance(error, SimulatedCrash | anyio.get_cancelled_exc_class())


async def sweep_crashes(
    definition: MissionDefinition[Any, Any, Any],
    input: Any,
    *,
    script: Sequence[ScriptAction] = (),
    store: SweepStore | None = None,
    mission_id: str = SWEPT_ID,
    reset: Callable[[], object] | None = None,
    outside: Callable[[], object] | None = None,
    max_recovery_attempts: int = 5,
    processes: ChildProcesses | None = None,
) -> SweepReport:
    """Run ``definition`` on ``input`` with ``script``, once uninterrupted and then once per
    side of each of its commit points with a simulated crash there, and compare the ends.

    Each run starts the mission with the id ``mission_id`` on a new, empty store from ``store``
    (in memory unless given) at :data:`SWEEP_START`, with a runtime beside it, then plays the
    script's actions in order (:class:`SendSignal`, :class:`AdvanceClock`,
    :class:`CancelMission`), letting every task settle after each. A crash stops every task of
    the process; a new commander and runtime on the same store recover (the runtime's startup
    resumes what was left running), the interrupted action is done again unless it was stored
    (a client retrying: a start by id is idempotent, a signal stored is not sent twice), and
    the rest of the script is played. ``reset`` is called before each run (give the outside
    world, a fake payment provider, a new start); ``outside``, after each, returns what of
    the outside world to compare as well (the charges made).

    With ``processes`` (a :class:`ChildProcesses`, on a :class:`FileSweepStore`), the process
    that crashes is a real child process, killed with SIGKILL at the point; the recovery runs in
    this one.

    Runs in virtual time (an ``anyio_backend`` from ``virtual_time_backend``, or pytest-trio's
    ``autojump_clock``): clock moves and retry back-offs pass at once.
    """
    _check_virtual_time()
    chosen: SweepStore = store if store is not None else InMemorySweepStore()
    if processes is not None:
        if not isinstance(chosen, FileSweepStore):
            raise TypeError(
                "a sweep in child processes needs its store in files (a FileSweepStore), "
                f"not {chosen!r}"
            )
        if sys.platform == "win32":
            raise RuntimeError("a sweep in child processes needs SIGKILL (not on Windows)")
    script = tuple(script)
    for action in script:
        if not isinstance(action, SendSignal | AdvanceClock | CancelMission):
            raise TypeError(
                "a sweep's script holds SendSignal, AdvanceClock and CancelMission actions, "
                f"not {action!r}"
            )

    signals = {action.name for action in script if isinstance(action, SendSignal)}

    async def run(name: str, target: CrashTarget | None) -> tuple[SweepRun, dict[str, object]]:
        if reset is not None:
            reset()
        await chosen.create(name)
        one = SweepRun(definition, input, script, chosen, mission_id, max_recovery_attempts)
        if target is None or processes is None:
            await one.go(target)
        else:
            assert isinstance(chosen, FileSweepStore)
            assert chosen.path is not None
            await one.go_in_child(target, processes, chosen.path)
        adapter = await chosen.open()
        try:
            ends = await _outcomes(adapter, signals)
        finally:
            await chosen.close(adapter)
        if outside is not None:
            ends["outside world"] = outside()
        return one, ends

    baseline, expected = await run("uninterrupted", None)
    counts: Counter[tuple[WriteKind, str]] = Counter()
    points: list[CommitPoint] = []
    for number, write in enumerate(baseline.writes, start=1):
        counts[(write.kind, write.mission)] += 1
        points.append(
            CommitPoint(
                number=number,
                kind=write.kind,
                mission=write.mission,
                occurrence=counts[(write.kind, write.mission)],
                revision=write.revision,
                what=", ".join(
                    f"{entry.kind.value} {entry.node}" if entry.node else entry.kind.value
                    for entry in write.entries
                ),
                action=write.action,
            )
        )
    runs: list[CrashRun] = []
    for point in points:
        for side in ("before", "after"):
            target = CrashTarget(point.kind, point.mission, point.occurrence, side)
            one, ends = await run(f"{point.number}-{side}", target)
            runs.append(
                CrashRun(
                    point=point,
                    side=side,
                    reached=one.reached,
                    repeated=_repeated(one.counter.runs, baseline.counter.runs),
                    differences=tuple(_differences(expected, ends, "")),
                )
            )
    return SweepReport(points=tuple(points), runs=tuple(runs), outcome=expected)
