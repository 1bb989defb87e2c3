"""Definition versions: the fingerprint of a version's shape, the store of fingerprints, and the
check that every unfinished mission's version is registered, unchanged.

A mission runs on the version of its definition it started on until it ends (the engine looks
definitions up by name and version). A version's *fingerprint* is a digest of its shape (node
kinds, names, paths, order, branches, children, compensations), stored once per (definition,
version) in the store; the check compares it with the registered version of the same number, so
that a definition changed without a new version number is found before its missions meet the
change, and so is a version that unfinished missions use but nobody registered.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Mapping
from typing import Any, Final, Literal, Protocol, runtime_checkable

import attrs

from ._definition import DefinitionDescription, MissionDefinition, NodeDescription
from ._errors import ConfigurationError, DefinitionVersionError, InvalidDefinitionError
from ._nodes import ChildNode
from ._persistence import PersistenceAdapter

_log = logging.getLogger("mission_control.core")

FINGERPRINT_FORMAT: Final = 1
"""What a fingerprint covers (its prefix, ``"<format>:"``): a fingerprint of another format
is not compared, and recorded again, so that changing what the digest covers never makes every
stored version look changed."""

MISSIONS_NAMED: Final = 5
"""How many unfinished missions a problem of the version check names, by default."""

VersionKey = tuple[str, int]
"""A definition's name and version."""

VersionCheck = Literal["raise", "warn"]
"""What a commander does with a failed version check at start-up: raise
:class:`DefinitionVersionError`, or log it as a warning and start."""


def _node_shape(node: NodeDescription) -> list[Any]:
    return [
        node.kind,
        node.name,
        node.path,
        node.next,
        node.child,
        node.mode,
        node.compensate_max_attempts is not None,
        [[name, [_node_shape(n) for n in chain]] for name, chain in node.branches],
    ]


def _shape(description: DefinitionDescription) -> dict[str, Any]:
    return {
        "nodes": [_node_shape(node) for node in description.nodes],
        "deadline": description.deadline_seconds is not None,
        "on_deadline": [_node_shape(node) for node in description.on_deadline],
    }


def fingerprint(definition: MissionDefinition[Any, Any, Any]) -> str:
    """A digest of the shape of ``definition``: each node's kind, name, path and the node after
    it, the branches, paths and bodies of the nodes that hold others, the definition a child
    node starts, a parallel's mode, which steps have a compensation and whether there is a
    deadline. The same for the same shape in every process; what the nodes' functions are, and
    retry policies, timeouts, durations and limits, do not change it (a mission in flight can
    carry on through such a change)."""
    text = json.dumps(_shape(definition.describe()), sort_keys=True, separators=(",", ":"))
    return f"{FINGERPRINT_FORMAT}:{hashlib.sha256(text.encode()).hexdigest()}"


@runtime_checkable
class DefinitionVersionStore(Protocol):
    """What a persistence adapter implements for the version check (both adapters of the
    project do; a commander on an adapter that does not skips the check).

    - ``versions_in_use``: the distinct (definition, version) of the missions that have not
      ended (running or waiting), sorted. It costs what it returns, not what is stored (SQLite:
      one index seek per version).
    - ``missions_on_version``: the ids of up to ``limit`` such missions of one version, by id.
    - ``fingerprints``: every stored fingerprint, by (definition, version).
    - ``record_fingerprints``: store these fingerprints in one transaction, each replacing the
      one stored for the same (definition, version), if any.
    """

    async def versions_in_use(self) -> list[VersionKey]: ...

    async def missions_on_version(self, definition: str, version: int, limit: int) -> list[str]: ...

    async def fingerprints(self) -> dict[VersionKey, str]: ...

    async def record_fingerprints(self, fingerprints: Mapping[VersionKey, str]) -> None: ...


