"""The mission client: the commander's API for application code beside a runtime."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any, TypeVar, Unpack

from mission_control.core import (
    LIST_LIMIT,
    Clock,
    CommanderProtocol,
    ListFilters,
    MissionDefinition,
    MissionHandle,
    MissionSnapshot,
    MissionStatus,
    Notices,
    TimelineEntry,
)
from mission_control.runtime import CommanderRuntime

RawT = TypeVar("RawT")


class MissionClient:
    """Start, signal, cancel, inspect and wait for missions from application code (a web handler,
    a CLI, a queue consumer) in the process that runs the :class:`CommanderRuntime`.

    Every call goes to the runtime's commander. The client schedules nothing itself: a due time
    a call leaves behind (a delayed start, a timer, a retry) reaches the runtime through the
    commander's notices, as it does for calls made on the commander directly.

    The client satisfies :class:`~mission_control.core.CommanderProtocol`, so code written for a
    commander accepts it, and the handles it returns send their signals and cancellations through
    it.
    """

    __slots__ = ("_commander", "_runtime")

    def __init__(self, runtime: CommanderRuntime) -> None:
        if not isinstance(runtime, CommanderRuntime):
            raise TypeError(f"MissionClient needs a CommanderRuntime, got {runtime!r}")
        self._runtime = runtime
        self._commander = runtime.commander

    @property
    def runtime(self) -> CommanderRuntime:
        return self._runtime

    @property
    def commander(self) -> CommanderProtocol:
        return self._commander

    @property
    def clock(self) -> Clock:
        return self._commander.clock

    @property
    def definitions(self) -> dict[str, MissionDefinition[Any, Any, Any]]:
        return self._commander.definitions

    @property
    def notices(self) -> Notices:
        return self._commander.notices

    # -- application API -----------------------------------------------------------------------

    async def start(
        self,
        definition: MissionDefinition[RawT, Any, Any],
        input: RawT,
        *,
        id: str | None = None,
        start_at: datetime | None = None,
    ) -> MissionHandle:
        """Start a mission (see ``Commander.start``); the handle is bound to this client."""
        handle = await self._commander.start(definition, input, id=id, start_at=start_at)
        return MissionHandle(self, handle.id)

    async def get(self, mission_id: str) -> MissionHandle:
        """A handle to an existing mission, bound to this client."""
        await self._commander.get(mission_id)
        return MissionHandle(self, mission_id)

    async def inspect(self, mission_id: str) -> MissionSnapshot:
        return await self._commander.inspect(mission_id)

    async def list(
        self,
        *,
        status: MissionStatus | None = None,
        definition: str | MissionDefinition[Any, Any, Any] | None = None,
        limit: int = LIST_LIMIT,
        after: str | None = None,
    ) -> list[MissionSnapshot]:
        return await self._commander.list(
            status=status, definition=definition, limit=limit, after=after
        )

    def iter_missions(
        self, *, page_size: int = LIST_LIMIT, **filters: Unpack[ListFilters]
    ) -> AsyncIterator[MissionSnapshot]:
        return self._commander.iter_missions(page_size=page_size, **filters)

    async def signal(self, mission_id: str, name: str, payload: Any = None) -> MissionSnapshot:
        """Send a signal (see ``Commander.signal``)."""
        return await self._commander.signal(mission_id, name, payload)

    async def cancel(self, mission_id: str, reason: str | None = None) -> MissionSnapshot:
        """Request cancellation (see ``Commander.cancel``)."""
        return await self._commander.cancel(mission_id, reason)

    async def wait_for_completion(self, mission_id: str) -> MissionSnapshot:
        """Wait until the mission ends; raise ``MissionFailedError`` or
        ``MissionCancelledError`` unless it completed. The runtime's ticks move it meanwhile."""
        return await self._commander.wait_for_completion(mission_id)

    async def result(self, mission_id: str) -> MissionSnapshot:
        """Wait until the mission ends and return its final snapshot, however it ended."""
        return await self._commander.result(mission_id)

    async def timeline(self, mission_id: str) -> list[TimelineEntry]:
        return await self._commander.timeline(mission_id)

    # -- the rest of CommanderProtocol, for code written against a commander -------------------

    async def advance(self, mission_id: str) -> MissionSnapshot | None:
        return await self._commander.advance(mission_id)

    async def due_missions(self, limit: int, now: datetime | None = None) -> list[str]:
        return await self._commander.due_missions(limit, now)

    async def running_missions(self, limit: int, after: str | None = None) -> list[str]:
        return await self._commander.running_missions(limit, after)

    async def next_due_at(self, after: datetime | None = None) -> datetime | None:
        return await self._commander.next_due_at(after)

    def is_held(self, mission_id: str) -> bool:
        return self._commander.is_held(mission_id)

    async def aclose(self) -> None:
        """Does nothing: the commander and the runtime belong to the code that made them."""

    def __repr__(self) -> str:
        return f"MissionClient({self._runtime!r})"


def create_mission_client(runtime: CommanderRuntime) -> MissionClient:
    """Make a :class:`MissionClient` for ``runtime``."""
    return MissionClient(runtime)
