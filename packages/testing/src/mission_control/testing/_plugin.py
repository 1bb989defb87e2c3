"""The pytest plugin that ``mission-control-testing`` registers through ``pytest11``."""

from ._fixtures import (
    commander,
    crash_sweep,
    make_commander,
    make_runtime,
    mission_clock,
    mission_definitions,
    runtime,
    sweep_store,
)

__all__ = [
    "commander",
    "crash_sweep",
    "make_commander",
    "make_runtime",
    "mission_clock",
    "mission_definitions",
    "runtime",
    "sweep_store",
]
