"""Hooks: stdlib logging by default, stable event and metric names, broken hooks are contained."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import anyio
import pytest

from mission_control.core import Commander, ConfigurationError
from mission_control.runtime import (
    LOGGER_NAME,
    RuntimeEvent,
    RuntimeLogger,
    RuntimeMetric,
    RuntimeMetrics,
    create_commander_runtime,
)
from mission_control.testing import RecordingLogger, RecordingMetrics, RuntimeFactory

pytestmark = pytest.mark.anyio


def test_event_names_are_stable() -> None:
    """The logged event names are exactly the documented ones."""
    assert [event.value for event in RuntimeEvent] == [
        "runtime-starting",
        "runtime-started",
        "runtime-stopping",
        "runtime-stopped",
        "tick-started",
        "tick-completed",
        "tick-failed",
        "tick-scheduled",
        "mission-resume-started",
        "mission-resume-completed",
        "mission-resume-failed",
        "mission-advance-failed",
        "runtime-standby",
        "runtime-took-ownership",
    ]


def test_recorders_satisfy_the_hook_protocols() -> None:
    """The testing recorders are valid logger and metrics hooks."""
    assert isinstance(RecordingLogger(), RuntimeLogger)
    assert isinstance(RecordingMetrics(), RuntimeMetrics)


async def test_the_default_logger_is_the_stdlib_mission_control_runtime_logger(
    commander: Commander,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Without a logger hook, events go to the stdlib logger 'mission_control.runtime'."""
    caplog.set_level(logging.DEBUG, logger=LOGGER_NAME)
    async with create_commander_runtime(commander) as runtime:
        await runtime.tick()

    records = [r for r in caplog.records if r.name == LOGGER_NAME]
    assert [getattr(r, "event", None) for r in records] == [
        "runtime-starting",
        "tick-started",
        "tick-completed",
        "runtime-started",
        "tick-started",
        "tick-completed",
        "runtime-stopping",
        "runtime-stopped",
    ]
    completed = records[2]
    assert completed.levelno == logging.DEBUG
    assert completed.getMessage().startswith("tick-completed trigger=startup ")
    assert getattr(completed, "fields")["more_due"] is False  # noqa: B009


async def test_a_stdlib_logger_can_be_passed_as_the_logger(
    commander: Commander, caplog: pytest.LogCaptureFixture
) -> None:
    """A logging.Logger given as logger receives the events."""
    caplog.set_level(logging.INFO, logger="my.app")
    async with create_commander_runtime(commander, logger=logging.getLogger("my.app")):
        pass
    messages = [r.getMessage() for r in caplog.records if r.name == "my.app"]
    assert messages[0].startswith("runtime-starting")


async def test_ticks_are_measured(
    commander: Commander,
    make_runtime: RuntimeFactory,
    timer: Any,
    metrics: RecordingMetrics,
) -> None:
    """Every tick is counted and timed, and every mission it moves is counted by its status."""
    runtime = await make_runtime(metrics=metrics, auto_schedule=False)
    await commander.start(timer, {})
    await anyio.sleep(60)
    await runtime.tick()

    assert metrics.total(RuntimeMetric.TICKS, outcome="completed") == 2
    assert metrics.total(RuntimeMetric.TICKS, trigger="direct") == 1
    assert len(metrics.observations(RuntimeMetric.TICK_DURATION)) == 2
    assert metrics.total(RuntimeMetric.MISSIONS_ADVANCED, status="completed") == 1


class Exploding:
    def log(
        self, event: str, fields: Mapping[str, object], *, error: BaseException | None = None
    ) -> None:
        raise RuntimeError("log sink down")

    def count(self, name: str, value: int, attributes: Mapping[str, str]) -> None:
        raise RuntimeError("metrics sink down")

    def observe(self, name: str, value: float, attributes: Mapping[str, str]) -> None:
        raise RuntimeError("metrics sink down")


async def test_hooks_that_raise_do_not_break_ticks(
    commander: Commander,
    make_runtime: RuntimeFactory,
    timer: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A logger or metrics hook that raises is reported on stdlib logging; ticks go on."""
    broken = Exploding()
    runtime = await make_runtime(logger=broken, metrics=broken, auto_schedule=False)
    handle = await commander.start(timer, {})
    await anyio.sleep(60)

    report = await runtime.tick()

    assert report.completed == 1
    assert (await handle.inspect()).status == "completed"
    assert any("hook raised" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    "options",
    [
        {"max_missions_per_tick": 0},
        {"max_concurrency": -1},
        {"max_concurrency": True},
        {"stalled_tick_delay": float("inf")},
    ],
)
def test_bad_options_are_refused(commander: Commander, options: dict[str, Any]) -> None:
    """Out-of-range runtime options fail with ConfigurationError naming the option."""
    with pytest.raises(ConfigurationError, match=next(iter(options))):
        create_commander_runtime(commander, **options)


def test_a_commander_is_required() -> None:
    """Something that is not a commander is refused with ConfigurationError."""
    with pytest.raises(ConfigurationError, match="needs a commander"):
        create_commander_runtime(object())  # type: ignore[arg-type]
