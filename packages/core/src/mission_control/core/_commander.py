"""The commander: the one API for starting, signalling, cancelling and inspecting missions.

Two protocols describe it, for two kinds of callers: :class:`CommanderProtocol` is what
applications call (``mission_control.core``); :class:`MissionDriver` is the smaller set a driver
such as the tick runtime needs to move missions forward (``mission_control.core.lowlevel``).
:class:`Commander` implements both, once; ``MissionClient`` is a :class:`Commander` sharing the
runtime's commander's state (see :meth:`Commander._share_state_of`), so the API is never
forwarded method by method.
"""

from __future__ import annotations

import importlib
import logging
import os
import socket
from collections.abc import AsyncIterator, Callable, Iterable
from datetime import datetime
from types import TracebackType
from typing import (
    Any,
    Protocol,
    Self,
    TypedDict,
    TypeVar,
    Unpack,
    assert_never,
    cast,
    runtime_checkable,
)

import anyio
import anyio.lowlevel
import attrs
import cattrs

from ._clock import Clock, SystemClock, ensure_aware
from ._definition import MissionDefinition
from ._engine import DEFAULT_MAX_RECOVERY_ATTEMPTS, Engine, check_id
from ._errors import (
    ConfigurationError,
    DefinitionVersionError,
    InvalidInputError,
    InvalidSignalPayloadError,
    MissionCancelledError,
    MissionCompensatedError,
    MissionControlError,
    MissionFailedError,
    MissionNotFoundError,
    OutputNotSerializableError,
    PersistenceError,
    StoreBusyError,
    UnknownDefinitionError,
    refuse_unknown_options,
)
from ._ids import SortableIds
from ._notices import Notices, notices_for
from ._observer import MissionObserver, SafeObserver
from ._persistence import LIST_LIMIT, MAX_LIST_LIMIT, PersistenceAdapter
from ._purge import PURGE_BATCH, PurgeOptions, PurgeReport, purge, purge_statuses
from ._schedules import Schedule, ScheduleBook, ScheduleChanges, ScheduleOptions, Trigger
from ._snapshot import JsonValue, MissionSnapshot, MissionStatus, TimelineEntry, WaitKind
from ._submissions import (
    MissionOwnership,
    NewSubmission,
    Refusal,
    Submission,
    SubmissionDecidedError,
    SubmissionKind,
    SubmissionState,
    SubmissionStore,
)
from ._tenants import (
    ANY_TENANT,
    SEPARATOR,
    as_seen,
    check_tenant,
    check_unqualified,
    local_id,
    looks_qualified,
    tenant_key,
    tenant_of_key,
)
from ._triggers import TriggerBook, TriggerFire
from ._values import converter as default_converter
from ._values import detached, detached_entries, is_text, to_json_value
from ._versions import (
    VersionCheck,
    VersionReport,
    registered_versions,
    startup_check,
    stored_shape_differs,
)

_log = logging.getLogger("mission_control.core")

# A submitter waiting for the owner's verdict reads the submission again after these delays,
# doubling from the first to the last: the owner is woken at once, so most verdicts come early.
_VERDICT_FIRST_REREAD = 0.002
_VERDICT_LAST_REREAD = 0.25
# A verdict still not given after this many seconds is logged: no owner may be applying them.
_VERDICT_PATIENCE = 10.0
# An application of a submission that raised a PersistenceError (a row it cannot read, a store
# that stays busy) is tried again at the next tick, and refused after this many tries: one bad
# submission never holds the others, or the store, up.
SUBMISSION_ATTEMPTS = 3

RawT = TypeVar("RawT")
_T = TypeVar("_T")


class ListFilters(TypedDict, total=False):
    """Which missions ``iter_missions`` goes through: the keyword arguments of ``list`` that
    select them."""

    status: MissionStatus | None
    definition: str | MissionDefinition[Any, Any, Any] | None
    parent: str | None
    after: str | None
    tenant: str | None


@runtime_checkable
class CommanderProtocol(Protocol):
    """The commander's API for applications: start, find, signal, cancel, inspect and wait for
    missions.

    The commander made by :func:`create_commander` (and so ``SQLiteCommander`` and the in-memory
    commander) implements it, and so does ``mission_control.client.MissionClient``; code written
    for a commander accepts any of them. What moves missions forward on its own (ticks,
    recovery) is the driver's side: :class:`mission_control.core.lowlevel.MissionDriver`.
    """

    @property
    def clock(self) -> Clock: ...

    @property
    def definitions(self) -> dict[str, MissionDefinition[Any, Any, Any]]: ...

    async def start(
        self,
        definition: MissionDefinition[RawT, Any, Any],
        input: RawT,
        *,
        id: str | None = None,
        start_at: datetime | None = None,
        background: bool = False,
        tenant: str | None = None,
    ) -> MissionHandle: ...

    async def get(self, mission_id: str, *, tenant: str | None = None) -> MissionHandle: ...

    async def inspect(self, mission_id: str, *, tenant: str | None = None) -> MissionSnapshot: ...

    async def list(
        self,
        *,
        status: MissionStatus | None = None,
        definition: str | MissionDefinition[Any, Any, Any] | None = None,
        parent: str | None = None,
        limit: int = LIST_LIMIT,
        after: str | None = None,
        tenant: str | None = None,
    ) -> list[MissionSnapshot]: ...

    def iter_missions(
        self, *, page_size: int = LIST_LIMIT, **filters: Unpack[ListFilters]
    ) -> AsyncIterator[MissionSnapshot]: ...

    async def signal(
        self, mission_id: str, name: str, payload: Any = None, *, tenant: str | None = None
    ) -> MissionSnapshot: ...

    async def signal_with_start(
        self,
        definition: MissionDefinition[RawT, Any, Any],
        input: RawT,
        *,
        mission_id: str,
        signal: str,
        payload: Any = None,
        tenant: str | None = None,
    ) -> MissionSnapshot: ...

    async def cancel(
        self,
        mission_id: str,
        reason: str | None = None,
        *,
        compensate: bool = False,
        tenant: str | None = None,
    ) -> MissionSnapshot: ...

    async def pause(
        self, mission_id: str, reason: str | None = None, *, tenant: str | None = None
    ) -> MissionSnapshot: ...

    async def resume(self, mission_id: str, *, tenant: str | None = None) -> MissionSnapshot: ...

    async def retry(
        self, mission_id: str, *, from_node: str | None = None, tenant: str | None = None
    ) -> MissionSnapshot: ...

    async def fork(
        self,
        mission_id: str,
        *,
        at_node: str,
        new_id: str | None = None,
        tenant: str | None = None,
    ) -> MissionHandle: ...

    async def purge(
        self, *, finished_before: datetime, **options: Unpack[PurgeOptions]
    ) -> PurgeReport: ...

    async def wait_for_completion(
        self, mission_id: str, *, tenant: str | None = None
    ) -> MissionSnapshot: ...

    async def result(self, mission_id: str, *, tenant: str | None = None) -> MissionSnapshot: ...

    async def timeline(
        self, mission_id: str, *, tenant: str | None = None
    ) -> list[TimelineEntry]: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class MissionDriver(Protocol):
    """What a driver of missions (the tick runtime, a crash sweep) needs from a commander: find
    the missions that are due or were left mid-node, move one forward, and hear of new work.

    The commander made by :func:`create_commander` implements it beside
    :class:`CommanderProtocol`. Public as ``mission_control.core.lowlevel.MissionDriver``.
    """

    @property
    def clock(self) -> Clock:
        """The clock that says what is due."""
        ...

    @property
    def notices(self) -> Notices:
        """The notice hub of the commander's store (due times, missions left mid-node)."""
        ...

    @property
    def max_recovery_attempts(self) -> int:
        """How many times a mission left mid-node is resumed before it fails."""
        ...

    async def inspect(self, mission_id: str) -> MissionSnapshot: ...

    async def advance(self, mission_id: str) -> MissionSnapshot | None: ...

    async def due_missions(self, limit: int, now: datetime | None = None) -> list[str]: ...

    async def running_missions(self, limit: int, after: str | None = None) -> list[str]: ...

    async def next_due_at(self, after: datetime | None = None) -> datetime | None: ...

    @property
    def is_owner(self) -> bool:
        """Whether this process executes the store's missions now (always, unless the store is
        shared by several processes and another one owns it)."""
        ...

    async def take_ownership(self) -> None:
        """Return once this process owns the store (at once when it does)."""
        ...

    async def watch_submissions(self, wake: Callable[[], None]) -> None:
        """On the owner, call ``wake()`` whenever another process submits work; runs until
        cancelled (for ever, on a store no other process shares)."""
        ...

    async def apply_submissions(self, limit: int, concurrency: int = 10) -> int:
        """Apply up to ``limit`` pending submissions (on the owner), at most ``concurrency``
        missions' at a time; return how many were looked at."""
        ...

    async def fire_schedules(self, limit: int) -> int:
        """Fire the due slots of up to ``limit`` schedules (each starts its mission in the
        background, due now); return how many missions were started. ``next_due_at`` counts
        each schedule's next slot as a due time."""
        ...


