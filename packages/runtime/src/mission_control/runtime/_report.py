"""What a tick reports when it ends."""

from __future__ import annotations

import enum
from datetime import datetime

import attrs


class TickTrigger(enum.StrEnum):
    """Why a tick ran."""

    STARTUP = "startup"
    """The tick :meth:`CommanderRuntime.start` runs."""
    SCHEDULED = "scheduled"
    """A tick the scheduler armed (for the store's next due time, a notice, ``start()``, or a
    ``set_next_tick_at`` / ``set_next_tick_in`` request) whose time came."""
    DIRECT = "direct"
    """A call to :meth:`CommanderRuntime.tick`."""


@attrs.frozen(kw_only=True)
class TickReport:
    """What one tick did.

    Counts are of missions, each moved at most once per tick. ``resumed`` and ``advanced`` count
    missions moved without error (resumed: left mid-node by a crash; advanced: due by time);
    ``completed``, ``failed``, ``cancelled`` and ``compensated`` count those among them that ended
    in this tick;
    ``errored`` counts missions whose resume or advance raised (they are logged and left as they
    were); ``skipped`` counts due missions another task of this process was moving already.
    """

    trigger: TickTrigger
    started_at: datetime
    """The commander's clock when the tick began."""
    duration: float
    """Seconds the tick took, measured on trio's clock."""
    resumed: int = 0
    advanced: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    compensated: int = 0
    errored: int = 0
    skipped: int = 0
    errored_missions: tuple[str, ...] = ()
    """Ids of the missions counted in ``errored``."""
    more_due: bool = False
    """When the tick ended, missions were due already that this tick did not move (it reached
    ``max_missions_per_tick``, or they keep raising). The runtime ticks again at once when this
    tick moved at least one mission (or reached the limit with missions whose move raised, now
    paused), otherwise after ``stalled_tick_delay`` or at the store's next due time still to
    come, whichever is earlier (in the manual mode, ``auto_schedule=False``, schedule that tick
    yourself)."""
    next_due_at: datetime | None = None
    """The earliest persisted due time (timer, retry, delayed start or a schedule's next slot)
    when the tick ended."""
    submissions: int = 0
    """Submissions (starts, signals and cancellations other processes handed to this one, the
    owner of a shared store) the tick applied or refused, before it moved any mission."""
    fired: int = 0
    """Missions the tick started for schedules whose slots were due (the tick then moved
    them, as due missions)."""
    standby: bool = False
    """The tick moved nothing because another process owns the store (see
    :attr:`CommanderRuntime.is_standby`)."""

    @property
    def moved(self) -> int:
        """Missions resumed or advanced without error."""
        return self.resumed + self.advanced
