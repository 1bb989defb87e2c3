"""Saga scenarios: steps with compensations, undone in reverse order when a mission fails, a
step asks for it or a cancellation does, run by a commander on the adapter under test."""

from __future__ import annotations

import functools
from typing import Any

import anyio
import attrs
import pytest

from mission_control.core import (
    Compensation,
    CompensationRequested,
    Context,
    MissionCompensatedError,
    MissionNotActiveError,
    MissionStatus,
    NodeStatus,
    TimelineKind,
    WaitKind,
    m,
)
from mission_control.core.storage import PersistenceAdapter
from mission_control.in_memory_commander import ManualClock

from ._engine_scenarios import FatalError, ScenarioFixtures, TransientError, drain_due
from ._protocol_battery import T0


def _accept(value: Any) -> Any:
    return value


@attrs.frozen
class Booking:
    """A typed step output, reflow as itself for the step's compensation."""

    ref: str
    seats: int


class _Ledger:
    """Bookings that steps make and compensations undo, in the order each happened."""

    def __init__(self) -> None:
        self.done: list[str] = []
        self.undone: list[tuple[str, Any]] = []
        self.keys: list[str] = []
        self.fail_undo: dict[str, int] = {}
        """How many attempts of a compensation fail, by step name."""

    def book(self, name: str) -> Any:
        def run(ctx: Context[Any, Any]) -> dict[str, str]:
            self.done.append(name)
            return {"ref": f"{name}-1"}

        return run

    def undo(self, ctx: Context[Any, Any], output: Any) -> None:
        if self.fail_undo.get(ctx.node, 0) >= ctx.attempt:
            raise TransientError(f"undo {ctx.node} attempt {ctx.attempt}")
        self.undone.append((ctx.node, output))
        self.keys.append(ctx.idempotency_key)


def _fail(ctx: Context[Any, Any]) -> None:
    raise FatalError("no rooms left")


