"""Observers: what the engine tells instrumentation (tracing, metrics) while it moves missions.

An observer is given to the commander (``create_commander(..., observer=...)``). The engine calls
it inline, in the task that moves the mission: it must not block. What it raises is logged on the
stdlib logger ``mission_control.observer`` and otherwise ignored (a mission never fails because
of its observer): :class:`SafeObserver` is that one place. Without an observer the engine makes
none of these calls.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import attrs

from ._snapshot import ErrorInfo, MissionStatus, NodeStatus, ParentLink
from ._values import is_text

if TYPE_CHECKING:
    from ._snapshot import MissionFields

_log = logging.getLogger("mission_control.observer")


class RunTrigger(enum.StrEnum):
    """Why the engine took a mission up for a run."""

    START = "start"
    """A ``start`` (or ``signal_with_start``) runs the new mission until its first wait."""
    SIGNAL = "signal"
    """A signal moves the mission on (or is buffered, and the mission looked at)."""
    CANCEL = "cancel"
    """A cancellation ends the mission (or has it run its compensations)."""
    ADVANCE = "advance"
    """A due timer, retry, delayed start or deadline, or the end of a child: the runtime's
    ticks, a parent woken by its child."""
    RETRY = "retry"
    """``Commander.retry`` runs a failed or cancelled mission again (a fork is a ``start``)."""
    RESUME = "resume"
    """The mission was found running with nobody moving it (a crash, a stopped process, a
    cancelled caller): its running nodes run again."""
    PAUSE = "pause"
    """``pause()`` pauses a mission nobody moves."""
    UNPAUSE = "unpause"
    """``resume()`` takes a paused mission out of its pause and runs it on."""


@attrs.frozen
class ObservedMission:
    """The mission a run or a context is for."""

    id: str
    definition: str
    version: int
    trace_context: Mapping[str, str] | None
    """What :meth:`MissionObserver.context_for` gave when the mission was created (stored with
    the mission: ``MissionSnapshot.trace_context``), ``None`` when it gave nothing."""
    parent: ParentLink | None
    """For a child mission, the mission and node that started it."""
    is_new: bool = True
    """For :meth:`MissionObserver.context_for`: whether the mission is being created now (in
    the caller's request, a parent's child node), rather than stored earlier without a context
    (before an observer was set, or by a process without one: a submitter's start or fork) and
    given one as it is next moved (in a runtime's tick, say)."""
    forked_from: str | None = None
    """For a fork (``MissionSnapshot.forked_from``), the mission it was forked from."""
    forked_from_context: Mapping[str, str] | None = None
    """For a fork made in this process, the context stored with the mission it was forked
    from (``None`` when that one has none)."""


@attrs.frozen
class ObservedNode:
    """One node of a mission, as a run meets it."""

    path: str
    """The node's path in the mission (``MissionSnapshot.nodes``' key); a compensation's is the
    step's path and ``/compensate``."""
    name: str
    kind: str
    """``start``, ``step``, ``need_to``, ``sleep``, ``child``, ``end`` or ``compensation``."""
    attempt: int
    """The attempt, from 1 (a wait's is 1, a retried step's or child's counts up)."""


NodeEnd = Callable[[BaseException | None], None]
"""Called once when a node's function returns (with ``None``) or raises (with what it raised;
a ``BaseException`` that is no ``Exception`` when the function was interrupted: cancelled, or
the process stopping)."""


@runtime_checkable
class RunObserver(Protocol):
    """Hears about one run of one mission: the nodes it runs and how it ends."""

    def node_started(self, node: ObservedNode) -> NodeEnd | None:
        """A node's function is about to run (a start's ``run``, a step, a child node's input,
        an end's output, a compensation), in the task that runs it: what is returned is called
        when it has run, in the same task."""
        ...

    def node_waited(
        self,
        node: ObservedNode,
        since: datetime | None,
        until: datetime,
        outcome: NodeStatus,
        error: ErrorInfo | None,
    ) -> None:
        """A wait of a node ended: a need_to got its signal (``completed``) or timed out
        (``timed_out``), a sleep fired (``completed``), a child node's child mission ended
        (``completed``, or ``failed`` with ``error``). ``since`` and ``until`` are on the
        commander's clock: when the wait began (``None`` if unknown) and now."""
        ...

    def ended(self, status: MissionStatus | None, error: BaseException | None) -> None:
        """The run is over: the engine let go of the mission. ``status`` is the mission's
        status as the run last stored it (``None`` when the run stored nothing: a mission not
        due yet, a signal buffered for later); ``error`` what escaped the run (a store error,
        a cancelled caller), if anything."""
        ...


@runtime_checkable
class MissionObserver(Protocol):
    """What a commander's engine reports to while it moves missions (see
    ``docs/tracing.md``; ``mission_control.opentelemetry`` implements it).

    Every method is called inline, in the task that moves the mission, and must not block;
    an exception it raises is logged on ``mission_control.observer`` and ignored.
    """

    def context_for(self, mission: ObservedMission) -> Mapping[str, str] | None:
        """The context to store with a mission (``MissionSnapshot.trace_context``, a few short
        strings: propagation headers such as W3C ``traceparent``). Called when a mission is
        created, before it is stored, and when a mission stored without one (before an
        observer was set, or by a process without one) is next moved (stored with its next
        write: ``mission.is_new`` is then false). ``None``: store none."""
        ...

    def run_started(self, mission: ObservedMission, trigger: RunTrigger) -> RunObserver | None:
        """The engine took ``mission`` up and is about to change it (``mission.trace_context``
        is the stored context). What is returned hears about the run."""
        ...


def _mission(
    fields: MissionFields,
    *,
    is_new: bool = True,
    forked_from_context: Mapping[str, str] | None = None,
) -> ObservedMission:
    return ObservedMission(
        fields.id,
        fields.definition,
        fields.definition_version,
        fields.trace_context,
        fields.parent,
        is_new,
        fields.forked_from,
        forked_from_context,
    )


class SafeObserver:
    """An observer the engine may call without care: what the observer it wraps raises is
    logged and ignored, and a context it gives that cannot be stored is refused (logged)."""

    __slots__ = ("observer",)

    def __init__(self, observer: MissionObserver) -> None:
        self.observer = observer

    def context_for(
        self,
        fields: MissionFields,
        *,
        is_new: bool,
        forked_from_context: Mapping[str, str] | None = None,
    ) -> Mapping[str, str] | None:
        try:
            context = self.observer.context_for(
                _mission(fields, is_new=is_new, forked_from_context=forked_from_context)
            )
            if context is None:
                return None
            return _checked_context(context)
        except Exception:
            _log.exception("observer %r: context_for(%r) raised", self.observer, fields.id)
            return None

    def run_started(self, fields: MissionFields, trigger: RunTrigger) -> SafeRun:
        """The run (one even when the observer gave none: the engine asks once per run)."""
        try:
            run = self.observer.run_started(_mission(fields), trigger)
        except Exception:
            _log.exception("observer %r: run_started(%r) raised", self.observer, fields.id)
            run = None
        return SafeRun(run, fields.id)


def _checked_context(context: object) -> dict[str, str]:
    if not isinstance(context, Mapping):
        raise TypeError(f"a context must be a mapping of str to str, got {context!r}")
    items: list[tuple[object, object]] = list(context.items())  # pyright: ignore[reportUnknownArgumentType, reportUnknownMemberType]
    checked: dict[str, str] = {}
    for key, value in items:
        if not (isinstance(key, str) and isinstance(value, str)) or not (
            is_text(key) and is_text(value)
        ):
            raise TypeError(f"a context must map str to str, got {key!r}: {value!r}")
        checked[key] = value
    return checked


class SafeRun:
    """A :class:`RunObserver` whose exceptions are logged and ignored (see
    :class:`SafeObserver`)."""

    __slots__ = ("mission_id", "run")

    def __init__(self, run: RunObserver | None, mission_id: str) -> None:
        self.run = run
        self.mission_id = mission_id

    def node_started(self, node: ObservedNode) -> NodeEnd | None:
        if self.run is None:
            return None
        try:
            end = self.run.node_started(node)
        except Exception:
            _log.exception(
                "observer %r: node_started(%r) of %r raised", self.run, node.path, self.mission_id
            )
            return None
        if end is None:
            return None

        def ended(error: BaseException | None) -> None:
            try:
                end(error)
            except Exception:
                _log.exception(
                    "observer %r: the end of node %r of %r raised",
                    self.run,
                    node.path,
                    self.mission_id,
                )

        return ended

    def node_waited(
        self,
        node: ObservedNode,
        since: datetime | None,
        until: datetime,
        outcome: NodeStatus,
        error: ErrorInfo | None = None,
    ) -> None:
        if self.run is None:
            return
        try:
            self.run.node_waited(node, since, until, outcome, error)
        except Exception:
            _log.exception(
                "observer %r: node_waited(%r) of %r raised", self.run, node.path, self.mission_id
            )

    def ended(self, status: MissionStatus | None, error: BaseException | None) -> None:
        if self.run is None:
            return
        try:
            self.run.ended(status, error)
        except Exception:
            _log.exception("observer %r: ended() of %r raised", self.run, self.mission_id)
