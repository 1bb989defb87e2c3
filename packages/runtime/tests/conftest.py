"""Missions and hooks the runtime tests share."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import anyio
import pytest

from mission_control.core import Context, m
from mission_control.testing import RecordingLogger, RecordingMetrics


def parse_any(raw: Any) -> Any:
    return raw


async def pause_five_seconds(ctx: Context[Any, Any]) -> str:
    await anyio.sleep(5)
    return "done"


TIMER = m.define("timer").start(parse=parse_any).sleep("wait", timedelta(seconds=60)).end()
"""Waits 60 seconds, then completes."""

SLOW_AFTER_TIMER = (
    m.define("slow-after-timer")
    .start(parse=parse_any)
    .sleep("wait", 10)
    .step("work", pause_five_seconds)
    .end()
)
"""Waits 10 seconds, then runs a step that takes 5 seconds."""


@pytest.fixture
def mission_definitions() -> list[Any]:
    return [TIMER, SLOW_AFTER_TIMER]


@pytest.fixture
def timer() -> Any:
    return TIMER


@pytest.fixture
def slow_after_timer() -> Any:
    return SLOW_AFTER_TIMER


@pytest.fixture
def log() -> RecordingLogger:
    return RecordingLogger()


@pytest.fixture
def metrics() -> RecordingMetrics:
    return RecordingMetrics()
