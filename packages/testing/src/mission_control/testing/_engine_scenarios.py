"""The engine scenarios: missions run by a commander on the adapter under test, from start to
end (signals, timers, retries, cancellation, the values users give and get back).

They rely on the persistence protocol that :class:`PersistenceProtocolConformance` tests on the
adapter alone, and test what the commander and the engine build on it.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any, cast

import anyio
import anyio.lowlevel
import attrs
import cattrs
import pytest
from cattrs.preconf.json import make_converter

from mission_control.core import (
    LIST_LIMIT,
    MAX_LIST_LIMIT,
    MAX_NESTING,
    CancelRequest,
    Commander,
    Context,
    InvalidInputError,
    InvalidSignalPayloadError,
    MissionAlreadyExistsError,
    MissionCancelledError,
    MissionDefinition,
    MissionFailedError,
    MissionNotActiveError,
    MissionNotFoundError,
    MissionSnapshot,
    MissionStatus,
    NodeStatus,
    TimelineKind,
    UnknownDefinitionError,
    UnknownSignalError,
    Wait,
    WaitKind,
    create_commander,
    m,
)
from mission_control.core.storage import PersistenceAdapter
from mission_control.in_memory_commander import ManualClock, SequentialIds

from ._protocol_battery import T0, build_snapshot, build_waiting
from ._tasks import wait_all_tasks_blocked


async def drain_due(commander: Commander, *, limit: int = 1000) -> list[MissionSnapshot]:
    """Advance every mission that is due now (what one runtime tick does, without a runtime)."""
    advanced: list[MissionSnapshot] = []
    for mission_id in await commander.due_missions(limit):
        snapshot = await commander.advance(mission_id)
        if snapshot is not None:
            advanced.append(snapshot)
    return advanced


class TransientError(Exception):
    """Raised by test steps that fail a given number of times."""


class FatalError(Exception):
    """Raised by test steps to fail without retrying."""


def _accept(value: Any) -> Any:
    return value


def _text_field(value: Any, field: str) -> str | None:
    if not isinstance(value, dict):
        return None
    item: object = value.get(field)  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
    return item if isinstance(item, str) else None


def _parse_email(value: Any) -> dict[str, str]:
    email = _text_field(value, "email")
    if email is None or "@" not in email:
        raise ValueError("input needs an 'email' containing '@'")
    return {"email": email}


def _parse_approval(value: Any) -> dict[str, str]:
    approved_by = _text_field(value, "approvedBy")
    if approved_by is None:
        raise ValueError("approval needs 'approvedBy' as a string")
    return {"approvedBy": approved_by}


def approval_definition() -> MissionDefinition[Any, dict[str, str], dict[str, str]]:
    """The approval mission of the original: start, send an email, wait for approval, end."""

    async def run_start(ctx: Context[dict[str, str], None]) -> dict[str, str]:
        return {"email": ctx.input["email"]}

    async def send_email(ctx: Context[dict[str, str], dict[str, str]]) -> dict[str, str]:
        return {"sentTo": ctx.events.start.output["email"]}

    return (
        m.define("approval")
        .start(parse=_parse_email, run=run_start)
        .step("send-email", send_email)
        .need_to("receive-approval", parse=_parse_approval)
        .end(output=lambda ctx: {"approvedBy": ctx.events["receive-approval"].output["approvedBy"]})
    )


def _nested(levels: int) -> Any:
    value: Any = "leaf"
    for _ in range(levels):
        value = [value]
    return value


_UNSTORABLE: list[Any] = [
    pytest.param(lambda: {"n": 10**4300}, id="an int of 4,301 digits"),
    pytest.param(lambda: {"n": -(10**5000)}, id="a negative int of 5,001 digits"),
    pytest.param(lambda: {"deep": _nested(sys.getrecursionlimit() - 10)}, id="recursion-deep"),
    pytest.param(lambda: {"deep": _nested(MAX_NESTING + 1)}, id="one level past MAX_NESTING"),
    pytest.param(lambda: {"name": "caf\udce9"}, id="a lone surrogate in a string"),
    pytest.param(lambda: {"caf\udce9": 1}, id="a lone surrogate in a key"),
]
"""Values no adapter can both write and read back; each maker is called once per use."""


class _Unprintable(Exception):
    """An exception whose ``str()`` raises."""

    def __str__(self) -> str:
        raise RuntimeError("no text for you")


@attrs.frozen
class _Parcel:
    weight: Decimal
    label: str


@dataclasses.dataclass(frozen=True)
class _Address:
    city: str
    lines: tuple[str, ...]


def _user_converter() -> cattrs.Converter:
    """A user's converter: JSON's, plus Decimal written as its text."""
    converter = make_converter()
    converter.register_unstructure_hook(Decimal, str)
    converter.register_structure_hook(Decimal, lambda value, _: Decimal(value))
    return converter


class _Bystander:
    """A task that is always ready to run: each turn the scheduler gives it, it notes how many
    missions the iteration under watch has visited, so its notes show where that iteration let
    other tasks run."""

    def __init__(self, seen: list[str]) -> None:
        self._seen = seen
        self.ran_at: list[int] = []

    async def run(self) -> None:
        while True:
            self.ran_at.append(len(self._seen))
            await anyio.lowlevel.checkpoint()


class ScenarioFixtures:
    """The fixtures the scenario classes share: the adapter under test (a subclass provides
    ``persistence``) and a manual clock at ``T0``."""

    @pytest.fixture
    def persistence(self) -> PersistenceAdapter:
        raise NotImplementedError("subclasses of the conformance suite provide this fixture")

    @pytest.fixture
    def clock(self) -> ManualClock:
        return ManualClock(T0)

    def commander(
        self,
        persistence: PersistenceAdapter,
        clock: ManualClock,
        *definitions: MissionDefinition[Any, Any, Any],
        converter: cattrs.Converter | None = None,
    ) -> Commander:
        """A commander on the adapter under test, with ``definitions`` (the approval one when
        none is given), the manual clock and sequential ids."""
        return create_commander(
            definitions or [approval_definition()],
            persistence=persistence,
            clock=clock,
            ids=SequentialIds(),
            converter=converter,
        )


class EngineScenarioConformance(ScenarioFixtures):
    """Engine scenarios every persistence adapter must pass: a commander runs missions on it.
    Subclass it and provide ``persistence``."""

    async def _state(self, commander: Commander, mission_id: str) -> tuple[Any, ...]:
        snapshot = await commander.inspect(mission_id)
        return snapshot, await commander.timeline(mission_id)

    # -- the commander on this adapter --------------------------------------------------------

    async def test_listing_is_paged_and_iterating_visits_every_mission_once(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """``list()`` returns one bounded page (``LIST_LIMIT`` by default, ``MAX_LIST_LIMIT`` at
        most); ``iter_missions()`` visits every mission once, in id order and with its filters,
        reading a page at a time and letting other tasks run between pages, never within one."""
        ids = [f"m{i:03}" for i in range(250)]
        for i, mission_id in enumerate(reversed(ids)):
            snapshot = build_waiting(mission_id, None) if i % 3 == 0 else build_snapshot(mission_id)
            await persistence.insert(snapshot, [])
        waiting = [
            s.id for s in await persistence.list_missions(status=MissionStatus.WAITING, limit=250)
        ]
        commander = self.commander(persistence, clock)
        assert [s.id for s in await commander.list()] == ids[:LIST_LIMIT]
        assert [s.id for s in await commander.list(limit=MAX_LIST_LIMIT)] == ids
        for bad in (MAX_LIST_LIMIT + 1, -1, None, True):
            with pytest.raises(ValueError, match="iter_missions"):
                await commander.list(limit=bad)  # type: ignore[arg-type]

        seen: list[str] = []
        bystander = _Bystander(seen)
        stopped_at: list[int] = []
        pages = commander.iter_missions(page_size=100)
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(bystander.run)
            while len(seen) < len(ids) and len(stopped_at) < 5:
                with anyio.CancelScope() as scope:
                    async for snapshot in pages:
                        seen.append(snapshot.id)
                        # Delivered at the iteration's next checkpoint, which ends this loop.
                        scope.cancel()
                stopped_at.append(len(seen))
            task_group.cancel_scope.cancel()
        assert seen == ids
        # A pending cancellation is delivered at each page's end (the iteration checkpoints
        # there), never within a page (no checkpoint while one page is handed out).
        assert stopped_at == [100, 200, 250]
        # Another task ran at each page boundary, never in the middle of a page.
        assert {100, 200} <= set(bystander.ran_at) <= {0, 100, 200, 250}

        filtered = commander.iter_missions(status=MissionStatus.WAITING, after="m100", page_size=7)
        assert [s.id async for s in filtered] == [i for i in waiting if i > "m100"]
        by_definition = commander.iter_missions(definition="approval", page_size=1000)
        assert len([s async for s in by_definition]) == 250

    async def test_approval_mission_runs_to_its_signal_and_completes(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """start runs until the need_to; the signal completes the mission with every record."""
        approval = approval_definition()
        commander = self.commander(persistence, clock, approval)
        handle = await commander.start(approval, {"email": "ops@example.com"})
        waiting = await handle.inspect()
        assert waiting.status is MissionStatus.WAITING
        assert waiting.wait == Wait(WaitKind.SIGNAL, "receive-approval", signal="receive-approval")
        assert waiting.nodes["send-email"].output == {"sentTo": "ops@example.com"}
        done = await handle.signal("receive-approval", {"approvedBy": "reviewer-1"})
        assert done.status is MissionStatus.COMPLETED
        assert done.output == {"approvedBy": "reviewer-1"}
        assert done.nodes["receive-approval"].input == {"approvedBy": "reviewer-1"}
        assert await handle.inspect() == done
        kinds = [entry.kind for entry in await handle.timeline()]
        assert kinds == [
            TimelineKind.MISSION_STARTED,
            TimelineKind.STEP_COMPLETED,
            TimelineKind.STEP_STARTED,
            TimelineKind.STEP_COMPLETED,
            TimelineKind.WAIT_STARTED,
            TimelineKind.SIGNAL_RECEIVED,
            TimelineKind.MISSION_COMPLETED,
        ]

    async def test_published_values_are_read_while_the_mission_runs_and_after_restarts(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """Values a step publishes are stored with its transition: a caller reads the latest of
        each name while the mission waits, a second commander on the store reads them too, and a
        value no store can hold fails the step that published it."""

        async def pack(ctx: Context[Any, Any]) -> None:
            ctx.publish("stage", "packing")
            ctx.publish("percent", 40)
            ctx.publish("percent", 50)

        async def ship(ctx: Context[Any, Any]) -> None:
            ctx.publish("stage", {"shipped": True, "parcels": [1, 2]})

        async def bad(ctx: Context[Any, Any]) -> None:
            ctx.publish("oops", object())

        shipping = (
            m.define("shipping")
            .start(parse=_accept)
            .step("pack", pack)
            .need_to("go", parse=_accept)
            .step("ship", ship)
            .end()
        )
        broken = m.define("broken").start(parse=_accept).step("bad", bad).end()
        commander = self.commander(persistence, clock, shipping, broken)
        handle = await commander.start(shipping, {}, id="s-1")
        waiting = await handle.inspect()
        assert waiting.status is MissionStatus.WAITING
        assert waiting.progress == {"stage": "packing", "percent": 50}
        again = self.commander(persistence, clock, shipping, broken)
        assert (await again.inspect("s-1")).progress == {"stage": "packing", "percent": 50}
        done = await again.signal("s-1", "go", {})
        assert done.status is MissionStatus.COMPLETED
        assert done.progress == {"stage": {"shipped": True, "parcels": [1, 2]}, "percent": 50}
        failed = await (await commander.start(broken, {}, id="b-1")).inspect()
        assert failed.status is MissionStatus.FAILED
        assert failed.error is not None
        assert failed.error.type == "OutputNotSerializableError"
        assert "published value 'oops'" in failed.error.message
        assert failed.progress is None

    async def test_start_with_an_existing_id_is_idempotent(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """A second start with the same id returns the first mission and runs nothing again."""
        runs: list[str] = []

        async def step(ctx: Context[Any, Any]) -> None:
            runs.append(ctx.mission_id)

        once = m.define("once").start(parse=_accept).step("work", step).end()
        commander = self.commander(persistence, clock, once)
        first = await commander.start(once, {"n": 1}, id="order-42")
        again = await commander.start(once, {"n": 2}, id="order-42")
        assert first.id == again.id == "order-42"
        assert runs == ["order-42"]
        assert (await again.inspect()).input == {"n": 1}

    async def test_invalid_input_raises_and_stores_nothing(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """Input the parser rejects raises InvalidInputError and no mission is stored."""
        approval = approval_definition()
        commander = self.commander(persistence, clock, approval)
        with pytest.raises(InvalidInputError, match="email"):
            await commander.start(approval, {"email": "nope"}, id="bad")
        with pytest.raises(InvalidInputError, match="JSON"):
            await commander.start(approval, {"email": object()}, id="bad")
        with pytest.raises(MissionNotFoundError):
            await commander.inspect("bad")
        assert await commander.list() == []

    async def test_bad_signals_raise_their_own_errors_and_change_nothing(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """Unknown signals, invalid payloads and signals to finished missions leave state as is."""
        approval = approval_definition()
        commander = self.commander(persistence, clock, approval)
        handle = await commander.start(approval, {"email": "ops@example.com"})
        before = await self._state(commander, handle.id)
        with pytest.raises(UnknownSignalError, match="receive-approvl"):
            await handle.signal("receive-approvl", {"approvedBy": "x"})
        with pytest.raises(InvalidSignalPayloadError, match="approvedBy"):
            await handle.signal("receive-approval", {"approvedBy": 7})
        assert await self._state(commander, handle.id) == before
        await handle.signal("receive-approval", {"approvedBy": "x"})
        finished = await self._state(commander, handle.id)
        with pytest.raises(MissionNotActiveError, match="completed"):
            await handle.signal("receive-approval", {"approvedBy": "y"})
        with pytest.raises(MissionNotActiveError):
            await handle.cancel("too late")
        assert await self._state(commander, handle.id) == finished
        with pytest.raises(MissionNotFoundError):
            await commander.signal("nobody", "receive-approval", {"approvedBy": "x"})

    async def test_early_signal_is_buffered_and_consumed_later(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """A signal sent before its need_to is stored and consumed when the mission gets there."""
        flow = (
            m.define("early")
            .start(parse=_accept)
            .sleep("pause", 60)
            .need_to("go", parse=_accept)
            .end()
        )
        commander = self.commander(persistence, clock, flow)
        handle = await commander.start(flow, {})
        buffered = await handle.signal("go", {"ok": True})
        assert buffered.status is MissionStatus.WAITING
        assert buffered.wait == Wait(WaitKind.TIMER, "pause", due_at=T0 + timedelta(seconds=60))
        assert TimelineKind.SIGNAL_BUFFERED in [e.kind for e in await handle.timeline()]
        clock.advance(60)
        await drain_due(commander)
        done = await handle.inspect()
        assert done.status is MissionStatus.COMPLETED
        assert done.nodes["go"].output == {"ok": True}

    # -- signal-with-start ---------------------------------------------------------------------

    async def test_signal_with_start_starts_a_missing_mission_with_its_signal_or_signals_it(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """signal_with_start stores a missing mission with the signal already buffered, runs
        it until its need_to takes that signal; a mission that exists just gets the signal
        (its input left as stored), buffered or taken as ``signal`` would."""
        approval = approval_definition()
        commander = self.commander(persistence, clock, approval)
        done = await commander.signal_with_start(
            approval,
            {"email": "ops@example.com"},
            mission_id="a-1",
            signal="receive-approval",
            payload={"approvedBy": "early"},
        )
        assert done.status is MissionStatus.COMPLETED
        assert done.output == {"approvedBy": "early"}
        assert done.input == {"email": "ops@example.com"}
        assert done.nodes["send-email"].output == {"sentTo": "ops@example.com"}
        assert await commander.inspect("a-1") == done
        kinds = [entry.kind for entry in await commander.timeline("a-1")]
        assert kinds == [
            TimelineKind.MISSION_STARTED,
            TimelineKind.SIGNAL_BUFFERED,
            TimelineKind.STEP_COMPLETED,
            TimelineKind.STEP_STARTED,
            TimelineKind.STEP_COMPLETED,
            TimelineKind.WAIT_STARTED,
            TimelineKind.SIGNAL_RECEIVED,
            TimelineKind.MISSION_COMPLETED,
        ]

        await commander.start(approval, {"email": "first@example.com"}, id="a-2")
        signalled = await commander.signal_with_start(
            approval,
            {"email": "second@example.com"},
            mission_id="a-2",
            signal="receive-approval",
            payload={"approvedBy": "late"},
        )
        assert signalled.status is MissionStatus.COMPLETED
        assert signalled.output == {"approvedBy": "late"}
        assert signalled.input == {"email": "first@example.com"}

        flow = (
            m.define("early")
            .start(parse=_accept)
            .sleep("pause", 60)
            .need_to("go", parse=_accept)
            .end(output=lambda ctx: ctx.events["go"].output)
        )
        commander = self.commander(persistence, clock, flow)
        for payload in ("first", "second"):
            waiting = await commander.signal_with_start(
                flow, {}, mission_id="e-1", signal="go", payload=payload
            )
            assert waiting.status is MissionStatus.WAITING
            assert waiting.wait == Wait(WaitKind.TIMER, "pause", due_at=T0 + timedelta(seconds=60))
        clock.advance(60)
        await drain_due(commander)
        ended = await commander.inspect("e-1")
        assert ended.status is MissionStatus.COMPLETED
        assert ended.output == "first"
        kinds = [entry.kind for entry in await commander.timeline("e-1")]
        assert kinds.count(TimelineKind.SIGNAL_BUFFERED) == 2

    async def test_signal_with_start_checks_everything_before_it_stores_anything(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """signal_with_start checks the input and the payload whether or not the mission exists,
        refuses an id of another definition's mission and a finished mission, and stores
        nothing when it raises."""
        approval = approval_definition()
        other = m.define("other").start(parse=_accept).need_to("go", parse=_accept).end()
        commander = self.commander(persistence, clock, approval, other)
        good_input = {"email": "ops@example.com"}
        good = {"approvedBy": "x"}

        async def call(mission_id: Any, raw_input: Any, name: str, payload: Any) -> None:
            await commander.signal_with_start(
                approval, raw_input, mission_id=mission_id, signal=name, payload=payload
            )

        await commander.start(other, {}, id="theirs")
        await commander.start(approval, good_input, id="waiting")
        await commander.start(approval, good_input, id="finished")
        await commander.signal("finished", "receive-approval", good)
        states = {i: await self._state(commander, i) for i in ("theirs", "waiting", "finished")}
        for mission_id in ("new", "waiting", "finished"):
            with pytest.raises(InvalidInputError, match="email"):
                await call(mission_id, {"email": "nope"}, "receive-approval", good)
            with pytest.raises(UnknownSignalError, match="receive-approvl"):
                await call(mission_id, good_input, "receive-approvl", good)
            with pytest.raises(InvalidSignalPayloadError, match="approvedBy"):
                await call(mission_id, good_input, "receive-approval", {"approvedBy": 7})
            with pytest.raises(InvalidSignalPayloadError, match="JSON"):
                await call(mission_id, good_input, "receive-approval", {"x": object()})
        with pytest.raises(MissionAlreadyExistsError, match="other"):
            await call("theirs", good_input, "receive-approval", good)
        with pytest.raises(MissionNotActiveError, match="completed"):
            await call("finished", good_input, "receive-approval", good)
        for bad_id in ("", 7, None):
            with pytest.raises(InvalidInputError, match="mission id"):
                await call(bad_id, good_input, "receive-approval", good)
        with pytest.raises(UnknownDefinitionError):
            await commander.signal_with_start(
                approval_definition(), good_input, mission_id="new", signal="receive-approval"
            )
        assert {i: await self._state(commander, i) for i in states} == states
        with pytest.raises(MissionNotFoundError):
            await commander.inspect("new")
        assert len(await commander.list()) == 3

    async def test_concurrent_signal_with_start_calls_start_the_mission_once(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """Two signal_with_start calls for one id at once start the mission once: the second
        finds it held and buffers its signal, which stays for a later need_to of that name
        after the first signal is taken."""
        runs: list[str] = []
        release = anyio.Event()

        entered = anyio.Event()

        async def prepare(ctx: Context[Any, Any]) -> None:
            runs.append(ctx.mission_id)
            entered.set()
            await release.wait()

        flow = (
            m.define("tally")
            .start(parse=_accept)
            .step("prepare", prepare)
            .need_to("vote", parse=_accept)
            .end(output=lambda ctx: ctx.events["vote"].output)
        )
        commander = self.commander(persistence, clock, flow)
        results: dict[str, MissionSnapshot] = {}

        async def vote(payload: str) -> None:
            results[payload] = await commander.signal_with_start(
                flow, {}, mission_id="t-1", signal="vote", payload=payload
            )

        async def buffered() -> int:
            kinds = [entry.kind for entry in await commander.timeline("t-1")]
            return kinds.count(TimelineKind.SIGNAL_BUFFERED)

        async with anyio.create_task_group() as task_group:
            task_group.start_soon(vote, "first")
            await wait_all_tasks_blocked()
            # An adapter that waits on a server (in a worker thread) may not be done yet when
            # every task waits: the first start runs its step, the second buffers its signal.
            with anyio.fail_after(5):
                await entered.wait()
            task_group.start_soon(vote, "second")
            with anyio.fail_after(5):
                while await buffered() < 2:
                    await wait_all_tasks_blocked()
            release.set()
        assert runs == ["t-1"]
        done = await commander.inspect("t-1")
        assert done.status is MissionStatus.COMPLETED
        assert done.output == "first"
        assert results["first"] == done
        kinds = [entry.kind for entry in await commander.timeline("t-1")]
        assert kinds.count(TimelineKind.SIGNAL_BUFFERED) == 2
        assert kinds.count(TimelineKind.SIGNAL_RECEIVED) == 1

    async def test_retries_exhaust_into_failed_with_the_error_kept(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """A step failing every attempt fails the mission with its last error recorded."""
        attempts: list[int] = []

        async def flaky(ctx: Context[Any, Any]) -> None:
            attempts.append(ctx.attempt)
            raise TransientError(f"attempt {ctx.attempt} failed")

        flow = (
            m.define("flaky")
            .start(parse=_accept)
            .step("call", flaky, retry=m.retry(3, m.fixed(5)))
            .end()
        )
        commander = self.commander(persistence, clock, flow)
        handle = await commander.start(flow, {})
        snapshot = await handle.inspect()
        assert snapshot.status is MissionStatus.WAITING
        assert snapshot.wait == Wait(WaitKind.RETRY, "call", due_at=T0 + timedelta(seconds=5))
        assert await drain_due(commander) == []
        for _ in range(2):
            clock.advance(5)
            await drain_due(commander)
        failed = await handle.inspect()
        assert attempts == [1, 2, 3]
        assert failed.status is MissionStatus.FAILED
        assert failed.error is not None
        assert (failed.error.type, failed.error.message, failed.error.attempt) == (
            "TransientError",
            "attempt 3 failed",
            3,
        )
        # Where the step raised, kept with the error through the store.
        assert failed.error.traceback is not None
        assert "in flaky" in failed.error.traceback
        assert failed.error.traceback.endswith("TransientError: attempt 3 failed\n")
        assert failed.nodes["call"].error == failed.error
        assert failed.nodes["call"].status is NodeStatus.FAILED
        assert failed.nodes["call"].attempts == 3
        with pytest.raises(MissionFailedError, match="attempt 3 failed") as raised:
            await handle.wait_for_completion()
        assert raised.value.snapshot == failed
        assert await handle.result() == failed

    async def test_retry_then_success_and_fail_on_skips_retries(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """A step that fails once then succeeds completes; a fail_on error fails at once."""

        async def second_time_lucky(ctx: Context[Any, Any]) -> dict[str, int]:
            if ctx.attempt < 2:
                raise TransientError("not yet")
            return {"attempt": ctx.attempt}

        async def fatal(ctx: Context[Any, Any]) -> None:
            raise FatalError("no point retrying")

        lucky = (
            m.define("lucky")
            .start(parse=_accept)
            .step("call", second_time_lucky, retry=m.retry(5, m.exponential(2, cap=10)))
            .end()
        )
        doomed = (
            m.define("doomed")
            .start(parse=_accept)
            .step("call", fatal, retry=m.retry(5, fail_on=FatalError))
            .end()
        )
        commander = self.commander(persistence, clock, lucky, doomed)
        handle = await commander.start(lucky, {})
        clock.advance(2)
        await drain_due(commander)
        done = await handle.wait_for_completion()
        assert done.nodes["call"].output == {"attempt": 2}
        assert done.nodes["call"].attempts == 2
        failed = await (await commander.start(doomed, {})).inspect()
        assert failed.status is MissionStatus.FAILED
        assert failed.nodes["call"].attempts == 1

    async def test_timer_fires_only_when_the_clock_reaches_it(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """A sleeping mission is not due a moment early and moves on once its time has come."""
        flow = (
            m.define("timer")
            .start(parse=_accept)
            .sleep("pause", timedelta(hours=1))
            .step("after", lambda ctx: "done")
            .end()
        )
        commander = self.commander(persistence, clock, flow)
        handle = await commander.start(flow, {})
        due = T0 + timedelta(hours=1)
        assert (await handle.inspect()).due_at == due
        assert await commander.next_due_at() == due
        assert await commander.next_due_at(after=due - timedelta(microseconds=1)) == due
        assert await commander.next_due_at(after=due) is None
        clock.advance(timedelta(hours=1) - timedelta(microseconds=1))
        assert await drain_due(commander) == []
        assert (await handle.inspect()).status is MissionStatus.WAITING
        clock.advance(timedelta(microseconds=1))
        await drain_due(commander)
        done = await handle.inspect()
        assert done.status is MissionStatus.COMPLETED
        assert done.nodes["after"].output == "done"
        assert TimelineKind.TIMER_FIRED in [e.kind for e in await handle.timeline()]

    async def test_delayed_start_waits_for_start_at(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """A mission started with start_at runs nothing until that time comes."""
        ran: list[str] = []
        flow = m.define("later").start(parse=_accept, run=lambda ctx: ran.append("start")).end()
        commander = self.commander(persistence, clock, flow)
        handle = await commander.start(flow, {}, start_at=T0 + timedelta(minutes=5))
        snapshot = await handle.inspect()
        assert snapshot.status is MissionStatus.WAITING
        assert snapshot.wait is not None
        assert snapshot.wait.kind is WaitKind.START
        assert ran == []
        clock.advance(timedelta(minutes=5))
        await drain_due(commander)
        assert ran == ["start"]
        assert (await handle.inspect()).status is MissionStatus.COMPLETED

    async def test_cancel_of_a_waiting_mission(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """Cancelling a waiting mission ends it at once; waiting on it raises, result returns."""
        approval = approval_definition()
        commander = self.commander(persistence, clock, approval)
        handle = await commander.start(approval, {"email": "ops@example.com"})
        cancelled = await handle.cancel("customer withdrew")
        assert cancelled.status is MissionStatus.CANCELLED
        assert cancelled.cancel_request == CancelRequest(T0, "customer withdrew")
        assert cancelled.nodes["receive-approval"].status is NodeStatus.CANCELLED
        with pytest.raises(MissionCancelledError, match="customer withdrew"):
            await handle.wait_for_completion()
        assert await handle.result() == await handle.inspect()
        kinds = [e.kind for e in await handle.timeline()]
        assert kinds[-2:] == [TimelineKind.CANCEL_REQUESTED, TimelineKind.MISSION_CANCELLED]

    async def test_output_that_cannot_be_serialized_fails_the_step_clearly(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """A step returning a value JSON cannot hold fails its mission naming the step."""
        flow = (
            m.define("bad-output")
            .start(parse=_accept)
            .step("make", lambda ctx: {"when": object()}, retry=3)
            .end()
        )
        commander = self.commander(persistence, clock, flow)
        snapshot = await (await commander.start(flow, {})).inspect()
        assert snapshot.status is MissionStatus.FAILED
        assert snapshot.error is not None
        assert snapshot.error.type == "OutputNotSerializableError"
        assert "'make'" in snapshot.error.message
        assert snapshot.nodes["make"].output is None

    # -- values: checked once at the boundary, the same on every adapter ----------------------

    @pytest.mark.parametrize("make", _UNSTORABLE)
    async def test_an_input_no_store_can_hold_is_refused_and_nothing_stored(
        self, persistence: PersistenceAdapter, clock: ManualClock, make: Callable[[], Any]
    ) -> None:
        """An input no adapter can write and read back raises InvalidInputError, storing
        nothing."""
        flow = m.define("values").start(parse=_accept).end()
        commander = self.commander(persistence, clock, flow)
        with pytest.raises(InvalidInputError, match="mission input"):
            await commander.start(flow, make(), id="m-1")
        with pytest.raises(MissionNotFoundError):
            await commander.inspect("m-1")
        assert await commander.list() == []

    async def test_an_id_utf8_cannot_encode_is_refused(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """A mission id with a lone surrogate raises InvalidInputError; looking it up finds
        nothing."""
        flow = m.define("values").start(parse=_accept).end()
        commander = self.commander(persistence, clock, flow)
        with pytest.raises(InvalidInputError, match="mission id"):
            await commander.start(flow, {}, id="m-\udce9")
        with pytest.raises(MissionNotFoundError):
            await commander.inspect("m-\udce9")
        assert await commander.list() == []

    @pytest.mark.parametrize("make", _UNSTORABLE)
    async def test_a_payload_no_store_can_hold_is_refused_buffered_or_not(
        self, persistence: PersistenceAdapter, clock: ManualClock, make: Callable[[], Any]
    ) -> None:
        """Such a payload raises InvalidSignalPayloadError whether the mission waits for the
        signal or would buffer it; nothing changes, and the mission takes a good one later."""
        flow = (
            m.define("values")
            .start(parse=_accept)
            .sleep("pause", 60)
            .need_to("go", parse=_accept)
            .end()
        )
        commander = self.commander(persistence, clock, flow)
        sleeping = await commander.start(flow, {})
        before = await self._state(commander, sleeping.id)
        with pytest.raises(InvalidSignalPayloadError, match="signal 'go' payload"):
            await sleeping.signal("go", make())
        assert await self._state(commander, sleeping.id) == before
        clock.advance(60)
        await drain_due(commander)
        waiting = await self._state(commander, sleeping.id)
        assert waiting[0].wait == Wait(WaitKind.SIGNAL, "go", signal="go")
        with pytest.raises(InvalidSignalPayloadError, match="signal 'go' payload"):
            await sleeping.signal("go", make())
        assert await self._state(commander, sleeping.id) == waiting
        done = await sleeping.signal("go", {"ok": True})
        assert done.status is MissionStatus.COMPLETED
        assert done.nodes["go"].input == {"ok": True}

    @pytest.mark.parametrize("make", _UNSTORABLE)
    async def test_a_step_output_no_store_can_hold_fails_the_step_once(
        self, persistence: PersistenceAdapter, clock: ManualClock, make: Callable[[], Any]
    ) -> None:
        """Such a step output fails the mission with OutputNotSerializableError at the first
        attempt (no retry), never leaving it running."""
        flow = (
            m.define("values").start(parse=_accept).step("make", lambda ctx: make(), retry=3).end()
        )
        commander = self.commander(persistence, clock, flow)
        snapshot = await (await commander.start(flow, {})).inspect()
        assert snapshot.status is MissionStatus.FAILED
        assert snapshot.error is not None
        assert snapshot.error.type == "OutputNotSerializableError"
        assert "output of step 'make'" in snapshot.error.message
        assert snapshot.nodes["make"].attempts == 1

    async def test_values_nested_to_max_nesting_are_stored_and_read_back(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """An input, a payload and an output nested MAX_NESTING deep are stored and read back
        equal, and so are ints of MAX_INT_DIGITS digits and non-ASCII text."""
        deep = _nested(MAX_NESTING - 1)
        big = 10**4300 - 1
        flow = (
            m.define("values")
            .start(parse=_accept, run=lambda ctx: {"deep": deep})
            .need_to("go", parse=_accept)
            .end()
        )
        commander = self.commander(persistence, clock, flow)
        handle = await commander.start(flow, {"deep": deep, "big": -big, "text": "café ✓"})
        await handle.signal("go", {"deep": deep, "big": big})
        done = await handle.inspect()
        assert done.status is MissionStatus.COMPLETED
        assert done.input == {"deep": deep, "big": -big, "text": "café ✓"}
        assert done.nodes["start"].output == {"deep": deep}
        assert done.nodes["go"].input == {"deep": deep, "big": big}

    async def test_a_cancel_reason_that_is_not_text_is_refused(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """A cancel reason that is not a string UTF-8 can encode raises InvalidInputError and
        changes nothing."""
        approval = approval_definition()
        commander = self.commander(persistence, clock, approval)
        handle = await commander.start(approval, {"email": "a@example.com"})
        before = await self._state(commander, handle.id)
        for reason in (object(), 42, "caf\udce9"):
            with pytest.raises(InvalidInputError, match="cancel reason"):
                await handle.cancel(reason)  # pyright: ignore[reportArgumentType]
        assert await self._state(commander, handle.id) == before

    async def test_an_exception_whose_str_raises_fails_the_attempt_clearly(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """A step, parser or input parser raising an exception whose str() raises fails the
        attempt or the call like any other error, naming the exception's type."""

        def refuse(value: Any) -> Any:
            raise _Unprintable()

        def fail(ctx: Context[Any, Any]) -> None:
            raise _Unprintable()

        flow = (
            m.define("values")
            .start(parse=_accept)
            .need_to("go", parse=refuse)
            .step("fail", fail)
            .end()
        )
        strict = m.define("strict").start(parse=refuse).end()
        failing = m.define("failing").start(parse=_accept).step("fail", fail).end()
        commander = self.commander(persistence, clock, flow, strict, failing)
        with pytest.raises(InvalidInputError, match="_Unprintable"):
            await commander.start(strict, {})
        handle = await commander.start(flow, {})
        with pytest.raises(InvalidSignalPayloadError, match="_Unprintable"):
            await handle.signal("go", {})
        assert (await handle.inspect()).status is MissionStatus.WAITING
        snapshot = await (await commander.start(failing, {})).inspect()
        assert snapshot.status is MissionStatus.FAILED
        assert snapshot.error is not None
        assert snapshot.error.type == "_Unprintable"
        assert "str()" in snapshot.error.message

    async def test_user_types_round_trip_through_the_commanders_converter(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """attrs classes, dataclasses and Decimal travel through an input, outputs and a payload
        with the converter given to the commander: stored as JSON, rebuilt as the types; a
        commander without it refuses them."""
        seen: dict[str, Any] = {}

        def pack(ctx: Context[Any, Any]) -> _Parcel:
            return _Parcel(ctx.input["declared"], ctx.input["label"])

        def quote(ctx: Context[Any, Any]) -> Decimal:
            parcel: _Parcel = ctx.events.start.output
            seen["parcel"] = parcel
            return parcel.weight * 2

        def deliver(ctx: Context[Any, Any]) -> _Address:
            seen["quote"] = ctx.events["quote"].output
            address = ctx.events["address"].output
            return _Address(address["city"], tuple(address["lines"]))

        def parse(raw: dict[str, Any]) -> dict[str, Any]:
            return {**raw, "declared": Decimal(raw["declared"])}

        flow = (
            m.define("parcel")
            .start(parse=parse, run=pack)
            .step("quote", quote)
            .need_to("address", parse=_accept)
            .step("deliver", deliver)
            .end(output=lambda ctx: ctx.events["deliver"].output)
        )
        commander = self.commander(persistence, clock, flow, converter=_user_converter())
        handle = await commander.start(flow, {"declared": Decimal("1.50"), "label": "fragile"})
        await handle.signal("address", _Address("Oslo", ("1 Main St",)))
        done = await handle.wait_for_completion()
        assert done.input == {"declared": "1.50", "label": "fragile"}
        assert done.nodes["start"].output == {"weight": "1.50", "label": "fragile"}
        assert done.nodes["quote"].output == "3.00"
        assert done.nodes["address"].input == {"city": "Oslo", "lines": ["1 Main St"]}
        assert done.output == {"city": "Oslo", "lines": ["1 Main St"]}
        assert seen == {"parcel": _Parcel(Decimal("1.50"), "fragile"), "quote": Decimal("3.00")}
        plain = self.commander(persistence, clock, flow)
        with pytest.raises(InvalidInputError, match="Decimal"):
            await plain.start(flow, {"declared": Decimal("1"), "label": "x"}, id="plain")

    async def test_a_returned_snapshot_is_independent_of_the_store(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """Changing the lists and dicts of any snapshot the commander hands back (inspect, list,
        signal, cancel, advance, result, a step's event input), its ``nodes`` mapping included,
        or of a timeline entry's detail, changes nothing stored."""
        events: list[Any] = []

        def touch(ctx: Context[Any, Any]) -> dict[str, Any]:
            payload = ctx.events["go"].input
            payload["by"].append("step")
            events.append(payload)
            return {"seen": ["x"]}

        flow = (
            m.define("values")
            .start(parse=_accept, run=lambda ctx: {"items": [1]})
            .need_to("go", parse=_accept)
            .step("touch", touch)
            .sleep("pause", 60)
            .end()
        )
        # No list or dict anywhere in its missions: only the nodes mapping can be shared.
        scalars = m.define("scalars").start(parse=_accept).need_to("go", parse=_accept).end()
        commander = self.commander(persistence, clock, flow, scalars)

        def scribble(snapshot: MissionSnapshot | None) -> None:
            assert snapshot is not None
            snapshot.input["tags"].append("changed")
            snapshot.nodes["start"].output["items"].append(2)
            for record in snapshot.nodes.values():
                for value in (record.input, record.output):
                    if isinstance(value, dict):
                        value["scribbled"] = True  # pyright: ignore[reportArgumentType]

        handle = await commander.start(flow, {"tags": ["a"]})
        scribble(await handle.inspect())
        scribble((await commander.list())[0])
        scribble(await handle.signal("go", {"by": ["me"]}))
        clock.advance(60)
        scribble(await commander.advance(handle.id))
        other = await commander.start(flow, {"tags": ["a"]})
        scribble(await other.cancel("done"))
        plain = await commander.start(scalars, "plain")
        # Typed as a read-only Mapping, but a dict all the same.
        cast("dict[str, Any]", (await plain.inspect()).nodes).clear()
        assert "start" in (await plain.inspect()).nodes
        for entry in await handle.timeline():
            if entry.detail is not None:
                entry.detail["scribbled"] = True
        assert all("scribbled" not in (e.detail or {}) for e in await handle.timeline())
        for mission_id in (handle.id, other.id):
            snapshot = await commander.inspect(mission_id)
            assert snapshot.input == {"tags": ["a"]}
            assert snapshot.nodes["start"].output == {"items": [1]}
        done = await handle.inspect()
        assert done.status is MissionStatus.COMPLETED
        assert done.nodes["go"].input == {"by": ["me"]}
        assert done.nodes["touch"].output == {"seen": ["x"]}
        assert events == [{"by": ["me", "step"]}]

    async def test_thirty_day_wait_with_retries_completes_in_virtual_time(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """A month of timers and hour-long retry backoffs passes by moving the clock only."""
        failures = {"count": 0}

        async def charge(ctx: Context[Any, Any]) -> str:
            if failures["count"] < 3:
                failures["count"] += 1
                raise TransientError("gateway down")
            return "charged"

        trial = (
            m.define("trial")
            .start(parse=_accept)
            .sleep("trial-period", timedelta(days=30))
            .step("charge", charge, retry=m.retry(5, m.exponential(3600, factor=2)))
            .end()
        )
        commander = self.commander(persistence, clock, trial)
        handle = await commander.start(trial, {})
        while (snapshot := await handle.inspect()).due_at is not None:
            clock.set(snapshot.due_at)
            await drain_due(commander)
        done = await handle.wait_for_completion()
        assert done.nodes["charge"].output == "charged"
        assert done.nodes["charge"].attempts == 4
        assert clock.now() == T0 + timedelta(days=30, hours=1 + 2 + 4)
