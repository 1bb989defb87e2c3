"""The storage codec: the JSON documents adapters write for snapshots, timeline entries,
buffered signals and cancellation requests.

Private to the library: it has a converter of its own that user code never reaches, so no hook
a user registers changes how the library's records are written or read. Adapters reach it
through ``mission_control.core.storage``. The user values inside a record (inputs, outputs,
payloads) are JSON values already, checked at the boundary (``_values.py``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

import cattrs
from cattrs.preconf.json import make_converter

from ._snapshot import (
    BufferedSignal,
    CancelRequest,
    ErrorInfo,
    JsonValue,
    MissionSnapshot,
    MissionStatus,
    NodeRecord,
    NodeStatus,
    TimelineEntry,
    TimelineKind,
    Wait,
    WaitKind,
)

_codec: cattrs.Converter = make_converter()
"""The storage codec's converter: the library's records only, never a user's hook (users convert
their own types with the commander's converter, see ``_values.py``)."""


def snapshot_to_dict(snapshot: MissionSnapshot) -> dict[str, Any]:
    return _codec.unstructure(snapshot, MissionSnapshot)


def snapshot_from_dict(data: dict[str, Any]) -> MissionSnapshot:
    return _codec.structure(data, MissionSnapshot)


def _make_encoder() -> Callable[[Any], str]:
    encoder = json.JSONEncoder(separators=(",", ":"), allow_nan=False)
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return encoder.encode
    # The C encoder made once and called directly: JSONEncoder.encode makes a new one for every
    # document, which costs about a third of encoding a small one. No cycle check: values
    # reach here through to_json_value or from JSON, so they are trees.
    one_shot = make(
        None,
        encoder.default,
        json.encoder.encode_basestring_ascii,
        None,
        ":",
        ",",
        False,
        False,
        False,
    )

    def encode(value: Any) -> str:
        return "".join(one_shot(value, 0))

    return encode


_encode = _make_encoder()


# Texts made once per object: a transition stamps several fields and entries with the same
# ``now``, a replaced record keeps its start time, and a mission's id and input are the same
# objects at every commit. Keyed by identity (equal instants in different time zones format
# differently); each entry keeps its object alive, so an id is never reused while it is cached.
_texts: dict[int, tuple[object, str]] = {}


def _remember(value: object, text: str) -> str:
    if len(_texts) >= 512:
        _texts.clear()
    _texts[id(value)] = (value, text)
    return text


def _time_json(value: datetime | None) -> str:
    """A datetime as JSON text (its ISO 8601 form, quoted: nothing in it needs escaping), or
    ``null``."""
    if value is None:
        return "null"
    cached = _texts.get(id(value))
    if cached is not None and cached[0] is value:
        return cached[1]
    return _remember(value, f'"{value.isoformat()}"')


def _iso(value: datetime | None) -> str | None:
    return None if value is None else _time_json(value)[1:-1]


def _encode_kept(value: JsonValue) -> str:
    """JSON of a value that is never changed once stored (an id, an input)."""
    if value is None:
        return "null"
    cached = _texts.get(id(value))
    if cached is not None and cached[0] is value:
        return cached[1]
    return _remember(value, _encode(value))


def _unstructure_record(record: NodeRecord) -> dict[str, Any]:
    error = record.error
    return {
        "name": record.name,
        "kind": record.kind,
        "status": record.status.value,
        "attempts": record.attempts,
        "input": record.input,
        "output": record.output,
        "error": None if error is None else _codec.unstructure(error, ErrorInfo),
        "started_at": _iso(record.started_at),
        "finished_at": _iso(record.finished_at),
        "due_at": _iso(record.due_at),
    }


_codec.register_unstructure_hook(NodeRecord, _unstructure_record)


def _structure_time(value: Any) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _structure_error(value: Any) -> ErrorInfo | None:
    if value is None:
        return None
    traceback = value.get("traceback")
    return ErrorInfo(
        str(value["type"]),
        str(value["message"]),
        int(value.get("attempt", 0)),
        None if traceback is None else str(traceback),
    )


