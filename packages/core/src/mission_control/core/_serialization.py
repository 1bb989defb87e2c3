"""The storage codec: the JSON documents adapters write for snapshots, timeline entries,
buffered signals and cancellation requests.

Private to the library: it has a converter of its own that user code never reaches, so no hook
a user registers changes how the library's records are written or read. Adapters reach it
through ``mission_control.core.storage``. The user values inside a record (inputs, outputs,
payloads) are JSON values already, checked at the boundary (``_values.py``).
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import attrs
import cattrs
from cattrs.preconf.json import make_converter

from ._snapshot import (
    KEPT,
    BufferedSignal,
    CancelRequest,
    Compensations,
    ErrorInfo,
    JsonValue,
    MissionSnapshot,
    MissionStatus,
    NodeRecord,
    NodeStatus,
    ParentLink,
    Pause,
    TimelineEntry,
    TimelineKind,
    Wait,
    WaitKind,
)

_codec: cattrs.Converter = make_converter()
"""The storage codec's converter: the library's records only, never a user's hook (users convert
their own types with the commander's converter, see ``_values.py``)."""


def snapshot_to_dict(snapshot: MissionSnapshot) -> dict[str, Any]:
    """The snapshot as the JSON value :func:`snapshot_to_json` writes."""
    return json.loads(snapshot_to_json(snapshot))


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


_encoded_names: dict[str | None, str] = {}


def _encoded_name(name: str | None) -> str:
    # Node names recur in every entry of every mission: each is escaped once. The writers look in
    # _encoded_names first (``names.get(V) or name(V)``: a name seen before costs no call).
    text = _encoded_names.get(name)
    if text is None:
        text = _encode(name)
        if len(_encoded_names) < 10_000:
            _encoded_names[name] = text
    return text


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


def _json_or_null(value: Any) -> str:
    return "null" if value is None else _encode(value)


# Enum lookups by value, and values by member, without the enum machinery (``Status(text)`` and
# ``member.value`` go through Python-level enum code at every call).
_TEXT: dict[str, str] = {
    member: member.value
    for kinds in (MissionStatus, NodeStatus, WaitKind, TimelineKind)
    for member in kinds
}


def _enum_reader(kind: type[enum.StrEnum]) -> Callable[[Any], Any]:
    members = {member.value: member for member in kind}

    def read(value: Any) -> Any:
        return members.get(value) or kind(value)

    return read


def _wait_json(wait: Wait) -> str:
    return (
        f'{{"kind":"{_TEXT[wait.kind]}","node":{_encoded_name(wait.node)},'
        f'"signal":{_encoded_name(wait.signal)},"due_at":{_time_json(wait.due_at)}}}'
    )


def _read_wait(data: Any) -> Wait:
    return Wait(
        _read_wait_kind(data["kind"]),
        str(data["node"]),
        data.get("signal"),
        _structure_time(data.get("due_at")),
    )


_read_wait_kind = _enum_reader(WaitKind)


# How each type a record's field may have is written as JSON text and read back from its JSON
# value: the codec's fast forms below are derived from the records' field declarations with these
# tables, so a field added to a record needs no change here unless its type is new. A test holds
# the derived forms to the generic converter's output, field by field. A writer is a piece of an
# f-string, ``V`` standing for the field's value, using the helpers in ``_WRITER_HELPERS``.
_WRITERS: dict[Any, str] = {
    str: "{names.get(V) or name(V)}",
    str | None: "{names.get(V) or name(V)}",
    int: "{int(V)}",
    int | None: '{"null" if V is None else int(V)}',
    datetime: "{time(V)}",
    datetime | None: "{time(V)}",
    MissionStatus: '"{TEXT[V]}"',
    NodeStatus: '"{TEXT[V]}"',
    ErrorInfo | None: "{error(V)}",
    CancelRequest | None: '{"null" if V is None else cancel(V)}',
    Pause | None: '{"null" if V is None else pause(V)}',
    ParentLink | None: '{"null" if V is None else parent(V)}',
    Compensations | None: '{"null" if V is None else compensations(V)}',
    tuple[str, ...]: '{"[]" if not V else strings(V)}',
    tuple[Wait, ...]: '{"[]" if not V else waits(V)}',
    Mapping[str, NodeRecord]: "{nodes(V)}",
    Mapping[str, JsonValue] | None: "{json(V)}",
    Mapping[str, str] | None: "{json(V)}",
}


