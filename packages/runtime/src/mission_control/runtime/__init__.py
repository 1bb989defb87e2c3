"""Mission Control runtime: the single-instance tick runtime that drives a commander's missions
with explicit, single-flight ticks on trio."""

from ._errors import RuntimeStateError, TickFailedError
from ._hooks import (
    LOGGER_NAME,
    LoggingRuntimeLogger,
    NoMetrics,
    RuntimeEvent,
    RuntimeLogger,
    RuntimeMetric,
    RuntimeMetrics,
)
from ._report import TickReport, TickTrigger
from ._runtime import (
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_MAX_MISSIONS_PER_TICK,
    DEFAULT_STALLED_TICK_DELAY,
    CommanderRuntime,
    RuntimeState,
    create_commander_runtime,
)

__all__ = [
    "DEFAULT_MAX_CONCURRENCY",
    "DEFAULT_MAX_MISSIONS_PER_TICK",
    "DEFAULT_STALLED_TICK_DELAY",
    "LOGGER_NAME",
    "CommanderRuntime",
    "LoggingRuntimeLogger",
    "NoMetrics",
    "RuntimeEvent",
    "RuntimeLogger",
    "RuntimeMetric",
    "RuntimeMetrics",
    "RuntimeState",
    "RuntimeStateError",
    "TickFailedError",
    "TickReport",
    "TickTrigger",
    "create_commander_runtime",
]
