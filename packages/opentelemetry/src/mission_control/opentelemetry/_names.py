"""The span names and attribute keys this package writes (stable: dashboards match on them)."""

from __future__ import annotations

import enum
from importlib.metadata import PackageNotFoundError, version


def _own_version() -> str:
    try:
        return version("mission-control-opentelemetry")
    except PackageNotFoundError:  # pragma: no cover - a source tree without metadata
        return ""


VERSION = _own_version()
"""This distribution's version: the instrumentation scope's."""

INSTRUMENTATION_NAME = "mission_control.opentelemetry"
"""The name of the tracer and the meter this package gets from the providers."""


class Attribute(enum.StrEnum):
    """The attribute keys of the spans (see docs/tracing.md for which span has which)."""

    MISSION_ID = "mission_control.mission.id"
    MISSION_DEFINITION = "mission_control.mission.definition"
    MISSION_VERSION = "mission_control.mission.version"
    MISSION_PARENT_ID = "mission_control.mission.parent_id"
    """A child mission's parent mission."""
    MISSION_FORKED_FROM = "mission_control.mission.forked_from"
    """A fork's source mission (on its ``mission.create`` span)."""
    MISSION_STATUS = "mission_control.mission.status"
    """The mission's status when a run let go of it."""
    RUN_TRIGGER = "mission_control.run.trigger"
    """Why the run happened: ``start``, ``signal``, ``cancel``, ``retry``, ``advance`` or
    ``resume``."""
    NODE_PATH = "mission_control.node.path"
    NODE_NAME = "mission_control.node.name"
    NODE_KIND = "mission_control.node.kind"
    NODE_ATTEMPT = "mission_control.node.attempt"
    NODE_OUTCOME = "mission_control.node.outcome"
    """``completed``, ``failed``, ``timed_out`` or ``interrupted`` (the function was cancelled,
    or the process is stopping)."""
    ERROR_TYPE = "error.type"
    """The type of the exception that failed a node or a run (OpenTelemetry's own key)."""
    TICK_TRIGGER = "mission_control.tick.trigger"
    """``startup``, ``scheduled`` or ``direct``."""


TICK_COUNTS = (
    "resumed",
    "advanced",
    "completed",
    "failed",
    "cancelled",
    "compensated",
    "errored",
    "skipped",
    "submissions",
)
"""The counts of a tick's report each tick span carries, as ``mission_control.tick.<count>``."""