def _parent_json(value: ParentLink) -> str:
    return _encode(_codec.unstructure(value, ParentLink))


def pause_to_json(value: Pause) -> str:
    """A pause (a paused mission's, or a pause request's) as JSON text."""
    return _encode(_codec.unstructure(value, Pause))


def _compensations_json(value: Compensations) -> str:
    return _encode(_codec.unstructure(value, Compensations))


def _read_compensations(value: Any) -> Compensations | None:
    return None if value is None else _codec.structure(value, Compensations)


def _strings_json(value: tuple[str, ...]) -> str:
    return f"[{','.join(map(_encoded_name, value))}]"


def _waits_json(value: tuple[Wait, ...]) -> str:
    return f"[{','.join(map(_wait_json, value))}]"


def _object_or_null(value: Any) -> Any:
    if value is None or isinstance(value, dict):
        return value  # pyright: ignore[reportUnknownVariableType]
    raise ValueError(f"expected a JSON object or null, got {type(value).__name__}")


def _strings_or_null(value: Any) -> Any:
    value = _object_or_null(value)
    if value is not None and not all(type(item) is str for item in value.values()):
        raise ValueError("expected an object of strings")
    return value  # pyright: ignore[reportUnknownVariableType]


_READERS: dict[Any, Callable[[Any], Any]] = {
    Mapping[str, JsonValue] | None: _object_or_null,
    Mapping[str, str] | None: _strings_or_null,
    str: str,
    str | None: lambda value: None if value is None else str(value),
    int: int,
    int | None: lambda value: None if value is None else int(value),
    datetime: datetime.fromisoformat,
    datetime | None: _structure_time,
    MissionStatus: _enum_reader(MissionStatus),
    NodeStatus: _enum_reader(NodeStatus),
    ErrorInfo | None: _structure_error,
    CancelRequest | None: lambda value: (
        None
        if value is None
        else CancelRequest(
            datetime.fromisoformat(value["requested_at"]),
            value.get("reason"),
            bool(value.get("compensate", False)),
        )
    ),
    Compensations | None: _read_compensations,
    Pause | None: lambda value: (
        None
        if value is None
        else Pause(datetime.fromisoformat(value["requested_at"]), value.get("reason"))
    ),
    ParentLink | None: lambda value: (
        None if value is None else ParentLink(str(value["mission_id"]), str(value["node"]))
    ),
    tuple[str, ...]: lambda value: tuple(map(str, value)),
    tuple[Wait, ...]: lambda value: tuple(map(_read_wait, value)),
}


def _value_writer(field: attrs.Attribute[Any]) -> str:
    if field.metadata.get(KEPT):
        return "{kept(V)}"
    if field.type is Any:
        return "{json(V)}"
    return _WRITERS[field.type]


def _value_reader(field: attrs.Attribute[Any]) -> Callable[[Any], Any]:
    return _READERS.get(field.type, _as_is)


def _as_is(value: Any) -> Any:
    return value


def _stored_fields(cls: type[Any]) -> tuple[attrs.Attribute[Any], ...]:
    attrs.resolve_types(cls)
    return tuple(field for field in attrs.fields(cls) if field.init)


