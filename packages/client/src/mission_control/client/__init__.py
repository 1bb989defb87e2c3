"""Mission Control client: the commander's API for application code running beside the tick
runtime (``MissionClient``), and for synchronous code through a commander and runtime on an event
loop of their own (``start_blocking_client``)."""

from ._blocking import (
    BlockingMissionClient,
    BlockingMissionHandle,
    ClientClosedError,
    CommanderFactory,
    start_blocking_client,
)
from ._client import MissionClient, create_mission_client

__all__ = [
    "BlockingMissionClient",
    "BlockingMissionHandle",
    "ClientClosedError",
    "CommanderFactory",
    "MissionClient",
    "create_mission_client",
    "start_blocking_client",
]
