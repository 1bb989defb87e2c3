"""Mission definitions and the fluent builder that makes them (``m.define(...)``)."""

from __future__ import annotations

import collections.abc
import copy
import inspect
import typing
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Generic, Literal, Self, TypeVar, assert_never, overload

import attrs
import cattrs

from ._clock import ensure_aware
from ._concurrency import Concurrency, WhenBusy
from ._context import Context
from ._errors import InvalidDefinitionError
from ._keys import EventKey
from ._nodes import (
    LOOP_BODY,
    LOOPS,
    AnyFunction,
    Chain,
    ChildNode,
    ChoiceNode,
    EndNode,
    ForEachNode,
    LoopNode,
    NeedToNode,
    Node,
    ParallelMode,
    ParallelNode,
    SleepNode,
    StartNode,
    StepNode,
    function_of,
)
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


def _require_plain_function(value: object, *, what: str) -> None:
    """A function that decides from what the mission has recorded: called while the engine
    settles the mission, so never ``async`` (a callable object's ``async __call__`` neither)."""
    _require_callable(value, what=what)
    if inspect.iscoroutinefunction(value) or inspect.iscoroutinefunction(type(value).__call__):
        raise InvalidDefinitionError(
            f"{what} must be a plain function of the context (it decides from what the mission "
            "has recorded), not an async one"
        )


