"""The closed set of node kinds a definition is made of: small immutable values that one engine
interprets."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, ClassVar

import attrs

from ._retry import RetryPolicy

AnyFunction = Callable[..., Any]


@attrs.frozen
class StartNode:
    """Parses the mission's input and runs the first piece of work."""

    kind: ClassVar[str] = "start"
    name: str
    parse: AnyFunction
    run: AnyFunction | None
    output_type: Any


@attrs.frozen
class StepNode:
    """Runs an async (or plain) function with a retry policy and an optional timeout."""

    kind: ClassVar[str] = "step"
    name: str
    run: AnyFunction
    retry: RetryPolicy
    timeout: timedelta | None
    output_type: Any


@attrs.frozen
class NeedToNode:
    """Waits for the signal of the same name; its output is the parsed payload."""

    kind: ClassVar[str] = "need_to"
    name: str
    parse: AnyFunction


@attrs.frozen
class SleepNode:
    """Waits durably for a duration, or until a time (fixed, or computed from the context)."""

    kind: ClassVar[str] = "sleep"
    name: str
    duration: timedelta | None
    until: datetime | AnyFunction | None


@attrs.frozen
class EndNode:
    """Completes the mission; ``output`` optionally computes the mission's output."""

    kind: ClassVar[str] = "end"
    name: str
    output: AnyFunction | None


Node = StartNode | StepNode | NeedToNode | SleepNode | EndNode