class MissionHandle:
    """A reference to one mission (``id``, of ``tenant``) through the commander that holds
    it."""

    __slots__ = ("_commander", "id", "tenant")

    def __init__(
        self, commander: CommanderProtocol, mission_id: str, tenant: str | None = None
    ) -> None:
        self._commander = commander
        self.id = mission_id
        self.tenant = tenant

    async def inspect(self) -> MissionSnapshot:
        """The mission as stored now."""
        return await self._commander.inspect(self.id, tenant=self.tenant)

    async def signal(self, name: str, payload: Any = None) -> MissionSnapshot:
        """Send the signal ``name``; see :meth:`Commander.signal`."""
        return await self._commander.signal(self.id, name, payload, tenant=self.tenant)

    async def cancel(
        self, reason: str | None = None, *, compensate: bool = False
    ) -> MissionSnapshot:
        """Request cancellation; see :meth:`Commander.cancel`."""
        return await self._commander.cancel(
            self.id, reason, compensate=compensate, tenant=self.tenant
        )

    async def pause(self, reason: str | None = None) -> MissionSnapshot:
        """Pause the mission; see :meth:`Commander.pause`."""
        return await self._commander.pause(self.id, reason, tenant=self.tenant)

    async def resume(self) -> MissionSnapshot:
        """Resume the paused mission; see :meth:`Commander.resume`."""
        return await self._commander.resume(self.id, tenant=self.tenant)

    async def wait_for_completion(self) -> MissionSnapshot:
        """Wait until the mission ends; raise if it failed or was cancelled."""
        return await self._commander.wait_for_completion(self.id, tenant=self.tenant)

    async def result(self) -> MissionSnapshot:
        """Wait until the mission ends and return its final snapshot, however it ended."""
        return await self._commander.result(self.id, tenant=self.tenant)

    async def timeline(self) -> list[TimelineEntry]:
        """What happened to the mission, in order."""
        return await self._commander.timeline(self.id, tenant=self.tenant)

    def __repr__(self) -> str:
        if self.tenant is None:
            return f"MissionHandle({self.id!r})"
        return f"MissionHandle({self.id!r}, tenant={self.tenant!r})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, MissionHandle)
            and other.id == self.id
            and other.tenant == self.tenant
            and other._commander is self._commander
        )

    def __hash__(self) -> int:
        return hash((self.id, self.tenant))


def _as_is(value: _T) -> _T:
    return value


