"""The errors the runtime raises."""

from __future__ import annotations

from mission_control.core import MissionControlError


class RuntimeStateError(MissionControlError, RuntimeError):
    """The runtime cannot do this in its current state: ``tick()`` before ``start()`` or after
    ``stop()``, a second ``start()``, or scheduling a tick on a stopped runtime."""


class TickFailedError(MissionControlError):
    """A tick could not finish: a query of the commander raised (the cause is chained), or the
    tick was cancelled. Errors of single missions never fail a tick; they are counted in the
    report and logged."""