_RECORD_KEYS = (
    "name",
    "kind",
    "status",
    "attempts",
    "input",
    "output",
    "error",
    "started_at",
    "finished_at",
    "due_at",
)
# Enum lookups by value, and values by member, without the enum machinery (``Status(text)`` and
# ``member.value`` go through Python-level enum code at every call).
_TEXT: dict[str, str] = {
    member: member.value
    for kinds in (MissionStatus, NodeStatus, WaitKind, TimelineKind)
    for member in kinds
}
_NODE_STATUSES = {status.value: status for status in NodeStatus}
_MISSION_STATUSES = {status.value: status for status in MissionStatus}
_WAIT_KINDS = {kind.value: kind for kind in WaitKind}


def _structure_record(data: Any, _: Any = None, *, keep_source: bool = False) -> NodeRecord:
    record = NodeRecord(
        str(data["name"]),
        str(data["kind"]),
        _NODE_STATUSES.get(data["status"]) or NodeStatus(data["status"]),
        int(data.get("attempts", 0)),
        data.get("input"),
        data.get("output"),
        _structure_error(data.get("error")),
        _structure_time(data.get("started_at")),
        _structure_time(data.get("finished_at")),
        _structure_time(data.get("due_at")),
    )
    if keep_source and tuple(data) == _RECORD_KEYS:
        # Read from storage in this very form, and owned by nobody else: the record's next
        # encoding can start from it (see NodeRecord).
        object.__setattr__(record, "_source", data)
    return record


def _structure_snapshot(data: Any, _: Any = None, *, keep_sources: bool = False) -> MissionSnapshot:
    wait, request = data.get("wait"), data.get("cancel_request")
    return MissionSnapshot(
        str(data["id"]),
        str(data["definition"]),
        int(data["definition_version"]),
        _MISSION_STATUSES.get(data["status"]) or MissionStatus(data["status"]),
        data["current_node"],
        data["input"],
        datetime.fromisoformat(data["created_at"]),
        datetime.fromisoformat(data["updated_at"]),
        {
            str(name): _structure_record(record, keep_source=keep_sources)
            for name, record in data.get("nodes", {}).items()
        },
        None
        if wait is None
        else Wait(
            _WAIT_KINDS.get(wait["kind"]) or WaitKind(wait["kind"]),
            str(wait["node"]),
            wait.get("signal"),
            _structure_time(wait.get("due_at")),
        ),
        data.get("output"),
        _structure_error(data.get("error")),
        None
        if request is None
        else CancelRequest(datetime.fromisoformat(request["requested_at"]), request.get("reason")),
        int(data.get("revision", 0)),
        int(data.get("recovery_attempts", 0)),
    )


# Snapshots are read at every load: these hand-written forms do what the generated ones do
# (same fields, same conversions), several times faster. A test holds them to the generic
# converter's output.
_codec.register_structure_hook(NodeRecord, _structure_record)
_codec.register_structure_hook(MissionSnapshot, _structure_snapshot)


def _json_or_null(value: Any) -> str:
    return "null" if value is None else _encode(value)


def _error_json(error: ErrorInfo | None) -> str:
    return "null" if error is None else _encode(_codec.unstructure(error, ErrorInfo))


def _encode_record(record: NodeRecord, source: dict[str, Any] | None) -> str:
    # The record's entry in the snapshot's "nodes" object: ``"name":{...}``.
    if source is not None:
        return f"{_encoded_name(record.name)}:{_encode(source)}"
    # Written out key by key (the same text as encoding _unstructure_record's dict): two new
    # records are encoded at a typical commit.
    name = _encoded_name(record.name)
    return (
        f'{name}:{{"name":{name},"kind":{_encoded_name(record.kind)},'
        f'"status":"{_TEXT[record.status]}","attempts":{int(record.attempts)},'
        f'"input":{_encode_kept(record.input)},"output":{_json_or_null(record.output)},'
        f'"error":{_error_json(record.error)},'
        f'"started_at":{_time_json(record.started_at)},'
        f'"finished_at":{_time_json(record.finished_at)},'
        f'"due_at":{_time_json(record.due_at)}}}'
    )


_encoded_names: dict[str | None, str] = {}


