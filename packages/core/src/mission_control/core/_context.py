"""What a node's function receives: the mission's identity, the time, and earlier events."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, overload

import cattrs

from ._draft import Draft
from ._errors import OutputNotSerializableError, UnknownEventError
from ._keys import EventKey
from ._nodes import ForEachNode
from ._snapshot import NodeRecord, NodeStatus
from ._values import copy_json, is_text, to_json_value

if TYPE_CHECKING:
    from ._definition import MissionDefinition

T = TypeVar("T")
InT = TypeVar("InT", covariant=True)
OutT = TypeVar("OutT", covariant=True)

_UNSET: Any = object()


class MissionView(Protocol):
    """What a context reads of a mission: a snapshot, or the engine's working copy of one."""

    @property
    def id(self) -> str: ...
    @property
    def definition(self) -> str: ...
    @property
    def input(self) -> Any: ...
    @property
    def nodes(self) -> Mapping[str, NodeRecord]: ...


class NodeEvent(Generic[T]):
    """The recorded input and output of an earlier node.

    For a ``need_to`` node, ``input`` is the payload as it was sent and ``output`` is what the
    node's parser made of it.
    """

    __slots__ = ("_input", "_output", "_read", "name")

    def __init__(self, name: str, input: Any, read: Any) -> None:
        self.name = name
        self._input: Any = input
        self._read = read
        self._output: Any = _UNSET

    @property
    def input(self) -> Any:
        """The node's recorded input (a copy: changing it changes nothing stored)."""
        return copy_json(self._input)

    @property
    def output(self) -> T:
        if self._output is _UNSET:
            self._output = self._read()
        return self._output

    def __repr__(self) -> str:
        return f"NodeEvent(name={self.name!r}, output={self.output!r})"


class StartEvent(Generic[InT, OutT]):
    """The mission's parsed input and the start node's output."""

    __slots__ = ("_events",)

    def __init__(self, events: Events[Any, Any]) -> None:
        self._events = events

    @property
    def input(self) -> InT:
        return self._events.parsed_input()

    @property
    def output(self) -> OutT:
        return self._events["start"].output

    def __repr__(self) -> str:
        return f"StartEvent(input={self.input!r}, output={self.output!r})"


class Events(Generic[InT, OutT]):
    """The events of a mission's completed nodes, looked up by node name or :class:`EventKey`.

    Values are rebuilt from what is stored, so a step sees the same thing whether the mission ran
    straight through or was resumed after a restart.
    """

    __slots__ = ("_cache", "_converter", "_definition", "_parsed", "_snapshot", "_within")

    def __init__(
        self,
        definition: MissionDefinition[Any, Any, Any],
        snapshot: MissionView,
        converter: cattrs.Converter | None = None,
        within: str = "",
    ):
        self._definition = definition
        # The path the events are read from: a node in a loop's body reads its own iteration's.
        self._within = within
        self._converter = converter
        self._snapshot = snapshot
        self._parsed: Any = _UNSET
        self._cache: dict[str, NodeEvent[Any]] = {}

    @property
    def start(self) -> StartEvent[InT, OutT]:
        return StartEvent(self)

    def parsed_input(self) -> Any:
        if self._parsed is _UNSET:
            self._parsed = self._definition.parse_input(self._snapshot.input)
        return self._parsed

    @overload
    def __getitem__(self, name: EventKey[T]) -> NodeEvent[T]: ...
    @overload
    def __getitem__(self, name: str) -> NodeEvent[Any]: ...
    def __getitem__(self, name: str | EventKey[Any]) -> NodeEvent[Any]:
        node_name = name.name if isinstance(name, EventKey) else name
        cached = self._cache.get(node_name)
        if cached is not None:
            return cached
        nodes = self._snapshot.nodes
        path = self._definition.resolve(node_name, self._within, nodes) or node_name
        record = nodes.get(path)
        if record is None or record.status is not NodeStatus.COMPLETED:
            known = ", ".join(
                dict.fromkeys(r.name for r in nodes.values() if r.status is NodeStatus.COMPLETED)
            )
            raise UnknownEventError(
                f"mission {self._snapshot.definition!r} has no completed node {node_name!r} "
                f"to read an event from (completed so far: {known or 'none'})"
            )
        definition, converter = self._definition, self._converter
        event: NodeEvent[Any] = NodeEvent(
            node_name, record.input, lambda: definition.read_output(path, record, converter)
        )
        self._cache[node_name] = event
        return event

    def __contains__(self, name: object) -> bool:
        node_name = name.name if isinstance(name, EventKey) else name
        if not isinstance(node_name, str):
            return False
        nodes = self._snapshot.nodes
        record = nodes.get(self._definition.resolve(node_name, self._within, nodes) or node_name)
        return record is not None and record.status is NodeStatus.COMPLETED

    def as_dict(self) -> Mapping[str, NodeEvent[Any]]:
        """Every completed node's event, by node name."""
        nodes = self._snapshot.nodes
        resolve, within = self._definition.resolve, self._within
        # In a loop, each name is read from one iteration (see __getitem__): the records of
        # other iterations in progress are not this function's events.
        return {
            record.name: self[record.name]
            for path, record in nodes.items()
            if record.status is NodeStatus.COMPLETED
            and (resolve(record.name, within, nodes) or record.name) == path
        }


