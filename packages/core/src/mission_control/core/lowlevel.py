"""For code that drives missions rather than starts them: the tick runtime, and any other driver
(a crash sweep, a CLI that resumes missions).

Applications need none of this (their API is ``mission_control.core``; adapter authors have
``mission_control.core.storage``). A driver programs against :class:`MissionDriver`, which the
commander made by ``mission_control.core.create_commander`` implements beside the application API:
it finds the missions that are due or were left mid-node, moves one forward with ``advance``, and
listens to the store's :class:`Notices` to hear of new due times (:class:`NoticeListener`).
:func:`notices_for` gives the notice hub of a persistence adapter object, the one every commander
on that object shares. :class:`LoopBinding` refuses a call made outside the event loop an
object serves (outside any loop, or from another thread's loop) with a clear ``EventLoopError``;
:func:`current_task_key` tells tasks apart cheaply (an adapter grouping writes per task).

:class:`MissionObserver` is the instrumentation hook a commander takes (``observer=``): it hears
of every run of a mission and of the nodes each run meets (:class:`RunObserver`), called inline
and never allowed to break a mission (see docs/tracing.md).
"""

from ._commander import MissionDriver
from ._loop import LoopBinding, current_task_key
from ._notices import NoticeListener, Notices, notices_for
from ._observer import (
    MissionObserver,
    NodeEnd,
    ObservedMission,
    ObservedNode,
    RunObserver,
    RunTrigger,
)

__all__ = [
    "LoopBinding",
    "MissionDriver",
    "MissionObserver",
    "NodeEnd",
    "NoticeListener",
    "Notices",
    "ObservedMission",
    "ObservedNode",
    "RunObserver",
    "RunTrigger",
    "current_task_key",
    "notices_for",
]
