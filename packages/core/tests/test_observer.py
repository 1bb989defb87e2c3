"""The commander's observer hook (mission_control.core.lowlevel.MissionObserver)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import pytest

from mission_control.core import (
    ConfigurationError,
    Context,
    MissionStatus,
    NodeStatus,
    create_commander,
    m,
)
from mission_control.core.lowlevel import (
    MissionObserver,
    NodeEnd,
    ObservedMission,
    ObservedNode,
    RunObserver,
    RunTrigger,
)
from mission_control.in_memory_commander import (
    InMemoryPersistenceAdapter,
    ManualClock,
    create_in_memory_commander,
)

pytestmark = pytest.mark.anyio


class Recorder:
    """An observer that writes down what it hears, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def context_for(self, mission: ObservedMission) -> Mapping[str, str] | None:
        self.events.append(("context", mission.id))
        return {"traceparent": f"trace-of-{mission.id}"}

    def run_started(self, mission: ObservedMission, trigger: RunTrigger) -> RunObserver | None:
        self.events.append(("run", mission.id, trigger.value, mission.trace_context))
        return RecordingRun(self.events, mission.id)


class RecordingRun:
    def __init__(self, events: list[tuple[Any, ...]], mission_id: str) -> None:
        self.events = events
        self.mission_id = mission_id

    def node_started(self, node: ObservedNode) -> NodeEnd | None:
        self.events.append(("node", node.path, node.kind, node.attempt))

        def end(error: BaseException | None) -> None:
            self.events.append(("end", node.path, None if error is None else str(error)))

        return end

    def node_waited(
        self,
        node: ObservedNode,
        since: datetime | None,
        until: datetime,
        outcome: NodeStatus,
        error: Any,
    ) -> None:
        assert since is not None
        self.events.append(("waited", node.path, node.kind, outcome.value, until - since))

    def ended(self, status: MissionStatus | None, error: BaseException | None) -> None:
        self.events.append(("ended", None if status is None else status.value, error))


class Raising:
    """An observer whose every method raises."""

    def context_for(self, mission: ObservedMission) -> Mapping[str, str] | None:
        raise RuntimeError("context_for is broken")

    def run_started(self, mission: ObservedMission, trigger: RunTrigger) -> RunObserver | None:
        return RaisingRun()


class RaisingRun:
    def node_started(self, node: ObservedNode) -> NodeEnd | None:
        def end(error: BaseException | None) -> None:
            raise RuntimeError("the node's end is broken")

        return end

    def node_waited(self, *args: Any) -> None:
        raise RuntimeError("node_waited is broken")

    def ended(self, status: MissionStatus | None, error: BaseException | None) -> None:
        raise RuntimeError("ended is broken")


def _same(raw: Any) -> Any:
    return raw


def _flaky() -> Any:
    calls = 0

    def step(ctx: Context[Any, Any]) -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("down")
        return "up"

    return step


def _flow() -> Any:
    return (
        m.define("flow")
        .start(parse=_same)
        .step("flaky", _flaky(), retry=m.retry(2, backoff=m.fixed(1)))
        .need_to("approve", parse=_same)
        .sleep("cool-off", timedelta(hours=1))
        .end()
    )


async def _run_flow(commander: Any, clock: ManualClock) -> None:
    handle = await commander.start(commander.definitions["flow"], {}, id="m-1")
    clock.advance(1)
    await commander.advance("m-1")
    await handle.signal("approve", {"ok": True})
    clock.advance(timedelta(hours=1))
    await commander.advance("m-1")


async def test_the_observer_hears_every_run_and_node_and_the_context_is_stored_once() -> None:
    """Each run (start, retry, signal, timer) is reported with the context stored when the
    mission was created, with the nodes it ran (a failed attempt with its error) and the waits
    that ended."""
    recorder = Recorder()
    clock = ManualClock()
    commander = create_in_memory_commander([_flow()], clock=clock, observer=recorder)
    await _run_flow(commander, clock)
    context = {"traceparent": "trace-of-m-1"}
    assert recorder.events == [
        ("context", "m-1"),
        ("run", "m-1", "start", context),
        ("node", "flaky", "step", 1),
        ("end", "flaky", "down"),
        ("ended", "waiting", None),
        ("run", "m-1", "advance", context),
        ("node", "flaky", "step", 2),
        ("end", "flaky", None),
        ("ended", "waiting", None),
        ("run", "m-1", "signal", context),
        ("waited", "approve", "need_to", "completed", timedelta(0)),
        ("ended", "waiting", None),
        ("run", "m-1", "advance", context),
        ("waited", "cool-off", "sleep", "completed", timedelta(hours=1)),
        ("ended", "completed", None),
    ]
    assert (await commander.inspect("m-1")).trace_context == context