@attrs.frozen
class VersionProblem:
    """A version that unfinished missions use and that cannot run them as they started."""

    definition: str
    version: int
    kind: Literal["missing", "changed"]
    """``"missing"``: not registered; ``"changed"``: registered, but its fingerprint differs
    from the one stored when missions first started on it."""
    missions: tuple[str, ...]
    """The first unfinished missions on this version (by id)."""
    more: bool
    """Whether other unfinished missions are on it too."""
    stored: str | None = None
    """The stored fingerprint (``None``: none stored)."""
    registered: str | None = None
    """The registered version's fingerprint (``None``: not registered)."""

    def __str__(self) -> str:
        named = ", ".join(self.missions) + (", …" if self.more else "")
        what = (
            "is not registered"
            if self.kind == "missing"
            else "is registered with another shape than the one its missions started on "
            f"(fingerprint {self.registered}, stored {self.stored})"
        )
        on_it = f"; unfinished missions on it: {named}" if named else ""
        return f"definition {self.definition!r} version {self.version} {what}{on_it}"


@attrs.frozen
class VersionReport:
    """What the version check found: see :func:`check_definitions`."""

    problems: tuple[VersionProblem, ...]
    in_use: tuple[VersionKey, ...]
    """Every (definition, version) unfinished missions use."""
    unrecorded: tuple[VersionKey, ...]
    """Registered versions without a stored fingerprint (or one of an older format): the owning
    commander records them at start-up; not a problem."""

    @property
    def ok(self) -> bool:
        return not self.problems

    def __str__(self) -> str:
        if self.ok:
            count = len(self.in_use)
            return f"every version unfinished missions use is registered unchanged ({count})"
        return "\n".join(str(problem) for problem in self.problems)


def registered_versions(
    definitions: Iterable[MissionDefinition[Any, Any, Any]],
) -> dict[VersionKey, MissionDefinition[Any, Any, Any]]:
    """What a commander given ``definitions`` registers: those and the definitions their
    child nodes start, by name and version (the given ones first). Raises
    :class:`InvalidDefinitionError` for something that is not a definition, and for two
    different definitions of one name and version (the commander refuses to start with
    them)."""
    found: dict[VersionKey, MissionDefinition[Any, Any, Any]] = {}
    # Each with where it came from, for the error that finds two of one name and version.
    origins: dict[VersionKey, str] = {}
    pending: list[tuple[Any, str]] = [(definition, "given") for definition in definitions]
    while pending:
        definition, origin = pending.pop(0)
        if not isinstance(definition, MissionDefinition):
            raise InvalidDefinitionError(
                f"definitions must be built with m.define(...)...end(), got {definition!r}"
            )
        key = (definition.name, definition.version)
        if key in found:
            if found[key] is not definition:
                raise InvalidDefinitionError(
                    f"two definitions are named {key[0]!r} with version {key[1]}; a name "
                    f"and version must be unique (one {origins[key]}, the other {origin}): "
                    "give a changed definition a new version (m.define(name, version=...)), "
                    "and build a parent with the very definition object the commander is "
                    "given"
                )
            continue
        found[key] = definition
        origins[key] = origin
        pending.extend(
            (place.node.definition, f"started by child node {path!r} of {key[0]!r}")
            for path, place in definition.places.items()
            if isinstance(place.node, ChildNode)
        )
    return found


def _store_of(persistence: object) -> DefinitionVersionStore:
    if not isinstance(persistence, DefinitionVersionStore):
        raise ConfigurationError(
            f"{persistence!r} keeps no definition fingerprints (it does not implement "
            "mission_control.core.storage.DefinitionVersionStore): its definitions cannot be "
            "checked"
        )
    return persistence


