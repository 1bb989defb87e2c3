"""The runtime's hooks on OpenTelemetry: ticks as spans (a ``RuntimeLogger``) and the runtime's
measurements as OpenTelemetry instruments (a ``RuntimeMetrics``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.metrics import Counter, Histogram, Meter, MeterProvider
from opentelemetry.trace import Span, Status, StatusCode, TracerProvider

from mission_control.runtime import LoggingRuntimeLogger, RuntimeEvent, RuntimeLogger, RuntimeMetric

from ._names import INSTRUMENTATION_NAME, TICK_COUNTS, VERSION, Attribute

_MISSION_EVENTS = frozenset(
    {
        RuntimeEvent.MISSION_RESUME_STARTED,
        RuntimeEvent.MISSION_RESUME_COMPLETED,
        RuntimeEvent.MISSION_RESUME_FAILED,
        RuntimeEvent.MISSION_ADVANCE_FAILED,
    }
)


def _attribute(value: object) -> Any:
    return value if isinstance(value, str | bool | int | float) else str(value)


class TracingRuntimeLogger:
    """A ``RuntimeLogger`` (``create_commander_runtime(commander, logger=...)``) that traces
    each tick as a span, ``tick <trigger>``, and passes every event on to ``then`` (the
    runtime's default stdlib logger unless told otherwise; ``None``: to nothing).

    The tick's span is current in the tick's tasks, so the runs of the missions it moves link to
    it (see :class:`MissionTracer`). It carries the tick's counts
    (``mission_control.tick.advanced``, ...) and, as span events, the tick's resumes and failed
    advances; a tick that fails ends with an error status.
    """

    def __init__(
        self,
        tracer_provider: TracerProvider | None = None,
        *,
        then: RuntimeLogger | None = LoggingRuntimeLogger(),  # noqa: B008 (stateless)
    ) -> None:
        self._tracer = trace.get_tracer(
            INSTRUMENTATION_NAME, VERSION, tracer_provider=tracer_provider
        )
        self._then = then
        self._tick: tuple[Span, object] | None = None

    def log(
        self, event: str, fields: Mapping[str, object], *, error: BaseException | None = None
    ) -> None:
        try:
            self._trace(event, fields, error)
        finally:
            if self._then is not None:
                self._then.log(event, fields, error=error)

    def _trace(self, event: str, fields: Mapping[str, object], error: BaseException | None) -> None:
        if event == RuntimeEvent.TICK_STARTED:
            self._abandon()
            trigger = str(fields.get("trigger", ""))
            span = self._tracer.start_span(
                f"tick {trigger}".rstrip(), attributes={Attribute.TICK_TRIGGER: trigger}
            )
            # Ticks never overlap, and a tick logs its start and end in its own task.
            token = otel_context.attach(trace.set_span_in_context(span))
            self._tick = (span, token)
        elif event in (RuntimeEvent.TICK_COMPLETED, RuntimeEvent.TICK_FAILED):
            if self._tick is None:
                return
            (span, token), self._tick = self._tick, None
            try:
                for count in TICK_COUNTS:
                    if count in fields:
                        span.set_attribute(
                            f"mission_control.tick.{count}", _attribute(fields[count])
                        )
                if error is not None:
                    span.set_attribute(Attribute.ERROR_TYPE, type(error).__qualname__)
                    span.record_exception(error)
                    span.set_status(Status(StatusCode.ERROR, str(fields.get("reason", ""))))
                span.end()
            finally:
                otel_context.detach(token)  # pyright: ignore[reportArgumentType]
        elif event in _MISSION_EVENTS and self._tick is not None:
            span = self._tick[0]
            span.add_event(event, {key: _attribute(value) for key, value in fields.items()})
            if error is not None:
                span.record_exception(error, {"mission_control.event": event})

    def _abandon(self) -> None:
        """End the span of a tick that never logged its end (cancelled): its task is gone, and
        with it the context it was attached in."""
        if self._tick is not None:
            span, _ = self._tick
            self._tick = None
            span.set_status(Status(StatusCode.ERROR, "the tick ended without a report"))
            span.end()


_UNITS: dict[str, str] = {
    RuntimeMetric.TICKS: "{tick}",
    RuntimeMetric.TICK_DURATION: "s",
    RuntimeMetric.MISSIONS_ADVANCED: "{mission}",
    RuntimeMetric.MISSION_RESUMES: "{resume}",
    RuntimeMetric.MISSION_RESUME_DURATION: "s",
}
_DESCRIPTIONS: dict[str, str] = {
    RuntimeMetric.TICKS: "Ticks the runtime finished, by trigger and outcome.",
    RuntimeMetric.TICK_DURATION: "How long a tick took.",
    RuntimeMetric.MISSIONS_ADVANCED: "Missions a tick moved, by their status afterwards.",
    RuntimeMetric.MISSION_RESUMES: "Resumes of missions left mid-node, by outcome.",
    RuntimeMetric.MISSION_RESUME_DURATION: "How long a resume took.",
}


class OpenTelemetryRuntimeMetrics:
    """A ``RuntimeMetrics`` (``create_commander_runtime(commander, metrics=...)``) that records
    the runtime's measurements through the OpenTelemetry metrics API: counts on counters,
    durations (seconds) on histograms, each named as ``RuntimeMetric`` names it, with the
    runtime's attributes. ``meter_provider`` defaults to the global one."""

    def __init__(self, meter_provider: MeterProvider | None = None) -> None:
        self._meter: Meter = metrics.get_meter(
            INSTRUMENTATION_NAME, VERSION, meter_provider=meter_provider
        )
        self._counters: dict[str, Counter] = {}
        self._histograms: dict[str, Histogram] = {}

    def count(self, name: str, value: int, attributes: Mapping[str, str]) -> None:
        counter = self._counters.get(name)
        if counter is None:
            counter = self._counters[name] = self._meter.create_counter(
                name, unit=_UNITS.get(name, "1"), description=_DESCRIPTIONS.get(name, "")
            )
        counter.add(value, attributes)

    def observe(self, name: str, value: float, attributes: Mapping[str, str]) -> None:
        histogram = self._histograms.get(name)
        if histogram is None:
            histogram = self._histograms[name] = self._meter.create_histogram(
                name, unit=_UNITS.get(name, "s"), description=_DESCRIPTIONS.get(name, "")
            )
        histogram.record(value, attributes)
