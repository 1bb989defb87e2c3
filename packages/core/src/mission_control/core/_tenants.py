"""Tenants: where a tenant's missions live among the others.

A mission of tenant ``T`` whose caller named it ``I`` is stored under the key ``"T::I"``; a
mission of no tenant under ``I``. So ids are unique within a tenant while the engine, the
adapters, the runtime and child ids keep working on one string key, and a child's key
(``"<parent key>/<path>"``) is in its parent's tenant by construction. The tenant is also
stored in the snapshot (``MissionSnapshot.tenant``, set at start and never changed): lookups
check it, adapters index it. Callers never see a key: the commander hands out snapshots with
their own ids (:func:`as_seen`).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Final, Literal, TypeAlias, TypeVar

import attrs

from ._errors import InvalidInputError
from ._snapshot import MissionSnapshot, ParentLink

SEPARATOR: Final = "::"
"""Between a tenant and the caller's id in a stored key."""

_NAME: Final = "[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}"
_TENANT: Final = re.compile(_NAME)
_QUALIFIED: Final = re.compile(f"({_NAME}){SEPARATOR}")


class AnyTenant(enum.Enum):
    """The type of :data:`ANY_TENANT`."""

    ANY = "any"


ANY_TENANT: Final = AnyTenant.ANY
"""``PersistenceAdapter.list_missions(tenant=ANY_TENANT)``: missions of every tenant (and of
none), what a scan of the whole store (a purge, the CLI's doctor) asks for."""

_Record = TypeVar("_Record")

TenantFilter: TypeAlias = str | Literal[AnyTenant.ANY] | None
"""Which missions a listing selects: those of one tenant (its name), of no tenant (``None``),
or of every tenant (:data:`ANY_TENANT`)."""


def check_tenant(tenant: object) -> str | None:
    """``tenant`` when it is ``None`` or a valid tenant name; :class:`InvalidInputError`
    otherwise."""
    if tenant is None:
        return None
    if not isinstance(tenant, str) or _TENANT.fullmatch(tenant) is None:
        raise InvalidInputError(
            "tenant must be None or 1 to 128 characters: ASCII letters, digits and '.', '_', "
            f"'@', '+', '-', beginning with a letter or a digit; got {tenant!r}"
        )
    return tenant


def tenant_key(tenant: str | None, mission_id: str) -> str:
    """The stored key of the mission ``mission_id`` of ``tenant``; :class:`InvalidInputError`
    for a tenant that is not a valid name."""
    if tenant is None:
        return mission_id
    check_tenant(tenant)
    return f"{tenant}{SEPARATOR}{mission_id}"


def looks_qualified(key: str) -> bool:
    """Whether ``key`` has the form of a tenant's key (which an id of no tenant may not take)."""
    return _QUALIFIED.match(key) is not None


def tenant_of_key(key: str) -> str | None:
    """The tenant a key has the form of (``None``: none); only for keys made by
    :func:`tenant_key` (a submitted start), since a mission stored before tenants existed may
    have an id of that form."""
    found = _QUALIFIED.match(key)
    return None if found is None else found.group(1)


def local_id(key: str, tenant: str | None) -> str:
    """The caller's id of the mission of ``tenant`` stored under ``key``."""
    if tenant is None:
        return key
    prefix = f"{tenant}{SEPARATOR}"
    return key[len(prefix) :] if key.startswith(prefix) else key


def shown_id(snapshot: MissionSnapshot) -> str:
    """The id an error names ``snapshot`` by: its callers' (errors reach the tenant's caller,
    who cannot use the stored key)."""
    return local_id(snapshot.id, snapshot.tenant)


def check_unqualified(mission_id: str, what: str) -> None:
    """Refuse an id of no tenant that has a tenant's form: it would share its key with that
    tenant's mission."""
    if looks_qualified(mission_id):
        raise InvalidInputError(
            f"{what} {mission_id!r} has the form '<tenant>::<id>' kept for tenants' missions; "
            "pass tenant= instead, or choose an id without '::' after its first word"
        )


def as_seen(snapshot: MissionSnapshot) -> MissionSnapshot:
    """``snapshot`` of a tenant's mission as its callers see it: its id, its parent's and the
    id it was forked from, without the tenant's prefix."""
    tenant = snapshot.tenant
    if tenant is None:
        return snapshot
    parent = snapshot.parent
    forked_from = snapshot.forked_from
    return attrs.evolve(
        snapshot,
        id=local_id(snapshot.id, tenant),
        parent=None
        if parent is None
        else ParentLink(local_id(parent.mission_id, tenant), parent.node),
        forked_from=None if forked_from is None else local_id(forked_from, tenant),
    )


async def page_of_tenant(
    read: Callable[[str | None], Awaitable[Sequence[_Record]]],
    key_and_tenant: Callable[[_Record], tuple[str, str | None]],
    tenant: str | None,
    limit: int,
    after: str | None,
) -> list[_Record]:
    """Up to ``limit`` records of ``tenant`` (``None``: of no tenant) by key, after the one the
    caller calls ``after``, from a store that lists every tenant's records by key:
    ``read(after_key)`` returns the next page. A tenant's keys are one range of the store's;
    the records of no tenant are those whose key and own tenant say no tenant."""
    prefix = None if tenant is None else tenant_key(tenant, "")
    cursor = prefix if after is None else tenant_key(tenant, after)
    found: list[_Record] = []
    while len(found) < limit:
        page = await read(cursor)
        for record in page:
            key, its_tenant = key_and_tenant(record)
            if prefix is not None and not key.startswith(prefix):
                return found
            if its_tenant == tenant and tenant_of_key(key) == tenant:
                found.append(record)
                if len(found) == limit:
                    return found
        if not page:
            return found
        cursor = key_and_tenant(page[-1])[0]
    return found
