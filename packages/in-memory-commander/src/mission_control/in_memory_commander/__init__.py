"""In-memory storage for Mission Control: the persistence adapter, a controllable clock and
deterministic ids, for tests and local runs."""

from ._adapter import InMemoryPersistenceAdapter
from ._clock import ManualClock
from ._factory import create_in_memory_commander
from ._ids import SequentialIds

__all__ = [
    "InMemoryPersistenceAdapter",
    "ManualClock",
    "SequentialIds",
    "create_in_memory_commander",
]
