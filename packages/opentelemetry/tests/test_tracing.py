"""Missions, their runs, nodes and the runtime's ticks as OpenTelemetry spans, and the runtime's
metrics, recorded by the SDK's in-memory exporter and reader (on trio and asyncio, in virtual
time)."""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest
import trio
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Span, SpanContext, StatusCode

from mission_control.adapter_sqlite import SQLiteCommander
from mission_control.core import ConcurrencyLimitError, Context, MissionSnapshot, MissionStatus, m
from mission_control.opentelemetry import (
    Attribute,
    MissionTracer,
    OpenTelemetryRuntimeMetrics,
    TracingRuntimeLogger,
)
from mission_control.runtime import RuntimeMetric, create_commander_runtime
from mission_control.testing import LoopClock

pytestmark = pytest.mark.anyio

CHILD = Path(__file__).with_name("otel_child.py")
DEADLINE = 60  # seconds; a watchdog for a hung child, never a wait the test relies on


def same(raw: Any) -> Any:
    return raw


def reserve(ctx: Context[Any, Any]) -> str:
    """Fails as many times as the mission's input ``fail`` says, then succeeds."""
    if ctx.attempt <= ctx.input.get("fail", 0):
        raise ConnectionError(f"stock service down (attempt {ctx.attempt})")
    return "reserved"


def ship(ctx: Context[Any, Any]) -> str:
    return "shipped"


ORDER = (
    m.define("order")
    .start(parse=same)
    .step("reserve", reserve, retry=m.retry(3, backoff=m.fixed(1)))
    .need_to("approve", parse=same)
    .sleep("cool-off", timedelta(hours=1))
    .step("ship", ship)
    .end()
)
CRASHED = m.define("crashed").start(parse=same).step("work", ship).end()
"""The definition the crash test's child started, its step no longer blocking."""


def of_mission(spans: Sequence[ReadableSpan], mission_id: str) -> list[ReadableSpan]:
    return [
        s for s in spans if s.attributes and s.attributes.get(Attribute.MISSION_ID) == mission_id
    ]


def named(spans: Sequence[ReadableSpan], prefix: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name.startswith(prefix)]


def context_of(span: ReadableSpan) -> SpanContext:
    context = span.get_span_context()
    assert context is not None
    return context


def parent_id(span: ReadableSpan) -> int:
    assert span.parent is not None
    return span.parent.span_id


def traced(path: Path, tracer_provider: TracerProvider) -> SQLiteCommander:
    """A commander on ``path`` tracing to ``tracer_provider``, on the loop's (virtual) clock."""
    return SQLiteCommander(
        path, [ORDER], clock=LoopClock(), observer=MissionTracer(tracer_provider)
    )


async def wait_until_waiting(commander: SQLiteCommander, mission_id: str) -> MissionSnapshot:
    """The mission once it waits for its signal (the runtime retries its step meanwhile)."""
    with anyio.fail_after(600):
        while True:
            snapshot = await commander.inspect(mission_id)
            if snapshot.wait is not None and snapshot.wait.signal is not None:
                return snapshot
            await anyio.sleep(1)


