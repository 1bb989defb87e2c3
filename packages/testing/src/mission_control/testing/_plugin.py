"""The pytest plugin that ``mission-control-testing`` registers through ``pytest11``."""

from ._fixtures import (
    commander,
    make_commander,
    make_runtime,
    mission_clock,
    mission_definitions,
    runtime,
)

__all__ = [
    "commander",
    "make_commander",
    "make_runtime",
    "mission_clock",
    "mission_definitions",
    "runtime",
]
