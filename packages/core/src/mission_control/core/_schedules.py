"""Schedules: missions of a definition started on a timetable (a cron expression in a time zone,
or a fixed interval), kept in the store and fired by the runtime.

Each fire starts its mission under an id made of the schedule's id and the slot's time, as a
background start (stored due now, started by the runtime's tick), and then records the fire on
the schedule with a compare-and-set. A crash between the two fires the same slot again after the
restart, under the same id: the start finds the mission and stores nothing, so no slot runs twice
and none is lost. Cron expressions are read by cronsim (five fields, ``@daily`` and the like),
in the schedule's time zone, so that "02:30 every night" follows the wall clock across daylight
saving changes (a time that does not exist that night fires at the first minute after the
gap, a time that comes twice fires once).
"""

from __future__ import annotations

import enum
import logging
import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, Protocol, TypedDict, runtime_checkable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import attrs
from cronsim import CronSim, CronSimError

from ._definition import MissionDefinition
from ._documents import document_from_json, document_to_json
from ._engine import check_id
from ._errors import (
    ConfigurationError,
    InvalidInputError,
    MissionAlreadyExistsError,
    OutputNotSerializableError,
    PersistenceError,
    RevisionConflictError,
    ScheduleExistsError,
    ScheduleNotFoundError,
    UnknownDefinitionError,
    message_of,
    refuse_unknown_options,
)
from ._snapshot import JsonValue
from ._tenants import check_tenant, check_unqualified, local_id, page_of_tenant, tenant_key
from ._values import to_json_value

if TYPE_CHECKING:
    from ._engine import Engine

SCHEDULE_FORMAT: Final = 1
"""The version of the JSON document a schedule is stored as."""

DEFAULT_MAX_CATCH_UP: Final = 100
"""How many missed slots ``MissedFires.ALL`` fires at most, by default (the latest ones)."""

DEFAULT_GRACE: Final = timedelta(seconds=60)
"""How late a slot may be fired and still count as on time, by default."""

_MAX_ON_TIME: Final = 1000
# At most this many slots fire on time in one pass (a one-second interval with an hour's grace
# would otherwise fire 3,600 at once); the older ones count as missed.

_TICK: Final = timedelta(microseconds=1)


class MissedFires(enum.StrEnum):
    """What a schedule does with the slots it missed: those it reaches more than its ``grace``
    after their time (no runtime ran then, or it was paused by a long tick)."""

    SKIP = "skip"
    """Fire none of them: the schedule goes on with its next slot."""
    ONCE = "once"
    """Fire the latest of them, once, whatever how many were missed."""
    ALL = "all"
    """Fire every one of them, up to the schedule's ``max_catch_up`` latest ones."""


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise InvalidInputError(
            f"unknown time zone {name!r}: use an IANA name such as 'Europe/Paris' or 'UTC'"
        ) from error


# The nicknames of Vixie cron, which cronsim leaves to its callers.
_NICKNAMES: Final = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


def _cron(expression: str, when: datetime, *, reverse: bool = False) -> CronSim:
    return CronSim(_NICKNAMES.get(expression.strip(), expression), when, reverse=reverse)


def _check_cron(instance: Cron, attribute: attrs.Attribute[str], value: str) -> None:
    if not isinstance(value, str):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise InvalidInputError(f"a cron expression is a str, got {value!r}")
    try:
        _cron(value, datetime(2000, 1, 1, tzinfo=UTC))
    except CronSimError as error:
        raise InvalidInputError(f"invalid cron expression {value!r}: {error}") from None


def _check_zone(instance: Cron, attribute: attrs.Attribute[str], value: str) -> None:
    if not isinstance(value, str):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise InvalidInputError(f"a time zone is a str, got {value!r}")
    _zone(value)


