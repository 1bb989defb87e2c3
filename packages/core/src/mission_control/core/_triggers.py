"""Triggers: a named event that, fired with a payload, starts a mission of every definition
subscribed to it (``.triggered_by(name)``), each parsing the payload with its own start; every
fire is recorded, and a recorded fire can be replayed.

A fire starts its missions first and records itself after: a crash between the two loses the
record of the fire, never its missions. The missions' ids derive from the fire's id and the
definition (``<fire id>:<definition>``), so firing again under the same id (an idempotent
retry by the caller) starts nothing twice.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, Protocol, runtime_checkable

import attrs

from ._definition import MissionDefinition
from ._documents import document_from_json, document_to_json
from ._engine import check_id
from ._errors import (
    ConfigurationError,
    InvalidInputError,
    OutputNotSerializableError,
    TriggerExistsError,
    TriggerNotFoundError,
)
from ._snapshot import JsonValue
from ._tenants import check_tenant, check_unqualified, local_id, page_of_tenant, tenant_key
from ._values import to_json_value

if TYPE_CHECKING:
    from ._engine import Engine

TRIGGER_FORMAT: Final = 1
"""The version of the JSON document a fired trigger is stored as."""


@attrs.frozen
class TriggerFire:
    """A recorded fire of a trigger: its payload and the missions it started."""

    id: str
    """The caller's id (unique within its tenant); stored under ``"<tenant>::<id>"`` for a
    tenant's fire, as a mission is (see ``_tenants``)."""
    name: str
    """The trigger's name."""
    payload: JsonValue
    fired_at: datetime
    missions: tuple[str, ...]
    """The ids of the missions it started, one per subscribed definition, by definition."""
    replay_of: str | None = None
    """The fire this one replays, if it is a replay."""
    tenant: str | None = None
    """The tenant the missions it started belong to (``None``: no tenant)."""

    def mission_id(self, definition: str) -> str:
        return mission_id_for(self.id, definition)


def mission_id_for(fire_id: str, definition: str) -> str:
    """The id of the mission a fire starts for ``definition``."""
    return f"{fire_id}:{definition}"


@runtime_checkable
class TriggerStore(Protocol):
    """What a persistence adapter implements to record fired triggers (the project's adapters
    do; on one that does not, the commander's trigger methods raise
    ``ConfigurationError``).

    - ``record_trigger`` stores a fire; when its id exists it stores nothing and returns the
      stored one (else ``None``).
    - ``list_triggers``: up to ``limit`` fires by id after ``after_id``, of the trigger ``name``
      only when given. Deleting missions never touches fires.
    """

    async def record_trigger(self, fire: TriggerFire) -> TriggerFire | None: ...

    async def load_trigger(self, fire_id: str) -> TriggerFire | None: ...

    async def list_triggers(
        self, *, name: str | None = None, limit: int, after_id: str | None = None
    ) -> list[TriggerFire]: ...


def trigger_to_json(fire: TriggerFire) -> str:
    """The fire as the JSON document adapters store."""
    return document_to_json(
        TRIGGER_FORMAT,
        {
            "id": fire.id,
            "name": fire.name,
            "payload": fire.payload,
            "fired_at": fire.fired_at.astimezone(UTC).isoformat(),
            "missions": list(fire.missions),
            "replay_of": fire.replay_of,
            "tenant": fire.tenant,
        },
    )


def trigger_from_json(text: str | bytes) -> TriggerFire:
    """A fire read back from :func:`trigger_to_json`'s document."""
    value = document_from_json(text, TRIGGER_FORMAT, "trigger")
    return TriggerFire(
        id=value["id"],
        name=value["name"],
        payload=value["payload"],
        fired_at=datetime.fromisoformat(value["fired_at"]).astimezone(UTC),
        missions=tuple(value["missions"]),
        replay_of=value["replay_of"],
        # Absent from a fire recorded before tenants: its missions are of no tenant.
        tenant=value.get("tenant"),
    )


