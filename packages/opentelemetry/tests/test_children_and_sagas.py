"""Child missions and compensations in the trace (in memory, on trio and asyncio)."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from mission_control.core import Context, MissionStatus, m
from mission_control.in_memory_commander import create_in_memory_commander
from mission_control.opentelemetry import Attribute, MissionTracer

pytestmark = pytest.mark.anyio


def same(raw: Any) -> Any:
    return raw


def done(ctx: Context[Any, Any]) -> str:
    return "done"


def undo(ctx: Context[Any, Any], output: Any) -> None:
    return None


def refuse(ctx: Context[Any, Any]) -> str:
    raise ValueError("card declined")


PACKING = m.define("packing").start(parse=same).step("pack", done).end()
ORDER = (
    m.define("order")
    .start(parse=same)
    .child("packing", PACKING, lambda ctx: {"order": ctx.mission_id})
    .end()
)
TRIP = (
    m.define("trip").start(parse=same).step("book", done, compensate=undo).step("pay", refuse).end()
)


def one(spans: tuple[ReadableSpan, ...], name: str) -> ReadableSpan:
    [span] = [s for s in spans if s.name == name]
    return span


async def test_a_child_mission_is_in_its_parents_trace(
    tracer_provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """A child mission's context is made under its parent's child node span: parent and child
    are one trace, and the child node's wait ends when the child completes."""
    commander = create_in_memory_commander([ORDER], observer=MissionTracer(tracer_provider))
    handle = await commander.start(ORDER, {}, id="p-1")
    assert (await handle.inspect()).status is MissionStatus.COMPLETED
    spans = exporter.get_finished_spans()
    parent_create = one(spans, "mission.create order").get_span_context().span_id
    # The child node's attempt (under its run) starts the child; its wait (under the mission)
    # ends when the child has.
    [waited] = [s for s in spans if s.name == "child packing" and s.parent.span_id == parent_create]  # type: ignore[union-attr]
    [node] = [s for s in spans if s.name == "child packing" and s is not waited]
    child_create = one(spans, "mission.create packing")
    assert child_create.parent is not None
    assert child_create.parent.span_id == node.get_span_context().span_id
    assert child_create.attributes is not None
    assert child_create.attributes[Attribute.MISSION_PARENT_ID] == "p-1"
    assert {s.get_span_context().trace_id for s in spans} == {node.get_span_context().trace_id}
    assert waited.attributes is not None
    assert waited.attributes[Attribute.NODE_OUTCOME] == "completed"
    assert one(spans, "step pack").attributes == {
        Attribute.MISSION_ID: "p-1/packing",
        Attribute.NODE_PATH: "pack",
        Attribute.NODE_NAME: "pack",
        Attribute.NODE_KIND: "step",
        Attribute.NODE_ATTEMPT: 1,
        Attribute.NODE_OUTCOME: "completed",
    }


async def test_compensations_are_node_spans(
    tracer_provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """A failed step's span has the error; the compensation that follows is a span
    ``compensation <step>`` at the path ``<step>/compensate``, and the run that compensated the
    mission ends with an error status."""
    commander = create_in_memory_commander([TRIP], observer=MissionTracer(tracer_provider))
    handle = await commander.start(TRIP, {}, id="t-1")
    assert (await handle.inspect()).status is MissionStatus.COMPENSATED
    spans = exporter.get_finished_spans()
    pay = one(spans, "step pay")
    assert pay.status.status_code is StatusCode.ERROR
    compensation = one(spans, "compensation book")
    assert compensation.attributes is not None
    assert compensation.attributes[Attribute.NODE_PATH] == "book/compensate"
    assert compensation.attributes[Attribute.NODE_OUTCOME] == "completed"
    run = one(spans, "mission.run trip")
    assert run.attributes is not None
    assert run.attributes[Attribute.MISSION_STATUS] == "compensated"
    assert run.status.status_code is StatusCode.ERROR
