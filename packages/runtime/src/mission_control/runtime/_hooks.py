"""The logger and metric hooks the runtime reports through, their stable names and defaults."""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping
from typing import Protocol, runtime_checkable

LOGGER_NAME = "mission_control.runtime"


class RuntimeEvent(enum.StrEnum):
    """The names of the events the runtime logs. They are part of the public contract: alerts and
    dashboards may match on them."""

    RUNTIME_STARTING = "runtime-starting"
    RUNTIME_STARTED = "runtime-started"
    RUNTIME_STOPPING = "runtime-stopping"
    RUNTIME_STOPPED = "runtime-stopped"
    TICK_STARTED = "tick-started"
    TICK_COMPLETED = "tick-completed"
    TICK_FAILED = "tick-failed"
    TICK_SCHEDULED = "tick-scheduled"
    MISSION_RESUME_STARTED = "mission-resume-started"
    MISSION_RESUME_COMPLETED = "mission-resume-completed"
    MISSION_RESUME_FAILED = "mission-resume-failed"
    MISSION_ADVANCE_FAILED = "mission-advance-failed"
    RUNTIME_STANDBY = "runtime-standby"
    """Another process owns the store: this runtime waits to take it over."""
    RUNTIME_TOOK_OWNERSHIP = "runtime-took-ownership"
    """The runtime's process now owns the store; its startup tick follows."""


class RuntimeMetric(enum.StrEnum):
    """The names of the measurements the runtime records (stable, like the event names).

    Counters go through :meth:`RuntimeMetrics.count`, durations (in seconds) through
    :meth:`RuntimeMetrics.observe`.
    """

    TICKS = "mission_control.runtime.ticks"
    """Counter, one per finished tick; attributes ``trigger`` and ``outcome``
    (``completed`` or ``failed``)."""
    TICK_DURATION = "mission_control.runtime.tick.duration"
    """Duration of a tick in seconds; attributes ``trigger`` and ``outcome``."""
    MISSIONS_ADVANCED = "mission_control.runtime.missions.advanced"
    """Counter, one per mission a tick moved; attribute ``status``: the mission's status
    afterwards (``waiting``, ``completed``, …), ``skipped`` when another task of this process held
    it, or ``error`` when advancing it raised."""
    MISSION_RESUMES = "mission_control.runtime.mission.resumes"
    """Counter of resumes of missions a crash left mid-node; attribute ``outcome``
    (``started``, ``completed``, ``failed``)."""
    MISSION_RESUME_DURATION = "mission_control.runtime.mission.resume.duration"
    """Duration of one resume in seconds; attribute ``outcome``."""


@runtime_checkable
class RuntimeLogger(Protocol):
    """Receives the runtime's lifecycle events.

    ``event`` is a :class:`RuntimeEvent` value, ``fields`` the event's details (mission id, counts,
    durations, due times as ISO strings). ``error`` is the exception behind a ``*-failed`` event.
    It is called inline from the runtime's tasks, so it must not block.
    """

    def log(
        self, event: str, fields: Mapping[str, object], *, error: BaseException | None = None
    ) -> None: ...


@runtime_checkable
class RuntimeMetrics(Protocol):
    """Receives the runtime's measurements (see :class:`RuntimeMetric` for the names).

    Called inline from the runtime's tasks, so it must not block: hand values to your metrics
    library (OpenTelemetry, Prometheus, statsd) and return.
    """

    def count(self, name: str, value: int, attributes: Mapping[str, str]) -> None: ...

    def observe(self, name: str, value: float, attributes: Mapping[str, str]) -> None: ...


_LEVELS: dict[str, int] = {
    RuntimeEvent.TICK_STARTED: logging.DEBUG,
    RuntimeEvent.TICK_COMPLETED: logging.DEBUG,
    RuntimeEvent.TICK_SCHEDULED: logging.DEBUG,
    RuntimeEvent.MISSION_RESUME_STARTED: logging.INFO,
    RuntimeEvent.MISSION_RESUME_COMPLETED: logging.INFO,
    RuntimeEvent.TICK_FAILED: logging.ERROR,
    RuntimeEvent.MISSION_RESUME_FAILED: logging.ERROR,
    RuntimeEvent.MISSION_ADVANCE_FAILED: logging.ERROR,
}


class LoggingRuntimeLogger:
    """Writes runtime events to a stdlib :class:`logging.Logger` (by default the one called
    ``mission_control.runtime``).

    Ticks and scheduling log at DEBUG, the runtime lifecycle and resumes at INFO, failures at ERROR
    with the exception attached. Each record carries the event name in ``record.event`` and its
    fields in ``record.fields`` for structured handlers.
    """

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger if logger is not None else logging.getLogger(LOGGER_NAME)

    def log(
        self, event: str, fields: Mapping[str, object], *, error: BaseException | None = None
    ) -> None:
        level = _LEVELS.get(event, logging.INFO)
        if not self.logger.isEnabledFor(level):
            return
        details = " ".join(f"{key}={value}" for key, value in fields.items())
        self.logger.log(
            level,
            "%s %s" if details else "%s%s",
            event,
            details,
            exc_info=error,
            extra={"event": event, "fields": dict(fields)},
        )


class NoMetrics:
    """The default metric hook: records nothing."""

    def count(self, name: str, value: int, attributes: Mapping[str, str]) -> None:
        pass

    def observe(self, name: str, value: float, attributes: Mapping[str, str]) -> None:
        pass
