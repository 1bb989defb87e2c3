"""The closed set of node kinds a definition is made of: small immutable values that one engine
interprets."""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, ClassVar, assert_never

import attrs

from ._retry import NO_RETRY, RetryPolicy

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
    """Runs an async (or plain) function with a retry policy and an optional timeout; with
    ``compensate``, a function that undoes it, run (with its own retry policy) when the mission
    fails after the step completed."""

    kind: ClassVar[str] = "step"
    name: str
    run: AnyFunction
    retry: RetryPolicy
    timeout: timedelta | None
    output_type: Any
    compensate: AnyFunction | None = None
    compensate_retry: RetryPolicy = NO_RETRY


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
class ChildNode:
    """Starts a mission of another definition with ``input(ctx)`` as its input and waits for it
    to end; its output is the child's output. A child that fails (or is cancelled) is a failed
    attempt: the retry policy decides whether a new child is started."""

    kind: ClassVar[str] = "child"
    name: str
    definition: Any
    """The child's ``MissionDefinition``."""
    input: AnyFunction
    retry: RetryPolicy
    output_type: Any


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


@attrs.frozen
class LoopNode:
    """Runs its body chain again and again until ``until`` (a function of the context, checked
    after each iteration) holds, at most ``max_iterations`` times."""

    kind: ClassVar[str] = "loop"
    name: str
    body: Chain
    until: AnyFunction
    max_iterations: int


@attrs.frozen
class ForEachNode:
    """Runs its body chain once per item of the list ``items`` computes from the context (at
    most ``max_iterations`` items, at most ``concurrency`` of them at once)."""

    kind: ClassVar[str] = "for_each"
    name: str
    body: Chain
    items: AnyFunction
    max_iterations: int
    concurrency: int


Node = (
    StartNode
    | StepNode
    | NeedToNode
    | SleepNode
    | ParallelNode
    | ChoiceNode
    | LoopNode
    | ForEachNode
    | ChildNode
    | EndNode
)

Chain = tuple[Node, ...]
"""Nodes run one after the other: a definition's top level, a branch, a path, a loop's body."""

LOOPS = (LoopNode, ForEachNode)
"""The node kinds whose body runs once per iteration (a tuple, for ``isinstance``)."""

LOOP_BODY = "*"
"""The chain name of a loop's body in the definition's paths: a node of the body sits at
``"<loop path>/*/<name>"`` there, and at ``"<loop path>/<iteration>/<name>"`` in a mission
(iterations count from 1)."""


def function_of(node: Node) -> AnyFunction | None:
    """The user function a node runs when reached (``None``: it settles by itself or waits)."""
    match node:
        case (
            StartNode(run=function)
            | StepNode(run=function)
            | ChildNode(input=function)
            | EndNode(output=function)
        ):
            return function
        case (
            NeedToNode() | SleepNode() | ParallelNode() | ChoiceNode() | LoopNode() | ForEachNode()
        ):
            return None
        case _:
            assert_never(node)
