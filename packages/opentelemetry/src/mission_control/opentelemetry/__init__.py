"""Mission Control on OpenTelemetry: traces of missions, their runs, nodes and the runtime's
ticks (one trace per mission, across its waits and restarts), and the runtime's metrics.

- :class:`MissionTracer`: the commander's observer
  (``SQLiteCommander(path, definitions, observer=MissionTracer())``);
- :class:`TracingRuntimeLogger`: the runtime's logger hook, tracing each tick;
- :class:`OpenTelemetryRuntimeMetrics`: the runtime's metric hook, on the OpenTelemetry
  metrics API.

Only the OpenTelemetry API is needed; without an SDK configured every span is a no-op and the
missions store no context.
"""

from ._names import INSTRUMENTATION_NAME, TICK_COUNTS, Attribute
from ._runtime import OpenTelemetryRuntimeMetrics, TracingRuntimeLogger
from ._tracer import MissionTracer

__all__ = [
    "INSTRUMENTATION_NAME",
    "TICK_COUNTS",
    "Attribute",
    "MissionTracer",
    "OpenTelemetryRuntimeMetrics",
    "TracingRuntimeLogger",
]