def _compile_writer(
    cls: type[Any], head: str = "", *, omit_none: bool = False
) -> Callable[[Any], str]:
    """A function writing an instance of the attrs class ``cls`` as a JSON object, its fields
    in declaration order, each by the writer of its type; ``head`` (``'"key":value,'``) comes
    first. With ``omit_none``, a field whose default is ``None`` is left out while it is
    ``None`` (a reader gives it its default back). Generated from the field list, as attrs
    generates ``__init__``: one f-string, no loop per call."""
    namespace: dict[str, Any] = dict(_WRITER_HELPERS)
    parts: list[str] = []
    for field in _stored_fields(cls):
        template = _value_writer(field)
        comma = "," if parts else ""
        piece = f'{comma}"{field.name}":' + template.replace("V", f"o.{field.name}")
        if omit_none and field.default is None:
            # ``{"" if o.F is None else f',"F":...'}``: a nested f-string, no call.
            parts.append(f"{{'' if o.{field.name} is None else f'{piece}'}}")
        else:
            parts.append(piece)
    source = f"def write(o):\n    return f'''{{{{{head}{''.join(parts)}}}}}'''\n"
    exec(compile(source, f"<codec writer of {cls.__name__}>", "exec"), namespace)
    return namespace["write"]


def _compile_reader(
    cls: type[Any], readers: dict[Any, Callable[[Any], Any]] | None = None
) -> Callable[[dict[str, Any]], Any]:
    """A function making an instance of the attrs class ``cls`` from a JSON object, each field
    read by the reader of its type; a field the object lacks (written before the field existed)
    gets its default. ``readers`` adds to (or overrides) the readers by type. Generated from the
    field list, like :func:`_compile_writer`."""
    namespace: dict[str, Any] = {"cls": cls}
    arguments: list[str] = []
    for i, field in enumerate(_stored_fields(cls)):
        namespace[f"r{i}"] = (readers or {}).get(field.type) or _value_reader(field)
        value = f"r{i}(d[{field.name!r}])"
        default = _default_of(field)
        if default is not None:
            namespace[f"d{i}"] = default
            value = f"({value} if {field.name!r} in d else d{i}())"
        arguments.append(value)
    source = f"def read(d):\n    return cls({', '.join(arguments)})\n"
    exec(compile(source, f"<codec reader of {cls.__name__}>", "exec"), namespace)
    return namespace["read"]


def _default_of(field: attrs.Attribute[Any]) -> Callable[[], Any] | None:
    """What makes the value of a field missing from a document (one written before the field
    existed); ``None`` for a field every document has."""
    default: Any = field.default
    if default is attrs.NOTHING:
        return None
    factory = getattr(default, "factory", None)  # an attrs Factory
    if callable(factory):
        return factory
    return lambda: default


_RECORD_KEYS = frozenset(field.name for field in _stored_fields(NodeRecord))
_read_record = _compile_reader(NodeRecord)


def _unstructure_record(record: NodeRecord) -> dict[str, Any]:
    return json.loads(_record_json(record))


_codec.register_unstructure_hook(NodeRecord, _unstructure_record)


def _structure_record(data: Any, _: Any = None, *, keep_source: bool = False) -> NodeRecord:
    record = _read_record(data)
    if keep_source and data.keys() <= _RECORD_KEYS:
        # Read from storage in this very form, and owned by nobody else: the record's next
        # encoding can start from it (see NodeRecord).
        object.__setattr__(record, "_source", data)
    return record


SNAPSHOT_FORMAT = 2
"""The version of the stored snapshot document: 1 is 0.1's (one position: ``current_node`` and
a single ``wait``), 2 adds positions (``active``, ``waits``) and the fields after them, and
leaves out a snapshot's or a record's field whose default is ``None`` while it is ``None``
(``output``, ``error``, ``deadline``, the reserved fields...; a reader gives a missing field its
default). A document of format 1 is read as the format-2 snapshot it means; every write is
format 2."""


def _upgrade_format_1(data: dict[str, Any]) -> None:
    """Turn a 0.1 document into a format-2 one, in place."""
    wait = data.pop("wait", None)
    data["waits"] = [] if wait is None else [wait]
    current = data.get("current_node")
    in_progress = data.get("status") in (MissionStatus.RUNNING.value, MissionStatus.WAITING.value)
    data["active"] = [current] if in_progress and current is not None else []
    nodes = data.setdefault("nodes", {})
    if in_progress and current is not None and current not in nodes:
        # 0.1 kept no record for an end node whose output function was about to run.
        nodes[current] = {"name": current, "kind": current, "status": NodeStatus.RUNNING.value}