async def test_an_observer_that_raises_never_breaks_a_mission(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Every exception an observer raises is logged on mission_control.observer and ignored:
    the mission runs as it would without one (and stores no context)."""
    clock = ManualClock()
    commander = create_in_memory_commander([_flow()], clock=clock, observer=Raising())
    with caplog.at_level(logging.ERROR, logger="mission_control.observer"):
        await _run_flow(commander, clock)
    done = await commander.inspect("m-1")
    assert done.status is MissionStatus.COMPLETED
    assert done.trace_context is None
    for broken in ("context_for", "node's end", "node_waited", "ended"):
        assert f"{broken} is broken" in caplog.text


@pytest.mark.parametrize(
    "context",
    [["traceparent"], {"traceparent": 1}, {1: "x"}, {"traceparent": "\udc80"}],
    ids=["list", "int value", "int key", "lone surrogate"],
)
async def test_a_context_that_cannot_be_stored_is_refused(
    context: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A context that is no mapping of str to str (UTF-8 encodable) is logged and not stored;
    the mission starts without one."""

    class Bad(Recorder):
        def context_for(self, mission: ObservedMission) -> Any:
            return context

    commander = create_in_memory_commander([_flow()], observer=Bad())
    with caplog.at_level(logging.ERROR, logger="mission_control.observer"):
        handle = await commander.start(commander.definitions["flow"], {})
    assert (await handle.inspect()).trace_context is None
    assert "a context must" in caplog.text


async def test_a_mission_stored_without_a_context_gets_one_at_its_next_write() -> None:
    """A mission started before an observer was set is given a context when a commander with
    an observer next moves it, stored with that move."""
    store = InMemoryPersistenceAdapter()
    clock = ManualClock()
    before = create_in_memory_commander([_flow()], clock=clock, persistence=store)
    await before.start(before.definitions["flow"], {}, id="m-1")
    assert (await before.inspect("m-1")).trace_context is None
    recorder = Recorder()
    after = create_in_memory_commander(
        [before.definitions["flow"]], clock=clock, persistence=store, observer=recorder
    )
    clock.advance(1)
    await after.advance("m-1")
    assert recorder.events[:2] == [
        ("context", "m-1"),
        ("run", "m-1", "advance", {"traceparent": "trace-of-m-1"}),
    ]
    assert (await after.inspect("m-1")).trace_context == {"traceparent": "trace-of-m-1"}


async def test_a_cancellation_is_a_run_of_its_own() -> None:
    """Cancelling a waiting mission is a run (trigger ``cancel``) that ends it cancelled."""
    recorder = Recorder()
    commander = create_in_memory_commander([_flow()], observer=recorder)
    handle = await commander.start(commander.definitions["flow"], {}, id="m-1")
    recorder.events.clear()
    await handle.cancel("enough")
    assert recorder.events == [
        ("run", "m-1", "cancel", {"traceparent": "trace-of-m-1"}),
        ("ended", "cancelled", None),
    ]


def test_an_object_that_is_no_observer_is_refused() -> None:
    """observer= takes a MissionObserver; anything else raises ConfigurationError."""
    with pytest.raises(ConfigurationError, match="MissionObserver"):
        create_commander([_flow()], persistence=InMemoryPersistenceAdapter(), observer=object())  # pyright: ignore[reportArgumentType]
    assert isinstance(Recorder(), MissionObserver)


async def test_a_background_start_is_a_run_that_stores_the_mission() -> None:
    """A background start asks for the context and reports one run, which leaves the mission
    waiting for its start; a run that stores nothing (a mission not due) reports no status."""
    recorder = Recorder()
    commander = create_in_memory_commander([_flow()], observer=recorder)
    await commander.start(commander.definitions["flow"], {}, id="m-1", background=True)
    assert recorder.events == [
        ("context", "m-1"),
        ("run", "m-1", "start", {"traceparent": "trace-of-m-1"}),
        ("ended", "waiting", None),
    ]
    await commander.start(commander.definitions["flow"], {}, id="m-2")
    recorder.events.clear()
    await commander.advance("m-2")  # its retry is not due yet
    assert recorder.events == [
        ("run", "m-2", "advance", {"traceparent": "trace-of-m-2"}),
        ("ended", None, None),
    ]
    recorder.events.clear()
    await commander.advance("m-1")
    assert recorder.events[0] == ("run", "m-1", "advance", {"traceparent": "trace-of-m-1"})
