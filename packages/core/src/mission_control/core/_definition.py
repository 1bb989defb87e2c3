"""Mission definitions and the fluent builder that makes them (``m.define(...)``)."""

from __future__ import annotations

import collections.abc
import typing
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any, Generic, TypeVar, overload

import attrs
import cattrs

from ._clock import ensure_aware
from ._context import Context
from ._errors import InvalidDefinitionError
from ._keys import EventKey
from ._nodes import EndNode, NeedToNode, Node, SleepNode, StartNode, StepNode
from ._retry import NO_RETRY, RetryPolicy, Seconds, retry, to_timedelta
from ._snapshot import NodeRecord
from ._values import copy_json, from_json_value, is_text

RawT = TypeVar("RawT")
InT = TypeVar("InT")
OutT = TypeVar("OutT")
R = TypeVar("R")

Returns = Awaitable[R] | R
"""A node function may be ``async def`` or a plain function."""

_PASSTHROUGH_TYPES: frozenset[Any] = frozenset(
    {Any, object, str, int, float, bool, dict, list, type(None), None}
)


def _output_type(function: Callable[..., Any] | None, declared: Any = None) -> Any:
    """The type a node's stored output is rebuilt as (``None``: use the JSON value as is)."""
    if declared is not None:
        return None if declared in _PASSTHROUGH_TYPES else declared
    if function is None:
        return None
    try:
        hint = typing.get_type_hints(function).get("return")
    except Exception:
        # Unresolvable annotations (forward references, odd callables) mean "untyped", not an
        # error: the value is still stored and read back as JSON.
        return None
    origin = typing.get_origin(hint)
    if origin in (collections.abc.Awaitable, collections.abc.Coroutine):
        args = typing.get_args(hint)
        hint = args[-1] if args else None
    if hint in _PASSTHROUGH_TYPES:
        return None
    return hint


def _node_name(name: str | EventKey[Any], *, what: str) -> tuple[str, Any]:
    declared: Any = None
    if isinstance(name, EventKey):
        declared = name.type
        name = name.name
    if not isinstance(name, str) or not name.strip() or not is_text(name):
        raise InvalidDefinitionError(
            f"{what} name must be a non-empty string UTF-8 can encode, got {name!r}"
        )
    if "/" in name:
        raise InvalidDefinitionError(f"{what} name {name!r} must not contain '/'")
    return name, declared


def _require_callable(value: object, *, what: str) -> None:
    if not callable(value):
        raise InvalidDefinitionError(f"{what} must be callable, got {value!r}")


@attrs.frozen
class NodeDescription:
    """A static description of one node, for documentation and graph export."""

    name: str
    kind: str
    next: str | None
    signal: str | None = None
    max_attempts: int | None = None
    timeout_seconds: float | None = None
    sleep_seconds: float | None = None


@attrs.frozen
class DefinitionDescription:
    """A static description of a definition: its nodes in order."""

    name: str
    version: int
    nodes: tuple[NodeDescription, ...]


