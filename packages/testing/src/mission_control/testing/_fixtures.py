"""pytest fixtures: a loop-linked clock, in-memory commanders and started runtimes, and the
``anyio_backend`` values that run a test on trio and asyncio in virtual time.

The async fixtures run under pytest-trio (trio-marked tests, or ``trio_mode``) and under AnyIO's
pytest plugin (anyio-marked tests). On a virtual-time loop (pytest-trio's ``autojump_clock``, or
an ``anyio_backend`` made by :func:`virtual_time_backend`) timers and retries under the runtime
fire at once: no test waits for real.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any, Protocol, TypedDict, Unpack

import anyio
import pytest
from trio.testing import MockClock

from mission_control.core import Clock, Commander, MissionDefinition, VersionCheck
from mission_control.core.lowlevel import MissionDriver
from mission_control.in_memory_commander import (
    InMemoryPersistenceAdapter,
    SequentialIds,
    create_in_memory_commander,
)
from mission_control.runtime import (
    CommanderRuntime,
    RuntimeLogger,
    RuntimeMetrics,
    create_commander_runtime,
)

from ._clocks import LoopClock
from ._sweep import InMemorySweepStore, SweepOptions, SweepReport, SweepStore, sweep_crashes
from ._virtual_loop import threshold_loop_factory, virtual_time_loop

VIRTUAL_TIME_BACKENDS = ("trio", "asyncio")
"""The backends :func:`virtual_time_backend` knows, to parametrize ``anyio_backend`` over."""


def virtual_time_backend(
    name: str, *, autojump_threshold: float = 0.0
) -> tuple[str, dict[str, Any]]:
    """The ``anyio_backend`` value that runs a test on ``name`` (``"trio"`` or ``"asyncio"``)
    in virtual time, with a new clock each call: trio with
    ``MockClock(autojump_threshold=0)``, asyncio on :func:`virtual_time_loop`.

    ``autojump_threshold`` (real seconds, 0 by default) makes the clock jump only after that long
    without anything to run: for tests whose calls wait on real work in the meantime, such as an
    adapter's queries to a database server in a worker thread, so that a watchdog deadline does
    not fire while a query runs (``docs/testing.md``, adapters that wait on a server).

    Define the fixture in your ``conftest.py`` (so it replaces AnyIO's own)::

        @pytest.fixture(params=VIRTUAL_TIME_BACKENDS)
        def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
            return virtual_time_backend(request.param)
    """
    if name == "trio":
        return "trio", {"clock": MockClock(autojump_threshold=autojump_threshold)}
    if name == "asyncio":
        if autojump_threshold == 0:
            return "asyncio", {"loop_factory": virtual_time_loop}
        return "asyncio", {"loop_factory": threshold_loop_factory(autojump_threshold)}
    raise ValueError(f"virtual time runs on {' or '.join(VIRTUAL_TIME_BACKENDS)}, not {name!r}")


class RuntimeOptions(TypedDict, total=False):
    """The options of ``create_commander_runtime``, for :class:`RuntimeFactory`."""

    logger: RuntimeLogger | logging.Logger | None
    metrics: RuntimeMetrics | None
    max_missions_per_tick: int
    max_concurrency: int
    auto_schedule: bool
    stalled_tick_delay: float


class CommanderFactory(Protocol):
    """What the ``make_commander`` fixture returns."""

    def __call__(
        self,
        definitions: Iterable[MissionDefinition[Any, Any, Any]] | None = None,
        *,
        persistence: InMemoryPersistenceAdapter | None = None,
        clock: Clock | None = None,
        ids: Callable[[], str] | None = None,
        version_check: VersionCheck = "raise",
    ) -> Commander: ...


class RuntimeFactory(Protocol):
    """What the ``make_runtime`` fixture returns."""

    async def __call__(
        self, commander: MissionDriver | None = None, **options: Unpack[RuntimeOptions]
    ) -> CommanderRuntime: ...


class CrashSweep(Protocol):
    """What the ``crash_sweep`` fixture returns: :func:`sweep_crashes` on ``sweep_store``."""

    async def __call__(
        self,
        definition: MissionDefinition[Any, Any, Any],
        input: Any,
        **options: Unpack[SweepOptions],
    ) -> SweepReport: ...


@pytest.fixture
def mission_clock() -> LoopClock:
    """A commander clock driven by the event loop's clock (virtual time on a virtual-time
    loop)."""
    return LoopClock()


@pytest.fixture
def mission_definitions() -> list[MissionDefinition[Any, Any, Any]]:
    """The definitions ``commander`` is made with; override it in a test module or conftest."""
    return []


@pytest.fixture
def make_commander(
    mission_clock: LoopClock, mission_definitions: list[MissionDefinition[Any, Any, Any]]
) -> CommanderFactory:
    """Make in-memory commanders on ``mission_clock`` with sequential ids.

    Pass the same ``persistence`` to two commanders to model a restart over one store.
    """

    def make(
        definitions: Iterable[MissionDefinition[Any, Any, Any]] | None = None,
        *,
        persistence: InMemoryPersistenceAdapter | None = None,
        clock: Clock | None = None,
        ids: Callable[[], str] | None = None,
        version_check: VersionCheck = "raise",
    ) -> Commander:
        return create_in_memory_commander(
            mission_definitions if definitions is None else definitions,
            clock=mission_clock if clock is None else clock,
            ids=SequentialIds() if ids is None else ids,
            persistence=persistence,
            version_check=version_check,
        )

    return make


@pytest.fixture
def commander(make_commander: CommanderFactory) -> Commander:
    """An in-memory commander for ``mission_definitions`` on ``mission_clock``."""
    return make_commander()


@pytest.fixture
async def make_runtime(commander: Commander) -> AsyncIterator[RuntimeFactory]:
    """Start runtimes (for ``commander`` unless told otherwise) in a task group the fixture
    owns; every one is stopped when the test ends."""
    default = commander
    started: list[CommanderRuntime] = []
    async with anyio.create_task_group() as task_group:

        async def make(
            commander: MissionDriver | None = None, **options: Unpack[RuntimeOptions]
        ) -> CommanderRuntime:
            runtime = create_commander_runtime(
                default if commander is None else commander, **options
            )
            started.append(runtime)
            await runtime.start(nursery=task_group)
            return runtime

        yield make
        for runtime in started:
            await runtime.stop()


@pytest.fixture
async def runtime(make_runtime: RuntimeFactory) -> CommanderRuntime:
    """A started runtime over ``commander`` with default options, stopped when the test ends."""
    return await make_runtime()


@pytest.fixture
def sweep_store() -> SweepStore:
    """Where ``crash_sweep`` keeps each run's missions: in memory. Override it to sweep on a
    file (a ``FileSweepStore`` in ``tmp_path``)."""
    return InMemorySweepStore()


@pytest.fixture
def crash_sweep(sweep_store: SweepStore) -> CrashSweep:
    """:func:`sweep_crashes` on ``sweep_store`` (unless a call names its own ``store``)."""

    async def sweep(
        definition: MissionDefinition[Any, Any, Any],
        input: Any,
        **options: Unpack[SweepOptions],
    ) -> SweepReport:
        options.setdefault("store", sweep_store)
        return await sweep_crashes(definition, input, **options)

    return sweep