@attrs.frozen
class Cron:
    """Fire at the times a cron expression matches, read in ``timezone`` (an IANA name)."""

    expression: str = attrs.field(validator=_check_cron)
    """Five fields (minute hour day-of-month month day-of-week), or ``@hourly``, ``@daily``,
    ``@weekly``, ``@monthly``, ``@yearly``."""
    timezone: str = attrs.field(default="UTC", validator=_check_zone)

    def after(self, when: datetime) -> datetime:
        """The first slot strictly after ``when``, in UTC."""
        zone = _zone(self.timezone)
        return next(_cron(self.expression, when.astimezone(zone))).astimezone(UTC)

    def local(self, when: datetime) -> datetime:
        """``when`` on the schedule's wall clock."""
        return when.astimezone(_zone(self.timezone))

    def back(self, when: datetime, slots: int) -> datetime:
        """A time at or before the ``slots``-th latest slot at or before ``when``."""
        zone = _zone(self.timezone)
        found = when
        # Counted backwards, then enumerated forwards from there: cronsim's forward iteration
        # is the one slots are defined by; backwards only finds where to begin (with two
        # hours' margin, which a daylight saving change may shift a slot by).
        slots_back = _cron(self.expression, (when + _TICK).astimezone(zone), reverse=True)
        for _ in range(slots):
            found = next(slots_back, found)
        return found.astimezone(UTC) - timedelta(hours=2)


def _seconds(value: object) -> int:
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise InvalidInputError(f"an interval is a timedelta or seconds, got {value!r}")
    if not math.isfinite(seconds) or seconds < 1 or seconds != int(seconds):
        raise InvalidInputError(
            f"an interval is a whole number of seconds, at least 1, got {seconds!r}"
        )
    return int(seconds)