class Commander:
    """Starts, signals, cancels and inspects missions stored through one persistence adapter.

    It implements :class:`CommanderProtocol` (what applications call) and :class:`MissionDriver`
    (what the runtime calls). Make one with :func:`create_commander`. It is an async context
    manager that closes its persistence adapter on exit.
    """

    def __init__(
        self,
        definitions: Iterable[MissionDefinition[Any, Any, Any]],
        persistence: PersistenceAdapter,
        clock: Clock,
        ids: Callable[[], str],
        *,
        max_recovery_attempts: int = DEFAULT_MAX_RECOVERY_ATTEMPTS,
        converter: cattrs.Converter | None = None,
        version_check: VersionCheck = "raise",
        observer: MissionObserver | None = None,
    ) -> None:
        clock_checked = _check_clock(clock)
        if version_check not in ("raise", "warn"):
            raise ConfigurationError(
                f"version_check must be 'raise' or 'warn', got {version_check!r}"
            )
        self._version_check: VersionCheck = version_check
        if converter is not None and not isinstance(converter, cattrs.BaseConverter):
            raise ConfigurationError(f"converter must be a cattrs converter, got {converter!r}")
        if observer is not None and not isinstance(observer, MissionObserver):
            raise ConfigurationError(
                "observer must implement mission_control.core.lowlevel.MissionObserver "
                f"(context_for, run_started), got {observer!r}"
            )
        if (
            isinstance(max_recovery_attempts, bool)
            or not isinstance(max_recovery_attempts, int)
            or max_recovery_attempts < 0
        ):
            raise ConfigurationError(
                f"max_recovery_attempts must be a whole number >= 0, got {max_recovery_attempts!r}"
            )
        registry = registered_versions(definitions)
        self._versions = registry
        # By name, the latest version registered: what a start by name (a submission) runs.
        latest: dict[str, MissionDefinition[Any, Any, Any]] = {}
        for (name, _), definition in sorted(registry.items()):
            latest[name] = definition
        self._definitions = latest
        self._persistence = persistence
        # What the engine returns and the adapter reads share their lists and dicts with the
        # store when the adapter keeps the snapshots it is given: callers then get copies, made
        # here once (the engine never changes a value it reads).
        copies = bool(getattr(persistence, "keeps_given_values", False))
        self._detached: Callable[[MissionSnapshot], MissionSnapshot] = (
            detached if copies else _as_is
        )
        self._detached_entries: Callable[[list[TimelineEntry]], list[TimelineEntry]] = (
            detached_entries if copies else _as_is
        )
        self._clock = clock
        # A store several processes share: this process may own it (and execute its
        # missions) or hand work to the process that does.
        self._store: SubmissionStore | None = (
            persistence if isinstance(persistence, SubmissionStore) else None
        )
        # A store split between several owners: this process runs only the missions it owns.
        self._ownership = persistence if isinstance(persistence, MissionOwnership) else None
        self._owns_mission: Callable[[str], bool] | None = (
            None if self._ownership is None else self._ownership.owns
        )
        self._submitter_name = f"pid {os.getpid()} on {socket.gethostname()}"

        self._notices = notices_for(persistence)
        # The submissions a task of this process is applying, shared by every commander on
        # the adapter (as the holds are), so that none applies one twice.
        self._applying = self._notices.applying
        self._converter = converter if converter is not None else default_converter
        self._engine = Engine(
            registry,
            persistence,
            clock,
            ids,
            self._notices,
            max_recovery_attempts,
            self._converter,
            None if observer is None else SafeObserver(observer),
        )
        if self._owns_mission is not None:
            self._engine.owns = self._owns_key
        if not clock_checked:
            self._engine.now = _checked_first(self._engine, clock)
        self._schedules = ScheduleBook(self._engine, persistence, lambda: self._definitions)
        self._triggers = TriggerBook(self._engine, persistence, lambda: self._definitions)

    def _share_state_of(self, commander: Commander) -> None:
        """Become another face of ``commander``: the same store, engine (and so the same
        missions held by a task), definitions, clock, notices and converter.

        For subclasses made from an existing commander instead of from a store
        (``mission_control.client.MissionClient``): they inherit the whole API unchanged, and
        handles they return are bound to them. The state is taken whole, not field by field, so
        that a field added to a commander is never left behind by a view of it.
        """
        vars(self).update(vars(commander))

    @property
    def clock(self) -> Clock:
        return self._clock

    @property
    def max_recovery_attempts(self) -> int:
        """How many times a mission found running with nobody moving it has its node run again
        before it fails with :class:`RecoveryAttemptsExceededError`."""
        return self._engine.max_recovery_attempts

    @property
    def converter(self) -> cattrs.Converter:
        """The converter user types in inputs, outputs and payloads go through."""
        return self._converter

    @property
    def persistence(self) -> PersistenceAdapter:
        return self._persistence

    @property
    def definitions(self) -> dict[str, MissionDefinition[Any, Any, Any]]:
        """The definitions this commander runs, by name: of a definition given in several
        versions, the latest (see :attr:`definition_versions` for all of them)."""
        return dict(self._definitions)

    @property
    def definition_versions(self) -> dict[tuple[str, int], MissionDefinition[Any, Any, Any]]:
        """Every definition this commander runs, by name and version (children included)."""
        return dict(self._versions)

    @property
    def notices(self) -> Notices:
        """The notice hub of this commander's store, shared by every commander of the process
        on the same persistence adapter (the runtime listens to it)."""
        return self._notices

    def _registered(self, definition: MissionDefinition[Any, Any, Any]) -> None:
        key = (getattr(definition, "name", None), getattr(definition, "version", None))
        if self._versions.get(key) is not definition:  # type: ignore[arg-type]
            raise UnknownDefinitionError(
                f"definition {definition!r} was not given to this commander "
                f"(known: {_known(self._versions)})"
            )

    async def start(
        self,
        definition: MissionDefinition[RawT, Any, Any],
        input: RawT,
        *,
        id: str | None = None,
        start_at: datetime | None = None,
        background: bool = False,
        tenant: str | None = None,
    ) -> MissionHandle:
        """Start a mission and run it until its first wait; return its handle.

        With ``id``, starting is idempotent: if that mission exists it is returned unchanged and
        nothing runs. With ``start_at`` in the future, the input is validated now and the
        mission waits until then (the runtime starts it). With ``background=True`` nothing runs
        in the caller's task either: the mission is stored as a delayed start due now (or at a
        later ``start_at``) and the handle returned at once; a running runtime hears of it
        through the commander's notices and starts it in its next tick. Raises
        :class:`InvalidInputError` (nothing stored) when the input is rejected.

        In a process that does not own its store (see :attr:`is_owner`) every start is a
        background start: the owner, woken at once, runs it; so is a start of a mission another
        process owns, on a store split between several (see :meth:`owns`).

        With ``tenant``, the mission belongs to that tenant: its id is unique among the
        tenant's missions (another tenant may use the same one), and every later call about it
        names the tenant (see docs/concepts.md, tenants). Raises :class:`InvalidInputError` for
        a tenant name that is not one, and, without a tenant, for an id of the form
        ``"<tenant>::<id>"``, kept for tenants' missions.
        """
        self._engine.loop.check("commander.start()")
        self._registered(definition)
        if tenant is None:
            # Inline: a start without a tenant is the hot path (see docs/performance.md).
            if type(id) is str and SEPARATOR in id:
                check_unqualified(id, "mission id")
            key = id
        else:
            key = self._new_key(id, check_tenant(tenant), "mission id")
        if not isinstance(background, bool):
            raise TypeError(f"background must be True or False, got {background!r}")
        if not self.is_owner:
            background = True
        if start_at is not None:
            if not isinstance(start_at, datetime):
                raise InvalidInputError(f"start_at must be a datetime, got {start_at!r}")
            try:
                start_at = ensure_aware(start_at, what="start_at")
            except ValueError as error:
                raise InvalidInputError(str(error)) from None
        snapshot = await self._engine.start(
            definition, input, key, start_at, background, None, tenant
        )
        if tenant is None:
            return MissionHandle(self, snapshot.id)
        return MissionHandle(self, local_id(snapshot.id, tenant), tenant)

    def _new_key(self, mission_id: str | None, tenant: str | None, what: str) -> str | None:
        """The stored key of a mission about to be made under the caller's ``mission_id`` (one
        is made for a tenant's mission without it)."""
        if tenant is None:
            if isinstance(mission_id, str):
                check_unqualified(mission_id, what)
            return mission_id
        if mission_id is None:
            return tenant_key(tenant, self._engine.new_id())
        check_id(mission_id)
        return tenant_key(tenant, mission_id)

    async def _find(self, mission_id: str, tenant: str | None) -> MissionSnapshot:
        """The stored mission the caller calls ``mission_id`` among the missions of
        ``tenant`` (``None``: of no tenant); :class:`MissionNotFoundError` when there is none,
        whatever another tenant has."""
        tenant = check_tenant(tenant)
        if tenant is not None and not isinstance(mission_id, str):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise _not_found(mission_id, tenant)
        try:
            snapshot = await self._engine.load(tenant_key(tenant, mission_id))
        except MissionNotFoundError:
            raise _not_found(mission_id, tenant) from None
        if snapshot.tenant != tenant:
            raise _not_found(mission_id, tenant)
        return snapshot

    async def _key(self, mission_id: str, tenant: str | None) -> str:
        """The stored key of the caller's ``mission_id`` of ``tenant``, once it is found
        there (:meth:`_find`); an id of no tenant that cannot be a tenant's is not read."""
        if tenant is None and (
            type(mission_id) is not str
            or SEPARATOR not in mission_id
            or not looks_qualified(mission_id)
        ):
            return mission_id
        return (await self._find(mission_id, tenant)).id

    def _out(self, snapshot: MissionSnapshot) -> MissionSnapshot:
        """``snapshot`` as the caller gets it: the caller's copy, with the caller's ids."""
        snapshot = self._detached(snapshot)
        return snapshot if snapshot.tenant is None else as_seen(snapshot)

    async def get(self, mission_id: str, *, tenant: str | None = None) -> MissionHandle:
        """A handle to an existing mission (of ``tenant``); raises
        :class:`MissionNotFoundError`, also for a mission of another tenant."""
        self._engine.loop.check("commander.get()")
        await self._find(mission_id, tenant)
        return MissionHandle(self, mission_id, tenant)

    async def inspect(self, mission_id: str, *, tenant: str | None = None) -> MissionSnapshot:
        """The mission as stored now; raises :class:`MissionNotFoundError`."""
        self._engine.loop.check("commander.inspect()")
        return self._out(await self._find(mission_id, tenant))

    async def list(
        self,
        *,
        status: MissionStatus | None = None,
        definition: str | MissionDefinition[Any, Any, Any] | None = None,
        parent: str | None = None,
        limit: int = LIST_LIMIT,
        after: str | None = None,
        tenant: str | None = None,
    ) -> list[MissionSnapshot]:
        """One page of missions of ``tenant`` (``None``: the missions of no tenant): at most
        ``limit`` (100 by default, 1,000 at most), ordered by id, filtered by status,
        definition and ``parent`` (the id of the mission whose child nodes started them),
        starting after the id ``after``. Pass the last id of a page as ``after`` for the next,
        or use :meth:`iter_missions`."""
        self._engine.loop.check("commander.list()")
        name = definition.name if isinstance(definition, MissionDefinition) else definition
        if status is not None:
            status = MissionStatus(status)
        _check_limit(limit, "limit")
        tenant = check_tenant(tenant)
        if after is not None:
            if not isinstance(after, str):  # pyright: ignore[reportUnnecessaryIsInstance]
                raise InvalidInputError(f"after must be a mission id (a str), got {after!r}")
            if tenant is not None:
                after = tenant_key(tenant, after)
        if parent is not None:
            if not isinstance(parent, str):  # pyright: ignore[reportUnnecessaryIsInstance]
                raise InvalidInputError(f"parent must be a mission id (a str), got {parent!r}")
            page = await self._children(
                tenant_key(tenant, parent), status, name, limit, after, tenant
            )
        else:
            page = await self._persistence.list_missions(
                status=status, definition=name, limit=limit, after_id=after, tenant=tenant
            )
        return [self._out(snapshot) for snapshot in page]

    async def _children(
        self,
        parent: str,
        status: MissionStatus | None,
        definition: str | None,
        limit: int,
        after: str | None,
        tenant: str | None,
    ) -> list[MissionSnapshot]:
        """A page of the children of ``parent`` (a stored key). Their keys all begin
        ``"<parent>/"`` (see ``ChildNode``), so they are read as the range of keys after that,
        in pages that start small and double while every mission read is still in the range:
        the cost follows what the parent's descendants number, not what else is stored. The
        filters apply in that range."""
        prefix = f"{parent}/"
        cursor = after if after is not None and after > prefix else prefix
        found: list[MissionSnapshot] = []
        size = min(max(limit, 1), _FIRST_CHILDREN_PAGE)
        while len(found) < limit:
            page = await self._persistence.list_missions(limit=size, after_id=cursor)
            last = len(page) < size  # the store has no more
            size = min(size * 2, MAX_LIST_LIMIT)
            for snapshot in page:
                if not snapshot.id.startswith(prefix):
                    return found
                if (
                    snapshot.parent is not None
                    and snapshot.parent.mission_id == parent
                    and snapshot.tenant == tenant
                    and (status is None or snapshot.status is status)
                    and (definition is None or snapshot.definition == definition)
                ):
                    found.append(snapshot)
                    if len(found) == limit:
                        break
            if last:
                break
            cursor = page[-1].id
        return found

    def iter_missions(
        self, *, page_size: int = LIST_LIMIT, **filters: Unpack[ListFilters]
    ) -> AsyncIterator[MissionSnapshot]:
        """Every mission ordered by id, selected by ``status``, ``definition`` and ``after`` as
        :meth:`list` selects them, read ``page_size`` at a time: memory holds one page, and
        other tasks run between pages. A mission stored meanwhile is visited if its id sorts
        after the page being read."""
        refuse_unknown_options(filters, ListFilters.__optional_keys__, "iter_missions()")
        _check_limit(page_size, "page_size")
        if page_size == 0:
            raise ValueError("page_size must be at least 1, got 0")
        return _Pages(self, page_size, filters)

    async def signal(
        self, mission_id: str, name: str, payload: Any = None, *, tenant: str | None = None
    ) -> MissionSnapshot:
        """Send the signal ``name`` with ``payload`` to the mission ``mission_id`` (of
        ``tenant``).

        A mission waiting for it moves on at once (until its next wait); otherwise the signal is
        stored and consumed when the mission reaches that ``need_to``. Raises
        :class:`UnknownSignalError`, :class:`InvalidSignalPayloadError` or
        :class:`MissionNotActiveError`, storing nothing.

        In a process that does not own its store the signal is checked here as the owner would
        check it (when this commander has the mission's definition), stored as a submission,
        and applied by the owner; the call returns the mission as the owner left it, or raises
        the error the owner raised (see :meth:`submit_signal` to return at once).
        """
        self._engine.loop.check("commander.signal()")
        if not self.owns(mission_id, tenant=tenant):
            return await self.verdict(
                await self.submit_signal(mission_id, name, payload, tenant=tenant), at_rest=True
            )
        # _key and _out inline for a mission of no tenant: signal is a hot path.
        if tenant is None and (type(mission_id) is not str or SEPARATOR not in mission_id):
            key = mission_id
        else:
            key = await self._key(mission_id, tenant)
        snapshot = self._detached(await self._engine.signal(key, name, payload))
        return snapshot if snapshot.tenant is None else as_seen(snapshot)

    async def signal_with_start(
        self,
        definition: MissionDefinition[RawT, Any, Any],
        input: RawT,
        *,
        mission_id: str,
        signal: str,
        payload: Any = None,
        tenant: str | None = None,
    ) -> MissionSnapshot:
        """Send the signal ``signal`` with ``payload`` to the mission ``mission_id`` (of
        ``tenant``), starting it
        first (a mission of ``definition`` with ``input``) when it does not exist, in one durable
        operation: the new mission is stored with the signal already buffered, then runs inline
        until its first wait, taking the signal when it reaches that ``need_to``. A mission that
        exists gets the signal as :meth:`signal` sends it (``input`` is not used).

        Both the input and the payload are checked before anything is stored: raises
        :class:`InvalidInputError`, :class:`UnknownSignalError` or
        :class:`InvalidSignalPayloadError`; :class:`MissionAlreadyExistsError` when the id
        belongs to a mission of another definition, and :class:`MissionNotActiveError` when the
        mission has finished, storing nothing. Returns the mission's snapshot after the signal,
        as :meth:`signal` does.
        """
        self._engine.loop.check("commander.signal_with_start()")
        self._registered(definition)
        tenant = check_tenant(tenant)
        check_id(mission_id)
        key = self._new_key(mission_id, tenant, "mission id")
        assert key is not None
        if not self._owns_key(key):
            # Stored waiting for its start with the signal in its inbox; the owner runs it.
            started = await self._engine.signal_with_start(
                definition, input, key, signal, payload, background=True, tenant=tenant
            )
            if started is not None:
                return self._out(started)
            return await self.signal(mission_id, signal, payload, tenant=tenant)
        started = await self._engine.signal_with_start(
            definition, input, key, signal, payload, tenant=tenant
        )
        assert started is not None
        return self._out(started)

    async def cancel(
        self,
        mission_id: str,
        reason: str | None = None,
        *,
        compensate: bool = False,
        tenant: str | None = None,
    ) -> MissionSnapshot:
        """Request cancellation of the mission ``mission_id`` (of ``tenant``): a waiting mission is
        cancelled now, a running one at its next node boundary. With ``compensate``, the mission
        then runs the compensations it owes (those of a waiting mission in this call) and ends
        ``compensated``, not ``cancelled``. Raises :class:`MissionNotActiveError` for a finished
        mission or one running its compensations, and :class:`InvalidInputError` for a ``reason``
        that is not a string UTF-8 can encode."""
        self._engine.loop.check("commander.cancel()")
        _check_cancel(reason, compensate)
        if not self.owns(mission_id, tenant=tenant):
            return await self.verdict(
                await self.submit_cancel(mission_id, reason, compensate=compensate, tenant=tenant)
            )
        key = await self._key(mission_id, tenant)
        return self._out(await self._engine.cancel(key, reason, compensate))

    async def pause(
        self, mission_id: str, reason: str | None = None, *, tenant: str | None = None
    ) -> MissionSnapshot:
        """Pause the mission (of ``tenant``): a waiting one now, a running one at its next node
        boundary (its running step finishes and is stored first; the snapshot returned is then
        the mission as stored now). A paused mission (status ``paused``, ``snapshot.pause``) is
        never due: signals sent to it are buffered and its timers, retries, timeouts and
        deadline fire once it is resumed. Pausing a paused mission changes nothing. Raises
        :class:`MissionNotActiveError` for a finished mission and :class:`InvalidInputError`
        for a ``reason`` that is not a string UTF-8 can encode, storing nothing. In a process
        that does not own its store, a submission the owner applies (:meth:`submit_pause`)."""
        self._engine.loop.check("commander.pause()")
        _check_reason(reason, "pause")
        if not self.owns(mission_id, tenant=tenant):
            return await self.verdict(await self.submit_pause(mission_id, reason, tenant=tenant))
        key = await self._key(mission_id, tenant)
        return self._out(await self._engine.pause(key, reason))

    async def resume(self, mission_id: str, *, tenant: str | None = None) -> MissionSnapshot:
        """Take the paused mission (of ``tenant``) out of its pause and run it inline from
        exactly where it stopped until its next wait or its end, as :meth:`signal` does: it
        takes the signals buffered meanwhile and fires what came due. A mission that is not
        paused is returned unchanged (a pause still waiting for a running step is withdrawn).
        Raises :class:`MissionNotActiveError` for a finished mission. In a process that does not
        own its store, a submission the owner applies (:meth:`submit_resume`)."""
        self._engine.loop.check("commander.resume()")
        if not self.owns(mission_id, tenant=tenant):
            return await self.verdict(
                await self.submit_resume(mission_id, tenant=tenant), at_rest=True
            )
        key = await self._key(mission_id, tenant)
        return self._out(await self._engine.resume(key))

    async def retry(
        self, mission_id: str, *, from_node: str | None = None, tenant: str | None = None
    ) -> MissionSnapshot:
        """Run a failed or cancelled mission (of ``tenant``) again from its first top-level node
        that did not complete (where it failed or was cancelled), or from ``from_node`` (a top-level
        node every node before which completed), and return it after it ran inline to its next wait
        or its end, as :meth:`signal` does. Its history stays: the timeline goes on (a
        ``mission-retried`` entry first), the records of the nodes before that node stay and their
        outputs are not made again; the attempts of that node count from 1 again. See
        ``docs/guarantees.md`` (retry and fork) for compensations, deadlines, child missions and
        loops.

        Raises :class:`MissionNotRetryableError` for a mission that runs, waits, completed,
        ran its compensations or is a child mission, and :class:`InvalidInputError` for a
        ``from_node`` it cannot run again from; nothing is stored then. In a process that does
        not own its store, the retry is a submission the owner applies (see
        :meth:`submit_retry`): the call returns the mission once the owner has run it, or
        raises the owner's error.
        """
        self._engine.loop.check("commander.retry()")
        if not self.owns(mission_id, tenant=tenant):
            return await self.verdict(
                await self.submit_retry(mission_id, from_node=from_node, tenant=tenant),
                at_rest=True,
            )
        key = await self._key(mission_id, tenant)
        return self._out(await self._engine.retry(key, from_node))

    async def fork(
        self,
        mission_id: str,
        *,
        at_node: str,
        new_id: str | None = None,
        tenant: str | None = None,
    ) -> MissionHandle:
        """Make a new mission (of ``tenant``, the mission's) of the mission's definition (the
        version it started on) and input that starts at the top-level node ``at_node``: the records
        of the nodes before it are copied from the mission (their outputs reused, those nodes not
        run again), and it runs from ``at_node`` until its first wait, as :meth:`start` runs a new
        one. The mission forked from is left as it is, whatever its status; the fork's
        ``forked_from`` names it.

        ``new_id`` is the fork's id (one is made without it); forking again to an id that holds
        a fork of the same mission returns that fork unchanged. Raises
        :class:`InvalidInputError` for an ``at_node`` that is no top-level node of the
        definition (a node inside a parallel, a choice or a loop's body is refused), that
        follows a node which did not complete or a step whose compensation ran in the mission
        (its output was undone), and :class:`MissionAlreadyExistsError` for a
        ``new_id`` taken by another mission; nothing is stored then. In a process that does not
        own its store the fork is stored waiting for its start at ``at_node`` and the owner's
        runtime runs it (as every start there is a background start); there
        :class:`DefinitionVersionError` refuses a fork when this process's version of the
        definition has another shape than the one the store keeps for it.
        """
        self._engine.loop.check("commander.fork()")
        if not isinstance(at_node, str):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise InvalidInputError(f"at_node must be a node name (a str), got {at_node!r}")
        key = await self._key(mission_id, tenant)
        tenant = check_tenant(tenant)
        new_key = None if new_id is None else self._new_key(new_id, tenant, "new_id")
        if not self.is_owner:
            # The fork is made here, from this process's definition: it must have the shape
            # the source ran on, or the owner is handed a mission it cannot run.
            source = await self._engine.load(key)
            version = (source.definition, source.definition_version)
            definition = self._versions.get(version)
            if definition is not None:
                problem = await stored_shape_differs(self._persistence, definition)
                if problem is not None:
                    raise DefinitionVersionError(VersionReport((problem,), (version,), ()))
        snapshot = await self._engine.fork(key, at_node, new_key, not self.is_owner)
        return MissionHandle(self, local_id(snapshot.id, tenant), tenant)

    async def purge(
        self, *, finished_before: datetime, **options: Unpack[PurgeOptions]
    ) -> PurgeReport:
        """Delete the finished missions (completed, failed, cancelled and compensated, or those
        of ``status``; of ``definition`` if given) that last changed before
        ``finished_before``, with their timelines and buffered signals, then, when neither
        ``status`` nor ``definition`` narrows it, the submissions decided before then (on a
        store several processes share).

        Missions are read ``batch_size`` at a time (500 by default) and deleted in short
        transactions of at most that many (fewer when their timelines are long: each is kept to
        about 0.1 s, which the owner's writes may wait), and other tasks run between them;
        ``on_batch`` is called after each batch read (a progress bar). A child mission whose
        parent has not finished is kept, so is a mission with a pending submission (the owner
        applies it later), and so is a mission retried meanwhile (each is deleted only at the
        revision it was read at). With ``dry_run`` nothing is deleted: the report counts what
        would be. Raises :class:`InvalidInputError` for a ``finished_before`` that is not an
        aware datetime, a status that is not a finished one, a ``definition`` that is no
        definition nor a name UTF-8 can encode, or a ``batch_size`` out of 1 to 1,000.
        """
        self._engine.loop.check("commander.purge()")
        refuse_unknown_options(options, PurgeOptions.__optional_keys__, "purge()")
        if not isinstance(finished_before, datetime):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise InvalidInputError(f"finished_before must be a datetime, got {finished_before!r}")
        try:
            cutoff = ensure_aware(finished_before, what="finished_before")
        except ValueError as error:
            raise InvalidInputError(str(error)) from None
        definition = options.get("definition")
        name = definition.name if isinstance(definition, MissionDefinition) else definition
        if name is not None and (not isinstance(name, str) or not is_text(name)):
            raise InvalidInputError(
                f"definition must be a definition or its name (a str UTF-8 can encode), got "
                f"{name!r}"
            )
        return await purge(
            self._persistence,
            self._engine.is_held,
            finished_before=cutoff,
            statuses=purge_statuses(options.get("status")),
            definition=name,
            batch_size=options.get("batch_size", PURGE_BATCH),
            dry_run=options.get("dry_run", False),
            on_batch=options.get("on_batch"),
            tenant=check_tenant(options["tenant"]) if "tenant" in options else ANY_TENANT,
        )

    # -- triggers ------------------------------------------------------------------------------

    async def fire_trigger(
        self,
        name: str,
        payload: Any = None,
        *,
        id: str | None = None,
        background: bool = False,
        tenant: str | None = None,
    ) -> TriggerFire:
        """Fire the trigger ``name``: start a mission of every definition subscribed to it
        (``.triggered_by(name)``, their latest versions) with ``payload`` as input, then record
        the fire; return it. Each mission's id is ``<fire id>:<definition>``; each runs until
        its first wait, as ``start`` runs it (or, with ``background``, is left to the runtime).

        Every subscriber's start checks the payload first: when one refuses it,
        :class:`InvalidInputError` names it and nothing is started or recorded. With ``id``,
        firing is idempotent: the fire recorded under it is returned and nothing starts (a
        fire of another trigger or payload under it raises :class:`TriggerExistsError`). A
        trigger nobody subscribes to is recorded with no missions (a replay starts those of
        the definitions subscribed by then). With ``tenant``, the fire and its missions belong
        to that tenant (and a replay's too): its id is unique within the tenant, and every
        later call about it names the tenant."""
        self._engine.loop.check("commander.fire_trigger()")
        if not isinstance(background, bool):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise TypeError(f"background must be True or False, got {background!r}")
        return await self._triggers.fire(
            name, payload, id, background=background or not self.is_owner, tenant=tenant
        )

    async def replay_trigger(
        self,
        fire_id: str,
        *,
        id: str | None = None,
        background: bool = False,
        tenant: str | None = None,
    ) -> TriggerFire:
        """Fire the recorded fire ``fire_id`` (of ``tenant``) again: its trigger and payload, to
        the definitions subscribed now, as a new fire of the same tenant (``replay_of`` names
        the original); see :meth:`fire_trigger`. Raises :class:`TriggerNotFoundError`, also
        for another tenant's fire."""
        self._engine.loop.check("commander.replay_trigger()")
        return await self._triggers.replay(
            fire_id, id, tenant, background=background or not self.is_owner
        )

    async def get_trigger(self, fire_id: str, *, tenant: str | None = None) -> TriggerFire:
        """A recorded fire of ``tenant`` (``None``: of no tenant); raises
        :class:`TriggerNotFoundError`, also for another tenant's fire."""
        self._engine.loop.check("commander.get_trigger()")
        return await self._triggers.get(fire_id, tenant)

    async def list_triggers(
        self,
        *,
        name: str | None = None,
        limit: int = LIST_LIMIT,
        after_id: str | None = None,
        tenant: str | None = None,
    ) -> list[TriggerFire]:
        """Up to ``limit`` recorded fires of ``tenant`` (``None``: of no tenant) by id (of the
        trigger ``name`` only, if given), after ``after_id``."""
        self._engine.loop.check("commander.list_triggers()")
        _check_limit(limit, "limit")
        return await self._triggers.list(name, limit, after_id, tenant)

    # -- schedules -----------------------------------------------------------------------------

    async def create_schedule(
        self,
        schedule_id: str,
        definition: MissionDefinition[Any, Any, Any] | str,
        trigger: Trigger,
        input: Any = None,
        *,
        paused: bool = False,
        **options: Unpack[ScheduleOptions],
    ) -> Schedule:
        """Store a schedule that starts a mission of ``definition`` (its latest registered
        version at each fire) at each slot of ``trigger`` (:class:`Cron` or :class:`Every`),
        with ``input`` (and the slot's time under ``fire_time_field``, if given); return it.

        The input is checked now against the definition, as ``start`` checks it. Creating a
        schedule that exists with the same settings returns it unchanged (call it at every
        start-up); with other settings it raises :class:`ScheduleExistsError`. A slot reached
        more than ``grace`` late was missed: ``missed`` says what to do with such slots
        (:class:`MissedFires`). Raises :class:`InvalidInputError` (nothing stored) for a bad
        setting or a refused input, :class:`UnknownDefinitionError` for a definition this
        commander does not run. With ``tenant``, the schedule and its missions belong to that
        tenant: its id is unique within it, and every later call about it names the tenant."""
        self._engine.loop.check("commander.create_schedule()")
        return await self._schedules.create(
            schedule_id, definition, trigger, input, options, paused
        )

    async def update_schedule(
        self, schedule_id: str, *, tenant: str | None = None, **changes: Unpack[ScheduleChanges]
    ) -> Schedule:
        """Change the settings given of the schedule ``schedule_id`` of ``tenant``
        (``definition``, ``trigger``, ``input`` and those of :class:`ScheduleOptions` but its
        tenant), keep the others; a new trigger fires from its first slot after now. The record
        of the last fire is kept. Raises :class:`ScheduleNotFoundError` (also for another
        tenant's schedule), and :class:`InvalidInputError` (nothing changed) as
        :meth:`create_schedule` does."""
        self._engine.loop.check("commander.update_schedule()")
        return await self._schedules.update(schedule_id, tenant, changes)

    async def pause_schedule(self, schedule_id: str, *, tenant: str | None = None) -> Schedule:
        """Stop firing the schedule (of ``tenant``) until :meth:`resume_schedule`; its slots
        meanwhile are not fired, whatever its missed-fire policy. Pausing a paused schedule
        changes nothing. Raises :class:`ScheduleNotFoundError`."""
        self._engine.loop.check("commander.pause_schedule()")
        return await self._schedules.pause(schedule_id, tenant)

    async def resume_schedule(self, schedule_id: str, *, tenant: str | None = None) -> Schedule:
        """Fire the schedule (of ``tenant``) again, from its first slot after now."""
        self._engine.loop.check("commander.resume_schedule()")
        return await self._schedules.resume(schedule_id, tenant)

    async def delete_schedule(self, schedule_id: str, *, tenant: str | None = None) -> bool:
        """Delete the schedule of ``tenant`` (the missions it started stay); ``False`` when
        that tenant has none of that id."""
        self._engine.loop.check("commander.delete_schedule()")
        return await self._schedules.delete(schedule_id, tenant)

    async def get_schedule(self, schedule_id: str, *, tenant: str | None = None) -> Schedule:
        """The stored schedule of ``tenant`` (``None``: of no tenant); raises
        :class:`ScheduleNotFoundError`, also for another tenant's schedule."""
        self._engine.loop.check("commander.get_schedule()")
        return await self._schedules.get(schedule_id, tenant)

    async def list_schedules(
        self, *, limit: int = LIST_LIMIT, after_id: str | None = None, tenant: str | None = None
    ) -> list[Schedule]:
        """Up to ``limit`` schedules of ``tenant`` (``None``: of no tenant) by id, after
        ``after_id``."""
        self._engine.loop.check("commander.list_schedules()")
        _check_limit(limit, "limit")
        return await self._schedules.list(limit, after_id, tenant)

    async def fire_schedules(self, limit: int) -> int:
        """Fire the due slots of up to ``limit`` schedules (the runtime calls it each tick)."""
        self._engine.loop.check("commander.fire_schedules()")
        if not self.is_owner:
            return 0
        return await self._schedules.fire(limit)

    async def result(self, mission_id: str, *, tenant: str | None = None) -> MissionSnapshot:
        """Wait until the mission ends and return its final snapshot, however it ended (by any
        commander of this process on the same adapter; see ``Notices.reread_interval`` for
        other processes)."""
        self._engine.loop.check("commander.result()")
        notices = self._notices
        key = await self._key(mission_id, tenant)
        while True:
            with notices.end_of(key) as event:
                snapshot = await self._engine.load(key)
                if snapshot.is_terminal:
                    return self._out(snapshot)
                interval = notices.reread_interval
                if interval is None:
                    await event.wait()
                else:
                    with anyio.move_on_after(interval):
                        await event.wait()

    async def wait_for_completion(
        self, mission_id: str, *, tenant: str | None = None
    ) -> MissionSnapshot:
        """Wait until the mission ends. Returns the snapshot when it completed; raises
        :class:`MissionFailedError`, :class:`MissionCancelledError` or
        :class:`MissionCompensatedError` otherwise."""
        snapshot = await self.result(mission_id, tenant=tenant)
        if snapshot.status is MissionStatus.FAILED:
            error = snapshot.error
            detail = f"{error.type}: {error.message}" if error is not None else "unknown error"
            raise MissionFailedError(f"mission {mission_id!r} failed: {detail}", snapshot)
        if snapshot.status is MissionStatus.CANCELLED:
            request = snapshot.cancel_request
            reason = request.reason if request is not None and request.reason else "no reason"
            raise MissionCancelledError(f"mission {mission_id!r} was cancelled: {reason}", snapshot)
        if snapshot.status is MissionStatus.COMPENSATED:
            error = snapshot.error
            request = snapshot.cancel_request
            if error is not None:
                why = f"failed ({error.type}: {error.message})"
            else:
                reason = request.reason if request is not None and request.reason else "no reason"
                why = f"was cancelled ({reason})"
            raise MissionCompensatedError(
                f"mission {mission_id!r} {why} and ran its compensations", snapshot
            )
        return snapshot

    async def timeline(self, mission_id: str, *, tenant: str | None = None) -> list[TimelineEntry]:
        """What happened to the mission (of ``tenant``), in order."""
        self._engine.loop.check("commander.timeline()")
        key = (await self._find(mission_id, tenant)).id
        return self._detached_entries(await self._persistence.timeline(key))

    # -- submissions: work for the process that owns a shared store ---------------------------

    @property
    def is_owner(self) -> bool:
        """Whether this process executes the missions of its store: always, unless the store
        is shared by several processes (SQLite's ``role=``) and another one owns it; then
        starts, signals and cancellations are handed to the owner as submissions."""
        store = self._store
        return store is None or store.is_owner

    def owns(self, mission_id: str, *, tenant: str | None = None) -> bool:
        """Whether this process executes the mission ``mission_id`` (of ``tenant``; stored or
        not yet): when it owns its store (:attr:`is_owner`) and, on a store whose missions are
        split between several owners (PostgreSQL's shards, one runtime process each), the part
        the mission is in. A start or fork of a mission another process owns is stored for that
        owner to start (as a background start); a signal, cancellation or retry of one is a
        submission that owner applies."""
        if tenant is not None and type(mission_id) is str:
            mission_id = tenant_key(tenant, mission_id)
        return self._owns_key(mission_id)

    def _owns_key(self, key: str) -> bool:
        """:meth:`owns` for a stored key."""
        if not self.is_owner:
            return False
        owns = self._owns_mission
        # An id that is no str was never stored: the engine refuses it, naming what is wrong.
        return owns is None or type(key) is not str or owns(key)

    async def submit_start(
        self,
        definition: str | MissionDefinition[Any, Any, Any],
        input: Any,
        *,
        id: str | None = None,
        tenant: str | None = None,
    ) -> Submission:
        """Store a start of a mission (of ``tenant``) of ``definition`` (or the definition's name,
        when this process does not have it) for the owner to apply, and return the submission at
        once (already decided when this process is the owner). With the definition, the input is
        checked first, as the owner checks it (:class:`InvalidInputError`, nothing stored); without
        it, the owner decides. Without ``id`` one is made here."""
        self._engine.loop.check("commander.submit_start()")
        name = definition.name if isinstance(definition, MissionDefinition) else definition
        if not isinstance(name, str):
            raise InvalidInputError(f"definition must be a definition or its name, got {name!r}")
        known = self._definitions.get(name)
        if known is not None:
            input_json = self._engine.checked_input(known, input)
        else:
            input_json = _raw_json(input, "mission input", InvalidInputError, self._converter)
        tenant = check_tenant(tenant)
        mission_id = self._new_key(id, tenant, "mission id")
        if mission_id is None:  # not `or`: an empty id is refused by check_id, not replaced
            mission_id = self._engine.new_id()
        check_id(mission_id)
        return await self._submit(SubmissionKind.START, mission_id, name, input_json, tenant)

    async def submit_signal(
        self, mission_id: str, name: str, payload: Any = None, *, tenant: str | None = None
    ) -> Submission:
        """Store the signal ``name`` for the owner to apply and return the submission at once
        (already decided when this process is the owner). What this process can check is
        checked first, as the owner checks it, storing nothing: that the mission exists and is
        active, and, when this commander has its definition, the signal's name and payload;
        the owner decides the rest (:meth:`verdict` waits for its decision)."""
        self._engine.loop.check("commander.submit_signal()")
        if not isinstance(name, str):
            raise InvalidInputError(f"signal name must be a str, got {name!r}")
        snapshot = await self._find(mission_id, tenant)
        if await self._checks_locally(snapshot):
            _, payload_json, _ = self._engine.check_signal(snapshot, name, payload)
        else:
            self._engine.ensure_active(snapshot, f"signal {name!r}")
            payload_json = _raw_json(
                payload, f"signal {name!r} payload", InvalidSignalPayloadError, self._converter
            )
        return await self._submit(
            SubmissionKind.SIGNAL, snapshot.id, name, payload_json, snapshot.tenant
        )

    async def submit_cancel(
        self,
        mission_id: str,
        reason: str | None = None,
        *,
        compensate: bool = False,
        tenant: str | None = None,
    ) -> Submission:
        """Store a cancellation for the owner to apply and return the submission at once, as
        :meth:`submit_signal` does (the mission must exist and be cancellable)."""
        self._engine.loop.check("commander.submit_cancel()")
        _check_cancel(reason, compensate)
        snapshot = await self._find(mission_id, tenant)
        self._engine.ensure_cancellable(snapshot)
        payload: JsonValue = {"reason": reason, "compensate": compensate}
        return await self._submit(
            SubmissionKind.CANCEL, snapshot.id, None, payload, snapshot.tenant
        )

    async def submit_pause(
        self, mission_id: str, reason: str | None = None, *, tenant: str | None = None
    ) -> Submission:
        """Store a pause (see :meth:`pause`) for the owner to apply and return the submission
        at once, as :meth:`submit_signal` does (the mission must exist and not have ended)."""
        self._engine.loop.check("commander.submit_pause()")
        _check_reason(reason, "pause")
        snapshot = await self._find(mission_id, tenant)
        self._engine.ensure_active(snapshot, "pause")
        payload: JsonValue = {"reason": reason}
        return await self._submit(SubmissionKind.PAUSE, snapshot.id, None, payload, snapshot.tenant)

    async def submit_resume(self, mission_id: str, *, tenant: str | None = None) -> Submission:
        """Store a resume (see :meth:`resume`) for the owner to apply and return the submission
        at once, as :meth:`submit_signal` does (the mission must exist and not have ended)."""
        self._engine.loop.check("commander.submit_resume()")
        snapshot = await self._find(mission_id, tenant)
        self._engine.ensure_active(snapshot, "resume")
        return await self._submit(SubmissionKind.RESUME, snapshot.id, None, None, snapshot.tenant)

    async def submit_retry(
        self, mission_id: str, *, from_node: str | None = None, tenant: str | None = None
    ) -> Submission:
        """Store a retry (see :meth:`retry`) for the owner to apply and return the submission
        at once, as :meth:`submit_signal` does. What this process can check is checked first,
        storing nothing: that the mission exists and is retryable, and that ``from_node`` is
        one its records do not rule out (a node inside a container, or one the mission never
        reached past a node that did not complete), or, when this commander has its
        definition, one the owner accepts."""
        self._engine.loop.check("commander.submit_retry()")
        if from_node is not None and not isinstance(from_node, str):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise InvalidInputError(f"from_node must be a node name (a str), got {from_node!r}")
        snapshot = await self._find(mission_id, tenant)
        if await self._checks_locally(snapshot):
            self._engine.retry_node(snapshot, from_node)
        else:
            self._engine.ensure_retryable(snapshot)
            if from_node is not None:
                self._engine.check_retry_point(snapshot, from_node)
        payload: JsonValue = {"from_node": from_node}
        return await self._submit(SubmissionKind.RETRY, snapshot.id, None, payload, snapshot.tenant)

    async def _checks_locally(self, snapshot: MissionSnapshot) -> bool:
        """Whether this commander checks a submission about ``snapshot`` with its own
        definition, as the owner will: it has the version the mission runs on and, when this
        process does not own the store, with the shape the store keeps for that version (with
        another, the owner alone decides)."""
        definition = self._versions.get((snapshot.definition, snapshot.definition_version))
        if definition is None:
            return False
        return self.is_owner or await stored_shape_differs(self._persistence, definition) is None

    async def submission(self, seq: int, *, tenant: str | None = None) -> Submission:
        """The submission numbered ``seq`` as stored now, about a mission of ``tenant``
        (``None``: of no tenant), with the caller's id; :class:`InvalidInputError`, the same
        as for a number never given out, for another tenant's."""
        self._engine.loop.check("commander.submission()")
        tenant = check_tenant(tenant)
        return _seen_submission(await self._load_submission(seq, tenant), tenant)

    async def _load_submission(self, seq: int, tenant: str | None) -> Submission:
        found = await self._submission_store().load_submission(seq)
        # Whose it is follows from the stored key's form: a submission is only ever made with
        # a key of its tenant (a mission stored before tenants under an id of that form is
        # taken for that tenant's).
        if found is None or tenant_of_key(found.mission_id) != tenant:
            where = "" if tenant is None else f" in tenant {tenant!r}"
            raise InvalidInputError(f"there is no submission {seq!r}{where}")
        return found

    async def verdict(
        self,
        submission: Submission | int,
        *,
        tenant: str | None = None,
        at_rest: bool = False,
    ) -> MissionSnapshot:
        """Wait until the owner has decided ``submission`` (or the submission numbered so, of
        ``tenant``; a :class:`Submission` is of its own tenant unless ``tenant`` says another).
        Returns the mission as stored once it was applied; raises the error the owner raised
        when it refused it (the same class, with the owner's message, when it is one of
        ``mission_control.core``'s errors; :class:`SubmissionRefusedError` otherwise), and
        :class:`InvalidInputError` for a submission about another tenant's mission, as for one
        that does not exist.

        With ``at_rest``, an applied submission returns the mission once the owner has run it
        to its next wait or its end (taking the signals buffered for the waits it reaches), as
        the owner's own :meth:`signal` and :meth:`retry` return it; or as it is after 10 seconds
        when a step still runs then."""
        self._engine.loop.check("commander.verdict()")
        if isinstance(submission, int):
            seq = submission
        else:
            seq = submission.seq
            if tenant is None:
                tenant = submission.tenant
        tenant = check_tenant(tenant)
        delay = _VERDICT_FIRST_REREAD
        patience = anyio.current_time() + _VERDICT_PATIENCE
        while True:
            found = await self._load_submission(seq, tenant)
            match found.state:
                case SubmissionState.APPLIED:
                    # A start that joined a mission: the one it joined then, whatever holds
                    # its key now.
                    mission_id = found.joined or found.mission_id
                    if at_rest:
                        return await self._at_rest(mission_id)
                    return self._out(await self._engine.load(mission_id))
                case SubmissionState.REFUSED:
                    refusal = found.refusal or Refusal("SubmissionRefusedError", "no reason kept")
                    raise refusal.error()
                case SubmissionState.PENDING:
                    if patience is not None and anyio.current_time() >= patience:
                        patience = None
                        _log.warning(
                            "submission %d (%s for mission %r) is still pending after %g s: "
                            "does a process own the store and run a runtime? It waits in the "
                            "store for one",
                            seq,
                            found.kind,
                            found.mission_id,
                            _VERDICT_PATIENCE,
                        )
                    await anyio.sleep(delay)
                    delay = min(delay * 2, _VERDICT_LAST_REREAD)
                case _:
                    assert_never(found.state)

    async def _at_rest(self, mission_id: str) -> MissionSnapshot:
        """The mission once the owner no longer runs it: what the owner's own ``signal()``
        returns (it runs the mission to its next wait first, taking there a signal buffered
        for that wait); as it is after ``_VERDICT_PATIENCE`` seconds when it still runs then (a
        long step, or an owner that died in it: the signal is applied either way)."""
        delay = _VERDICT_FIRST_REREAD
        patience = anyio.current_time() + _VERDICT_PATIENCE
        snapshot = await self._engine.load(mission_id)
        while anyio.current_time() < patience:
            if snapshot.status is not MissionStatus.RUNNING and not await self._takes_buffered(
                snapshot
            ):
                again = await self._engine.load(mission_id)
                if again.revision == snapshot.revision:
                    break
                # Written since it was read (its buffered signal taken meanwhile): look at the
                # new state instead.
                snapshot = again
                continue
            await anyio.sleep(delay)
            delay = min(delay * 2, _VERDICT_LAST_REREAD)
            snapshot = await self._engine.load(mission_id)
        return self._out(snapshot)

    async def _takes_buffered(self, snapshot: MissionSnapshot) -> bool:
        """Whether ``snapshot`` waits for a signal that is buffered already: the owner, which
        stores a mission's wait before it takes the signal buffered for it (in a later write of
        the same run), moves it on without an outside event; no resting place then. Nor is
        a wait that is due already (a submitted start not run yet, with the signal buffered
        for its first need_to): the owner's next tick moves it."""
        if snapshot.status is not MissionStatus.WAITING:
            return False
        if snapshot.due_at is not None and snapshot.due_at <= self._engine.now():
            return True
        for wait in snapshot.waits:
            name = wait.signal
            if (
                wait.kind is WaitKind.SIGNAL
                and name is not None
                and await self._persistence.next_signal(snapshot.id, name) is not None
            ):
                return True
        return False

    def _submission_store(self) -> SubmissionStore:
        store = self._store
        if store is None:
            raise ConfigurationError(
                f"{type(self._persistence).__name__} keeps no submissions: its store is not "
                "shared by several processes (use the SQLite adapter)"
            )
        return store

    async def _submit(
        self,
        kind: SubmissionKind,
        mission_id: str,
        name: str | None,
        payload: JsonValue,
        tenant: str | None,
    ) -> Submission:
        store = self._submission_store()
        submission = await store.submit(
            NewSubmission(
                kind=kind,
                mission_id=mission_id,
                name=name,
                payload=payload,
                submitted_at=self._engine.now(),
                submitted_by=self._submitter_name,
            )
        )
        if self._owns_key(mission_id):
            await self._apply(submission)
            submission = await store.load_submission(submission.seq) or submission
        return _seen_submission(submission, tenant)

    async def take_ownership(self) -> None:
        """Return once this process owns its store (at once when it does)."""
        if self._store is not None:
            await self._store.take_ownership()

    async def watch_submissions(self, wake: Callable[[], None]) -> None:
        """Call ``wake()`` whenever another process submits work for this one, the owner;
        runs until cancelled."""
        if self._store is None:
            await anyio.sleep_forever()
        else:
            await self._store.watch_submissions(wake)

    async def keep_ownership(self) -> None:
        """On a store whose missions are split between several owners, keep this process's
        part up to date as processes join and leave (PostgreSQL: the shards' spreading rule),
        until cancelled; on any other store, wait until cancelled. The runtime runs it beside
        its ticks."""
        if self._ownership is None:
            await anyio.sleep_forever()
        else:
            await self._ownership.keep_ownership()

    async def apply_submissions(self, limit: int, concurrency: int = 10) -> int:
        """Apply up to ``limit`` pending submissions in the order they were stored (those of
        different missions side by side, at most ``concurrency`` at a time, those of one
        mission one after the other); return how many were looked at. A submitted start is
        stored as a background start (the tick that follows runs it). Nothing on a process
        that does not own its store. One whose application raises a ``PersistenceError`` is
        logged and tried again later, then refused (``SUBMISSION_ATTEMPTS``); it never stops
        the others."""
        store = self._store
        if store is None or not store.is_owner:
            return 0
        pending = await store.pending_submissions(limit)
        by_mission: dict[str, list[Submission]] = {}
        for submission in pending:
            by_mission.setdefault(submission.mission_id, []).append(submission)
        limiter = anyio.CapacityLimiter(max(concurrency, 1))

        async def apply_in_order(submissions: list[Submission]) -> None:
            async with limiter:
                for submission in submissions:
                    try:
                        applied = await self._apply(submission, background=True)
                    except PersistenceError as error:
                        # Its decision could not be stored: it stays pending, for a later look.
                        _log.error("submission %d left pending: %s", submission.seq, error)
                        applied = False
                    if not applied:
                        return  # those after it wait for it

        async with anyio.create_task_group() as group:
            for submissions in by_mission.values():
                group.start_soon(apply_in_order, submissions)
        return len(pending)

    async def _apply(self, submission: Submission, *, background: bool = False) -> bool:
        """Apply one submission as the owner: marked applied by the first write applying it,
        or refused with the error applying it raised (the mission is then as it was). False
        when it is left pending (its application raised a ``PersistenceError``: tried again
        later) or another task of this process is applying it."""
        seq = submission.seq
        if seq in self._applying:
            return False
        self._applying.add(seq)
        try:
            return await self._apply_once(submission, background)
        finally:
            self._applying.discard(seq)

    async def _apply_once(self, submission: Submission, background: bool) -> bool:
        store = self._submission_store()
        # Read again: another task of this process may have decided it since it was listed.
        current = await store.load_submission(submission.seq)
        if current is None or current.is_decided:
            return True
        now = self._engine.now()
        with store.applying(submission.seq, now) as marking:
            try:
                joined = await self._applied(submission, background)
            except SubmissionDecidedError:
                return True  # another application came first; this one stored nothing
            except StoreBusyError as error:
                # Not the submission's fault: tried again later, not counted.
                _log.warning("submission %d waits for a busy store: %s", submission.seq, error)
                return False
            except PersistenceError as error:
                try:
                    failures = await store.count_failure(submission.seq)
                except PersistenceError:
                    return False
                if failures < SUBMISSION_ATTEMPTS:
                    _log.error(
                        "submission %d (%s for mission %r) could not be applied (try %d of %d): %s",
                        submission.seq,
                        submission.kind,
                        submission.mission_id,
                        failures,
                        SUBMISSION_ATTEMPTS,
                        error,
                    )
                    return False
                await self._refuse(submission, error, overriding=marking.used)
                return True
            except Exception as error:
                await self._refuse(submission, error, overriding=marking.used)
                return True
        if not marking.used:
            # Applied without a write (a start of a mission that exists, or that joined one).
            await store.decide_submission(
                submission.seq, SubmissionState.APPLIED, None, now, joined=joined
            )
        return True

    async def _refuse(self, submission: Submission, error: Exception, *, overriding: bool) -> None:
        refusal = Refusal.of(error)
        _log.warning(
            "submission %d (%s %s for mission %r, from %s) refused: %s: %s",
            submission.seq,
            submission.kind,
            submission.name or "",
            submission.mission_id,
            submission.submitted_by,
            refusal.type,
            refusal.message,
        )
        # Overriding its own mark only: a write of the same call came first (an orphaned
        # child cancelled before the signal to it was refused).
        await self._submission_store().decide_submission(
            submission.seq,
            SubmissionState.REFUSED,
            refusal,
            self._engine.now(),
            overriding=overriding,
        )

    async def _applied(self, submission: Submission, background: bool) -> str | None:
        """Apply ``submission``; for a start that joined another mission (a joining
        singleton's, whose key that mission held), that mission's key."""
        engine = self._engine
        payload = submission.payload
        match submission.kind:
            case SubmissionKind.START:
                name = submission.name or ""
                definition = self._definitions.get(name)
                if definition is None:
                    raise UnknownDefinitionError(
                        f"no definition {name!r} to start mission {submission.mission_id!r} "
                        f"with (known: {', '.join(sorted(self._definitions)) or 'none'})"
                    )
                # The submitter made the key: of a tenant's form only for a tenant's mission.
                tenant = tenant_of_key(submission.mission_id)
                started = await engine.start(
                    definition, payload, submission.mission_id, None, background, tenant=tenant
                )
                return None if started.id == submission.mission_id else started.id
            case SubmissionKind.SIGNAL:
                await engine.signal(submission.mission_id, submission.name or "", payload)
            case SubmissionKind.CANCEL:
                fields = cast("dict[str, JsonValue]", payload if isinstance(payload, dict) else {})
                reason = fields.get("reason")
                compensate = fields.get("compensate", False)
                _check_cancel(reason, compensate)
                assert reason is None or isinstance(reason, str)
                await engine.cancel(submission.mission_id, reason, compensate is True)
            case SubmissionKind.PAUSE:
                fields = cast("dict[str, JsonValue]", payload if isinstance(payload, dict) else {})
                reason = fields.get("reason")
                _check_reason(reason, "pause")
                assert reason is None or isinstance(reason, str)
                await engine.pause(submission.mission_id, reason)
            case SubmissionKind.RESUME:
                await engine.resume(submission.mission_id)
            case SubmissionKind.RETRY:
                fields = cast("dict[str, JsonValue]", payload if isinstance(payload, dict) else {})
                from_node = fields.get("from_node")
                if from_node is not None and not isinstance(from_node, str):
                    raise InvalidInputError(
                        f"from_node must be a node name (a str), got {from_node!r}"
                    )
                await engine.retry(submission.mission_id, from_node)
            case _:
                assert_never(submission.kind)
        return None

    async def advance(self, mission_id: str) -> MissionSnapshot | None:
        """Move a mission forward if it is due or was interrupted; a no-op for one that waits
        for something that has not happened. ``None`` when another task of this process is
        moving it already."""
        self._engine.loop.check("commander.advance()")
        if not self.is_owner:
            raise PersistenceError(
                f"cannot advance mission {mission_id!r}: another process owns the store and "
                "executes its missions"
            )
        snapshot = await self._engine.advance(mission_id)
        # The engine's snapshot holds the values it gave the store: the caller gets its own.
        return None if snapshot is None else self._detached(snapshot)

    async def due_missions(self, limit: int, now: datetime | None = None) -> list[str]:
        """Ids of missions whose timer, retry or delayed start is due, earliest first."""
        self._engine.loop.check("commander.due_missions()")
        return await self._persistence.due_missions(now or self._clock.now(), limit)

    async def running_missions(self, limit: int, after: str | None = None) -> list[str]:
        """Ids of missions stored as running, or with a pause request stored, and not being
        moved by this process (up to ``limit``, by id, after ``after``): what a process that
        stopped may have left half-moved, which ``advance`` takes up (a mission that reached a
        wait as a pause request was stored, its process stopping before it paused it, is
        paused)."""
        self._engine.loop.check("commander.running_missions()")
        found: list[str] = []
        cursor = after
        while len(found) < limit:
            # Held missions are left out after the store's page is cut, so read on until the
            # page is full or the store has no more.
            ids = await self._persistence.running_missions(limit, cursor)
            found.extend(mission_id for mission_id in ids if not self._engine.is_held(mission_id))
            if len(ids) < limit:
                break
            cursor = ids[-1]
        return found[:limit]

    async def next_due_at(self, after: datetime | None = None) -> datetime | None:
        """The earliest time any waiting mission becomes due; with ``after``, the earliest one
        later than ``after``."""
        self._engine.loop.check("commander.next_due_at()")
        due = await self._persistence.next_due_at(after)
        if not self._schedules.enabled:
            return due
        fire = await self._schedules.next_fire_at(after)
        return fire if due is None or (fire is not None and fire < due) else due

    def is_held(self, mission_id: str) -> bool:
        """Whether a task of this process is moving the mission right now."""
        return self._engine.is_held(mission_id)

    async def check_versions(self) -> VersionReport | None:
        """Check the definition versions unfinished missions use against this commander's:
        each must be registered, with the shape (:func:`fingerprint`) stored when missions first
        started on it. Raises :class:`DefinitionVersionError` naming the versions and some of
        their missions, or logs them as a warning (``version_check="warn"`` of
        :func:`create_commander`). When this process owns the store, the fingerprints of
        registered versions not stored yet are stored. Run when the commander starts (``async
        with``, on the owner) and when a runtime starts on it; ``None`` on an adapter that keeps
        no fingerprints."""
        self._engine.loop.check("commander.check_versions()")
        record = self.is_owner and not getattr(self._persistence, "read_only", False)
        return await startup_check(
            self._persistence, self._versions, self._version_check, record=record
        )

    async def aclose(self) -> None:
        """Close the persistence adapter."""
        self._engine.loop.check("commander.aclose()")
        await self._persistence.aclose()

    async def __aenter__(self) -> Self:
        if self.is_owner:
            try:
                await self.check_versions()
            except BaseException:
                # No __aexit__ follows a failed __aenter__: what it would close, closed here.
                await self.aclose()
                raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


