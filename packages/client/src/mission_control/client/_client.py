"""The mission client: the commander's API for application code beside a runtime.

Design: a :class:`MissionClient` *is* a :class:`~mission_control.core.Commander` — another face
of the commander its runtime drives, built by sharing that commander's state (store, engine,
definitions, clock, notices) rather than by wrapping it. So the application API is written once,
in ``Commander``, and the client inherits every method of it, present and future, with its
signature and docstring: there is no list of forwarding methods to keep in step with
``CommanderProtocol``. What the client changes is only what makes it a client: it belongs to its
runtime (:attr:`MissionClient.runtime`), it does not own the store (:meth:`MissionClient.aclose`
leaves it open), and the handles it returns are bound to it (``Commander.start`` binds handles to
the object it is called on).

A wrapper forwarding through ``__getattr__`` was the alternative; it would hide the API from type
checkers (pyright strict sees no methods on it) and from ``help()``, and still need the handles
rebound by hand.
"""

from __future__ import annotations

from mission_control.core import Commander
from mission_control.runtime import CommanderRuntime


class MissionClient(Commander):
    """Start, signal, cancel, inspect and wait for missions from application code (a web handler,
    a CLI, a queue consumer) in the process that runs the :class:`CommanderRuntime`.

    The client is the runtime's commander under another name: the same missions, the same API
    (``start``, ``get``, ``inspect``, ``list``, ``iter_missions``, ``signal``, ``cancel``,
    ``wait_for_completion``, ``result``, ``timeline``; see ``Commander``), and it satisfies
    :class:`~mission_control.core.CommanderProtocol`. The handles it returns are bound to it.

    The client schedules nothing itself: a due time a call leaves behind (a delayed start, a timer,
    a retry) reaches the runtime through the commander's notices, as it does for calls made on the
    commander directly. Closing it (``aclose()``, ``async with``) leaves the store open: the
    commander and the runtime belong to the code that made them.
    """

    def __init__(self, runtime: CommanderRuntime) -> None:
        if not isinstance(runtime, CommanderRuntime):
            raise TypeError(f"MissionClient needs a CommanderRuntime, got {runtime!r}")
        commander = runtime.commander
        if not isinstance(commander, Commander):
            raise TypeError(
                "MissionClient needs a runtime driving a commander made by "
                f"mission_control.core.create_commander, got {commander!r}"
            )
        self._share_state_of(commander)
        self._runtime = runtime
        self._commander = commander

    @property
    def runtime(self) -> CommanderRuntime:
        return self._runtime

    @property
    def commander(self) -> Commander:
        """The commander the runtime drives, whose missions this client shares."""
        return self._commander

    async def aclose(self) -> None:
        """Does nothing: the commander and the runtime belong to the code that made them."""

    def __repr__(self) -> str:
        return f"MissionClient({self._runtime!r})"


def create_mission_client(runtime: CommanderRuntime) -> MissionClient:
    """Make a :class:`MissionClient` for ``runtime``."""
    return MissionClient(runtime)