def _anchor(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise InvalidInputError(f"an interval's anchor is a datetime, got {value!r}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInputError(f"an interval's anchor must be timezone-aware, got {value!r}")
    return value.astimezone(UTC).replace(microsecond=0)


@attrs.frozen
class Every:
    """Fire every ``seconds`` (a ``timedelta`` or a whole number of seconds, at least 1), at
    ``anchor`` plus whole intervals (``anchor``: when the schedule is created, by default)."""

    seconds: int = attrs.field(converter=_seconds)
    anchor: datetime | None = attrs.field(default=None, converter=_anchor)

    def _base(self) -> datetime:
        assert self.anchor is not None, "an interval's anchor is set when its schedule is stored"
        return self.anchor

    def after(self, when: datetime) -> datetime:
        base = self._base()
        elapsed = (when - base).total_seconds()
        steps = math.floor(elapsed / self.seconds) + 1
        return base + timedelta(seconds=steps * self.seconds)

    def local(self, when: datetime) -> datetime:
        return when.astimezone(UTC)

    def back(self, when: datetime, slots: int) -> datetime:
        base = self._base()
        steps = math.floor((when - base).total_seconds() / self.seconds) - slots
        return base + timedelta(seconds=steps * self.seconds) - _TICK


Trigger = Cron | Every
"""When a schedule fires: a :class:`Cron` expression or a fixed interval, :class:`Every`."""


@attrs.frozen
class Schedule:
    """A stored schedule: when it fires, the mission each fire starts, and a record of its
    last fire (kept when that mission is purged)."""

    id: str
    """The caller's id (unique within its tenant); stored under ``"<tenant>::<id>"`` for a
    tenant's schedule, as a mission is (see ``_tenants``)."""
    definition: str
    """The name of the definition each fire starts a mission of (its latest registered
    version)."""
    trigger: Trigger
    input: JsonValue
    """The input of each mission (with the fire time added, see ``fire_time_field``)."""
    fire_time_field: str | None
    """When set, the input is an object and each mission's input has the slot's time, an ISO
    8601 string on the schedule's wall clock, under this key."""
    missed: MissedFires
    max_catch_up: int
    grace: timedelta
    paused: bool
    next_fire_at: datetime | None
    """The next slot to fire (UTC); ``None`` while paused."""
    last_fire_at: datetime | None
    """The latest slot fired (UTC)."""
    last_mission_id: str | None
    """The mission the latest slot started."""
    fires: int
    """How many slots fired, in all."""
    last_error: str | None
    """Why the latest fire could not start its mission (its input was refused), if it could
    not; the slot is then passed over."""
    created_at: datetime
    updated_at: datetime
    revision: int
    tenant: str | None = None
    """The tenant the missions it starts belong to (``None``: no tenant)."""

    def mission_id(self, slot: datetime) -> str:
        """The id of the mission the slot ``slot`` starts."""
        return mission_id_for(self.id, slot)

    def input_at(self, slot: datetime) -> JsonValue:
        """The input of the mission the slot ``slot`` starts."""
        if self.fire_time_field is None:
            return self.input
        fields: dict[str, JsonValue] = self.input
        return {**fields, self.fire_time_field: self.trigger.local(slot).isoformat()}


def mission_id_for(schedule_id: str, slot: datetime) -> str:
    """``<schedule id>@<slot, UTC, to the second>``: the same in every process and restart."""
    return f"{schedule_id}@{slot.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}"


def plan(schedule: Schedule, now: datetime) -> tuple[list[datetime], datetime]:
    """The slots the schedule fires at ``now`` (oldest first) and its next slot after them.

    Slots at most ``grace`` old fire (up to a thousand); older ones were missed and fire by
    the schedule's ``missed`` policy."""
    due = schedule.next_fire_at
    trigger = schedule.trigger
    following = trigger.after(now)
    if due is None or due > now:
        return [], following if due is None else due
    late = now - schedule.grace
    on_time = _slots(trigger, max(due, late), now, _MAX_ON_TIME)
    match schedule.missed:
        case MissedFires.SKIP:
            keep = 0
        case MissedFires.ONCE:
            keep = 1
        case MissedFires.ALL:
            keep = schedule.max_catch_up
    missed: list[datetime] = []
    if keep and due < late:
        begin = max(due, trigger.back(late - _TICK, keep))
        missed = _slots(trigger, begin, late - _TICK, None)[-keep:]
    return missed + on_time, following


def _slots(trigger: Trigger, first: datetime, last: datetime, limit: int | None) -> list[datetime]:
    """The slots from ``first`` to ``last`` (both included), oldest first; with ``limit``, the
    latest ``limit`` of them."""
    found: list[datetime] = []
    if limit is not None and first < last:
        first = max(first, trigger.back(last, limit))
    slot = trigger.after(first - _TICK)
    while slot <= last:
        found.append(slot)
        slot = trigger.after(slot)
    return found if limit is None else found[-limit:]


@runtime_checkable
class ScheduleStore(Protocol):
    """What a persistence adapter implements to keep schedules (the project's adapters
    do; on one that does not, the commander's schedule methods raise ``ConfigurationError``).

    - ``insert_schedule`` stores a new schedule; when its id exists it stores nothing and
      returns the stored one (else ``None``).
    - ``commit_schedule`` is a compare-and-set on ``revision`` (``schedule.revision`` is
      ``expected_revision + 1``): ``RevisionConflictError`` and nothing stored when the stored
      revision differs or the schedule is gone.
    - ``delete_schedule`` returns whether it was stored. Deleting missions never touches
      schedules.
    - ``due_schedules``: the unpaused schedules whose ``next_fire_at`` is at or before ``now``,
      earliest first; ``next_schedule_at``: the earliest ``next_fire_at`` (later than ``after``,
      when given). Both cost what they return, not what is stored.
    - Writers in another process (a submitter) wake the owner after a write, as for
      submissions, so that its runtime re-arms for the schedule's next fire.
    """

    async def insert_schedule(self, schedule: Schedule) -> Schedule | None: ...

    async def load_schedule(self, schedule_id: str) -> Schedule | None: ...

    async def commit_schedule(self, schedule: Schedule, *, expected_revision: int) -> None: ...

    async def delete_schedule(self, schedule_id: str) -> bool: ...

    async def list_schedules(
        self, *, limit: int, after_id: str | None = None
    ) -> list[Schedule]: ...

    async def due_schedules(self, now: datetime, limit: int) -> list[Schedule]: ...

    async def next_schedule_at(self, after: datetime | None = None) -> datetime | None: ...


# -- the storage codec ---------------------------------------------------------------------------


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()


def _time(value: Any) -> datetime | None:
    if value is None:
        return None
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError(f"a stored time must carry its offset, got {value!r}")
    return parsed.astimezone(UTC)


def _trigger_to_dict(trigger: Trigger) -> dict[str, Any]:
    match trigger:
        case Cron():
            return {"cron": trigger.expression, "timezone": trigger.timezone}
        case Every():
            return {"every": trigger.seconds, "anchor": _iso(trigger.anchor)}


def _trigger_from_dict(value: dict[str, Any]) -> Trigger:
    if "cron" in value:
        return Cron(value["cron"], value["timezone"])
    return Every(value["every"], _time(value["anchor"]))


def check_schedule_revision(schedule: Schedule, expected_revision: int) -> None:
    """Refuse a schedule commit that does not carry the revision after ``expected_revision``
    (:class:`RevisionConflictError`), before anything is written."""
    if schedule.revision != expected_revision + 1:
        raise RevisionConflictError(
            f"schedule {schedule.id!r}: a commit expecting revision {expected_revision} "
            f"must carry revision {expected_revision + 1}, not {schedule.revision}"
        )


def schedule_to_json(schedule: Schedule) -> str:
    """The schedule as the JSON document adapters store."""
    return document_to_json(
        SCHEDULE_FORMAT,
        {
            "id": schedule.id,
            "definition": schedule.definition,
            "trigger": _trigger_to_dict(schedule.trigger),
            "input": schedule.input,
            "fire_time_field": schedule.fire_time_field,
            "missed": str(schedule.missed),
            "max_catch_up": schedule.max_catch_up,
            "grace": schedule.grace.total_seconds(),
            "paused": schedule.paused,
            "next_fire_at": _iso(schedule.next_fire_at),
            "last_fire_at": _iso(schedule.last_fire_at),
            "last_mission_id": schedule.last_mission_id,
            "fires": schedule.fires,
            "last_error": schedule.last_error,
            "created_at": _iso(schedule.created_at),
            "updated_at": _iso(schedule.updated_at),
            "revision": schedule.revision,
            "tenant": schedule.tenant,
        },
    )


def schedule_from_json(text: str | bytes) -> Schedule:
    """A schedule read back from :func:`schedule_to_json`'s document."""
    value = document_from_json(text, SCHEDULE_FORMAT, "schedule")
    created = _time(value["created_at"])
    updated = _time(value["updated_at"])
    assert created is not None
    assert updated is not None
    return Schedule(
        id=value["id"],
        definition=value["definition"],
        trigger=_trigger_from_dict(value["trigger"]),
        input=value["input"],
        fire_time_field=value["fire_time_field"],
        missed=MissedFires(value["missed"]),
        max_catch_up=int(value["max_catch_up"]),
        grace=timedelta(seconds=value["grace"]),
        paused=bool(value["paused"]),
        next_fire_at=_time(value["next_fire_at"]),
        last_fire_at=_time(value["last_fire_at"]),
        last_mission_id=value["last_mission_id"],
        fires=int(value["fires"]),
        last_error=value["last_error"],
        created_at=created,
        updated_at=updated,
        revision=int(value["revision"]),
        # Absent from a schedule stored before tenants: it starts missions of no tenant.
        tenant=value.get("tenant"),
    )


def sort_key(schedule: Schedule) -> tuple[datetime, str]:
    """How due schedules are ordered: earliest slot first, then by id."""
    assert schedule.next_fire_at is not None
    return schedule.next_fire_at, schedule.id


# -- what a commander does with schedules --------------------------------------------------------

_log = logging.getLogger("mission_control.core")


class _Settings(TypedDict, total=False):
    fire_time_field: str | None
    """Add each slot's time to the input (an object) under this key (default ``None``)."""
    missed: MissedFires | str
    """What to do with missed slots (default :attr:`MissedFires.SKIP`)."""
    max_catch_up: int
    """How many missed slots ``MissedFires.ALL`` fires at most (default 100)."""
    grace: timedelta | float
    """How late a slot may fire and still count as on time (default 60 seconds)."""


class ScheduleOptions(_Settings, total=False):
    """The settings of a schedule beside its trigger and input, all optional (the defaults
    are those of ``create_schedule``)."""

    tenant: str | None
    """The tenant the schedule, and the missions it starts, belong to (default ``None``: no
    tenant); its id is unique within it."""


class ScheduleChanges(_Settings, total=False):
    """What ``update_schedule`` may change; what is not given is kept (a schedule's tenant
    never changes: it names the schedule)."""

    definition: MissionDefinition[Any, Any, Any] | str
    trigger: Trigger
    input: Any


def _check_schedule_id(schedule_id: object) -> str:
    if not isinstance(schedule_id, str) or not schedule_id or "@" in schedule_id:
        raise InvalidInputError(
            f"a schedule id is a non-empty str without '@' (its missions' ids are "
            f"'<schedule id>@<time>'), got {schedule_id!r}"
        )
    check_id(schedule_id)
    # Its missions' ids begin with it: of a tenant's form, they would take that tenant's keys.
    check_unqualified(schedule_id, "schedule id")
    return schedule_id


def _check_settings(
    trigger: object, missed: object, max_catch_up: object, grace: object, field: object
) -> tuple[Trigger, MissedFires, int, timedelta, str | None]:
    if not isinstance(trigger, Cron | Every):
        raise InvalidInputError(f"a schedule's trigger is Cron(...) or Every(...), got {trigger!r}")
    try:
        missed_fires = MissedFires(missed)
    except ValueError:
        raise InvalidInputError(
            f"missed must be one of {', '.join(repr(str(m)) for m in MissedFires)}, got {missed!r}"
        ) from None
    if isinstance(max_catch_up, bool) or not isinstance(max_catch_up, int) or max_catch_up < 1:
        raise InvalidInputError(f"max_catch_up must be a whole number >= 1, got {max_catch_up!r}")
    if isinstance(grace, int | float) and not isinstance(grace, bool):
        grace = timedelta(seconds=grace)
    if not isinstance(grace, timedelta) or grace < timedelta(0):
        raise InvalidInputError(f"grace must be a timedelta (or seconds) >= 0, got {grace!r}")
    if field is not None and (not isinstance(field, str) or not field):
        raise InvalidInputError(f"fire_time_field must be a non-empty str or None, got {field!r}")
    return trigger, missed_fires, max_catch_up, grace, field


class ScheduleBook:
    """The schedule methods of one commander: checks, writes, notices and fires."""

    def __init__(
        self,
        engine: Engine,
        persistence: object,
        definitions: Callable[[], dict[str, MissionDefinition[Any, Any, Any]]],
    ) -> None:
        self._engine = engine
        self._store = persistence if isinstance(persistence, ScheduleStore) else None
        self._definitions = definitions
        # The schedules whose fire raised, logged already.
        self._stuck: set[str] = set()

    @property
    def enabled(self) -> bool:
        return self._store is not None

    def store(self) -> ScheduleStore:
        if self._store is None:
            raise ConfigurationError(
                "this commander's persistence adapter keeps no schedules (it does not implement "
                "mission_control.core.storage.ScheduleStore)"
            )
        return self._store

    def _definition(self, name: str) -> MissionDefinition[Any, Any, Any]:
        definition = self._definitions().get(name)
        if definition is None:
            raise UnknownDefinitionError(
                f"no definition named {name!r} was given to this commander "
                f"(known: {', '.join(sorted(self._definitions())) or 'none'})"
            )
        return definition

    def _checked(self, schedule: Schedule) -> Schedule:
        """``schedule`` once its definition is known and accepts the input of its next slot."""
        definition = self._definition(schedule.definition)
        if schedule.fire_time_field is not None and not isinstance(schedule.input, dict):
            raise InvalidInputError(
                "a schedule with a fire_time_field needs an object (a dict) as its input, got "
                f"{schedule.input!r}"
            )
        slot = schedule.next_fire_at or schedule.trigger.after(self._engine.now())
        self._engine.checked_input(definition, schedule.input_at(slot))
        return schedule

    async def create(
        self,
        schedule_id: str,
        definition: MissionDefinition[Any, Any, Any] | str,
        trigger: Trigger,
        input: Any,
        options: ScheduleOptions,
        paused: bool,
    ) -> Schedule:
        refuse_unknown_options(options, ScheduleOptions.__optional_keys__, "create_schedule()")
        store = self.store()
        _check_schedule_id(schedule_id)
        name = definition if isinstance(definition, str) else definition.name
        known = self._definition(name)
        if not isinstance(definition, str) and known is not definition:
            raise UnknownDefinitionError(
                f"definition {definition!r} is not the one this commander runs as {name!r}"
            )
        checked = _check_settings(
            trigger,
            options.get("missed", MissedFires.SKIP),
            options.get("max_catch_up", DEFAULT_MAX_CATCH_UP),
            options.get("grace", DEFAULT_GRACE),
            options.get("fire_time_field"),
        )
        trigger, missed_fires, catch_up, grace_time, field = checked
        tenant = check_tenant(options.get("tenant"))
        if not isinstance(paused, bool):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise InvalidInputError(f"paused must be True or False, got {paused!r}")
        now = self._engine.now()
        requested = trigger
        if isinstance(trigger, Every) and trigger.anchor is None:
            trigger = attrs.evolve(trigger, anchor=now)
        try:
            input_json = to_json_value(
                input, what="schedule input", converter=self._engine.converter
            )
        except OutputNotSerializableError as error:
            raise InvalidInputError(str(error)) from None
        schedule = self._checked(
            Schedule(
                id=tenant_key(tenant, schedule_id),
                definition=name,
                trigger=trigger,
                input=input_json,
                fire_time_field=field,
                missed=missed_fires,
                max_catch_up=catch_up,
                grace=grace_time,
                paused=paused,
                next_fire_at=None if paused else trigger.after(now),
                last_fire_at=None,
                last_mission_id=None,
                fires=0,
                last_error=None,
                created_at=now,
                updated_at=now,
                revision=1,
                tenant=tenant,
            )
        )
        existing = await store.insert_schedule(schedule)
        if existing is not None:
            # An interval created without an anchor is anchored at its creation: the same
            # call made again later asks for the stored schedule.
            compared = schedule
            if (
                isinstance(requested, Every)
                and requested.anchor is None
                and isinstance(existing.trigger, Every)
                and existing.trigger.seconds == requested.seconds
            ):
                compared = attrs.evolve(schedule, trigger=existing.trigger)
            if _settings(existing) != _settings(compared):
                raise ScheduleExistsError(
                    f"schedule {schedule_id!r}{_in(tenant)} exists with other settings; change "
                    "it with update_schedule (nothing was changed)"
                )
            return _seen(existing)
        self._noticed(schedule)
        return _seen(schedule)

    async def _load(self, schedule_id: str, tenant: str | None) -> Schedule:
        """The stored schedule the caller calls ``schedule_id`` among ``tenant``'s;
        :class:`ScheduleNotFoundError`, the same whatever another tenant has."""
        tenant = check_tenant(tenant)
        if not isinstance(schedule_id, str):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise InvalidInputError(f"a schedule id is a str, got {schedule_id!r}")
        schedule = await _stored_schedule(self.store(), schedule_id, tenant)
        if schedule is None:
            raise ScheduleNotFoundError(f"no schedule {schedule_id!r} is stored{_in(tenant)}")
        return schedule

    async def get(self, schedule_id: str, tenant: str | None) -> Schedule:
        return _seen(await self._load(schedule_id, tenant))

    async def change(
        self,
        schedule_id: str,
        tenant: str | None,
        change: Callable[[Schedule, datetime], Schedule],
    ) -> Schedule:
        """Apply ``change`` to the stored schedule (compare-and-set, read again on a conflict
        with the runtime's fire)."""
        store = self.store()
        while True:
            current = await self._load(schedule_id, tenant)
            now = self._engine.now()
            changed = change(current, now)
            if changed == current:
                return _seen(current)
            changed = attrs.evolve(changed, updated_at=now, revision=current.revision + 1)
            try:
                await store.commit_schedule(changed, expected_revision=current.revision)
            except RevisionConflictError:
                continue
            self._noticed(changed)
            return _seen(changed)

    async def update(
        self, schedule_id: str, tenant: str | None, changes: ScheduleChanges
    ) -> Schedule:
        refuse_unknown_options(changes, ScheduleChanges.__optional_keys__, "update_schedule()")
        input_json: Any = None
        if "input" in changes:
            try:
                input_json = to_json_value(
                    changes["input"], what="schedule input", converter=self._engine.converter
                )
            except OutputNotSerializableError as error:
                raise InvalidInputError(str(error)) from None

        def change(current: Schedule, now: datetime) -> Schedule:
            definition = changes.get("definition", current.definition)
            name = definition if isinstance(definition, str) else definition.name
            new_trigger, missed_fires, catch_up, grace_time, field = _check_settings(
                changes.get("trigger", current.trigger),
                changes.get("missed", current.missed),
                changes.get("max_catch_up", current.max_catch_up),
                changes.get("grace", current.grace),
                changes.get("fire_time_field", current.fire_time_field),
            )
            if isinstance(new_trigger, Every) and new_trigger.anchor is None:
                new_trigger = attrs.evolve(new_trigger, anchor=now)
            next_fire_at = current.next_fire_at
            if new_trigger != current.trigger and not current.paused:
                next_fire_at = new_trigger.after(now)
            return self._checked(
                attrs.evolve(
                    current,
                    definition=name,
                    trigger=new_trigger,
                    input=input_json if "input" in changes else current.input,
                    fire_time_field=field,
                    missed=missed_fires,
                    max_catch_up=catch_up,
                    grace=grace_time,
                    next_fire_at=next_fire_at,
                )
            )

        return await self.change(schedule_id, tenant, change)

    async def pause(self, schedule_id: str, tenant: str | None) -> Schedule:
        return await self.change(
            schedule_id,
            tenant,
            lambda current, now: attrs.evolve(current, paused=True, next_fire_at=None),
        )

    async def resume(self, schedule_id: str, tenant: str | None) -> Schedule:
        def change(current: Schedule, now: datetime) -> Schedule:
            if not current.paused:
                return current
            return attrs.evolve(current, paused=False, next_fire_at=current.trigger.after(now))

        return await self.change(schedule_id, tenant, change)

    async def delete(self, schedule_id: str, tenant: str | None) -> bool:
        try:
            schedule = await self._load(schedule_id, tenant)
        except ScheduleNotFoundError:
            return False
        return await self.store().delete_schedule(schedule.id)

    async def list(self, limit: int, after_id: str | None, tenant: str | None) -> list[Schedule]:
        return await schedules_of_tenant(self.store(), check_tenant(tenant), limit, after_id)

    def _noticed(self, schedule: Schedule) -> None:
        if schedule.next_fire_at is not None:
            self._engine.notices.due(schedule.next_fire_at)

    # -- firing (the runtime) ------------------------------------------------------------------

    async def fire(self, limit: int) -> int:
        """Fire the slots of up to ``limit`` due schedules; return how many missions were
        started (or found started by an earlier pass, after a crash)."""
        if self._store is None or limit <= 0:
            return 0
        now = self._engine.now()
        fired = 0
        for schedule in await self._store.due_schedules(now, limit):
            try:
                fired += await self._fire_one(schedule, now)
            except (UnknownDefinitionError, PersistenceError) as error:
                # Left due: a definition missing in this process (or a store that failed)
                # is a deployment problem, not the schedule's, and its slots wait for it. The
                # runtime comes back to it every stalled_tick_delay: logged as an error once,
                # then at debug level, until it fires again.
                level = logging.DEBUG if schedule.id in self._stuck else logging.ERROR
                self._stuck.add(schedule.id)
                _log.log(level, "schedule %r could not fire: %s", schedule.id, message_of(error))
            else:
                self._stuck.discard(schedule.id)
        return fired

    async def _fire_one(self, schedule: Schedule, now: datetime) -> int:
        assert self._store is not None
        definition = self._definition(schedule.definition)
        slots, following = plan(schedule, now)
        error: str | None = schedule.last_error
        started = 0
        last_mission = schedule.last_mission_id
        seen = _seen(schedule)
        for slot in slots:
            mission_id = seen.mission_id(slot)
            try:
                await self._engine.start(
                    definition,
                    schedule.input_at(slot),
                    tenant_key(schedule.tenant, mission_id),
                    None,
                    background=True,
                    tenant=schedule.tenant,
                )
            except (InvalidInputError, MissionAlreadyExistsError) as refused:
                error = f"{mission_id}: {message_of(refused)}"
                _log.error("schedule %r could not start %s", schedule.id, error)
                continue
            error = None
            started += 1
            last_mission = mission_id
        last_fire_at = slots[-1] if slots else schedule.last_fire_at
        current = schedule
        while True:
            # A change made meanwhile (a pause, an update) is kept: the fire adds its record
            # to it, and moves its next slot on only if the change left it among the slots
            # fired.
            next_fire_at = current.next_fire_at
            left_among_fired = (
                next_fire_at is not None and bool(slots) and next_fire_at <= slots[-1]
            )
            if current is schedule or left_among_fired:
                next_fire_at = following
            fired = attrs.evolve(
                current,
                next_fire_at=next_fire_at,
                last_fire_at=last_fire_at,
                last_mission_id=last_mission,
                fires=current.fires + started,
                last_error=error,
                updated_at=now,
                revision=current.revision + 1,
            )
            try:
                await self._store.commit_schedule(fired, expected_revision=current.revision)
            except RevisionConflictError:
                reread = await self._store.load_schedule(schedule.id)
                if reread is None:
                    return started  # deleted meanwhile: its missions stand
                current = reread
                continue
            return started

    async def next_fire_at(self, after: datetime | None) -> datetime | None:
        if self._store is None:
            return None
        return await self._store.next_schedule_at(after)


async def _stored_schedule(
    store: ScheduleStore, schedule_id: str, tenant: str | None
) -> Schedule | None:
    schedule = await store.load_schedule(tenant_key(tenant, schedule_id))
    return None if schedule is None or schedule.tenant != tenant else schedule


async def schedule_of_tenant(
    store: ScheduleStore, schedule_id: str, tenant: str | None
) -> Schedule | None:
    """The schedule ``schedule_id`` of ``tenant`` in ``store``, as its callers see it (for a
    tool that reads a store directly); ``None`` when that tenant has none of that id."""
    schedule = await _stored_schedule(store, schedule_id, tenant)
    return None if schedule is None else _seen(schedule)


async def schedules_of_tenant(
    store: ScheduleStore, tenant: str | None, limit: int, after_id: str | None
) -> list[Schedule]:
    """Up to ``limit`` schedules of ``tenant`` (``None``: of no tenant) in ``store`` by id,
    after ``after_id``, as their callers see them."""
    found = await page_of_tenant(
        lambda after: store.list_schedules(limit=max(limit, 100), after_id=after),
        lambda schedule: (schedule.id, schedule.tenant),
        tenant,
        limit,
        after_id,
    )
    return [_seen(schedule) for schedule in found]


def _seen(schedule: Schedule) -> Schedule:
    """The stored ``schedule`` as its callers see it: with their id."""
    if schedule.tenant is None:
        return schedule
    return attrs.evolve(schedule, id=local_id(schedule.id, schedule.tenant))


def _in(tenant: str | None) -> str:
    return "" if tenant is None else f" in tenant {tenant!r}"


def _settings(schedule: Schedule) -> tuple[Any, ...]:
    """What ``create_schedule`` compares with a stored schedule of the same id."""
    return (
        schedule.definition,
        schedule.trigger,
        schedule.input,
        schedule.fire_time_field,
        schedule.missed,
        schedule.max_catch_up,
        schedule.grace,
        schedule.tenant,
    )
