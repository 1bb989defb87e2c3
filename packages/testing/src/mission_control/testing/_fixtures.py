"""pytest fixtures: a trio-linked clock, in-memory commanders and started runtimes.

Ask for pytest-trio's ``autojump_clock`` fixture in the test as well, and timers and retries
under the runtime fire in virtual time: no test waits for real.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any, Protocol, TypedDict, Unpack

import pytest
import trio

from mission_control.core import Clock, Commander, MissionDefinition
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

from ._clocks import TrioClock


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
    ) -> Commander: ...


class RuntimeFactory(Protocol):
    """What the ``make_runtime`` fixture returns."""

    async def __call__(
        self, commander: MissionDriver | None = None, **options: Unpack[RuntimeOptions]
    ) -> CommanderRuntime: ...


@pytest.fixture
def mission_clock() -> TrioClock:
    """A commander clock driven by trio's clock (pair it with ``autojump_clock``)."""
    return TrioClock()


@pytest.fixture
def mission_definitions() -> list[MissionDefinition[Any, Any, Any]]:
    """The definitions ``commander`` is made with; override it in a test module or conftest."""
    return []


@pytest.fixture
def make_commander(
    mission_clock: TrioClock, mission_definitions: list[MissionDefinition[Any, Any, Any]]
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
    ) -> Commander:
        return create_in_memory_commander(
            mission_definitions if definitions is None else definitions,
            clock=mission_clock if clock is None else clock,
            ids=SequentialIds() if ids is None else ids,
            persistence=persistence,
        )

    return make


@pytest.fixture
def commander(make_commander: CommanderFactory) -> Commander:
    """An in-memory commander for ``mission_definitions`` on ``mission_clock``."""
    return make_commander()


@pytest.fixture
async def make_runtime(commander: Commander) -> AsyncIterator[RuntimeFactory]:
    """Start runtimes (for ``commander`` unless told otherwise) in a nursery the fixture owns;
    every one is stopped when the test ends."""
    default = commander
    started: list[CommanderRuntime] = []
    async with trio.open_nursery() as nursery:

        async def make(
            commander: MissionDriver | None = None, **options: Unpack[RuntimeOptions]
        ) -> CommanderRuntime:
            runtime = create_commander_runtime(
                default if commander is None else commander, **options
            )
            started.append(runtime)
            await runtime.start(nursery=nursery)
            return runtime

        yield make
        for runtime in started:
            await runtime.stop()


@pytest.fixture
async def runtime(make_runtime: RuntimeFactory) -> CommanderRuntime:
    """A started runtime over ``commander`` with default options, stopped when the test ends."""
    return await make_runtime()
