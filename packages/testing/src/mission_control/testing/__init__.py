"""Testing helpers for Mission Control: the adapter conformance suite, pytest fixtures and
clocks that make timer tests instant."""

from ._clocks import TrioClock
from ._conformance import AdapterConformance
from ._control_flow_scenarios import ControlFlowConformance
from ._engine_scenarios import EngineScenarioConformance, approval_definition, drain_due
from ._fixtures import CommanderFactory, RuntimeFactory, RuntimeOptions
from ._protocol_battery import PersistenceProtocolConformance
from ._recorders import LoggedEvent, Measurement, RecordingLogger, RecordingMetrics

__all__ = [
    "CommanderFactory",
    "LoggedEvent",
    "Measurement",
    "RecordingLogger",
    "RecordingMetrics",
    "RuntimeFactory",
    "RuntimeOptions",
    "TrioClock",
    "AdapterConformance",
    "ControlFlowConformance",
    "EngineScenarioConformance",
    "PersistenceProtocolConformance",
    "approval_definition",
    "drain_due",
]
