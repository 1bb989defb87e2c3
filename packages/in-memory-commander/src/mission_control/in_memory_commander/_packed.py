"""Finished missions kept as flat tuples of plain values.

A store that keeps every mission it ever ran holds mostly finished ones, and Python's cyclic
garbage collector visits every reference of every object it tracks at each full collection: a
snapshot and its node records are a dozen such objects with about a hundred references, each
visit likely a cache miss. A tuple holding only strings, numbers, datetimes and bytes is untracked
by the collector the first time it looks at it, so a finished mission then costs it nothing. JSON
containers (dicts and lists, which the collector always tracks) are kept as ``marshal`` bytes:
exact for JSON values, fast both ways, and never written anywhere (nothing in this adapter
outlives the process). Reading a finished mission back builds its snapshot again.
"""

from __future__ import annotations

import marshal
from typing import Any

from mission_control.core import (
    ErrorInfo,
    MissionSnapshot,
    MissionStatus,
    NodeRecord,
    NodeStatus,
    TimelineKind,
    Wait,
    WaitKind,
)

Packed = tuple[Any, ...]
"""One flat tuple: the collector untracks a tuple only once the tuples inside it are untracked,
one level per collection, so nested tuples would stay tracked for several full collections."""

_MISSION_STATUSES = {status.value: status for status in MissionStatus}
_NODE_STATUSES = {status.value: status for status in NodeStatus}
_WAIT_KINDS = {kind.value: kind for kind in WaitKind}

DEFINITION = 1
STATUS = 3
"""Where a packed mission holds its definition name and its status (as text)."""
REVISION = 17
_RECOVERY_ATTEMPTS = 18
_HEAD = 19
_RECORD = 14
_NO_ERROR = (None, None, None, None)
# Status and kind names as plain strings (looked up rather than read through the enum property):
# an enum member is an object the collector tracks.
TEXT: dict[str, str] = {
    member: member.value
    for kinds in (MissionStatus, NodeStatus, WaitKind, TimelineKind)
    for member in kinds
}


def pack(snapshot: MissionSnapshot) -> Packed:
    """The snapshot without its cancellation request (the adapter keeps that apart); raises
    ``ValueError`` when a value in it is not plain JSON."""
    wait, error = snapshot.wait, snapshot.error
    fields: list[Any] = [
        snapshot.id,
        snapshot.definition,
        snapshot.definition_version,
        TEXT[snapshot.status],
        snapshot.current_node,
        None if snapshot.input is None else _freeze(snapshot.input),
        snapshot.created_at,
        snapshot.updated_at,
    ]
    if wait is None:
        fields += (None, None, None, None)
    else:
        fields += (TEXT[wait.kind], wait.node, wait.signal, wait.due_at)
    fields.append(None if snapshot.output is None else _freeze(snapshot.output))
    fields += _NO_ERROR if error is None else _error_fields(error)
    fields += (snapshot.revision, snapshot.recovery_attempts)
    for path, record in snapshot.nodes.items():
        error = record.error
        fields += (
            path,
            record.name,
            record.kind,
            TEXT[record.status],
            record.attempts,
            None if record.input is None else _freeze(record.input),
            None if record.output is None else _freeze(record.output),
        )
        fields += _NO_ERROR if error is None else _error_fields(error)
        fields += (record.started_at, record.finished_at, record.due_at)
    return tuple(fields)


def _freeze(value: Any) -> Any:
    # JSON values hold no bytes, so bytes here always mean a frozen container.
    kind: type[Any] = type(value)  # pyright: ignore[reportUnknownVariableType]
    if kind is dict or kind is list:
        return marshal.dumps(value)  # ValueError for what marshal cannot hold
    if kind is bytes:
        raise ValueError("bytes are not a JSON value")
    return value


def _thaw(value: Any) -> Any:
    return marshal.loads(value) if type(value) is bytes else value


def _error_fields(error: ErrorInfo) -> tuple[str, str, int, str | None]:
    return (error.type, error.message, error.attempt, error.traceback)


def _error(
    type_: str | None, message: str | None, attempt: int | None, traceback: str | None
) -> ErrorInfo | None:
    return None if type_ is None else ErrorInfo(type_, str(message), int(attempt or 0), traceback)


def unpack(packed: Packed) -> MissionSnapshot:
    nodes: dict[str, NodeRecord] = {}
    for at in range(_HEAD, len(packed), _RECORD):
        (path, name, kind, status, attempts, input, output, *error) = packed[at : at + 11]
        nodes[path] = NodeRecord(
            name,
            kind,
            _NODE_STATUSES[status],
            attempts,
            _thaw(input),
            _thaw(output),
            _error(*error),
            *packed[at + 11 : at + _RECORD],
        )
    wait_kind = packed[8]
    return MissionSnapshot(
        packed[0],
        packed[1],
        packed[2],
        _MISSION_STATUSES[packed[3]],
        packed[4],
        _thaw(packed[5]),
        packed[6],
        packed[7],
        nodes,
        None
        if wait_kind is None
        else Wait(_WAIT_KINDS[wait_kind], packed[9], packed[10], packed[11]),
        _thaw(packed[12]),
        _error(*packed[13:REVISION]),
        None,
        packed[REVISION],
        packed[_RECOVERY_ATTEMPTS],
    )
