"""The adapter conformance suite: the persistence protocol battery and the engine scenarios
together, what every persistence adapter must pass.

An adapter's own tests run it by subclassing :class:`AdapterConformance` and providing the
``persistence`` fixture::

    class TestMyAdapter(AdapterConformance):
        @pytest.fixture
        async def persistence(self, tmp_path):
            adapter = open_my_adapter(tmp_path / "missions.db")
            yield adapter
            await adapter.aclose()
"""

from __future__ import annotations

from ._child_scenarios import ChildConformance
from ._concurrency_scenarios import ConcurrencyConformance
from ._control_flow_scenarios import ControlFlowConformance
from ._engine_scenarios import EngineScenarioConformance
from ._loop_scenarios import LoopConformance
from ._ops_scenarios import OpsConformance
from ._pause_scenarios import PauseConformance
from ._protocol_battery import PersistenceProtocolConformance
from ._saga_scenarios import SagaConformance
from ._schedule_scenarios import ScheduleConformance
from ._tenant_scenarios import TenantConformance
from ._trigger_scenarios import TriggerConformance
from ._version_scenarios import VersionConformance


class AdapterConformance(
    PersistenceProtocolConformance,
    EngineScenarioConformance,
    ControlFlowConformance,
    LoopConformance,
    SagaConformance,
    ChildConformance,
    VersionConformance,
    OpsConformance,
    PauseConformance,
    ConcurrencyConformance,
    ScheduleConformance,
    TriggerConformance,
    TenantConformance,
):
    """Every test of the conformance suite: the protocol battery
    (:class:`PersistenceProtocolConformance`), then the engine scenarios
    (:class:`EngineScenarioConformance`), the control-flow ones (:class:`ControlFlowConformance`),
    the loop ones (:class:`LoopConformance`), the compensation ones (:class:`SagaConformance`),
    the child mission ones (:class:`ChildConformance`), the definition version ones
    (:class:`VersionConformance`), the retry, fork and purge ones (:class:`OpsConformance`), the
    pause and resume ones (:class:`PauseConformance`), the concurrency key ones
    (:class:`ConcurrencyConformance`), the schedule and trigger ones
    (:class:`ScheduleConformance`, :class:`TriggerConformance`) and the tenant ones
    (:class:`TenantConformance`). Subclass it and provide ``persistence``."""