def _known(versions: Iterable[tuple[str, int]]) -> str:
    """The definitions a commander has, for an error: each name with its versions."""
    by_name: dict[str, list[int]] = {}
    for name, version in sorted(versions):
        by_name.setdefault(name, []).append(version)
    return (
        ", ".join(
            f"{name} (version{'s' if len(found) > 1 else ''} {', '.join(map(str, found))})"
            for name, found in by_name.items()
        )
        or "none"
    )


def _check_clock(clock: Clock) -> bool:
    """Refuse a clock whose time is not an aware datetime: due times compared with it would
    raise in the middle of a mission, or be read in the wrong zone. ``False`` when the clock
    cannot be read yet (its first reading is then checked: see :func:`_checked_first`)."""
    reader = getattr(clock, "now", None)
    if not callable(reader):
        raise ConfigurationError(f"clock must have a now() method, got {clock!r}")
    try:
        now = reader()
    except RuntimeError:
        # A clock that can only be read inside the event loop (a trio-driven test clock, made
        # in a synchronous fixture).
        return False
    _check_reading(clock, now)
    return True


def _check_reading(clock: Clock, now: object) -> None:
    if not isinstance(now, datetime) or now.utcoffset() is None:
        raise ConfigurationError(
            f"clock {clock!r} must return timezone-aware datetimes from now(), got {now!r}"
        )