def _max_iterations(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidDefinitionError(
            f"{what} max_iterations must be a whole number >= 1, got {value!r}"
        )
    return value


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
    path: str = ""
    """The node's path (its name at the top level)."""
    mode: str | None = None
    """A parallel's mode (``"all"`` or ``"first"``)."""
    max_iterations: int | None = None
    """A loop's or for_each's most iterations."""
    child: str | None = None
    """The name of the definition a child node starts."""
    concurrency: int | None = None
    """How many of a for_each's items run at once, at most."""
    branches: tuple[tuple[str, tuple[NodeDescription, ...]], ...] = ()
    """A parallel's branches, a choice's paths, a need_to's ``"timeout"`` path, or a loop's
    body (named ``"*"``): each name with the nodes it runs in order."""
    compensate_max_attempts: int | None = None
    """The attempts a step's compensation may make (``None``: the step has no compensation)."""


@attrs.frozen
class DefinitionDescription:
    """A static description of a definition: its nodes in order."""

    name: str
    version: int
    nodes: tuple[NodeDescription, ...]
    deadline_seconds: float | None = None
    on_deadline: tuple[NodeDescription, ...] = ()


@attrs.frozen
class Place:
    """Where one node sits in a definition: its path, the node after it in its chain, and the
    node whose branch (or path) holds that chain."""

    node: Node
    path: str
    next: str | None
    """The path of the next node in the same chain; ``None`` at the chain's end."""
    container: str | None
    """The path of the parallel, choice or need_to whose chain this is (``None``: the top
    level)."""
    branch: str | None
    """The name of that chain in its container (a branch, a path, ``"timeout"``, ``"deadline"``)."""
    function: AnyFunction | None
    """The user function the node runs when reached, if any (see ``function_of``)."""
    plain_next: StepNode | EndNode | None = None
    """The next node, when moving on to it from this one is plain (see ``plain_next``)."""


def plain_next(node: Node, following: Node | None) -> StepNode | EndNode | None:
    """``following``, the node after ``node`` in its chain, when the engine moves from one to
    the other in its plain turn (``Engine._applied_plainly``): ``node`` is the start or a step
    with no compensation, and ``following`` a step or an end without an output function;
    ``None`` otherwise. Worked out once per definition: the engine asks at every step."""
    if not (
        isinstance(node, StartNode) or (isinstance(node, StepNode) and node.compensate is None)
    ):
        return None
    if isinstance(following, StepNode) or (
        isinstance(following, EndNode) and following.output is None
    ):
        return following
    return None


class _Places(dict[str, "Place"]):
    """A definition's places by path. A path in a loop's body with its iteration, which no key
    holds, is worked out from its template when looked up (``__missing__``): the engine looks
    nodes up by a mission's path at every transition, and a plain dict lookup keeps that as
    cheap as it was for every other path."""

    __slots__ = ("_template_of",)

    def __init__(self, template_of: Callable[[str], str]) -> None:
        super().__init__()
        self._template_of = template_of

    def __missing__(self, path: str) -> Place:
        template = self._template_of(path)
        if template == path:
            raise KeyError(path)
        static = self[template]
        chain, _, _ = path.rpartition("/")
        container, _, branch = chain.rpartition("/")
        following = None if static.next is None else f"{chain}/{static.next.rpartition('/')[2]}"
        return Place(
            static.node, path, following, container, branch, static.function, static.plain_next
        )


TIMEOUT_PATH = "timeout"
"""The name of a need_to's timeout chain in its nodes' paths."""
DEADLINE_CHAIN = ("end", "deadline")
"""The container and chain name of a definition's deadline chain: its nodes sit at
``"end/deadline/<name>"`` (the path belongs to the end node, which the mission reaches after
it)."""


def chain_path(container: str, branch: str, name: str) -> str:
    """The path of node ``name`` in the chain ``branch`` of the node at ``container``."""
    return f"{container}/{branch}/{name}"


def _sub_chains(node: Node) -> Mapping[str, Chain]:
    match node:
        case ParallelNode(branches=branches):
            return branches
        case ChoiceNode(paths=paths):
            return paths
        case NeedToNode(on_timeout=on_timeout):
            return {} if on_timeout is None else {TIMEOUT_PATH: on_timeout}
        case LoopNode(body=body) | ForEachNode(body=body):
            return {LOOP_BODY: body}
        case StartNode() | StepNode() | SleepNode() | ChildNode() | EndNode():
            return {}
        case _:
            assert_never(node)


class MissionDefinition(Generic[RawT, InT, OutT]):
    """An immutable mission definition, made by ``m.define(...)....end()``.

    ``RawT`` is what ``start`` accepts as input, ``InT`` what the input parser returns and
    ``OutT`` what the start node's ``run`` returns.
    """

    __slots__ = (
        "_firsts",
        "_paths",
        "_places",
        "concurrency",
        "deadline",
        "name",
        "nodes",
        "on_deadline",
        "places",
        "signals",
        "start_node",
        "triggers",
        "version",
    )

    def __init__(
        self,
        name: str,
        version: int,
        nodes: Chain,
        deadline: timedelta | None = None,
        on_deadline: Chain | None = None,
        triggers: tuple[str, ...] = (),
        concurrency: Concurrency | None = None,
    ) -> None:
        self.name = name
        self.version = version
        self.concurrency = concurrency
        """The definition's concurrency key (``.concurrency(...)``), or ``None``."""
        self.triggers = triggers
        """The triggers this definition is subscribed to (``.triggered_by(...)``): each fire of
        one starts a mission of it, with the trigger's payload as input."""
        self.nodes = nodes
        self.deadline = deadline
        self.on_deadline = on_deadline
        start = nodes[0]
        assert isinstance(start, StartNode)
        self.start_node: StartNode = start
        self._places = _Places(self.template_of)
        # The first node's path of each chain, by (container path, chain name).
        self._firsts: dict[tuple[str | None, str | None], str | None] = {}
        self._add_chain(nodes, None, None)
        if on_deadline is not None:
            self._add_chain(on_deadline, *DEADLINE_CHAIN)
        self.places: Mapping[str, Place] = self._places
        """Every node's place, by path: a mission's paths too (``places[path]``, as
        :meth:`place`; ``in`` and ``get`` know only the definition's own)."""
        # Node names are unique in a definition, so signals and events are looked up by name.
        self._paths: dict[str, str] = {}
        for path, place in self._places.items():
            if place.node.name in self._paths:
                raise InvalidDefinitionError(
                    f"mission {name!r} has two nodes named {place.node.name!r}; "
                    "node names must be unique (in branches and paths too)"
                )
            self._paths[place.node.name] = path
        self.signals: Mapping[str, NeedToNode] = {
            place.node.name: place.node
            for place in self._places.values()
            if isinstance(place.node, NeedToNode)
        }

    def _add_chain(self, chain: Chain, container: str | None, branch: str | None) -> None:
        paths = [
            node.name if container is None else chain_path(container, branch or "", node.name)
            for node in chain
        ]
        self._firsts[(container, branch)] = paths[0] if paths else None
        for i, node in enumerate(chain):
            following = paths[i + 1] if i + 1 < len(paths) else None
            after = chain[i + 1] if following is not None else None
            self._places[paths[i]] = Place(
                node,
                paths[i],
                following,
                container,
                branch,
                function_of(node),
                plain_next(node, after),
            )
            for sub, sub_chain in _sub_chains(node).items():
                self._add_chain(sub_chain, paths[i], sub)

    def node(self, path: str) -> Node:
        """The node at ``path`` (a mission's path: see :meth:`place`); ``KeyError`` when there
        is none."""
        return self.place(path).node

    def find(self, path: str) -> Node | None:
        """The node at ``path`` (a mission's path), or ``None``."""
        place = self.place_or_none(path)
        return None if place is None else place.node

    def place(self, path: str) -> Place:
        """The place of the node at ``path``, a path as a mission has it: in a loop's body, with
        the iteration where the definition has ``*`` (its ``next`` and ``container`` are then
        the iteration's too). ``KeyError`` when there is none. (``places[path]`` is the
        same.)"""
        return self._places[path]

    def place_or_none(self, path: str) -> Place | None:
        """:meth:`place`, or ``None`` when no node is at ``path``."""
        try:
            return self.place(path)
        except KeyError:
            return None

    def template_of(self, path: str) -> str:
        """``path`` as the definition writes it: each iteration number of a loop's body
        replaced by ``*``."""
        if path in self._places:
            return path
        # Node names at the even positions, chain names at the odd ones.
        parts = path.split("/")
        for i in range(1, len(parts), 2):
            container = self._places.get("/".join(parts[:i]))
            if container is not None and isinstance(container.node, LOOPS):
                parts[i] = LOOP_BODY
        return "/".join(parts)

    def first_in(self, container: str | None, branch: str | None) -> str | None:
        """The path of the first node of chain ``branch`` of the node at ``container`` (``None``
        for both: the top level; for a loop, the branch is the iteration); ``None`` for an
        empty chain."""
        key = (container, branch)
        if key in self._firsts:
            return self._firsts[key]
        assert container is not None
        assert branch is not None
        template = self.template_of(container)
        if isinstance(self._places[template].node, LOOPS):
            first = self._firsts[(template, LOOP_BODY)]
        else:
            first = self._firsts[(template, branch)]
        return None if first is None else f"{container}/{branch}/{first.rpartition('/')[2]}"

    def path_of(self, name: str) -> str | None:
        """The path of the node called ``name`` as the definition writes it (``*`` for the
        iteration of a loop's body), or ``None``."""
        return self._paths.get(name)

    def resolve(self, name: str, within: str, nodes: Mapping[str, NodeRecord]) -> str | None:
        """The path of the record of the node called ``name``, as seen from the node at path
        ``within``: in a loop that holds ``within``, the same iteration; in a loop that does not,
        its latest iteration. ``None`` when there is no such node (or iteration)."""
        template = self._paths.get(name)
        if template is None or LOOP_BODY not in template:
            return template
        parts = template.split("/")
        here = within.split("/")
        for i in range(1, len(parts), 2):
            container = "/".join(parts[:i])
            if parts[i] != LOOP_BODY or not isinstance(self.find(container), LOOPS):
                continue
            if here[:i] == parts[:i] and len(here) > i:
                parts[i] = here[i]
            else:
                loop = nodes.get(container)
                if loop is None or not loop.attempts:
                    return None
                parts[i] = str(loop.attempts)
        return "/".join(parts)

    def iterations_of(self, path: str) -> list[tuple[str, int]]:
        """The loops holding the node at ``path``, outermost first, each with the iteration the
        node is in (``path`` may end with an iteration: ``"<loop path>/<i>"``)."""
        if path in self._places and LOOP_BODY not in path:
            return []
        parts = path.split("/")
        found: list[tuple[str, int]] = []
        for i in range(1, len(parts), 2):
            container = "/".join(parts[:i])
            if isinstance(self.find(container), LOOPS):
                found.append((container, int(parts[i])))
        return found

    def next_node(self, path: str) -> Node | None:
        """The node that follows ``path`` in its chain (``None`` at the chain's end)."""
        following = self.place(path).next
        return None if following is None else self.place(following).node

    def parse_input(self, raw: Any) -> InT:
        return self.start_node.parse(copy_json(raw))

    def read_output(
        self, path: str, record: NodeRecord, converter: cattrs.Converter | None = None
    ) -> Any:
        """A completed node's output as its function returned it, rebuilt from storage with
        ``converter`` (the default user converter when ``None``): a copy, changing it changes
        nothing stored."""
        node = self.find(path)
        if isinstance(node, NeedToNode):
            return node.parse(copy_json(record.input))
        output_type = (
            node.output_type if isinstance(node, StartNode | StepNode | ChildNode) else None
        )
        if output_type is None:
            return copy_json(record.output)
        return from_json_value(copy_json(record.output), output_type, converter=converter)

    def describe(self) -> DefinitionDescription:
        """A static description of the definition (names, kinds, order, policies, branches)."""
        deadline = self.deadline.total_seconds() if self.deadline is not None else None
        on_deadline = (
            ()
            if self.on_deadline is None
            else self._describe_chain(self.on_deadline, *DEADLINE_CHAIN)
        )
        return DefinitionDescription(
            self.name,
            self.version,
            self._describe_chain(self.nodes, None, None),
            deadline,
            on_deadline,
        )

    def _describe_chain(
        self, chain: Chain, container: str | None, branch: str | None
    ) -> tuple[NodeDescription, ...]:
        described: list[NodeDescription] = []
        path = self.first_in(container, branch)
        for node in chain:
            assert path is not None
            place = self._places[path]
            following = place.next
            next_name = self._places[following].node.name if following is not None else None
            branches = tuple(
                (sub, self._describe_chain(sub_chain, path, sub))
                for sub, sub_chain in _sub_chains(node).items()
            )
            match node:
                case ChildNode(definition=child, retry=policy):
                    extra: dict[str, Any] = {
                        "child": child.name,
                        "max_attempts": policy.max_attempts,
                    }
                case StepNode(retry=policy, timeout=timeout):
                    extra = {
                        "max_attempts": policy.max_attempts,
                        "timeout_seconds": timeout.total_seconds() if timeout else None,
                        "compensate_max_attempts": None
                        if node.compensate is None
                        else node.compensate_retry.max_attempts,
                    }
                case NeedToNode(timeout=timeout):
                    extra = {
                        "signal": node.name,
                        "timeout_seconds": timeout.total_seconds() if timeout else None,
                    }
                case SleepNode(duration=duration):
                    extra = {
                        "sleep_seconds": duration.total_seconds() if duration is not None else None
                    }
                case ParallelNode(mode=mode):
                    extra = {"mode": mode.value}
                case LoopNode(max_iterations=limit):
                    extra = {"max_iterations": limit}
                case ForEachNode(max_iterations=limit, concurrency=concurrency):
                    extra = {"max_iterations": limit, "concurrency": concurrency}
                case StartNode() | ChoiceNode() | EndNode():
                    extra = {}
                case _:
                    assert_never(node)
            described.append(
                NodeDescription(
                    node.name, node.kind, next_name, path=path, branches=branches, **extra
                )
            )
            path = following
        return tuple(described)

    def __repr__(self) -> str:
        return f"MissionDefinition({self.name!r}, version={self.version}, nodes={len(self.nodes)})"


Branch = Callable[["ChainBuilder[InT, OutT]"], "ChainBuilder[InT, OutT]"]
"""A function that adds a branch's (or a path's) nodes to the empty chain it is given, e.g.
``lambda b: b.step("charge", charge).need_to("receipt", parse=...)``."""


class ChainBuilder(Generic[InT, OutT]):
    """Adds nodes to a chain; each call returns a new builder, so a builder can be reused.

    The top level of a mission is one (:class:`MissionBuilder`), and so is each branch of a
    parallel, each path of a choice and a need_to's timeout path.
    """

    __slots__ = ("_mission", "_nodes")

    def __init__(self, mission: str, nodes: Chain = ()) -> None:
        self._mission = mission
        self._nodes = nodes

    def _with(self, node: Node) -> Self:
        for existing in self._nodes:
            if existing.name == node.name:
                raise InvalidDefinitionError(
                    f"mission {self._mission!r} has two nodes named {node.name!r}; "
                    "node names must be unique"
                )
        clone = copy.copy(self)
        clone._nodes = (*self._nodes, node)
        return clone

    def _chain(self, build: Branch[InT, OutT], *, what: str) -> Chain:
        _require_callable(build, what=what)
        built = build(ChainBuilder(self._mission))
        if not isinstance(built, ChainBuilder):
            raise InvalidDefinitionError(
                f"{what} must return the builder it was given with its nodes added, got {built!r}"
            )
        return built._nodes

    def step(
        self,
        name: str | EventKey[R],
        run: Callable[[Context[InT, OutT]], Returns[R]],
        *,
        retry: RetryPolicy | int | None = None,
        timeout: Seconds | None = None,
        compensate: Callable[[Context[InT, OutT], R], Returns[Any]] | None = None,
        compensate_retry: RetryPolicy | int | None = None,
    ) -> Self:
        """Run ``run(ctx)``; its return value is stored as the node's output.

        ``retry`` is a :class:`RetryPolicy` or a number of attempts (default: one attempt).
        ``timeout`` (seconds or ``timedelta``) bounds each attempt; a timed-out attempt is a
        failed attempt.

        ``compensate(ctx, output)`` undoes the step: once the step has completed, a failure of
        the mission (or a cancellation with ``compensate=True``) runs it with the step's output,
        the compensations of the steps that completed running last first. ``compensate_retry``
        is its own retry policy, as ``retry`` is the step's (default: one attempt).
        """
        node_name, declared = _node_name(name, what="step")
        _require_callable(run, what=f"step {node_name!r} function")
        policy = _retry_policy(retry, node_name)
        limit = None
        if timeout is not None:
            limit = to_timedelta(timeout, what=f"step {node_name!r} timeout")
            if not limit:
                raise InvalidDefinitionError(f"step {node_name!r} timeout must be positive")
        if compensate is None:
            if compensate_retry is not None:
                raise InvalidDefinitionError(
                    f"step {node_name!r} has compensate_retry but no compensate function"
                )
            return self._with(StepNode(node_name, run, policy, limit, _output_type(run, declared)))
        _require_callable(compensate, what=f"step {node_name!r} compensate")
        undo_policy = _retry_policy(compensate_retry, node_name, what="step", of="compensate_retry")
        return self._with(
            StepNode(
                node_name,
                run,
                policy,
                limit,
                _output_type(run, declared),
                compensate,
                undo_policy,
            )
        )

    def need_to(
        self,
        name: str | EventKey[R],
        parse: Callable[[Any], R] | None = None,
        *,
        timeout: Seconds | None = None,
        on_timeout: Branch[InT, OutT] | None = None,
    ) -> Self:
        """Wait for the signal ``name``; ``parse`` validates its payload (raise to reject it).

        With ``timeout`` (seconds or ``timedelta`` from reaching the node), stop waiting once it
        has passed: the mission fails with :class:`SignalTimeoutError`, or, given
        ``on_timeout``, runs the nodes ``on_timeout`` adds and goes on after this node (the
        need_to's event is then missing: ``name in ctx.events`` is false).
        """
        node_name, _ = _node_name(name, what="need_to")
        if parse is None:
            raise InvalidDefinitionError(
                f"need_to {node_name!r} in mission {self._mission!r} needs a parse function "
                "for its signal payload"
            )
        _require_callable(parse, what=f"need_to {node_name!r} parse")
        limit = None
        if timeout is not None:
            limit = to_timedelta(timeout, what=f"need_to {node_name!r} timeout")
            if not limit:
                raise InvalidDefinitionError(f"need_to {node_name!r} timeout must be positive")
        chain = None
        if on_timeout is not None:
            if limit is None:
                raise InvalidDefinitionError(f"need_to {node_name!r} has on_timeout but no timeout")
            chain = self._chain(on_timeout, what=f"need_to {node_name!r} on_timeout")
        return self._with(NeedToNode(node_name, parse, limit, chain))

    def sleep(self, name: str, duration: Seconds) -> Self:
        """Wait durably for ``duration`` (seconds or ``timedelta``) from reaching the node."""
        node_name, _ = _node_name(name, what="sleep")
        delta = to_timedelta(duration, what=f"sleep {node_name!r} duration")
        return self._with(SleepNode(node_name, delta, None))

    def sleep_until(
        self, name: str, when: datetime | Callable[[Context[InT, OutT]], datetime]
    ) -> Self:
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

    def parallel(
        self,
        name: str | EventKey[R],
        branches: Mapping[str, Branch[InT, OutT]],
        *,
        mode: ParallelMode | str = ParallelMode.ALL,
    ) -> Self:
        """Run ``branches`` (each a name and a function that adds the branch's nodes) at the
        same time. With ``mode="all"`` the node ends when every branch has; with ``"first"``,
        when one has, and the others are cancelled. Its output maps each branch that ended to
        its last node's output. A branch that fails fails the node (after its own retries).
        """
        node_name, _ = _node_name(name, what="parallel")
        try:
            parallel_mode = ParallelMode(mode)
        except ValueError:
            raise InvalidDefinitionError(
                f"parallel {node_name!r} mode must be 'all' or 'first', got {mode!r}"
            ) from None
        chains = self._chains(branches, what=f"parallel {node_name!r}", part="branch")
        return self._with(ParallelNode(node_name, chains, parallel_mode))

    def choice(
        self,
        name: str | EventKey[R],
        choose: Callable[[Context[InT, OutT]], str],
        paths: Mapping[str, Branch[InT, OutT]],
    ) -> Self:
        """Run the one of ``paths`` whose name ``choose(ctx)`` returns, then go on after this
        node. The pick is recorded durably (it is the node's output) and never made again for
        the same mission, even after a restart."""
        node_name, _ = _node_name(name, what="choice")
        _require_plain_function(choose, what=f"choice {node_name!r} choose")
        chains = self._chains(paths, what=f"choice {node_name!r}", part="path")
        return self._with(ChoiceNode(node_name, choose, chains))

    def child(
        self,
        name: str | EventKey[R],
        definition: MissionDefinition[RawT, Any, Any],
        input: Callable[[Context[InT, OutT]], Returns[RawT]],
        *,
        retry: RetryPolicy | int | None = None,
    ) -> Self:
        """Start a mission of ``definition`` (a *child*) with ``input(ctx)`` as its input, and
        wait for it to end; the node's output is the child's output (typed by an
        :class:`EventKey` name). The child's id is ``"<mission id>/<path>"`` (then
        ``"#<attempt>"`` for later attempts), so recovery never starts it twice. A child that
        fails or is cancelled is a failed attempt (:class:`ChildMissionFailedError`): ``retry``
        (a :class:`RetryPolicy` or a number of attempts; default one) decides whether a new child
        is started. Cancelling the mission cancels its running child; the commander is given
        the child's definition with this one's."""
        node_name, declared = _node_name(name, what="child")
        if "#" in node_name:
            # Its child's id ends with the node's path, then "#<attempt>" after the first.
            raise InvalidDefinitionError(f"child name {node_name!r} must not contain '#'")
        if not isinstance(definition, MissionDefinition):
            raise InvalidDefinitionError(
                f"child {node_name!r} definition must be built with m.define(...)...end(), "
                f"got {definition!r}"
            )
        _require_callable(input, what=f"child {node_name!r} input")
        policy = _retry_policy(retry, node_name, what="child")
        output_type = None if declared in _PASSTHROUGH_TYPES else declared
        return self._with(ChildNode(node_name, definition, input, policy, output_type))

    def loop(
        self,
        name: str | EventKey[R],
        body: Branch[InT, OutT],
        *,
        until: Callable[[Context[InT, OutT]], bool],
        max_iterations: int,
    ) -> Self:
        """Run the nodes ``body`` adds, then ``until(ctx)``; again and again until it returns
        true, then go on after this node. ``until`` sees the iteration that just ran
        (``ctx.iteration``, the events of its nodes); its verdict is recorded durably and never
        asked again for the same iteration, even after a restart. After ``max_iterations``
        iterations whose verdict was false the mission fails with
        :class:`LoopLimitExceededError`. The node's output is the last iteration's last node's
        output."""
        node_name, _ = _node_name(name, what="loop")
        _require_plain_function(until, what=f"loop {node_name!r} until")
        limit = _max_iterations(max_iterations, f"loop {node_name!r}")
        chain = self._body(body, what=f"loop {node_name!r}")
        return self._with(LoopNode(node_name, chain, until, limit))

    def for_each(
        self,
        name: str | EventKey[R],
        items: Callable[[Context[InT, OutT]], Sequence[Any]],
        body: Branch[InT, OutT],
        *,
        max_iterations: int,
        concurrency: int = 1,
    ) -> Self:
        """Run the nodes ``body`` adds once per item of the list ``items(ctx)`` returns (read it
        in the body as ``ctx.item``), at most ``concurrency`` items at once, then go on after this
        node. The list is computed once, stored as JSON and never computed again for the same
        mission; more than ``max_iterations`` items fail the mission with
        :class:`LoopLimitExceededError` before any runs. The node's output lists each item's
        last node's output, in the items' order."""
        node_name, _ = _node_name(name, what="for_each")
        _require_plain_function(items, what=f"for_each {node_name!r} items")
        limit = _max_iterations(max_iterations, f"for_each {node_name!r}")
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise InvalidDefinitionError(
                f"for_each {node_name!r} concurrency must be a whole number >= 1, "
                f"got {concurrency!r}"
            )
        chain = self._body(body, what=f"for_each {node_name!r}")
        return self._with(ForEachNode(node_name, chain, items, limit, concurrency))

    def _body(self, build: Branch[InT, OutT], *, what: str) -> Chain:
        chain = self._chain(build, what=f"{what} body")
        if not chain:
            raise InvalidDefinitionError(
                f"{what} body adds no nodes: a loop needs something to run"
            )
        return chain

    def _chains(
        self, builders: Mapping[str, Branch[InT, OutT]], *, what: str, part: str
    ) -> dict[str, Chain]:
        if not isinstance(builders, Mapping) or not builders:
            raise InvalidDefinitionError(
                f"{what} needs a mapping of {part} names to {part} functions, got {builders!r}"
            )
        chains: dict[str, Chain] = {}
        for branch, build in builders.items():
            _node_name(branch, what=f"{what} {part}")
            if branch == LOOP_BODY:
                raise InvalidDefinitionError(
                    f"{what} {part} must not be named {LOOP_BODY!r} (it stands for a loop's "
                    "iteration in paths)"
                )
            chains[branch] = self._chain(build, what=f"{what} {part} {branch!r}")
        return chains


class MissionBuilder(ChainBuilder[InT, OutT], Generic[RawT, InT, OutT]):
    """The top level of a mission after ``start``: adds nodes, then ``end()`` makes the
    definition."""

    __slots__ = ("_concurrency", "_deadline", "_on_deadline", "_triggers", "_version")

    def __init__(self, name: str, version: int, nodes: Chain) -> None:
        super().__init__(name, nodes)
        self._version = version
        self._deadline: timedelta | None = None
        self._on_deadline: Chain | None = None
        self._triggers: tuple[str, ...] = ()
        self._concurrency: Concurrency | None = None

    def triggered_by(self, *triggers: str) -> Self:
        """Subscribe the mission to the named triggers: each ``commander.fire_trigger(name,
        payload)`` of one of them starts a mission of this definition with the payload as its
        input (parsed by its start). See docs/schedules.md, triggers."""
        for trigger in triggers:
            if not isinstance(trigger, str) or not trigger:  # pyright: ignore[reportUnnecessaryIsInstance]
                raise InvalidDefinitionError(
                    f"mission {self._mission!r}: a trigger name is a non-empty str, got {trigger!r}"
                )
        clone = copy.copy(self)
        clone._triggers = tuple(dict.fromkeys((*self._triggers, *triggers)))
        return clone

    def concurrency(
        self,
        key: Callable[[InT], str],
        *,
        limit: int = 1,
        when_busy: WhenBusy | Literal["queue", "refuse", "join"] = "queue",
    ) -> Self:
        """Run at most ``limit`` missions of this definition with the same key at once:
        ``key(input)`` (the parsed input) names it. A mission holds a slot of its key from its
        start to its end; a start while every slot is held waits for one in start order
        (``when_busy="queue"``; with ``limit=1``, missions of a key run one after another),
        raises :class:`ConcurrencyLimitError` (``"refuse"``: a singleton) or returns the running
        mission of the key (``"join"``, with ``limit=1``). See docs/dsl.md."""
        _require_callable(key, what="concurrency key")
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:  # pyright: ignore[reportUnnecessaryIsInstance]
            raise InvalidDefinitionError(
                f"mission {self._mission!r}: a concurrency limit is a whole number from 1, got "
                f"{limit!r}"
            )
        try:
            busy = WhenBusy(when_busy)
        except ValueError:
            raise InvalidDefinitionError(
                f"mission {self._mission!r}: when_busy is 'queue', 'refuse' or 'join', got "
                f"{when_busy!r}"
            ) from None
        if busy is WhenBusy.JOIN and limit != 1:
            raise InvalidDefinitionError(
                f"mission {self._mission!r}: when_busy='join' joins the one running mission of "
                f"a key, so it needs limit=1, not {limit}"
            )
        clone = copy.copy(self)
        clone._concurrency = Concurrency(key, limit, busy)
        return clone

    def deadline(self, after: Seconds, *, on_deadline: Branch[InT, OutT] | None = None) -> Self:
        """Give the whole mission until ``after`` (seconds or ``timedelta``) from its start to
        end. Past it, what runs is stopped and the mission fails with
        :class:`DeadlineExceededError`, or, given ``on_deadline``, runs the nodes it adds and
        then ends as its end node says."""
        limit = to_timedelta(after, what=f"mission {self._mission!r} deadline")
        if not limit:
            raise InvalidDefinitionError(f"mission {self._mission!r} deadline must be positive")
        clone = copy.copy(self)
        clone._deadline = limit
        clone._on_deadline = (
            None
            if on_deadline is None
            else self._chain(on_deadline, what=f"mission {self._mission!r} on_deadline")
        )
        return clone

    def end(
        self, output: Callable[[Context[InT, OutT]], Returns[Any]] | None = None
    ) -> MissionDefinition[RawT, InT, OutT]:
        """Finish the definition; ``output(ctx)``, when given, computes the mission's output."""
        if output is not None:
            _require_callable(output, what="end output")
        nodes = self._with(EndNode("end", output))._nodes
        return MissionDefinition(
            self._mission,
            self._version,
            nodes,
            self._deadline,
            self._on_deadline,
            self._triggers,
            self._concurrency,
        )


def _retry_policy(
    value: RetryPolicy | int | None, node: str, what: str = "step", of: str = "retry"
) -> RetryPolicy:
    if value is None:
        return NO_RETRY
    if isinstance(value, RetryPolicy):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return retry(max_attempts=value)
    raise InvalidDefinitionError(
        f"{what} {node!r} {of} must be a RetryPolicy or a number of attempts, got {value!r}"
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
        if attribute in {
            "step",
            "need_to",
            "sleep",
            "sleep_until",
            "parallel",
            "choice",
            "child",
            "loop",
            "for_each",
            "deadline",
            "end",
        }:
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