class MissionDefinition(Generic[RawT, InT, OutT]):
    """An immutable mission definition, made by ``m.define(...)....end()``.

    ``RawT`` is what ``start`` accepts as input, ``InT`` what the input parser returns and
    ``OutT`` what the start node's ``run`` returns.
    """

    __slots__ = ("_index", "_next", "name", "nodes", "signals", "start_node", "version")

    def __init__(self, name: str, version: int, nodes: tuple[Node, ...]) -> None:
        self.name = name
        self.version = version
        self.nodes = nodes
        start = nodes[0]
        assert isinstance(start, StartNode)
        self.start_node: StartNode = start
        self._index: dict[str, Node] = {node.name: node for node in nodes}
        self._next: dict[str, Node | None] = {
            node.name: (nodes[i + 1] if i + 1 < len(nodes) else None)
            for i, node in enumerate(nodes)
        }
        self.signals: Mapping[str, NeedToNode] = {
            node.name: node for node in nodes if isinstance(node, NeedToNode)
        }

    def node(self, name: str) -> Node:
        """The node called ``name``; ``KeyError`` when there is none."""
        return self._index[name]

    def find(self, name: str) -> Node | None:
        """The node called ``name``, or ``None``."""
        return self._index.get(name)

    def next_node(self, name: str) -> Node | None:
        """The node that follows ``name`` (``None`` after the end)."""
        return self._next[name]

    def parse_input(self, raw: Any) -> InT:
        return self.start_node.parse(copy_json(raw))

    def read_output(
        self, name: str, record: NodeRecord, converter: cattrs.Converter | None = None
    ) -> Any:
        """A completed node's output as its function returned it, rebuilt from storage with
        ``converter`` (the default user converter when ``None``): a copy, changing it changes
        nothing stored."""
        node = self._index.get(name)
        if isinstance(node, NeedToNode):
            return node.parse(copy_json(record.input))
        output_type = node.output_type if isinstance(node, StartNode | StepNode) else None
        if output_type is None:
            return copy_json(record.output)
        return from_json_value(copy_json(record.output), output_type, converter=converter)

    def describe(self) -> DefinitionDescription:
        """A static description of the definition (names, kinds, order, policies)."""
        described: list[NodeDescription] = []
        for node in self.nodes:
            following = self._next[node.name]
            next_name = following.name if following is not None else None
            if isinstance(node, StepNode):
                described.append(
                    NodeDescription(
                        node.name,
                        node.kind,
                        next_name,
                        max_attempts=node.retry.max_attempts,
                        timeout_seconds=node.timeout.total_seconds() if node.timeout else None,
                    )
                )
            elif isinstance(node, NeedToNode):
                described.append(NodeDescription(node.name, node.kind, next_name, node.name))
            elif isinstance(node, SleepNode):
                seconds = node.duration.total_seconds() if node.duration is not None else None
                described.append(
                    NodeDescription(node.name, node.kind, next_name, sleep_seconds=seconds)
                )
            else:
                described.append(NodeDescription(node.name, node.kind, next_name))
        return DefinitionDescription(self.name, self.version, tuple(described))

    def __repr__(self) -> str:
        return f"MissionDefinition({self.name!r}, version={self.version}, nodes={len(self.nodes)})"


class MissionBuilder(Generic[RawT, InT, OutT]):
    """Adds nodes after ``start``; each call returns a new builder, so a builder can be reused."""

    __slots__ = ("_name", "_nodes", "_version")

    def __init__(self, name: str, version: int, nodes: tuple[Node, ...]) -> None:
        self._name = name
        self._version = version
        self._nodes = nodes

    def _with(self, node: Node) -> MissionBuilder[RawT, InT, OutT]:
        for existing in self._nodes:
            if existing.name == node.name:
                raise InvalidDefinitionError(
                    f"mission {self._name!r} has two nodes named {node.name!r}; "
                    "node names must be unique"
                )
        return MissionBuilder(self._name, self._version, (*self._nodes, node))

    def step(
        self,
        name: str | EventKey[R],
        run: Callable[[Context[InT, OutT]], Returns[R]],
        *,
        retry: RetryPolicy | int | None = None,
        timeout: Seconds | None = None,
    ) -> MissionBuilder[RawT, InT, OutT]:
        """Run ``run(ctx)``; its return value is stored as the node's output.

        ``retry`` is a :class:`RetryPolicy` or a number of attempts (default: one attempt).
        ``timeout`` (seconds or ``timedelta``) bounds each attempt; a timed-out attempt is a
        failed attempt.
        """
        node_name, declared = _node_name(name, what="step")
        _require_callable(run, what=f"step {node_name!r} function")
        policy = _retry_policy(retry, node_name)
        limit = None
        if timeout is not None:
            limit = to_timedelta(timeout, what=f"step {node_name!r} timeout")
            if not limit:
                raise InvalidDefinitionError(f"step {node_name!r} timeout must be positive")
        return self._with(StepNode(node_name, run, policy, limit, _output_type(run, declared)))

    def need_to(
        self, name: str | EventKey[R], parse: Callable[[Any], R] | None = None
    ) -> MissionBuilder[RawT, InT, OutT]:
        """Wait for the signal ``name``; ``parse`` validates its payload (raise to reject it)."""
        node_name, _ = _node_name(name, what="need_to")
        if parse is None:
            raise InvalidDefinitionError(
                f"need_to {node_name!r} in mission {self._name!r} needs a parse function "
                "for its signal payload"
            )
        _require_callable(parse, what=f"need_to {node_name!r} parse")
        return self._with(NeedToNode(node_name, parse))

    def sleep(self, name: str, duration: Seconds) -> MissionBuilder[RawT, InT, OutT]:
        """Wait durably for ``duration`` (seconds or ``timedelta``) from reaching the node."""
        node_name, _ = _node_name(name, what="sleep")
        delta = to_timedelta(duration, what=f"sleep {node_name!r} duration")
        return self._with(SleepNode(node_name, delta, None))

    def sleep_until(
        self, name: str, when: datetime | Callable[[Context[InT, OutT]], datetime]
    ) -> MissionBuilder[RawT, InT, OutT]:
        """Wait durably until ``when``: an aware datetime, or a function of the context."""
        node_name, _ = _node_name(name, what="sleep_until")
        if isinstance(when, datetime):
            try:
                when = ensure_aware(when, what=f"sleep_until {node_name!r} time")
            except ValueError as error:
                raise InvalidDefinitionError(str(error)) from None
        else:
            _require_callable(when, what=f"sleep_until {node_name!r} time")
        return self._with(SleepNode(node_name, None, when))

    def end(
        self, output: Callable[[Context[InT, OutT]], Returns[Any]] | None = None
    ) -> MissionDefinition[RawT, InT, OutT]:
        """Finish the definition; ``output(ctx)``, when given, computes the mission's output."""
        if output is not None:
            _require_callable(output, what="end output")
        nodes = self._with(EndNode("end", output))._nodes
        return MissionDefinition(self._name, self._version, nodes)