def _checked_first(engine: Engine, clock: Clock) -> Callable[[], datetime]:
    """The engine's clock reading for a clock that could not be read when the commander was
    made: its first reading is checked (before anything is written), then the engine reads
    the clock directly."""
    read = engine.now

    def first() -> datetime:
        now = read()
        _check_reading(clock, now)
        engine.now = read
        return now

    return first


def _default_persistence() -> PersistenceAdapter:
    try:
        module = importlib.import_module("mission_control.in_memory_commander")
    except ImportError:
        raise ConfigurationError(
            "create_commander() needs persistence=...: pass an adapter (for example "
            "mission_control.adapter_sqlite.create_sqlite_persistence_adapter(path)), or "
            "install mission-control-in-memory-commander to use the in-memory one by default"
        ) from None
    adapter: PersistenceAdapter = module.InMemoryPersistenceAdapter()
    return adapter


def create_commander(
    definitions: Iterable[MissionDefinition[Any, Any, Any]],
    *,
    persistence: PersistenceAdapter | None = None,
    clock: Clock | None = None,
    ids: Callable[[], str] | None = None,
    max_recovery_attempts: int = DEFAULT_MAX_RECOVERY_ATTEMPTS,
    converter: cattrs.Converter | None = None,
    version_check: VersionCheck = "raise",
    observer: MissionObserver | None = None,
) -> Commander:
    """Make a commander for ``definitions``.

    ``persistence`` defaults to the in-memory adapter (when mission-control-in-memory-commander
    is installed), ``clock`` to the system clock and ``ids`` to sortable random ids.
    ``max_recovery_attempts``: how many times in a row a mission found running with nobody
    moving it (a crash, a stopped process or a cancelled caller left it mid-node) has that node
    run again; the next time it fails with :class:`RecoveryAttemptsExceededError` instead.
    ``converter`` (a cattrs converter, by default ``mission_control.core.converter``) turns the
    user types in inputs, outputs and signal payloads into JSON values and back; the library's
    own records never go through it. ``observer`` (a
    :class:`mission_control.core.lowlevel.MissionObserver`, such as
    ``mission_control.opentelemetry.MissionTracer``) hears of every run and node of the
    commander's missions (see docs/tracing.md). Raises :class:`ConfigurationError` for a clock
    whose ``now()`` is not a timezone-aware datetime.

    ``definitions`` may hold several versions of one definition (``m.define(name,
    version=...)``): a mission runs on the version it started on until it ends. When the
    commander starts (``async with``) or a runtime starts on it, :meth:`Commander.check_versions`
    checks that every version unfinished missions use is registered unchanged;
    ``version_check`` says what a failed check does: ``"raise"`` :class:`DefinitionVersionError`
    (the default), or ``"warn"``: log it and start.
    """
    return Commander(
        definitions,
        persistence if persistence is not None else _default_persistence(),
        clock if clock is not None else SystemClock(),
        ids if ids is not None else SortableIds(),
        max_recovery_attempts=max_recovery_attempts,
        converter=converter,
        version_check=version_check,
        observer=observer,
    )


