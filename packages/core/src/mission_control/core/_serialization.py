"""JSON conversion of everything a mission stores, through one cattrs converter."""

from __future__ import annotations

import json
import math
from typing import Any, TypeVar

import cattrs
from cattrs.preconf.json import make_converter

from ._errors import OutputNotSerializableError
from ._snapshot import BufferedSignal, JsonValue, MissionSnapshot, TimelineEntry

T = TypeVar("T")

converter: cattrs.Converter = make_converter()
"""The converter that turns user values and mission records into JSON values and back."""

_SCALARS = (str, int, bool, type(None))


def _normalise(value: Any, path: str) -> JsonValue:
    kind: type[Any] = type(value)  # pyright: ignore[reportUnknownVariableType]
    if kind in _SCALARS:
        return value
    if kind is float:
        if not math.isfinite(value):
            raise OutputNotSerializableError(f"{path} is {value!r}, which JSON cannot hold")
        return value
    if kind is dict:
        result: dict[str, JsonValue] = {}
        for k, v in value.items():
            if type(k) is not str:
                raise OutputNotSerializableError(
                    f"{path} has the key {k!r} of type {type(k).__name__}; JSON keys are strings"
                )
            result[k] = _normalise(v, f"{path}[{k!r}]")
        return result
    if kind is list or kind is tuple:
        return [_normalise(v, f"{path}[{i}]") for i, v in enumerate(value)]
    try:
        unstructured = converter.unstructure(value)
    except Exception as error:
        raise OutputNotSerializableError(
            f"{path} of type {kind.__qualname__} cannot be converted to JSON: {error}"
        ) from error
    if type(unstructured) is kind:
        raise OutputNotSerializableError(
            f"{path} of type {kind.__qualname__} cannot be converted to JSON"
        )
    return _normalise(unstructured, path)


def to_json_value(value: Any, *, what: str = "value") -> JsonValue:
    """Convert ``value`` (JSON values, attrs classes, dataclasses, enums, datetimes, …) into a
    plain JSON value, or raise :class:`OutputNotSerializableError` naming ``what`` and where
    inside it the problem is."""
    return _normalise(value, what)


def copy_json(value: JsonValue) -> JsonValue:
    """A copy of a JSON value whose lists and dicts are new, so user code can change what it is
    given without changing what is stored."""
    kind: type[Any] = type(value)  # pyright: ignore[reportUnknownVariableType]
    if kind is dict:
        return {k: copy_json(v) for k, v in value.items()}
    if kind is list:
        return [copy_json(v) for v in value]
    return value


def from_json_value(value: JsonValue, type_: type[T]) -> T:
    """Rebuild a typed value from its JSON form."""
    return converter.structure(value, type_)


def snapshot_to_dict(snapshot: MissionSnapshot) -> dict[str, Any]:
    return converter.unstructure(snapshot, MissionSnapshot)


def snapshot_from_dict(data: dict[str, Any]) -> MissionSnapshot:
    return converter.structure(data, MissionSnapshot)


def snapshot_to_json(snapshot: MissionSnapshot) -> str:
    """The snapshot as a JSON document (what durable adapters store)."""
    return json.dumps(snapshot_to_dict(snapshot), separators=(",", ":"), allow_nan=False)


def snapshot_from_json(text: str | bytes) -> MissionSnapshot:
    """Rebuild a snapshot stored by :func:`snapshot_to_json`."""
    return snapshot_from_dict(json.loads(text))


def timeline_entry_to_json(entry: TimelineEntry) -> str:
    return json.dumps(converter.unstructure(entry, TimelineEntry), separators=(",", ":"))


def timeline_entry_from_json(text: str | bytes) -> TimelineEntry:
    return converter.structure(json.loads(text), TimelineEntry)


def buffered_signal_to_json(signal: BufferedSignal) -> str:
    return json.dumps(converter.unstructure(signal, BufferedSignal), separators=(",", ":"))


def buffered_signal_from_json(text: str | bytes) -> BufferedSignal:
    return converter.structure(json.loads(text), BufferedSignal)
