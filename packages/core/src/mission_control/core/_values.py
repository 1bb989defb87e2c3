"""User values (inputs, outputs, signal payloads) at the boundary: checked, converted and copied
in one pass into the JSON value the adapters store.

Every rule that decides whether a value can be stored lives here, so that whatever passes is
what every adapter writes and reads back: JSON types only, finite floats, ints the interpreter
can write as text, strings UTF-8 can encode, nesting the JSON decoder reads back. User types go
through a cattrs converter that belongs to the user (the commander's); the library's own records
never do (see ``_serialization.py``).
"""

from __future__ import annotations

import math
import sys
from typing import Any, Final, TypeVar

import attrs
import cattrs
from cattrs.preconf.json import make_converter

from ._errors import OutputNotSerializableError, message_of
from ._snapshot import Compensations, JsonValue, MissionSnapshot, NodeRecord, TimelineEntry

T = TypeVar("T")

converter: cattrs.Converter = make_converter()
"""The default user converter: how a commander made without ``converter=`` turns user types into
JSON values and back. The library's own records never go through it."""

MAX_NESTING: Final = 256
"""How deeply lists and dicts may nest in a stored value: far below where encoding or decoding
JSON (in any process that reads the store) meets the interpreter's recursion limit."""

MAX_INT_DIGITS: Final = sys.int_info.default_max_str_digits
"""The most digits a stored int may have: what every Python process can read back from text."""

INT_LIMIT: Final = 10**MAX_INT_DIGITS
INT_FLOOR: Final = -INT_LIMIT
"""Stored ints lie strictly between these (compared with these objects: negating the limit at
every check would build a 4,300-digit int each time)."""
_DEFAULT_CONVERTER: Final = converter
STORED_AS_IS: frozenset[type] = frozenset({bool, type(None)})
"""Types whose values are stored as they are, with nothing to check."""