_FIRST_CHILDREN_PAGE = 8
"""How many missions ``list(parent=...)`` reads first (pages then double)."""


def _raw_json(
    value: Any, what: str, error: type[MissionControlError], converter: cattrs.Converter
) -> JsonValue:
    """``value`` as JSON for a submission this process cannot check further (the owner
    parses it)."""
    try:
        return to_json_value(value, what=what, converter=converter)
    except OutputNotSerializableError as problem:
        raise error(str(problem)) from None


def _check_reason(reason: object, action: str) -> None:
    if reason is not None and not (isinstance(reason, str) and is_text(reason)):
        raise InvalidInputError(
            f"{action} reason must be a string UTF-8 can encode or None, got {reason!r}"
        )


def _check_cancel(reason: object, compensate: object) -> None:
    _check_reason(reason, "cancel")
    if type(compensate) is not bool:
        raise InvalidInputError(f"cancel compensate must be True or False, got {compensate!r}")


def _seen_submission(submission: Submission, tenant: str | None) -> Submission:
    """``submission`` as the caller of ``tenant`` gets it: with its id and its tenant."""
    if tenant is None:
        return submission
    joined = None if submission.joined is None else local_id(submission.joined, tenant)
    return attrs.evolve(
        submission,
        mission_id=local_id(submission.mission_id, tenant),
        tenant=tenant,
        joined=joined,
    )


