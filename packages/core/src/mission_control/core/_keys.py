"""Typed event keys: a node name that also carries the type of the node's output."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

import attrs

T = TypeVar("T")


@attrs.frozen
class EventKey(Generic[T]):
    """A node name with the type of its output, so ``ctx.events[key].output`` is typed ``T``.

    Create one with ``m.key("send-email", SentEmail)`` and use it both as the node's name in the
    builder and to read the node's event in later steps.
    """

    name: str
    type: Any


def key(name: str, output_type: type[T]) -> EventKey[T]:
    """A typed key for the node called ``name`` whose output is a ``output_type``."""
    return EventKey(name=name, type=output_type)
