"""Concurrency keys: at most ``limit`` missions of a definition with the same key (computed from
the input) run at once; the others wait for a slot, durably, in the order they were started.

A key's **gate** is one stored record, changed only by compare-and-set: the missions holding its
slots (``running``) and those waiting for one (``queued``, in start order). A mission is stored
first, waiting for a slot (``WaitKind.SLOT``), and only then queued in the gate, so that the
gate never names a mission that does not exist; it begins only once it finds itself among the
gate's ``running``, so that no more than ``limit`` ever run. A singleton's start (``"refuse"`` or
``"join"``) is stored and takes its slot in one transaction (``insert_holding``): the check that
a slot is free and the taking of it are one compare-and-set, so that of several starts at once
one alone gets through. A mission that ends gives its slot
to the first of the queue and wakes it. A slot whose holder ended without giving it back (a
crash between the two writes) is taken back by the next mission that looks at the gate: a
waiting mission looks again every ``SLOT_RECHECK``, so nothing waits for a tick nobody
scheduled.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any, Final, Protocol, runtime_checkable

import attrs

from ._errors import MissionControlError, RevisionConflictError
from ._snapshot import MissionSnapshot, TimelineEntry

SLOT_RECHECK: Final = timedelta(seconds=60)
"""How long a mission waiting for a slot waits before it looks at its gate again by itself (a
mission that ends wakes the next one at once; this covers a crash between its end and that)."""


class WhenBusy(enum.StrEnum):
    """What a start does when its key has no free slot."""

    QUEUE = "queue"
    """The mission is stored and waits for a slot, in start order (``serialized`` with
    ``limit=1``)."""
    REFUSE = "refuse"
    """The start raises :class:`ConcurrencyLimitError` and stores nothing (a ``singleton`` that
    refuses)."""
    JOIN = "join"
    """The start returns the first running mission of the key instead of a new one (a
    ``singleton`` that joins)."""


class ConcurrencyLimitError(MissionControlError):
    """A start refused because its concurrency key has no free slot (``when_busy="refuse"``)."""


@attrs.frozen
class Concurrency:
    """A definition's concurrency key: ``key(input)`` (the parsed input) names the key, and at
    most ``limit`` missions with the same key run at once."""

    key: Callable[[Any], str]
    limit: int
    when_busy: WhenBusy


@attrs.frozen
class Gate:
    """The stored state of one key: who holds its slots, who waits for one."""

    key: str
    """``"<definition>/<key>"``: keys are the definition's own."""
    limit: int
    running: tuple[str, ...] = ()
    queued: tuple[str, ...] = ()
    revision: int = 0
    """0 before the gate is first stored; plus one for every write."""


@runtime_checkable
class ConcurrencyStore(Protocol):
    """What a persistence adapter implements to run definitions with a concurrency key.

    - ``load_gate`` returns the stored gate, or ``None``.
    - ``save_gate`` is a compare-and-set on ``revision``: it stores ``gate`` (whose revision is
      ``expected_revision + 1``) only when the stored gate is at ``expected_revision`` (0: none
      is stored), else raises ``RevisionConflictError`` and stores nothing.
    - ``insert_holding`` stores a new mission (as ``PersistenceAdapter.insert`` does, marking
      the submission being applied) and compare-and-sets its key's gate, as ``save_gate``, in
      one transaction: a singleton's start takes its slot in the write that stores it, so that
      of two starts at once one alone holds it (the other, refused or joining, stores nothing).
      When the mission's id is taken it stores nothing and returns the stored mission; when the
      gate is not at ``expected_revision`` it raises ``RevisionConflictError`` and stores
      nothing.
    """

    async def load_gate(self, key: str) -> Gate | None: ...

    async def save_gate(self, gate: Gate, *, expected_revision: int) -> None: ...

    async def insert_holding(
        self,
        snapshot: MissionSnapshot,
        timeline: Sequence[TimelineEntry],
        gate: Gate,
        *,
        expected_revision: int,
    ) -> MissionSnapshot | None: ...


def check_gate_revision(gate: Gate, expected_revision: int) -> None:
    """Refuse a gate write whose gate does not carry the revision after ``expected_revision``
    (:class:`RevisionConflictError`), before anything is written."""
    if gate.revision != expected_revision + 1:
        raise RevisionConflictError(
            f"concurrency key {gate.key!r}: a write expecting revision {expected_revision} "
            f"must carry revision {expected_revision + 1}, not {gate.revision}"
        )


def gate_to_json(gate: Gate) -> str:
    """The gate's document (its revision is stored beside it, in a column of its own)."""
    return json.dumps(
        {
            "key": gate.key,
            "limit": gate.limit,
            "running": list(gate.running),
            "queued": list(gate.queued),
        },
        separators=(",", ":"),
    )


def gate_from_json(text: str | bytes, revision: int) -> Gate:
    data = json.loads(text)
    return Gate(
        str(data["key"]),
        int(data["limit"]),
        tuple(map(str, data["running"])),
        tuple(map(str, data["queued"])),
        revision,
    )