def _encoded_name(name: str | None) -> str:
    # Node names recur in every entry of every mission: each is escaped once.
    text = _encoded_names.get(name)
    if text is None:
        text = _encode(name)
        if len(_encoded_names) < 10_000:
            _encoded_names[name] = text
    return text


def snapshot_to_json(snapshot: MissionSnapshot) -> str:
    """The snapshot as a JSON document (what durable adapters store).

    The same document as ``json.dumps(snapshot_to_dict(snapshot))``, built faster: each node
    record's text is encoded once and reused by every later commit of the mission.
    """
    wait, request = snapshot.wait, snapshot.cancel_request
    if wait is None:
        wait_text = "null"
    else:
        wait_text = (
            f'{{"kind":"{_TEXT[wait.kind]}","node":{_encoded_name(wait.node)},'
            f'"signal":{_encoded_name(wait.signal)},"due_at":{_time_json(wait.due_at)}}}'
        )
    # Written out key by key (the same document as encoding snapshot_to_dict without "nodes"):
    # the head is encoded at every commit.
    head = (
        f'{{"id":{_encode_kept(snapshot.id)},"definition":{_encoded_name(snapshot.definition)},'
        f'"definition_version":{int(snapshot.definition_version)},'
        f'"status":"{_TEXT[snapshot.status]}",'
        f'"current_node":{_encoded_name(snapshot.current_node)},'
        f'"input":{_encode_kept(snapshot.input)},'
        f'"created_at":{_time_json(snapshot.created_at)},'
        f'"updated_at":{_time_json(snapshot.updated_at)},'
        f'"wait":{wait_text},"output":{_json_or_null(snapshot.output)},'
        f'"error":{_error_json(snapshot.error)},'
        f'"cancel_request":'
        f"{'null' if request is None else cancel_request_to_json(request)},"
        f'"revision":{int(snapshot.revision)},'
        f'"recovery_attempts":{int(snapshot.recovery_attempts)}}}'
    )
    nodes = ",".join(
        record.json_text(_encode_record)
        if record.name == name
        else _encode({name: _unstructure_record(record)})[1:-1]
        for name, record in snapshot.nodes.items()
    )
    return f'{head[:-1]},"nodes":{{{nodes}}}}}'


def snapshot_from_json(text: str | bytes) -> MissionSnapshot:
    """Rebuild a snapshot stored by :func:`snapshot_to_json`."""
    return _structure_snapshot(json.loads(text), keep_sources=True)


def _unstructure_entry(entry: TimelineEntry) -> dict[str, Any]:
    return {
        "at": _iso(entry.at),
        "kind": entry.kind.value,
        "node": entry.node,
        "attempt": entry.attempt,
        "detail": entry.detail,
    }


_codec.register_unstructure_hook(TimelineEntry, _unstructure_entry)


def timeline_entry_to_json(entry: TimelineEntry) -> str:
    """The entry as JSON text; the same document as encoding its unstructured form."""
    if entry.detail is not None:
        return _encode(_unstructure_entry(entry))
    attempt = entry.attempt
    # Written out for the common entry without detail: every field is a known atom.
    return (
        f'{{"at":{_time_json(entry.at)},"kind":"{_TEXT[entry.kind]}",'
        f'"node":{_encoded_name(entry.node)},'
        f'"attempt":{"null" if attempt is None else int(attempt)},"detail":null}}'
    )


def timeline_entry_from_json(text: str | bytes) -> TimelineEntry:
    return _codec.structure(json.loads(text), TimelineEntry)


def buffered_signal_to_json(signal: BufferedSignal) -> str:
    return _encode(_codec.unstructure(signal, BufferedSignal))


def buffered_signal_from_json(text: str | bytes) -> BufferedSignal:
    return _codec.structure(json.loads(text), BufferedSignal)


def cancel_request_to_json(request: CancelRequest) -> str:
    return _encode(_codec.unstructure(request, CancelRequest))


def cancel_request_from_json(text: str | bytes) -> CancelRequest:
    return _codec.structure(json.loads(text), CancelRequest)


def value_to_json(value: JsonValue) -> str:
    """A JSON value (a payload checked at the boundary, or one read back from storage) as JSON
    text, written as the codec writes the same value inside a snapshot."""
    return _encode(value)
