"""``MissionTracer``: the commander's observer that writes missions, their runs and nodes as
OpenTelemetry spans, one trace per mission."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context as OtelContext
from opentelemetry.propagators.textmap import Setter, TextMapPropagator
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode, Tracer, TracerProvider
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

from mission_control.core import ErrorInfo, MissionStatus, NodeStatus
from mission_control.core.lowlevel import (
    NodeEnd,
    ObservedMission,
    ObservedNode,
    RunObserver,
    RunTrigger,
)

from ._names import INSTRUMENTATION_NAME, VERSION, Attribute

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_FAILED = (MissionStatus.FAILED, MissionStatus.COMPENSATED)


class _Setter(Setter[dict[str, str]]):
    def set(self, carrier: dict[str, str], key: str, value: str) -> None:
        carrier[key] = value


_SETTER = _Setter()


def _nanoseconds(at: datetime) -> int:
    return (at - _EPOCH) // timedelta(microseconds=1) * 1000


def _mission_attributes(mission: ObservedMission) -> dict[str, AttributeValue]:
    attributes: dict[str, AttributeValue] = {
        Attribute.MISSION_ID: mission.id,
        Attribute.MISSION_DEFINITION: mission.definition,
        Attribute.MISSION_VERSION: mission.version,
    }
    if mission.parent is not None:
        attributes[Attribute.MISSION_PARENT_ID] = mission.parent.mission_id
    return attributes


def _node_name(node: ObservedNode) -> str:
    return node.kind if node.name == node.kind else f"{node.kind} {node.name}"


def _failed(span: Span, error: BaseException) -> None:
    kind = type(error).__qualname__
    span.set_attribute(Attribute.ERROR_TYPE, kind)
    span.record_exception(error)
    span.set_status(Status(StatusCode.ERROR, f"{kind}: {error}"))


class MissionTracer:
    """Traces the missions of the commander it is given to (``observer=``), through the
    OpenTelemetry API.

    - ``mission.create <definition>``: a span made when a mission is created, in the caller's
      trace (a child of the current span: the request that started it, the parent mission's
      child node), ended at once; a fork's links to its source's. A mission stored without a
      context gets one when it is next moved: a trace of its own, linked to the current span.
      Its context is what the mission stores (``MissionSnapshot.trace_context``, the W3C
      ``traceparent``), so every later span of the mission is in this trace, in this process or
      another one, after waits and restarts.
    - ``mission.run <definition>``: each time the engine moves the mission (a start, a signal,
      a tick's advance or resume, a cancellation), a child of the stored context, linked to the
      span current when it began (the tick, the request that sent a signal).
    - ``<kind> <name>``: each attempt of a node's function (a start's ``run``, a step, a child
      node, the end's output, a compensation), a child of its run and the current span while
      the function runs (spans your code makes inside it are its children).
    - ``need_to <name>``, ``sleep <name>``, ``child <name>`` (waits): when a wait ends, a span
      from when it began to when it ended (on the commander's clock), a child of the mission's
      stored context.

    ``tracer_provider`` defaults to the global one; ``propagator`` (W3C trace context by
    default) says how the context is written into the mission and read back.
    """

    def __init__(
        self,
        tracer_provider: TracerProvider | None = None,
        *,
        propagator: TextMapPropagator | None = None,
    ) -> None:
        self._tracer = trace.get_tracer(
            INSTRUMENTATION_NAME, VERSION, tracer_provider=tracer_provider
        )
        self._propagator = propagator if propagator is not None else TraceContextTextMapPropagator()

    def context_for(self, mission: ObservedMission) -> Mapping[str, str] | None:
        links: list[Link] = []
        parent: OtelContext | None = None
        if not mission.is_new:
            # Created earlier without a context: a trace of its own (not the tick's that moves
            # it now, which would hold every later run of the mission), linked to that tick.
            parent = OtelContext()
            current = trace.get_current_span().get_span_context()
            if current.is_valid:
                links.append(Link(current))
        if mission.forked_from_context:
            source = self._stored_context(mission.forked_from_context)
            if source is not None:
                links.append(Link(trace.get_current_span(source).get_span_context()))
        attributes = _mission_attributes(mission)
        if mission.forked_from is not None:
            attributes[Attribute.MISSION_FORKED_FROM] = mission.forked_from
        span = self._tracer.start_span(
            f"mission.create {mission.definition}",
            context=parent,
            kind=SpanKind.PRODUCER,
            attributes=attributes,
            links=links,
        )
        span.end()
        if not span.get_span_context().is_valid:
            return None  # no SDK: nothing worth storing
        carrier: dict[str, str] = {}
        self._propagator.inject(carrier, trace.set_span_in_context(span), _SETTER)
        return carrier or None

    def run_started(self, mission: ObservedMission, trigger: RunTrigger) -> RunObserver | None:
        stored = self._stored(mission)
        links: list[Link] = []
        current = trace.get_current_span().get_span_context()
        parent = trace.get_current_span(stored).get_span_context() if stored is not None else None
        if current.is_valid and parent is not None and current.trace_id != parent.trace_id:
            links.append(Link(current))
        attributes = _mission_attributes(mission)
        attributes[Attribute.RUN_TRIGGER] = trigger.value
        span = self._tracer.start_span(
            f"mission.run {mission.definition}",
            context=stored,
            kind=SpanKind.CONSUMER if stored is not None else SpanKind.INTERNAL,
            attributes=attributes,
            links=links,
        )
        return _Run(self._tracer, span, stored, mission)

    def _stored(self, mission: ObservedMission) -> OtelContext | None:
        """The context stored with the mission, as a parent (``None``: it has none)."""
        if not mission.trace_context:
            return None
        return self._stored_context(mission.trace_context)

    def _stored_context(self, carrier: Mapping[str, str]) -> OtelContext | None:
        found = self._propagator.extract(carrier, context=OtelContext())
        if not trace.get_current_span(found).get_span_context().is_valid:
            return None
        return found


class _Run:
    """One run's span and the spans of the nodes it meets."""

    __slots__ = ("_mission", "_span", "_stored", "_tracer")

    def __init__(
        self, tracer: Tracer, span: Span, stored: OtelContext | None, mission: ObservedMission
    ) -> None:
        self._tracer = tracer
        self._span = span
        self._stored = stored
        self._mission = mission

    def _node_attributes(self, node: ObservedNode) -> dict[str, AttributeValue]:
        return {
            Attribute.MISSION_ID: self._mission.id,
            Attribute.NODE_PATH: node.path,
            Attribute.NODE_NAME: node.name,
            Attribute.NODE_KIND: node.kind,
            Attribute.NODE_ATTEMPT: node.attempt,
        }

    def node_started(self, node: ObservedNode) -> NodeEnd | None:
        span = self._tracer.start_span(
            _node_name(node),
            context=trace.set_span_in_context(self._span),
            attributes=self._node_attributes(node),
        )
        # Current while the function runs, in its task: what it traces nests under the node.
        token = otel_context.attach(trace.set_span_in_context(span))

        def end(error: BaseException | None) -> None:
            try:
                if error is None:
                    span.set_attribute(Attribute.NODE_OUTCOME, NodeStatus.COMPLETED.value)
                else:
                    interrupted = not isinstance(error, Exception)
                    span.set_attribute(
                        Attribute.NODE_OUTCOME,
                        "interrupted" if interrupted else NodeStatus.FAILED.value,
                    )
                    _failed(span, error)
                span.end()
            finally:
                otel_context.detach(token)

        return end

    def node_waited(
        self,
        node: ObservedNode,
        since: datetime | None,
        until: datetime,
        outcome: NodeStatus,
        error: ErrorInfo | None,
    ) -> None:
        attributes = self._node_attributes(node)
        attributes[Attribute.NODE_OUTCOME] = outcome.value
        # Beside the runs, under the mission: a wait lasts from one run to another.
        parent = self._stored if self._stored is not None else trace.set_span_in_context(self._span)
        span = self._tracer.start_span(
            _node_name(node),
            context=parent,
            attributes=attributes,
            start_time=_nanoseconds(since if since is not None else until),
        )
        if error is not None:
            span.set_attribute(Attribute.ERROR_TYPE, error.type)
            span.add_event(
                "exception",
                {"exception.type": error.type, "exception.message": error.message},
            )
            span.set_status(Status(StatusCode.ERROR, f"{error.type}: {error.message}"))
        span.end(end_time=_nanoseconds(until))

    def ended(self, status: MissionStatus | None, error: BaseException | None) -> None:
        span = self._span
        if status is not None:
            span.set_attribute(Attribute.MISSION_STATUS, status.value)
        if error is not None:
            _failed(span, error)
        elif status in _FAILED:
            span.set_status(Status(StatusCode.ERROR, f"mission {status}"))
        span.end()
