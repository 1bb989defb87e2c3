"""Notices: what the code that writes missions tells the code that waits for them.

Three things are noticed: a mission became due at some time (a delayed start, a timer, a retry,
or work to do now); a mission was left stored ``running`` with nobody moving it (its caller was
cancelled mid-step, or its move raised); and a mission ended. The engine raises them after the
write that made them true; the runtime listens for the first two and arms a tick, and
``result()`` waits for the third.

One hub serves every commander of the process that uses the same persistence adapter object:
see :func:`notices_for`. It also keeps the holds: which missions a task of this process is moving
now. Every commander on the adapter sees them, so one never moves (or resumes as interrupted) a
mission another is moving, and a signal or cancellation for it pokes its holder whichever
commander took it. Notices are in-process: a mission changed by another process is not
noticed here unless the adapter raises it into the hub (an adapter that hears other writers,
PostgreSQL's LISTEN for instance, calls the same methods the engine does), or unless the adapter
sets :attr:`Notices.reread_interval` so that waiters re-read the store (a read-only view of a
database another process writes).
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Generator
from datetime import UTC, datetime
from typing import Any, Protocol

import anyio

from ._loop import LoopBinding

# Below every due time: the threshold when nobody listens, so that a notice costs one
# comparison.
_NOBODY = datetime.min.replace(tzinfo=UTC)


class NoticeListener(Protocol):
    """What a scheduler (the runtime) implements to hear about work."""

    def due(self, when: datetime) -> None:
        """A mission is due at ``when`` (a past time: now). Raised only when ``when`` is
        earlier than what this listener armed (:meth:`Notices.arm`)."""
        ...

    def left_running(self, mission_id: str, *, failed: bool) -> None:
        """A task let go of the mission without settling it, so it may be stored ``running``
        with nobody moving it: its caller was cancelled (``failed=False``), or its move raised
        an error (``failed=True``: moving it again at once would likely fail the same way)."""
        ...


class _Waiters:
    """The tasks waiting for one mission to end: their event, and how many of them wait."""

    __slots__ = ("count", "event")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.count = 0


class Notices:
    """The notice hub of one store in this process."""

    __slots__ = (
        "_armed",
        "_listeners",
        "_threshold",
        "_waiters",
        "applying",
        "holds",
        "loop",
        "reread_interval",
    )

    def __init__(self) -> None:
        self._listeners: list[NoticeListener] = []
        self._armed: dict[int, datetime | None] = {}
        # A due notice earlier than this reaches the listeners; ``None``: every one does.
        self._threshold: datetime | None = _NOBODY
        self._waiters: dict[str, _Waiters] = {}
        # Typed by the engine, which alone puts claims here: the hub only keeps them where
        # every commander on the adapter finds them.
        self.loop = LoopBinding("commander")
        """The event loop the commanders on this adapter serve: their held missions and the
        tasks waiting here belong to it."""
        self.holds: dict[str, Any] = {}
        """The missions a task of this process is moving now, by id, each with the engine's
        claim on it (internal: read by every commander on this adapter)."""
        self.applying: set[int] = set()
        """The submissions a task of this process is applying now, by number (internal: read
        by every commander on this adapter, so that none applies one twice)."""
        self.reread_interval: float | None = None
        """Seconds between re-reads of a mission ``result()`` waits for, when missions of this
        store may end where no notice reaches this process (set by the adapter); ``None``:
        every end is noticed, nothing is re-read."""

    # -- listening -----------------------------------------------------------------------------

    def listen(self, listener: NoticeListener) -> None:
        """Start telling ``listener``; it has nothing armed until it calls :meth:`arm`."""
        self._listeners.append(listener)
        self._armed[id(listener)] = None
        self._rethreshold()

    def unlisten(self, listener: NoticeListener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)
            del self._armed[id(listener)]
            self._rethreshold()

    def arm(self, listener: NoticeListener, when: datetime | None) -> None:
        """Record that ``listener`` will look at the store at ``when`` (``None``: at no set
        time) and, after that look, arm again at the store's next due time: due notices not
        earlier than ``when`` then need not reach it."""
        if id(listener) in self._armed:
            self._armed[id(listener)] = when
            self._rethreshold()

    def _rethreshold(self) -> None:
        armed = [when for when in self._armed.values() if when is not None]
        if not self._armed:
            self._threshold = _NOBODY
        elif len(armed) < len(self._armed):
            self._threshold = None
        else:
            self._threshold = max(armed)

    # -- raising -------------------------------------------------------------------------------

    def due(self, when: datetime) -> None:
        """A mission is due at ``when``: raised after the write that stored the due time."""
        threshold = self._threshold
        if threshold is not None and when >= threshold:
            return
        for listener in tuple(self._listeners):
            armed = self._armed.get(id(listener))
            if armed is None or when < armed:
                listener.due(when)

    def left_running(self, mission_id: str, *, failed: bool) -> None:
        """A task let go of a mission it did not settle (see :class:`NoticeListener`)."""
        for listener in tuple(self._listeners):
            listener.left_running(mission_id, failed=failed)

    def ended(self, mission_id: str) -> None:
        """The mission ended: wake whoever waits for it."""
        waiters = self._waiters.pop(mission_id, None)
        if waiters is not None:
            waiters.event.set()

    # -- waiting -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def end_of(self, mission_id: str) -> Generator[anyio.Event]:
        """The event :meth:`ended` sets for ``mission_id``, for the ``with`` block that waits
        for it; read the mission inside the block, so that an end written in between is not
        missed. The event is forgotten when the mission ends or when its last waiter leaves (a
        cancelled wait on a mission that lives on leaves nothing behind)."""
        waiters = self._waiters.get(mission_id)
        if waiters is None:
            waiters = self._waiters[mission_id] = _Waiters()
        waiters.count += 1
        try:
            yield waiters.event
        finally:
            waiters.count -= 1
            if not waiters.count and self._waiters.get(mission_id) is waiters:
                del self._waiters[mission_id]


# The hub is keyed on the adapter object, not owned by it: the adapter is the store as this
# process sees it (commanders on one adapter see each other's writes, so they must share
# notices), and keying on it by identity works for every adapter, including those written
# against the PersistenceAdapter protocol before notices existed. An adapter that hears other
# processes reaches its hub the same way, with ``notices_for(self)``.
_HUBS: dict[int, Notices] = {}
# Adapters that cannot be weakly referenced are kept alive by their entry, so that their id is
# never reused for another adapter.
_KEPT: dict[int, object] = {}


def notices_for(persistence: object) -> Notices:
    """The notice hub of the store ``persistence`` (one per adapter object, for the life of
    the adapter)."""
    key = id(persistence)
    hub = _HUBS.get(key)
    if hub is None:
        hub = _HUBS[key] = Notices()
        try:
            weakref.finalize(persistence, _HUBS.pop, key, None)
        except TypeError:
            _KEPT[key] = persistence
    return hub