class TriggerBook:
    """The trigger methods of one commander."""

    def __init__(
        self,
        engine: Engine,
        persistence: object,
        definitions: Callable[[], dict[str, MissionDefinition[Any, Any, Any]]],
    ) -> None:
        self._engine = engine
        self._store = persistence if isinstance(persistence, TriggerStore) else None
        self._definitions = definitions

    def store(self) -> TriggerStore:
        if self._store is None:
            raise ConfigurationError(
                "this commander's persistence adapter records no triggers (it does not "
                "implement mission_control.core.storage.TriggerStore)"
            )
        return self._store

    def subscribers(self, name: str) -> list[MissionDefinition[Any, Any, Any]]:
        """The definitions subscribed to ``name`` (their latest versions), by name."""
        return sorted(
            (d for d in self._definitions().values() if name in d.triggers),
            key=lambda definition: definition.name,
        )

    async def fire(
        self,
        name: str,
        payload: Any,
        fire_id: str | None,
        *,
        background: bool,
        replay_of: str | None = None,
        tenant: str | None = None,
    ) -> TriggerFire:
        store = self.store()
        tenant = check_tenant(tenant)
        if not isinstance(name, str) or not name:  # pyright: ignore[reportUnnecessaryIsInstance]
            raise InvalidInputError(f"a trigger name is a non-empty str, got {name!r}")
        try:
            payload_json = to_json_value(
                payload, what=f"payload of trigger {name!r}", converter=self._engine.converter
            )
        except OutputNotSerializableError as error:
            raise InvalidInputError(str(error)) from None
        if fire_id is not None:
            check_id(fire_id)
            if tenant is None:
                # Its missions' ids begin with it: of a tenant's form, they would take that
                # tenant's keys.
                check_unqualified(mission_id_for(fire_id, ""), "trigger fire id")
            existing = await store.load_trigger(tenant_key(tenant, fire_id))
            if existing is not None:
                return _same_fire(existing, name, payload_json, replay_of, tenant)
        subscribers = self.subscribers(name)
        # Every subscriber's start checks the payload before anything is stored.
        for definition in subscribers:
            self._engine.checked_input(definition, payload_json)
        if fire_id is None:
            fire_id = self._engine.new_id()
        fire = TriggerFire(
            id=tenant_key(tenant, fire_id),
            name=name,
            payload=payload_json,
            fired_at=self._engine.now(),
            missions=tuple(mission_id_for(fire_id, d.name) for d in subscribers),
            replay_of=replay_of,
            tenant=tenant,
        )
        for definition in subscribers:
            await self._engine.start(
                definition,
                payload_json,
                tenant_key(tenant, mission_id_for(fire_id, definition.name)),
                None,
                background,
                tenant=tenant,
            )
        existing = await store.record_trigger(fire)
        if existing is None:
            return _seen(fire)
        return _same_fire(existing, name, payload_json, replay_of, tenant)

    async def get(self, fire_id: str, tenant: str | None) -> TriggerFire:
        """The recorded fire the caller calls ``fire_id`` among ``tenant``'s;
        :class:`TriggerNotFoundError`, the same whatever another tenant has."""
        tenant = check_tenant(tenant)
        if not isinstance(fire_id, str):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise InvalidInputError(f"a fire id is a str, got {fire_id!r}")
        fire = await fire_of_tenant(self.store(), fire_id, tenant)
        if fire is None:
            where = "" if tenant is None else f" in tenant {tenant!r}"
            raise TriggerNotFoundError(f"no fired trigger {fire_id!r} is recorded{where}")
        return fire

    async def replay(
        self, fire_id: str, new_id: str | None, tenant: str | None, *, background: bool
    ) -> TriggerFire:
        fire = await self.get(fire_id, tenant)
        return await self.fire(
            fire.name,
            fire.payload,
            new_id,
            background=background,
            replay_of=fire.id,
            tenant=fire.tenant,
        )

    async def list(
        self, name: str | None, limit: int, after_id: str | None, tenant: str | None
    ) -> list[TriggerFire]:
        return await fires_of_tenant(self.store(), name, check_tenant(tenant), limit, after_id)


async def fire_of_tenant(
    store: TriggerStore, fire_id: str, tenant: str | None
) -> TriggerFire | None:
    """The fire ``fire_id`` of ``tenant`` recorded in ``store``, as its callers see it (for a
    tool that reads a store directly); ``None`` when that tenant has none of that id."""
    fire = await store.load_trigger(tenant_key(tenant, fire_id))
    return None if fire is None or fire.tenant != tenant else _seen(fire)


async def fires_of_tenant(
    store: TriggerStore, name: str | None, tenant: str | None, limit: int, after_id: str | None
) -> list[TriggerFire]:
    """Up to ``limit`` fires of ``tenant`` (``None``: of no tenant; of the trigger ``name``
    only, if given) recorded in ``store`` by id, after ``after_id``, as their callers see
    them."""
    found = await page_of_tenant(
        lambda after: store.list_triggers(name=name, limit=max(limit, 100), after_id=after),
        lambda fire: (fire.id, fire.tenant),
        tenant,
        limit,
        after_id,
    )
    return [_seen(fire) for fire in found]


def _same_fire(
    existing: TriggerFire,
    name: str,
    payload: JsonValue,
    replay_of: str | None,
    tenant: str | None,
) -> TriggerFire:
    """``existing``, stored under the key a fire was to take (of its tenant), if it is that
    same fire, as its callers see it."""
    seen = _seen(existing)
    if (existing.name, existing.payload, existing.replay_of, existing.tenant) != (
        name,
        payload,
        replay_of,
        tenant,
    ):
        where = "" if tenant is None else f" in tenant {tenant!r}"
        raise TriggerExistsError(
            f"fire id {seen.id!r}{where} is taken by another fire (of another trigger, payload "
            "or replayed fire); nothing was started"
        )
    return seen


def _seen(fire: TriggerFire) -> TriggerFire:
    """The stored ``fire`` as its callers see it: with their id."""
    if fire.tenant is None:
        return fire
    return attrs.evolve(fire, id=local_id(fire.id, fire.tenant))
