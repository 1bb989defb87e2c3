"""Deterministic mission ids for tests and reproducible local runs."""

from __future__ import annotations


class SequentialIds:
    """Ids ``prefix-000001``, ``prefix-000002``, … in order: sortable and predictable."""

    def __init__(self, prefix: str = "mission", start: int = 1) -> None:
        self._prefix = prefix
        self._next = start

    def __call__(self) -> str:
        value = self._next
        self._next += 1
        return f"{self._prefix}-{value:06d}"