async def test_a_mission_is_one_trace_across_its_waits_and_ticks(
    tmp_path: Path, tracer_provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """A mission started in a request's span, retried by a tick, signalled from another request
    and woken by its timer is one trace: the request's, under the stored context's
    ``mission.create`` span; each run links to what moved it (the tick, the signal's
    request), and its nodes and ended waits are spans with their attributes."""
    tracer = tracer_provider.get_tracer("test")
    async with (
        traced(tmp_path / "m.sqlite", tracer_provider) as commander,
        create_commander_runtime(
            commander, logger=TracingRuntimeLogger(tracer_provider, then=None)
        ),
    ):
        with tracer.start_as_current_span("POST /orders") as request:
            handle = await commander.start(ORDER, {"fail": 1}, id="o-1")
        waiting = await wait_until_waiting(commander, "o-1")
        with tracer.start_as_current_span("POST /orders/o-1/approve") as approval:
            await handle.signal("approve", {"by": "ada"})
        with anyio.fail_after(7200):
            done = await handle.wait_for_completion()
    assert done.status is MissionStatus.COMPLETED

    spans = exporter.get_finished_spans()
    mission = of_mission(spans, "o-1")
    trace_id = request.get_span_context().trace_id
    assert {context_of(s).trace_id for s in mission} == {trace_id}
    assert waiting.trace_context is not None
    assert f"{trace_id:032x}" in waiting.trace_context["traceparent"]

    [create] = named(mission, "mission.create order")
    assert parent_id(create) == request.get_span_context().span_id
    runs = named(mission, "mission.run order")
    assert [r.attributes and r.attributes[Attribute.RUN_TRIGGER] for r in runs] == [
        "start",
        "advance",
        "signal",
        "advance",
    ]
    assert {parent_id(r) for r in runs} == {context_of(create).span_id}
    assert [r.attributes and r.attributes[Attribute.MISSION_STATUS] for r in runs] == [
        "waiting",
        "waiting",
        "waiting",
        "completed",
    ]
    ticks = {context_of(s).span_id for s in named(spans, "tick ")}
    # The request that started it is its parent; ticks and the approval's request are links.
    assert runs[0].links == ()
    for advanced in (runs[1], runs[3]):
        assert [link.context.span_id for link in advanced.links] in ([t] for t in ticks)
    assert [link.context.span_id for link in runs[2].links] == [approval.get_span_context().span_id]

    first, second = named(mission, "step reserve")
    assert parent_id(first) == context_of(runs[0]).span_id
    assert parent_id(second) == context_of(runs[1]).span_id

    [approve] = named(mission, "need_to approve")
    [cool_off] = named(mission, "sleep cool-off")
    for wait in (approve, cool_off):
        assert wait.attributes is not None
        assert wait.attributes[Attribute.NODE_OUTCOME] == "completed"
        assert parent_id(wait) == context_of(create).span_id
    assert cool_off.end_time is not None
    assert cool_off.start_time is not None
    assert cool_off.end_time - cool_off.start_time == 3600 * 10**9
    assert cool_off.attributes is not None
    assert cool_off.attributes[Attribute.NODE_PATH] == "cool-off"
    [shipped] = named(mission, "step ship")
    assert parent_id(shipped) == context_of(runs[3]).span_id


async def test_a_retried_step_carries_its_failure(
    tracer_provider: TracerProvider, exporter: InMemorySpanExporter, tmp_path: Path
) -> None:
    """Each attempt of a retried step is a span: the failed ones with an error status, the
    exception recorded, ``error.type`` and the outcome ``failed``; the last ``completed``."""
    async with (
        traced(tmp_path / "m.sqlite", tracer_provider) as commander,
        create_commander_runtime(commander),
    ):
        await commander.start(ORDER, {"fail": 2}, id="o-2")
        await wait_until_waiting(commander, "o-2")

    attempts = named(of_mission(exporter.get_finished_spans(), "o-2"), "step reserve")
    assert [a.attributes and a.attributes[Attribute.NODE_ATTEMPT] for a in attempts] == [1, 2, 3]
    for failed in attempts[:2]:
        assert failed.attributes is not None
        assert failed.attributes[Attribute.NODE_OUTCOME] == "failed"
        assert failed.attributes[Attribute.ERROR_TYPE] == "ConnectionError"
        assert failed.status.status_code is StatusCode.ERROR
        [event] = failed.events
        assert event.name == "exception"
        assert event.attributes is not None
        assert "stock service down" in str(event.attributes["exception.message"])
    last = attempts[2]
    assert last.attributes is not None
    assert last.attributes[Attribute.NODE_OUTCOME] == "completed"
    assert last.status.status_code is StatusCode.UNSET
    assert last.attributes[Attribute.NODE_PATH] == "reserve"
    assert last.attributes[Attribute.NODE_KIND] == "step"


class _Till:
    """A step that fails until it is told to succeed."""

    def __init__(self) -> None:
        self.failing = True

    def __call__(self, ctx: Context[Any, Any]) -> str:
        if self.failing:
            raise ConnectionError("the payment service is down")
        return "charged"


async def test_a_retried_mission_stays_in_its_trace_and_a_fork_has_one_of_its_own(
    tmp_path: Path, tracer_provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """A retry is a run of the mission (trigger ``retry``) in the trace it was created in,
    under its one ``mission.create`` and linked to the request that retried it, its node run
    again a child of that run; a fork is a new mission with a trace of its own, created in
    the request that forked it and linked to its source's, whose spans hold only the nodes
    it ran."""
    till = _Till()
    flow = (
        m.define("pay").start(parse=same).step("charge", till).need_to("approve", parse=same).end()
    )
    tracer = tracer_provider.get_tracer("test")
    async with SQLiteCommander(
        tmp_path / "m.sqlite", [flow], clock=LoopClock(), observer=MissionTracer(tracer_provider)
    ) as commander:
        with tracer.start_as_current_span("POST /payments") as started:
            failed = await (await commander.start(flow, {}, id="p-1")).inspect()
        till.failing = False
        with tracer.start_as_current_span("POST /payments/p-1/retry") as retrying:
            retried = await commander.retry("p-1")
        with tracer.start_as_current_span("POST /payments/p-1/fork") as forking:
            fork = await (await commander.fork("p-1", at_node="approve", new_id="p-2")).inspect()
    assert (failed.status, retried.status) == (MissionStatus.FAILED, MissionStatus.WAITING)
    assert retried.trace_context == failed.trace_context

    spans = exporter.get_finished_spans()
    mission = of_mission(spans, "p-1")
    assert {context_of(s).trace_id for s in mission} == {started.get_span_context().trace_id}
    [create] = named(mission, "mission.create pay")
    runs = named(mission, "mission.run pay")
    assert [r.attributes and r.attributes[Attribute.RUN_TRIGGER] for r in runs] == [
        "start",
        "retry",
    ]
    assert {parent_id(r) for r in runs} == {context_of(create).span_id}
    assert [link.context.span_id for link in runs[1].links] == [retrying.get_span_context().span_id]
    first, again = named(mission, "step charge")
    assert first.attributes is not None
    assert first.attributes[Attribute.NODE_OUTCOME] == "failed"
    assert again.attributes is not None
    assert again.attributes[Attribute.NODE_OUTCOME] == "completed"
    assert parent_id(again) == context_of(runs[1]).span_id

    forked = of_mission(spans, "p-2")
    assert fork.trace_context is not None
    assert fork.trace_context != failed.trace_context
    assert {context_of(s).trace_id for s in forked} == {forking.get_span_context().trace_id}
    [fork_create] = named(forked, "mission.create pay")
    assert parent_id(fork_create) == forking.get_span_context().span_id
    assert fork_create.attributes is not None
    assert fork_create.attributes[Attribute.MISSION_FORKED_FROM] == "p-1"
    assert [link.context.span_id for link in fork_create.links] == [context_of(create).span_id]
    [fork_run] = named(forked, "mission.run pay")
    assert fork_run.attributes is not None
    assert fork_run.attributes[Attribute.RUN_TRIGGER] == "start"
    assert parent_id(fork_run) == context_of(fork_create).span_id
    assert named(forked, "step charge") == []


async def test_a_mission_stored_without_a_context_gets_a_trace_of_its_own(
    tmp_path: Path, tracer_provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """A mission stored by a process that traces nothing gets its context when a traced
    commander next moves it: a ``mission.create`` that starts a trace of its own, linked to
    the span that moved it then, never a child of it (whose trace would hold every later run
    of the mission)."""
    db = tmp_path / "m.sqlite"
    clock = LoopClock()
    async with SQLiteCommander(db, [ORDER], clock=clock) as untraced:
        await untraced.start(ORDER, {}, id="o-9")
    tracer = tracer_provider.get_tracer("test")
    async with SQLiteCommander(
        db, [ORDER], clock=clock, observer=MissionTracer(tracer_provider)
    ) as commander:
        with tracer.start_as_current_span("POST /orders/o-9/approve") as approving:
            await commander.signal("o-9", "approve", {"by": "ada"})
        with tracer.start_as_current_span("tick") as ticking:
            await anyio.sleep(3600)
            assert (await commander.advance("o-9")) is not None

    spans = of_mission(exporter.get_finished_spans(), "o-9")
    [create] = named(spans, "mission.create order")
    assert create.parent is None
    assert [link.context.span_id for link in create.links] == [approving.get_span_context().span_id]
    trace_id = context_of(create).trace_id
    assert trace_id != approving.get_span_context().trace_id
    runs = named(spans, "mission.run order")
    assert {context_of(r).trace_id for r in runs} == {trace_id}
    assert [link.context.span_id for link in runs[1].links] == [ticking.get_span_context().span_id]


async def test_a_new_commander_on_the_file_continues_the_trace(tmp_path: Path) -> None:
    """A mission started by one commander (one process's SDK) and finished by another on the
    same file, with another SDK, is one trace: the second's runs are children of the context
    the first stored."""
    db = tmp_path / "m.sqlite"
    first_spans, second_spans = InMemorySpanExporter(), InMemorySpanExporter()
    first, second = TracerProvider(), TracerProvider()
    first.add_span_processor(SimpleSpanProcessor(first_spans))
    second.add_span_processor(SimpleSpanProcessor(second_spans))
    clock = LoopClock()
    async with SQLiteCommander(db, [ORDER], clock=clock, observer=MissionTracer(first)) as before:
        await before.start(ORDER, {}, id="o-3")
    [create] = named(first_spans.get_finished_spans(), "mission.create")

    async with SQLiteCommander(db, [ORDER], clock=clock, observer=MissionTracer(second)) as after:
        await after.signal("o-3", "approve", {"by": "grace"})
        await anyio.sleep(3600)
        assert (await after.advance("o-3")) is not None
    assert (await _inspect(db, "o-3")).status is MissionStatus.COMPLETED

    later = of_mission(second_spans.get_finished_spans(), "o-3")
    assert {context_of(s).trace_id for s in later} == {context_of(create).trace_id}
    runs = named(later, "mission.run")
    assert len(runs) == 2
    assert {parent_id(r) for r in runs} == {context_of(create).span_id}
    assert named(later, "mission.create") == []


@pytest.mark.slow
@pytest.mark.real_time
@pytest.mark.skipif(sys.platform == "win32", reason="needs SIGKILL")
async def test_a_mission_resumed_after_a_crash_stays_in_its_trace(
    tmp_path: Path, tracer_provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """A process SIGKILLed inside a traced mission's step leaves the context it stored; the
    runtime of the next process resumes the mission in a run (trigger ``resume``) of that same
    trace, a child of the dead process's ``mission.create`` span."""
    db = tmp_path / "m.sqlite"
    backend = "trio" if trio.lowlevel.in_trio_run() else "asyncio"
    with anyio.fail_after(DEADLINE):
        crashed = await anyio.run_process(
            [sys.executable, str(CHILD), str(db), backend], check=False
        )
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr.decode()
    stored = await _inspect(db, "crashed")
    assert stored.status is MissionStatus.RUNNING
    assert stored.trace_context is not None
    _, trace_hex, create_hex, _ = stored.trace_context["traceparent"].split("-")

    with anyio.fail_after(DEADLINE):
        async with (
            SQLiteCommander(db, [CRASHED], observer=MissionTracer(tracer_provider)) as commander,
            create_commander_runtime(
                commander, logger=TracingRuntimeLogger(tracer_provider, then=None)
            ),
        ):
            done = await commander.result("crashed")
    assert done.status is MissionStatus.COMPLETED
    spans = exporter.get_finished_spans()
    [run] = named(spans, "mission.run crashed")
    assert run.attributes is not None
    assert run.attributes[Attribute.RUN_TRIGGER] == "resume"
    assert f"{context_of(run).trace_id:032x}" == trace_hex
    assert f"{parent_id(run):016x}" == create_hex
    [startup] = named(spans, "tick startup")
    assert [link.context.span_id for link in run.links] == [context_of(startup).span_id]
    [work] = named(spans, "step work")
    assert work.attributes is not None
    assert work.attributes[Attribute.NODE_ATTEMPT] == 1
    assert parent_id(work) == context_of(run).span_id


async def _inspect(db: Path, mission_id: str) -> MissionSnapshot:
    async with SQLiteCommander(db, [], read_only=True) as reader:
        return await reader.inspect(mission_id)


async def test_ticks_are_traced_with_their_report(
    tmp_path: Path, tracer_provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """Each tick is a span ``tick <trigger>`` carrying its report's counts; the runtime's
    events still reach the logger given as ``then``."""
    heard: list[str] = []

    class Heard:
        def log(self, event: str, fields: Any, *, error: BaseException | None = None) -> None:
            heard.append(event)

    async with (
        SQLiteCommander(tmp_path / "m.sqlite", [ORDER], clock=LoopClock()) as commander,
        create_commander_runtime(
            commander, logger=TracingRuntimeLogger(tracer_provider, then=Heard())
        ) as runtime,
    ):
        await commander.start(ORDER, {"fail": 1}, id="o-4")
        await wait_until_waiting(commander, "o-4")
        report = await runtime.tick()

    ticks = named(exporter.get_finished_spans(), "tick ")
    assert ticks[0].name == "tick startup"
    assert ticks[-1].name == "tick direct"
    assert ticks[-1].attributes is not None
    assert ticks[-1].attributes[Attribute.TICK_TRIGGER] == "direct"
    assert ticks[-1].attributes["mission_control.tick.advanced"] == report.advanced
    advanced = [t for t in ticks if t.attributes and t.attributes["mission_control.tick.advanced"]]
    assert [t.name for t in advanced] == ["tick scheduled"]
    assert "tick-completed" in heard
    assert "runtime-started" in heard


async def test_the_runtime_metrics_are_recorded_through_the_metrics_api(
    tmp_path: Path, meter_provider: MeterProvider, metric_reader: InMemoryMetricReader
) -> None:
    """The runtime's counts go to OpenTelemetry counters and its durations to histograms, named
    as RuntimeMetric names them, with the runtime's attributes."""
    async with (
        SQLiteCommander(tmp_path / "m.sqlite", [ORDER], clock=LoopClock()) as commander,
        create_commander_runtime(
            commander, metrics=OpenTelemetryRuntimeMetrics(meter_provider)
        ) as runtime,
    ):
        await commander.start(ORDER, {"fail": 1}, id="o-5")
        await wait_until_waiting(commander, "o-5")
        await runtime.tick()

    data = metric_reader.get_metrics_data()
    assert data is not None
    found: dict[str, Any] = {
        metric.name: metric
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
    }
    ticks = found[RuntimeMetric.TICKS]
    counted = {
        (p.attributes["trigger"], p.attributes["outcome"]): p.value for p in ticks.data.data_points
    }
    assert counted[("startup", "completed")] == 1
    assert counted[("direct", "completed")] == 1
    assert counted[("scheduled", "completed")] >= 1
    assert ticks.unit == "{tick}"
    advanced = found[RuntimeMetric.MISSIONS_ADVANCED]
    assert {p.attributes["status"]: p.value for p in advanced.data.data_points} == {"waiting": 1}
    duration = found[RuntimeMetric.TICK_DURATION]
    assert duration.unit == "s"
    assert sum(p.count for p in duration.data.data_points) == sum(counted.values())


class Broken(SpanProcessor):
    """A span processor that raises whenever a span starts: a tracing pipeline gone wrong."""

    def on_start(self, span: Span, parent_context: Any = None) -> None:
        raise RuntimeError("the tracing pipeline is broken")


async def test_a_tracer_that_raises_does_not_break_missions(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """When tracing raises at every span, missions run to their end all the same (the errors are
    logged on mission_control.observer) and store no context."""
    provider = TracerProvider()
    provider.add_span_processor(Broken())
    with caplog.at_level(logging.ERROR, logger="mission_control.observer"):
        async with (
            traced(tmp_path / "m.sqlite", provider) as commander,
            create_commander_runtime(commander),
        ):
            handle = await commander.start(ORDER, {"fail": 1}, id="o-6")
            await wait_until_waiting(commander, "o-6")
            await handle.signal("approve", {})
            with anyio.fail_after(7200):
                done = await handle.wait_for_completion()
    assert done.status is MissionStatus.COMPLETED
    assert done.trace_context is None
    assert "the tracing pipeline is broken" in caplog.text


async def test_without_an_sdk_nothing_is_stored(tmp_path: Path) -> None:
    """On the API alone (a provider that makes no real spans) a traced mission runs and stores
    no context."""
    from opentelemetry.trace import NoOpTracerProvider

    async with SQLiteCommander(
        tmp_path / "m.sqlite", [ORDER], observer=MissionTracer(NoOpTracerProvider())
    ) as commander:
        handle = await commander.start(ORDER, {}, id="o-7")
        assert (await handle.inspect()).trace_context is None


async def test_a_refused_or_joining_singleton_start_records_no_span(
    tmp_path: Path, tracer_provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """A singleton's start refused, or joining the mission that holds its key, traces
    nothing: no mission was made, so no ``mission.create`` or ``mission.run`` names it."""
    refusing = (
        m.define("refusing")
        .start(parse=same)
        .concurrency(lambda value: "one", when_busy="refuse")
        .need_to("done", parse=same)
        .end()
    )
    joining = (
        m.define("joining")
        .start(parse=same)
        .concurrency(lambda value: "one", when_busy="join")
        .need_to("done", parse=same)
        .end()
    )
    async with SQLiteCommander(
        tmp_path / "s.sqlite",
        [refusing, joining],
        clock=LoopClock(),
        observer=MissionTracer(tracer_provider),
    ) as commander:
        await commander.start(refusing, {}, id="r-1")
        with pytest.raises(ConcurrencyLimitError):
            await commander.start(refusing, {}, id="r-2")
        await commander.start(joining, {}, id="j-1")
        assert (await commander.start(joining, {}, id="j-2")).id == "j-1"
    spans = exporter.get_finished_spans()
    assert of_mission(spans, "r-1")
    assert of_mission(spans, "r-2") == []
    assert of_mission(spans, "j-2") == []