class _Refused(Exception):
    """Internal: the value cannot be stored; ``path`` is filled in, innermost first, as the
    error leaves each container (so the path costs nothing unless a value is refused)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.path: list[str] = []


def is_text(value: str) -> bool:
    """Whether UTF-8 can encode ``value`` (no lone surrogate): what a store can bind as text."""
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _describe(value: object) -> str:
    try:
        return repr(value)
    except Exception:
        return f"a {type(value).__qualname__} object"


def _normalise(value: Any, converter: cattrs.Converter, depth: int) -> JsonValue:
    kind: type[Any] = type(value)  # pyright: ignore[reportUnknownVariableType]
    if kind is str:
        if value.isascii() or is_text(value):
            return value
        raise _Refused("is a string holding a lone surrogate, which UTF-8 cannot encode")
    if kind is int:
        if INT_FLOOR < value < INT_LIMIT:
            return value
        raise _Refused(f"is an int of more than {MAX_INT_DIGITS:,} digits")
    if kind in STORED_AS_IS:
        return value
    if kind is float:
        if math.isfinite(value):
            return value
        raise _Refused(f"is {value!r}, which JSON cannot hold")
    if depth >= MAX_NESTING:
        raise _Refused(f"nests lists and dicts deeper than {MAX_NESTING} levels")
    depth += 1
    if kind is dict:
        result: dict[str, JsonValue] = {}
        for k, v in value.items():
            if type(k) is not str:
                raise _Refused(
                    f"has the key {_describe(k)} of type {type(k).__name__}; JSON keys are strings"
                )
            if not (k.isascii() or is_text(k)):
                raise _Refused(f"has the key {k!r}, which UTF-8 cannot encode (lone surrogate)")
            # Values that pass as they are skip the call (most values in a dict are scalars);
            # anything else, a refusal included, is decided by the call.
            item_kind: type[Any] = type(v)  # pyright: ignore[reportUnknownVariableType]
            if (
                item_kind in STORED_AS_IS
                or (item_kind is int and INT_FLOOR < v < INT_LIMIT)
                or (item_kind is str and v.isascii())
            ):
                result[k] = v
                continue
            try:
                result[k] = _normalise(v, converter, depth)
            except _Refused as refused:
                refused.path.append(f"[{k!r}]")
                raise
        return result
    if kind is list or kind is tuple:
        items: list[JsonValue] = []
        append = items.append
        for i, v in enumerate(value):
            try:
                append(v if type(v) in STORED_AS_IS else _normalise(v, converter, depth))
            except _Refused as refused:
                refused.path.append(f"[{i}]")
                raise
        return items
    try:
        unstructured = converter.unstructure(value)
    except Exception as error:
        raise _Refused(
            f"of type {kind.__qualname__} cannot be converted to JSON: {message_of(error)}"
        ) from error
    if type(unstructured) is kind:
        raise _Refused(f"of type {kind.__qualname__} cannot be converted to JSON")
    # The converted value counts one level deeper, so hooks that convert into each other stop.
    return _normalise(unstructured, converter, depth)


def to_json_value(
    value: Any, *, what: str = "value", converter: cattrs.Converter | None = None
) -> JsonValue:
    """``value`` as a new JSON value that every adapter stores and reads back as it is, or
    :class:`OutputNotSerializableError` naming ``what`` and where inside it the problem is.

    JSON values pass as they are (tuples become lists); other types go through ``converter``
    (the default user converter when ``None``): attrs classes, dataclasses, enums, datetimes, …
    """
    try:
        return _normalise(value, converter if converter is not None else _DEFAULT_CONVERTER, 0)
    except _Refused as refused:
        path = "".join(reversed(refused.path))
        raise OutputNotSerializableError(f"{what}{path} {refused.reason}") from refused.__cause__


def copy_json(value: JsonValue) -> JsonValue:
    """A copy of a JSON value whose lists and dicts are new, so user code can change what it is
    given without changing what is stored."""
    kind: type[Any] = type(value)  # pyright: ignore[reportUnknownVariableType]
    if kind is dict:
        return {k: copy_json(v) for k, v in value.items()}
    if kind is list:
        return [copy_json(v) for v in value]
    return value


def from_json_value(
    value: JsonValue, type_: type[T], *, converter: cattrs.Converter | None = None
) -> T:
    """Rebuild a typed value from its JSON form with ``converter`` (the default user converter
    when ``None``)."""
    return (converter if converter is not None else _DEFAULT_CONVERTER).structure(value, type_)


def _mutable(value: JsonValue) -> bool:
    kind: type[Any] = type(value)  # pyright: ignore[reportUnknownVariableType]
    return kind is dict or kind is list


def _record_detached(record: NodeRecord) -> NodeRecord:
    if not (_mutable(record.input) or _mutable(record.output)):
        return record
    return attrs.evolve(record, input=copy_json(record.input), output=copy_json(record.output))


def detached(snapshot: MissionSnapshot) -> MissionSnapshot:
    """``snapshot`` with copies of the lists and dicts in it (its ``nodes`` mapping, input,
    output, node inputs and outputs, the outputs of the compensations owed): what a caller may
    change without changing the snapshot it came from. Everything else in a snapshot is
    immutable and shared."""
    return attrs.evolve(
        snapshot,
        input=copy_json(snapshot.input),
        output=copy_json(snapshot.output),
        progress=copy_json(snapshot.progress),
        nodes={path: _record_detached(record) for path, record in snapshot.nodes.items()},
        compensations=None
        if snapshot.compensations is None
        else _compensations_detached(snapshot.compensations),
    )


def _compensations_detached(compensations: Compensations) -> Compensations:
    owed = tuple(attrs.evolve(o, output=copy_json(o.output)) for o in compensations.owed)
    return attrs.evolve(compensations, owed=owed)


def detached_entries(entries: list[TimelineEntry]) -> list[TimelineEntry]:
    """``entries`` with copies of their ``detail`` dicts (see :func:`detached`)."""
    return [
        entry if entry.detail is None else attrs.evolve(entry, detail=copy_json(entry.detail))
        for entry in entries
    ]