async def _report(
    store: DefinitionVersionStore,
    registered: Mapping[VersionKey, str],
    missions_named: int,
) -> tuple[VersionReport, dict[VersionKey, str]]:
    """The report, and the fingerprints to record: those registered versions have none of this
    format stored, or a stale one that no unfinished mission uses."""
    in_use = await store.versions_in_use()
    stored = await store.fingerprints()
    used = set(in_use)
    problems: list[VersionProblem] = []
    for key in in_use:
        mine = registered.get(key)
        theirs = stored.get(key)
        if mine is not None and (theirs is None or not _comparable(theirs) or theirs == mine):
            continue
        ids = await store.missions_on_version(key[0], key[1], missions_named + 1)
        problems.append(
            VersionProblem(
                key[0],
                key[1],
                "missing" if mine is None else "changed",
                tuple(ids[:missions_named]),
                len(ids) > missions_named,
                theirs,
                mine,
            )
        )
    to_record = {
        key: mine
        for key, mine in registered.items()
        if stored.get(key) is None
        or not _comparable(stored[key])
        or (stored[key] != mine and key not in used)
    }
    unrecorded = tuple(
        sorted(key for key in to_record if stored.get(key) is None or not _comparable(stored[key]))
    )
    return VersionReport(tuple(problems), tuple(in_use), unrecorded), to_record


def _comparable(stored: str) -> bool:
    return stored.startswith(f"{FINGERPRINT_FORMAT}:")


async def check_definitions(
    persistence: PersistenceAdapter,
    definitions: Iterable[MissionDefinition[Any, Any, Any]],
    *,
    missions_named: int = MISSIONS_NAMED,
) -> VersionReport:
    """Check ``definitions`` (with the definitions their child nodes start) against the
    missions of ``persistence`` that have not ended, writing nothing: every version they use
    must be registered, with the shape stored when missions first started on it (its
    fingerprint). Each problem names up to ``missions_named`` of its missions. For a check
    before a deploy (the CLI's ``check``), on any store, read-only ones included; a commander
    runs the same check when it starts. Raises :class:`ConfigurationError` when the adapter
    keeps no fingerprints."""
    store = _store_of(persistence)
    fingerprints = {key: fingerprint(d) for key, d in registered_versions(definitions).items()}
    report, _ = await _report(store, fingerprints, missions_named)
    return report


async def stored_shape_differs(
    persistence: PersistenceAdapter, definition: MissionDefinition[Any, Any, Any]
) -> VersionProblem | None:
    """The problem, when the store holds a fingerprint for ``definition``'s version that is not
    ``definition``'s: this process has another shape under that version number than the one
    the store's missions started on (a checkout or deploy that differs from the owner's), so
    nothing may be decided here from that shape. ``None`` when they agree, or when nothing
    comparable is stored."""
    if not isinstance(persistence, DefinitionVersionStore):
        return None
    key = (definition.name, definition.version)
    stored = (await persistence.fingerprints()).get(key)
    mine = fingerprint(definition)
    if stored is None or not _comparable(stored) or stored == mine:
        return None
    ids = await persistence.missions_on_version(key[0], key[1], MISSIONS_NAMED + 1)
    return VersionProblem(
        key[0],
        key[1],
        "changed",
        tuple(ids[:MISSIONS_NAMED]),
        len(ids) > MISSIONS_NAMED,
        stored,
        mine,
    )


async def startup_check(
    persistence: PersistenceAdapter,
    definitions: Mapping[VersionKey, MissionDefinition[Any, Any, Any]],
    mode: VersionCheck,
    *,
    record: bool,
) -> VersionReport | None:
    """The check a commander runs when it starts (``None`` on an adapter that keeps no
    fingerprints). With ``record`` (the owner of a writable store), fingerprints of registered
    versions not stored yet are stored, and so are those replacing a stale one no unfinished
    mission uses. A failed check raises :class:`DefinitionVersionError` (``mode="raise"``) or
    is logged (``"warn"``); what it would record is recorded either way."""
    if not isinstance(persistence, DefinitionVersionStore):
        return None
    fingerprints = {key: fingerprint(d) for key, d in definitions.items()}
    report, to_record = await _report(persistence, fingerprints, MISSIONS_NAMED)
    if record and to_record:
        await persistence.record_fingerprints(to_record)
    if not report.ok:
        if mode == "raise":
            raise DefinitionVersionError(report)
        _log.warning(
            "definition versions: %s (missions on these versions fail when they next move)",
            "; ".join(str(problem) for problem in report.problems),
        )
    return report