class Context(Generic[InT, OutT]):
    """What a node's function receives.

    ``idempotency_key`` is the same for every attempt of the same node of the same mission:
    pass it to external systems so that a step run again after a crash does its effect once.
    ``node`` is the node's name and ``path`` its path (the same at the top level; see
    :class:`MissionSnapshot` for the paths of nodes in branches and paths).
    """

    __slots__ = (
        "_closed",
        "_converter",
        "_definition",
        "_events",
        "_mission",
        "_published",
        "attempt",
        "definition",
        "mission_id",
        "node",
        "now",
        "path",
    )

    def __init__(
        self,
        *,
        definition: MissionDefinition[Any, Any, Any],
        mission: MissionView,
        node: str,
        attempt: int,
        now: datetime,
        converter: cattrs.Converter | None = None,
        path: str | None = None,
    ) -> None:
        self.mission_id: str = mission.id
        self.definition: str = definition.name
        self.node: str = node
        self.path: str = node if path is None else path
        self.attempt: int = attempt
        self.now: datetime = now
        self._definition = definition
        self._mission = mission
        self._events: Events[InT, OutT] | None = None
        self._converter = converter
        # Made by the first publish: most functions never publish.
        self._published: dict[str, Any] | None = None
        self._closed = False

    @property
    def idempotency_key(self) -> str:
        """``"<mission id>:<path>"``: the same for every attempt of this node of this mission
        (for a top-level node the path is its name, so the key is ``"<mission id>:<node>"``, as in
        0.1)."""
        return f"{self.mission_id}:{self.path}"

    @property
    def events(self) -> Events[InT, OutT]:
        """The events of the mission's completed nodes (made on first use: most functions
        never read them)."""
        events = self._events
        if events is None:
            events = self._events = Events(
                self._definition, self._mission, self._converter, self.path
            )
        return events

    @property
    def input(self) -> InT:
        """The mission's parsed input (the same as ``events.start.input``)."""
        return self.events.parsed_input()

    @property
    def iteration(self) -> int | None:
        """In a loop's or a for_each's body (and in a loop's ``until``): the iteration this
        function runs in, counted from 1 (the innermost loop's); ``None`` elsewhere."""
        loops = self._definition.iterations_of(self.path)
        return loops[-1][1] if loops else None

    @property
    def item(self) -> Any:
        """In a for_each's body: the item this iteration runs for (the innermost for_each's), as
        stored (its JSON form; a copy). ``LookupError`` elsewhere."""
        for loop, iteration in reversed(self._definition.iterations_of(self.path)):
            record = self._mission.nodes.get(loop)
            if record is not None and record.kind == ForEachNode.kind:
                return copy_json(record.input[iteration - 1])
        raise LookupError(f"ctx.item is read in a for_each's body; {self.path!r} is in none")

    def publish(self, name: str, value: Any) -> None:
        """Publish ``value`` under ``name`` for callers to read while the mission goes on
        (``snapshot.progress[name]``), replacing what was published under that name before.

        The value is converted to JSON now; a value JSON cannot hold, or a name that is not a
        non-empty ``str``, raises :class:`OutputNotSerializableError` (a failure never retried).
        It is stored with the mission's next write (before the next function runs), so readers
        see it once this function has finished. Publishing is not undone by a failed attempt;
        once the mission has ended it is dropped; after this function returned it raises
        ``RuntimeError``. On a context made by hand (a unit test of a step), the values are kept
        on the context: see :attr:`published`.
        """
        if self._closed:
            raise RuntimeError(
                f"ctx.publish({name!r}, ...) after the function of {self.path!r} has returned: "
                "publish from inside the function"
            )
        if type(name) is not str or not name or not is_text(name):
            raise OutputNotSerializableError(
                f"a published name must be a non-empty str that UTF-8 can encode, got {name!r}"
            )
        converted = to_json_value(
            value, what=f"published value {name!r}", converter=self._converter
        )
        if self._published is None:
            self._published = {}
        self._published[name] = converted
        mission = self._mission
        if isinstance(mission, Draft):
            mission.publish(name, copy_json(converted))

    @property
    def published(self) -> Mapping[str, Any]:
        """What this context's function published, by name (the latest value of each; a copy)."""
        published = self._published or {}
        return {name: copy_json(value) for name, value in published.items()}

    def close(self) -> None:
        """Called by the engine once the function has returned: publishing then raises."""
        self._closed = True

    def __repr__(self) -> str:
        return (
            f"Context(mission_id={self.mission_id!r}, node={self.node!r}, "
            f"attempt={self.attempt}, now={self.now.isoformat()})"
        )
