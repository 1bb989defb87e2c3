"""Testing helpers for Mission Control: the adapter conformance suite, pytest fixtures, virtual
time on trio and asyncio that makes timer tests instant, and the crash sweep that checks a
mission ends the same whatever commit a crash interrupts."""

from ._child_scenarios import ChildConformance
from ._clocks import LoopClock, TrioClock
from ._concurrency_scenarios import ConcurrencyConformance
from ._conformance import AdapterConformance
from ._control_flow_scenarios import ControlFlowConformance
from ._engine_scenarios import EngineScenarioConformance, approval_definition, drain_due
from ._fixtures import (
    VIRTUAL_TIME_BACKENDS,
    CommanderFactory,
    CrashSweep,
    RuntimeFactory,
    RuntimeOptions,
    virtual_time_backend,
)
from ._loop_scenarios import LoopConformance
from ._ops_scenarios import OpsConformance
from ._pause_scenarios import PauseConformance
from ._protocol_battery import PersistenceProtocolConformance
from ._recorders import LoggedEvent, Measurement, RecordingLogger, RecordingMetrics
from ._saga_scenarios import SagaConformance
from ._schedule_scenarios import ScheduleConformance
from ._sweep import (
    SWEEP_START,
    SWEPT_ID,
    AdvanceClock,
    CancelMission,
    ChildProcesses,
    CommitPoint,
    CrashRun,
    FileSweepStore,
    InMemorySweepStore,
    ScriptAction,
    SendSignal,
    SimulatedCrash,
    SweepOptions,
    SweepReport,
    SweepStore,
    sweep_crashes,
)
from ._tasks import interrupt_when, wait_all_tasks_blocked
from ._tenant_scenarios import TenantConformance
from ._trigger_scenarios import TriggerConformance
from ._version_scenarios import VersionConformance
from ._virtual_loop import VirtualTimeEventLoop, virtual_time_loop

__all__ = [
    "SWEEP_START",
    "SWEPT_ID",
    "AdvanceClock",
    "CancelMission",
    "ChildProcesses",
    "CommitPoint",
    "CrashRun",
    "FileSweepStore",
    "InMemorySweepStore",
    "ScriptAction",
    "SendSignal",
    "SimulatedCrash",
    "SweepOptions",
    "SweepReport",
    "SweepStore",
    "sweep_crashes",
    "VIRTUAL_TIME_BACKENDS",
    "CommanderFactory",
    "CrashSweep",
    "LoggedEvent",
    "LoopClock",
    "Measurement",
    "RecordingLogger",
    "RecordingMetrics",
    "RuntimeFactory",
    "RuntimeOptions",
    "TrioClock",
    "VirtualTimeEventLoop",
    "AdapterConformance",
    "ChildConformance",
    "ConcurrencyConformance",
    "ControlFlowConformance",
    "EngineScenarioConformance",
    "LoopConformance",
    "OpsConformance",
    "PauseConformance",
    "ScheduleConformance",
    "TenantConformance",
    "TriggerConformance",
    "PersistenceProtocolConformance",
    "SagaConformance",
    "VersionConformance",
    "approval_definition",
    "drain_due",
    "interrupt_when",
    "virtual_time_backend",
    "virtual_time_loop",
    "wait_all_tasks_blocked",
]