def _structure_snapshot(data: Any, _: Any = None, *, keep_sources: bool = False) -> MissionSnapshot:
    format = data.get("format", 1)
    if type(format) is not int:
        raise ValueError(f"snapshot document format must be a whole number, got {format!r}")
    if format == 1:
        data = dict(data)
        _upgrade_format_1(data)
    elif format != SNAPSHOT_FORMAT:
        raise ValueError(
            f"snapshot document format {format!r} is newer than this version of Mission Control "
            f"reads (format {SNAPSHOT_FORMAT}): upgrade mission-control-core"
        )
    return (_read_kept_snapshot if keep_sources else _read_snapshot)(data)


def _nodes_reader(*, keep_source: bool) -> Callable[[Any], dict[str, NodeRecord]]:
    def read(value: Any) -> dict[str, NodeRecord]:
        return {
            str(path): _structure_record(record, keep_source=keep_source)
            for path, record in value.items()
        }

    return read


# Two readers: one keeps each record's JSON value for its next encoding (a document read from
# storage, owned by nobody else), one does not (a dict a caller gave).
_read_snapshot = _compile_reader(
    MissionSnapshot, {Mapping[str, NodeRecord]: _nodes_reader(keep_source=False)}
)
_read_kept_snapshot = _compile_reader(
    MissionSnapshot, {Mapping[str, NodeRecord]: _nodes_reader(keep_source=True)}
)


# Snapshots are read at every load: these forms do what the generated ones do (same fields,
# same conversions), several times faster. A test holds them to the generic converter's output.
_codec.register_structure_hook(NodeRecord, _structure_record)
_codec.register_structure_hook(MissionSnapshot, _structure_snapshot)


def _error_json(error: ErrorInfo | None) -> str:
    return "null" if error is None else _encode(_codec.unstructure(error, ErrorInfo))


def _encode_record(record: NodeRecord, source: dict[str, Any] | None) -> str:
    if source is not None:
        return _encode(source)
    return _record_json(record)


def _nodes_json(nodes: Mapping[str, NodeRecord]) -> str:
    # Each record's text is made once and reused by every later commit of the mission. (A list,
    # not a generator: join makes one of it anyway, and a generator resumes once per record.)
    names = _encoded_names
    return (
        "{"
        + ",".join(
            [
                f"{names.get(path) or _encoded_name(path)}:{record.json_text(_encode_record)}"
                for path, record in nodes.items()
            ]
        )
        + "}"
    )


def snapshot_to_json(snapshot: MissionSnapshot) -> str:
    """The snapshot as a JSON document (what durable adapters store).

    The same document as a generic converter would write (a test compares them field by field),
    built faster: each field is written by the writer of its type, and each node record's text
    is encoded once and reused by every later commit of the mission.
    """
    return _snapshot_json(snapshot)


def snapshot_from_json(text: str | bytes) -> MissionSnapshot:
    """Rebuild a snapshot stored by :func:`snapshot_to_json` (or by 0.1)."""
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
        f'"node":{_encoded_names.get(entry.node) or _encoded_name(entry.node)},'
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


def pause_from_json(text: str | bytes) -> Pause:
    return _codec.structure(json.loads(text), Pause)


def value_to_json(value: JsonValue) -> str:
    """A JSON value (a payload checked at the boundary, or one read back from storage) as JSON
    text, written as the codec writes the same value inside a snapshot."""
    return _encode(value)


# Made last: the writers use helpers defined anywhere in this module.
_WRITER_HELPERS: dict[str, Any] = {
    "kept": _encode_kept,
    "name": _encoded_name,
    "names": _encoded_names,
    "json": _json_or_null,
    "time": _time_json,
    "TEXT": _TEXT,
    "error": _error_json,
    "cancel": cancel_request_to_json,
    "pause": pause_to_json,
    "parent": _parent_json,
    "compensations": _compensations_json,
    "strings": _strings_json,
    "waits": _waits_json,
    "nodes": _nodes_json,
}
_record_json = _compile_writer(NodeRecord, omit_none=True)
_snapshot_json = _compile_writer(MissionSnapshot, f'"format":{SNAPSHOT_FORMAT},', omit_none=True)
