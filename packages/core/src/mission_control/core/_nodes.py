"""The closed set of node kinds a definition is made of: small immutable values that one engine
interprets."""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, ClassVar, assert_never

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
    """Waits for the signal of the same name; its output is the parsed payload.

    With a ``timeout``, gives up waiting once it has passed: the mission fails, or, with an
    ``on_timeout`` chain, runs that chain and goes on after the node.
    """

    kind: ClassVar[str] = "need_to"
    name: str
    parse: AnyFunction
    timeout: timedelta | None = None
    on_timeout: Chain | None = None


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


class ParallelMode(enum.StrEnum):
    """When a parallel node ends."""

    ALL = "all"
    """When every branch has ended; its output maps each branch to its last node's output."""
    FIRST = "first"
    """When one branch has ended (the others are cancelled); its output maps that branch to its
    last node's output."""


@attrs.frozen
class ParallelNode:
    """Runs named branches, each a chain of nodes, at the same time."""

    kind: ClassVar[str] = "parallel"
    name: str
    branches: Mapping[str, Chain]
    mode: ParallelMode


@attrs.frozen
class ChoiceNode:
    """Runs one of named paths, picked by a function of the context; the pick is recorded and
    never made again for the same mission."""

    kind: ClassVar[str] = "choice"
    name: str
    choose: AnyFunction
    paths: Mapping[str, Chain]


Node = StartNode | StepNode | NeedToNode | SleepNode | ParallelNode | ChoiceNode | EndNode

Chain = tuple[Node, ...]
"""Nodes run one after the other: a definition's top level, a branch, a path."""


def function_of(node: Node) -> AnyFunction | None:
    """The user function a node runs when reached (``None``: it settles by itself or waits)."""
    match node:
        case StartNode(run=function) | StepNode(run=function) | EndNode(output=function):
            return function
        case NeedToNode() | SleepNode() | ParallelNode() | ChoiceNode():
            return None
        case _:
            assert_never(node)
