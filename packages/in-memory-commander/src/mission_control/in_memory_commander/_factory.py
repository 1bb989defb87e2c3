"""``create_in_memory_commander``: a commander wired to in-memory storage."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from mission_control.core import (
    DEFAULT_MAX_RECOVERY_ATTEMPTS,
    Clock,
    Commander,
    MissionDefinition,
    VersionCheck,
    create_commander,
)

from ._adapter import InMemoryPersistenceAdapter
from ._clock import ManualClock
from ._ids import SequentialIds

if TYPE_CHECKING:
    import cattrs

    from mission_control.core.lowlevel import MissionObserver


def create_in_memory_commander(
    definitions: Iterable[MissionDefinition[Any, Any, Any]],
    *,
    clock: Clock | None = None,
    ids: Callable[[], str] | None = None,
    persistence: InMemoryPersistenceAdapter | None = None,
    max_recovery_attempts: int = DEFAULT_MAX_RECOVERY_ATTEMPTS,
    converter: cattrs.Converter | None = None,
    version_check: VersionCheck = "raise",
    observer: MissionObserver | None = None,
) -> Commander:
    """A commander on in-memory storage with a :class:`ManualClock` and :class:`SequentialIds`
    unless others are given: fully deterministic, nothing touches the disk or the wall clock."""
    return create_commander(
        definitions,
        persistence=persistence if persistence is not None else InMemoryPersistenceAdapter(),
        clock=clock if clock is not None else ManualClock(),
        ids=ids if ids is not None else SequentialIds(),
        max_recovery_attempts=max_recovery_attempts,
        converter=converter,
        version_check=version_check,
        observer=observer,
    )
