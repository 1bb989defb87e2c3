"""The JSON documents of records stored whole, with their format number: schedules and fired
triggers (missions have their own codec, ``_serialization``)."""

from __future__ import annotations

import json
from typing import Any


def document_to_json(format: int, fields: dict[str, Any]) -> str:
    """``fields`` as a compact JSON document marked with ``format``."""
    return json.dumps(
        {"format": format, **fields},
        ensure_ascii=False,
        allow_nan=False,
        separators=(",", ":"),
    )


def document_from_json(text: str | bytes, format: int, what: str) -> dict[str, Any]:
    """The fields of a document :func:`document_to_json` wrote with ``format``; ``ValueError``
    for a document of another format."""
    value: dict[str, Any] = json.loads(text)
    if value.get("format") != format:
        raise ValueError(f"unknown {what} format {value.get('format')!r}")
    return value
