"""Mission Control client: the commander's API for application code running beside the tick
runtime, with ticks scheduled for the work each call leaves due."""

from ._client import MissionClient, create_mission_client

__all__ = ["MissionClient", "create_mission_client"]