def _not_found(mission_id: object, tenant: str | None) -> MissionNotFoundError:
    # One message whether the id is missing or another tenant's: a difference would tell a
    # caller which ids other tenants use. Without a tenant it is the engine's own message.
    where = "" if tenant is None else f" in tenant {tenant!r}"
    return MissionNotFoundError(f"no mission with id {mission_id!r}{where}")


def _check_limit(value: object, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_LIST_LIMIT:
        raise ValueError(
            f"{name} must be a whole number from 0 to {MAX_LIST_LIMIT}, got {value!r} "
            "(iter_missions() goes through any number of missions, a page at a time)"
        )


class _Pages:
    """The iterator :meth:`Commander.iter_missions` returns. A class rather than an async
    generator: it holds nothing that needs closing, so leaving a loop early is free."""

    __slots__ = ("_commander", "_filters", "_last", "_page", "_size")

    def __init__(self, commander: Commander, size: int, filters: ListFilters) -> None:
        self._commander = commander
        self._size = size
        self._filters = filters
        self._page: list[MissionSnapshot] = []  # the rest of the page, last first
        self._last: bool | None = None  # None before the first page

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> MissionSnapshot:
        if self._page:
            return self._page.pop()
        if self._last:
            raise StopAsyncIteration
        if self._last is not None:
            # Other tasks run between pages, never while one is read.
            await anyio.lowlevel.checkpoint()
        page = await self._commander.list(limit=self._size, **self._filters)
        self._last = len(page) < self._size
        if not page:
            raise StopAsyncIteration
        self._filters["after"] = page[-1].id
        page.reverse()
        self._page = page
        return page.pop()