class SagaConformance(ScenarioFixtures):
    """Compensation scenarios every persistence adapter must pass. Subclass it and provide
    ``persistence``."""

    async def test_a_failed_mission_undoes_its_completed_steps_last_first(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """When a mission fails, the compensation of every compensable step that completed runs
        once, last completed first, with the step's output (typed as the step returned it) and
        a key of its own; the mission ends compensated with the failure as its error."""
        ledger = _Ledger()
        undone_bookings: list[Booking] = []

        async def book_seats(ctx: Context[Any, Any]) -> Booking:
            ledger.done.append("seats")
            return Booking("seats-1", 2)

        async def free_seats(ctx: Context[Any, Any], booking: Booking) -> None:
            undone_bookings.append(booking)
            ledger.undone.append((ctx.node, attrs.asdict(booking)))

        flow = (
            m.define("trip")
            .start(parse=_accept)
            .step("flight", ledger.book("flight"), compensate=ledger.undo)
            .step("note", lambda ctx: "not compensable")
            .step("seats", book_seats, compensate=free_seats)
            .step("hotel", _fail, compensate=ledger.undo)
            .end()
        )
        commander = self.commander(persistence, clock, flow)
        handle = await commander.start(flow, None)
        with pytest.raises(MissionCompensatedError, match="no rooms left") as raised:
            await handle.wait_for_completion()
        done = raised.value.snapshot
        assert done.status is MissionStatus.COMPENSATED
        assert done.error is not None
        assert (done.error.type, done.current_node) == ("FatalError", "hotel")
        assert ledger.undone == [
            ("seats", {"ref": "seats-1", "seats": 2}),
            ("flight", {"ref": "flight-1"}),
        ]
        assert undone_bookings == [Booking("seats-1", 2)]
        assert ledger.keys == [f"{handle.id}:flight/compensate"]
        assert done.compensations is not None
        assert done.compensations.owed == ()
        assert done.compensations.since is not None
        assert done.nodes["hotel"].status is NodeStatus.FAILED
        assert done.nodes["seats/compensate"].status is NodeStatus.COMPLETED
        assert done.nodes["flight/compensate"].input == {"ref": "flight-1"}
        assert "note/compensate" not in done.nodes
        assert "hotel/compensate" not in done.nodes
        entries = await commander.timeline(handle.id)
        saga = [
            (e.kind, e.node)
            for e in entries
            if e.kind.value.startswith(("compensation-", "mission-compensat"))
        ]
        assert saga == [
            (TimelineKind.MISSION_COMPENSATING, "hotel"),
            (TimelineKind.COMPENSATION_STARTED, "seats/compensate"),
            (TimelineKind.COMPENSATION_COMPLETED, "seats/compensate"),
            (TimelineKind.COMPENSATION_STARTED, "flight/compensate"),
            (TimelineKind.COMPENSATION_COMPLETED, "flight/compensate"),
            (TimelineKind.MISSION_COMPENSATED, "hotel"),
        ]
        began = next(e for e in entries if e.kind is TimelineKind.MISSION_COMPENSATING)
        assert began.detail == {"reason": "failed", "owed": ["flight", "seats"]}
        assert TimelineKind.MISSION_FAILED not in {e.kind for e in entries}
        assert await commander.list(status=MissionStatus.COMPENSATED) == [done]

    async def test_branches_and_paths_are_undone_in_reverse_order_of_completion(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """Compensable steps in a parallel's branches and a choice's path are owed in the order
        they completed (not the order they are written in; a caller changing a snapshot's copy
        changes none of it) and undone in reverse."""
        ledger = _Ledger()
        flow = (
            m.define("branches")
            .start(parse=_accept)
            .parallel(
                "book",
                {
                    "a": lambda b: b.need_to("go-a", parse=_accept).step(
                        "car", ledger.book("car"), compensate=ledger.undo
                    ),
                    "b": lambda b: b.step("train", ledger.book("train"), compensate=ledger.undo),
                },
            )
            .choice(
                "stay",
                lambda ctx: "hotel",
                {
                    "hotel": lambda b: b.step(
                        "hotel", ledger.book("hotel"), compensate=ledger.undo
                    ),
                    "tent": lambda b: b.step("tent", ledger.book("tent"), compensate=ledger.undo),
                },
            )
            .need_to("confirm", parse=_accept)
            .step("pay", _fail)
            .end()
        )
        commander = self.commander(persistence, clock, flow)
        handle = await commander.start(flow, None)
        await handle.signal("go-a", None)
        waiting = await handle.inspect()
        waiting_copy = await handle.inspect()
        assert waiting.compensations is not None
        assert waiting.compensations.owed == (
            Compensation("book/b/train", {"ref": "train-1"}),
            Compensation("book/a/car", {"ref": "car-1"}),
            Compensation("stay/hotel/hotel", {"ref": "hotel-1"}),
        )
        assert not waiting.compensating
        waiting.compensations.owed[0].output["ref"] = "changed by the caller"
        assert (await handle.inspect()).compensations == waiting_copy.compensations
        done = await handle.signal("confirm", None)
        assert done.status is MissionStatus.COMPENSATED
        assert [name for name, _ in ledger.undone] == ["hotel", "car", "train"]
        assert ledger.keys == [
            f"{handle.id}:stay/hotel/hotel/compensate",
            f"{handle.id}:book/a/car/compensate",
            f"{handle.id}:book/b/train/compensate",
        ]

    async def test_steps_in_loop_iterations_are_undone_each_with_its_iteration_and_item(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """A compensable step in a loop's body and in a for_each's body owes one compensation
        per iteration, kept though the iterations' records leave the snapshot; each runs with
        its iteration's output, ``ctx.iteration`` and ``ctx.item``, the last iteration first."""
        undone: list[tuple[str, Any, Any, Any]] = []

        def undo(ctx: Context[Any, Any], output: Any) -> None:
            item = ctx.item if ctx.node == "ship" else None
            undone.append((ctx.path, output, ctx.iteration, item))

        def charge(ctx: Context[Any, Any]) -> int:
            return (ctx.iteration or 0) * 10

        flow = (
            m.define("looped-undo")
            .start(parse=_accept)
            .loop(
                "rounds",
                lambda b: b.step("charge", charge, compensate=undo),
                until=lambda ctx: ctx.iteration == 3,
                max_iterations=5,
            )
            .for_each(
                "parcels",
                lambda ctx: ["p-1", "p-2"],
                lambda b: b.step("ship", lambda ctx: f"shipped {ctx.item}", compensate=undo),
                max_iterations=5,
            )
            .step("pay", _fail)
            .end()
        )
        commander = self.commander(persistence, clock, flow)
        done = await (await commander.start(flow, None)).result()
        assert done.status is MissionStatus.COMPENSATED
        assert undone == [
            ("parcels/2/ship/compensate", "shipped p-2", 2, "p-2"),
            ("parcels/1/ship/compensate", "shipped p-1", 1, "p-1"),
            ("rounds/3/charge/compensate", 30, 3, None),
            ("rounds/2/charge/compensate", 20, 2, None),
            ("rounds/1/charge/compensate", 10, 1, None),
        ]

    async def test_a_failing_branch_cancels_the_others_and_undoes_what_completed(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """A branch that fails stops the parallel's other branches (a branch stopped mid-way
        owes nothing for its unfinished step) and compensates the steps that completed."""
        ledger = _Ledger()
        flow = (
            m.define("racing-branches")
            .start(parse=_accept)
            .parallel(
                "book",
                {
                    "a": lambda b: b.step("car", ledger.book("car"), compensate=ledger.undo).step(
                        "boom", _fail
                    ),
                    "b": lambda b: b.need_to("later", parse=_accept).step(
                        "bus", ledger.book("bus"), compensate=ledger.undo
                    ),
                },
            )
            .end()
        )
        commander = self.commander(persistence, clock, flow)
        done = await (await commander.start(flow, None)).result()
        assert done.status is MissionStatus.COMPENSATED
        assert ledger.undone == [("car", {"ref": "car-1"})]
        assert done.nodes["book/b/later"].status is NodeStatus.CANCELLED
        assert done.active == ()
        assert done.waits == ()

    async def test_a_compensation_retries_with_its_own_policy_and_cannot_be_cancelled(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """A compensation that fails is retried by its own retry policy (the mission waits for
        it, compensating, and refuses a cancellation meanwhile), then the mission goes on
        compensating."""
        ledger = _Ledger()
        ledger.fail_undo["hotel"] = 1
        flow = (
            m.define("retrying-undo")
            .start(parse=_accept)
            .step("flight", ledger.book("flight"), compensate=ledger.undo)
            .step(
                "hotel",
                ledger.book("hotel"),
                compensate=ledger.undo,
                compensate_retry=m.retry(3, m.fixed(30)),
            )
            .step("car", _fail, retry=m.retry(5, m.fixed(1)), compensate=ledger.undo)
            .end()
        )
        commander = self.commander(persistence, clock, flow)
        handle = await commander.start(flow, None)
        clock.advance(1)
        await drain_due(commander)  # the car is retried...
        clock.advance(1)
        await drain_due(commander)
        clock.advance(1)
        await drain_due(commander)
        clock.advance(1)
        await drain_due(commander)  # ...until its 5 attempts are used up
        waiting = await handle.inspect()
        assert waiting.status is MissionStatus.WAITING
        assert waiting.compensating
        assert waiting.wait is not None
        assert (waiting.wait.kind, waiting.wait.node) == (WaitKind.RETRY, "hotel/compensate")
        assert waiting.due_at == T0.replace(second=34)
        assert waiting.nodes["hotel/compensate"].attempts == 1
        assert waiting.nodes["hotel/compensate"].error is not None
        assert ledger.undone == []
        with pytest.raises(MissionNotActiveError, match="compensations"):
            await handle.cancel("give up")
        assert await handle.inspect() == waiting
        clock.advance(30)
        await drain_due(commander)
        done = await handle.result()
        assert done.status is MissionStatus.COMPENSATED
        assert [name for name, _ in ledger.undone] == ["hotel", "flight"]
        assert done.nodes["hotel/compensate"].attempts == 2
        kinds = [
            (e.kind, e.attempt)
            for e in await commander.timeline(handle.id)
            if e.node == "hotel/compensate"
        ]
        assert kinds == [
            (TimelineKind.COMPENSATION_STARTED, 1),
            (TimelineKind.COMPENSATION_FAILED, 1),
            (TimelineKind.RETRY_SCHEDULED, 2),
            (TimelineKind.COMPENSATION_STARTED, 2),
            (TimelineKind.COMPENSATION_COMPLETED, 2),
        ]

    async def test_a_compensation_that_fails_for_good_stops_compensating(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """A compensation out of its attempts fails the mission with CompensationFailedError
        (naming it, its error and the first failure); the compensations before it are not run
        and stay owed with it."""
        ledger = _Ledger()
        ledger.fail_undo["hotel"] = 9
        flow = (
            m.define("stuck-undo")
            .start(parse=_accept)
            .step("flight", ledger.book("flight"), compensate=ledger.undo)
            .step("hotel", ledger.book("hotel"), compensate=ledger.undo, compensate_retry=2)
            .step("car", _fail)
            .end()
        )
        commander = self.commander(persistence, clock, flow)
        handle = await commander.start(flow, None)
        clock.advance(1)
        await drain_due(commander)
        failed = await handle.result()
        assert failed.status is MissionStatus.FAILED
        assert failed.error is not None
        assert failed.error.type == "CompensationFailedError"
        assert "'hotel'" in failed.error.message
        assert "TransientError: undo hotel attempt 2" in failed.error.message
        assert "FatalError: no rooms left" in failed.error.message
        assert failed.current_node == "car"
        assert failed.nodes["car"].error is not None
        assert failed.nodes["car"].error.type == "FatalError"
        assert failed.nodes["hotel/compensate"].status is NodeStatus.FAILED
        assert failed.compensations is not None
        assert [owed.path for owed in failed.compensations.owed] == ["flight", "hotel"]
        assert ledger.undone == []
        kinds = [e.kind for e in await commander.timeline(handle.id)]
        assert kinds[-2:] == [TimelineKind.COMPENSATION_FAILED, TimelineKind.MISSION_FAILED]

    async def test_a_step_asks_for_compensation_by_raising_compensation_requested(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """A step that raises CompensationRequested (here: the sign-off was refused) is not
        retried; the mission compensates what completed and ends compensated with the request
        as its error."""
        ledger = _Ledger()
        attempts: list[int] = []

        def check(ctx: Context[Any, Any]) -> str:
            attempts.append(ctx.attempt)
            if not ctx.events["sign-off"].output["approved"]:
                raise CompensationRequested("sign-off refused")
            return "signed"

        flow = (
            m.define("sign-off")
            .start(parse=_accept)
            .step("reserve", ledger.book("reserve"), compensate=ledger.undo)
            .need_to("sign-off", parse=_accept)
            .step("check", check, retry=5)
            .end()
        )
        commander = self.commander(persistence, clock, flow)
        handle = await commander.start(flow, None)
        done = await handle.signal("sign-off", {"approved": False})
        assert done.status is MissionStatus.COMPENSATED
        assert attempts == [1]
        assert done.error is not None
        assert (done.error.type, done.error.message) == (
            "CompensationRequested",
            "sign-off refused",
        )
        assert ledger.undone == [("reserve", {"ref": "reserve-1"})]
        began = next(
            e
            for e in await commander.timeline(handle.id)
            if e.kind is TimelineKind.MISSION_COMPENSATING
        )
        assert began.detail == {"reason": "requested", "owed": ["reserve"]}

    async def test_a_requested_compensation_with_nothing_owed_still_ends_compensated(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """CompensationRequested before any compensable step completed ends the mission
        compensated at once; a plain failure with nothing owed ends it failed, as before."""

        def refuse(ctx: Context[Any, Any]) -> None:
            raise CompensationRequested("not today")

        asked = m.define("asked").start(parse=_accept, run=refuse).end()
        plain = (
            m.define("plain")
            .start(parse=_accept)
            .step("boom", _fail)
            .step("never", _accept, compensate=lambda ctx, output: None)
            .end()
        )
        commander = self.commander(persistence, clock, asked, plain)
        compensated = await (await commander.start(asked, None)).result()
        assert compensated.status is MissionStatus.COMPENSATED
        assert compensated.compensations is not None
        assert compensated.compensations.owed == ()
        failed = await (await commander.start(plain, None)).result()
        assert failed.status is MissionStatus.FAILED
        assert failed.compensations is None
        assert not failed.compensating

    async def test_cancel_undoes_nothing_unless_asked_to_compensate(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """A plain cancel ends the mission cancelled with its compensations left owed; a cancel
        with compensate=True runs them in the call (the mission was waiting) and ends it
        compensated, with no error and the cancellation's reason."""
        ledger = _Ledger()
        flow = (
            m.define("cancellable")
            .start(parse=_accept)
            .step("flight", ledger.book("flight"), compensate=ledger.undo)
            .step("hotel", ledger.book("hotel"), compensate=ledger.undo)
            .need_to("go", parse=_accept)
            .end()
        )
        commander = self.commander(persistence, clock, flow)
        plain = await commander.start(flow, None)
        cancelled = await plain.cancel("changed plans")
        assert cancelled.status is MissionStatus.CANCELLED
        assert cancelled.compensations is not None
        assert len(cancelled.compensations.owed) == 2
        assert ledger.undone == []

        undone = await commander.start(flow, None)
        compensated = await undone.cancel("changed plans", compensate=True)
        assert compensated.status is MissionStatus.COMPENSATED
        assert compensated.error is None
        assert compensated.cancel_request is not None
        assert compensated.cancel_request.compensate
        assert compensated.current_node == "go"
        assert compensated.nodes["go"].status is NodeStatus.CANCELLED
        assert [name for name, _ in ledger.undone] == ["hotel", "flight"]
        with pytest.raises(MissionCompensatedError, match="cancelled \\(changed plans\\)"):
            await undone.wait_for_completion()
        entries = await commander.timeline(undone.id)
        assert entries[-7].kind is TimelineKind.CANCEL_REQUESTED
        assert entries[-7].detail == {"reason": "changed plans", "compensate": True}
        assert entries[-6].detail == {"reason": "cancelled", "owed": ["flight", "hotel"]}
        assert TimelineKind.MISSION_CANCELLED not in {e.kind for e in entries}

    async def test_cancel_with_compensate_of_a_running_mission_undoes_its_current_step_too(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """A cancel with compensate=True of a mission running a step takes effect when the
        step returns: that step completed, so it is compensated with the ones before it."""
        ledger = _Ledger()
        running = anyio.Event()
        release = anyio.Event()

        async def slow(ctx: Context[Any, Any]) -> str:
            running.set()
            await release.wait()
            return "slow-1"

        flow = (
            m.define("cancel-running")
            .start(parse=_accept)
            .step("flight", ledger.book("flight"), compensate=ledger.undo)
            .step("slow", slow, compensate=ledger.undo)
            .step("never", ledger.book("never"), compensate=ledger.undo)
            .end()
        )
        commander = self.commander(persistence, clock, flow)
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(functools.partial(commander.start, flow, None, id="c-1"))
            await running.wait()
            requested = await commander.cancel("c-1", "stop", compensate=True)
            assert requested.cancel_request is not None
            assert requested.cancel_request.compensate
            release.set()
        done = await commander.result("c-1")
        assert done.status is MissionStatus.COMPENSATED
        assert ledger.done == ["flight"]
        assert ledger.undone == [("slow", "slow-1"), ("flight", {"ref": "flight-1"})]

    async def test_a_passed_deadline_compensates_and_no_longer_applies(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """A mission whose deadline passes (without an on_deadline path) compensates; its
        deadline is cleared, so it is due only for its compensations' retries."""
        ledger = _Ledger()
        ledger.fail_undo["flight"] = 1
        flow = (
            m.define("late")
            .start(parse=_accept)
            .step(
                "flight",
                ledger.book("flight"),
                compensate=ledger.undo,
                compensate_retry=m.retry(2, m.fixed(600)),
            )
            .need_to("go", parse=_accept)
            .deadline(60)
            .end()
        )
        commander = self.commander(persistence, clock, flow)
        handle = await commander.start(flow, None)
        clock.advance(60)
        await drain_due(commander)
        retrying = await handle.inspect()
        assert retrying.compensating
        assert retrying.deadline is None
        assert retrying.error is not None
        assert retrying.error.type == "DeadlineExceededError"
        assert retrying.due_at == T0.replace(minute=11)
        clock.advance(600)
        await drain_due(commander)
        done = await handle.result()
        assert done.status is MissionStatus.COMPENSATED
        assert ledger.undone == [("flight", {"ref": "flight-1"})]

    async def test_a_completed_mission_keeps_what_it_would_have_owed(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """A mission that completes runs no compensation; its snapshot lists the compensable
        steps that completed."""
        ledger = _Ledger()
        flow = (
            m.define("fine")
            .start(parse=_accept)
            .step("flight", ledger.book("flight"), compensate=ledger.undo)
            .end()
        )
        commander = self.commander(persistence, clock, flow)
        done = await (await commander.start(flow, None)).wait_for_completion()
        assert done.status is MissionStatus.COMPLETED
        assert done.compensations is not None
        assert done.compensations.owed == (Compensation("flight", {"ref": "flight-1"}),)
        assert ledger.undone == []