def _retry_policy(value: RetryPolicy | int | None, node: str) -> RetryPolicy:
    if value is None:
        return NO_RETRY
    if isinstance(value, RetryPolicy):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return retry(max_attempts=value)
    raise InvalidDefinitionError(
        f"step {node!r} retry must be a RetryPolicy or a number of attempts, got {value!r}"
    )


class DefinitionBuilder:
    """The builder ``m.define(...)`` returns: a mission starts with ``.start(...)``."""

    __slots__ = ("_name", "_version")

    def __init__(self, name: str, version: int) -> None:
        self._name = name
        self._version = version

    @overload
    def start(self, parse: Callable[[RawT], InT]) -> MissionBuilder[RawT, InT, None]: ...
    @overload
    def start(
        self, parse: Callable[[RawT], InT], run: Callable[[Context[InT, None]], Returns[OutT]]
    ) -> MissionBuilder[RawT, InT, OutT]: ...
    def start(
        self,
        parse: Callable[[RawT], InT],
        run: Callable[[Context[InT, None]], Returns[Any]] | None = None,
    ) -> MissionBuilder[RawT, InT, Any]:
        """Parse the mission's input with ``parse`` (raise to reject it), then run ``run(ctx)``.

        ``parse`` receives the input in its JSON form and must be deterministic: it runs again
        whenever a later step reads ``ctx.input``.
        """
        _require_callable(parse, what=f"mission {self._name!r} start parse")
        if run is not None:
            _require_callable(run, what=f"mission {self._name!r} start run")
        node = StartNode("start", parse, run, _output_type(run))
        return MissionBuilder(self._name, self._version, (node,))

    def __getattr__(self, attribute: str) -> Any:
        if attribute in {"step", "need_to", "sleep", "sleep_until", "end"}:
            raise InvalidDefinitionError(
                f"mission {self._name!r} has no start: call .start(parse=..., run=...) "
                f"before .{attribute}(...)"
            )
        raise AttributeError(attribute)


def define(name: str, *, version: int = 1) -> DefinitionBuilder:
    """Begin a mission definition called ``name``."""
    if not isinstance(name, str) or not name.strip() or not is_text(name):
        raise InvalidDefinitionError(
            f"mission name must be a non-empty string UTF-8 can encode, got {name!r}"
        )
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise InvalidDefinitionError(
            f"mission {name!r} version must be a whole number >= 1, got {version!r}"
        )
    return DefinitionBuilder(name, version)
