"""Control-flow scenarios: parallel branches, choices, signal timeouts and mission deadlines, run
by a commander on the adapter under test."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import anyio

from mission_control.core import (
    Commander,
    Context,
    MissionDefinition,
    MissionStatus,
    NodeStatus,
    TimelineKind,
    WaitKind,
    create_commander,
    m,
)
from mission_control.core.storage import PersistenceAdapter
from mission_control.in_memory_commander import ManualClock, SequentialIds

from ._engine_scenarios import ScenarioFixtures, drain_due
from ._protocol_battery import T0


def accept(value: Any) -> Any:
    """A parser that takes any value as it is."""
    return value


def scenario_commander(
    persistence: PersistenceAdapter,
    clock: ManualClock,
    *definitions: MissionDefinition[Any, Any, Any],
) -> Commander:
    """A commander of ``definitions`` on the adapter under test, with sequential ids."""
    return create_commander(
        list(definitions), persistence=persistence, clock=clock, ids=SequentialIds()
    )


class ControlFlowConformance(ScenarioFixtures):
    """Control-flow scenarios every persistence adapter must pass. Subclass it and provide
    ``persistence``."""

    # -- parallel ------------------------------------------------------------------------------

    async def test_parallel_branches_run_at_the_same_time_and_collect_outputs_by_branch(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """Each branch's steps run concurrently (each waits for the other to have started), and
        the parallel's output maps every branch to its last node's output."""
        started = {"a": anyio.Event(), "b": anyio.Event()}
        keys: dict[str, str] = {}

        def branch_step(mine: str, other: str) -> Any:
            async def run(ctx: Context[Any, Any]) -> str:
                keys[ctx.node] = ctx.idempotency_key
                started[mine].set()
                await started[other].wait()
                return f"{mine} done"

            return run

        flow = (
            m.define("fan-out")
            .start(parse=accept)
            .parallel(
                "checks",
                {
                    "a": lambda b: b.step("check-a", branch_step("a", "b")),
                    "b": lambda b: b.step("check-b", branch_step("b", "a")).step(
                        "after-b", lambda ctx: ctx.events["check-b"].output + "!"
                    ),
                },
            )
            .step("combine", lambda ctx: ctx.events["checks"].output)
            .end(output=lambda ctx: ctx.events["combine"].output)
        )
        commander = scenario_commander(persistence, clock, flow)
        with anyio.fail_after(5):
            handle = await commander.start(flow, None)
        done = await handle.wait_for_completion()
        assert done.output == {"a": "a done", "b": "b done!"}
        assert done.nodes["checks"].status is NodeStatus.COMPLETED
        assert done.nodes["checks/a/check-a"].output == "a done"
        assert done.nodes["checks/b/after-b"].output == "b done!"
        assert keys == {
            "check-a": f"{handle.id}:checks/a/check-a",
            "check-b": f"{handle.id}:checks/b/check-b",
        }
        assert done.active == ()

    async def test_a_parallel_waits_for_each_branch_signal_and_timer(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """A parallel whose branches wait for a signal and a timer waits for both, with both
        waits visible in the snapshot, and goes on once both have come."""
        flow = (
            m.define("both")
            .start(parse=accept)
            .parallel(
                "gather",
                {
                    "human": lambda b: b.need_to("approve", parse=accept),
                    "timer": lambda b: b.sleep("cool-off", 60),
                },
            )
            .end(output=lambda ctx: ctx.events["gather"].output)
        )
        commander = scenario_commander(persistence, clock, flow)
        handle = await commander.start(flow, None)
        waiting = await handle.inspect()
        assert waiting.status is MissionStatus.WAITING
        assert waiting.current_node == "gather"
        assert set(waiting.active) == {"gather/human/approve", "gather/timer/cool-off"}
        assert {w.kind for w in waiting.waits} == {WaitKind.SIGNAL, WaitKind.TIMER}
        assert waiting.due_at == T0 + timedelta(seconds=60)
        after_signal = await handle.signal("approve", "yes")
        assert after_signal.status is MissionStatus.WAITING
        assert after_signal.active == ("gather/timer/cool-off",)
        clock.advance(60)
        await drain_due(commander)
        done = await handle.wait_for_completion()
        assert done.output == {"human": "yes", "timer": None}

    async def test_a_first_parallel_ends_with_the_first_branch_and_cancels_the_others(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """With mode "first", the branch that ends first ends the node; the others' nodes are
        cancelled and recorded so."""
        flow = (
            m.define("race")
            .start(parse=accept)
            .parallel(
                "race",
                {
                    "reply": lambda b: b.need_to("reply", parse=accept),
                    "reminder": lambda b: b.sleep("wait-a-day", timedelta(days=1)).step(
                        "remind", lambda ctx: "reminded"
                    ),
                },
                mode="first",
            )
            .end(output=lambda ctx: ctx.events["race"].output)
        )
        commander = scenario_commander(persistence, clock, flow)
        handle = await commander.start(flow, None)
        done = await handle.signal("reply", "hello")
        assert done.status is MissionStatus.COMPLETED
        assert done.output == {"reply": "hello"}
        assert done.nodes["race/reminder/wait-a-day"].status is NodeStatus.CANCELLED
        assert "race/reminder/remind" not in done.nodes
        kinds = [(e.kind, e.node) for e in await handle.timeline()]
        assert (TimelineKind.BRANCH_CANCELLED, "race/reminder/wait-a-day") in kinds

    async def test_a_failed_branch_fails_the_mission_after_its_retries(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """A branch step retries by its own policy; when it fails for good the mission fails at
        that step and the other branch's wait is cancelled."""
        attempts: list[int] = []

        def flaky(ctx: Context[Any, Any]) -> None:
            attempts.append(ctx.attempt)
            raise RuntimeError(f"attempt {ctx.attempt}")

        flow = (
            m.define("fails")
            .start(parse=accept)
            .parallel(
                "work",
                {
                    "flaky": lambda b: b.step("flaky", flaky, retry=m.retry(2, m.fixed(5))),
                    "patient": lambda b: b.need_to("never", parse=accept),
                },
            )
            .end()
        )
        commander = scenario_commander(persistence, clock, flow)
        handle = await commander.start(flow, None)
        retrying = await handle.inspect()
        assert retrying.status is MissionStatus.WAITING
        assert retrying.nodes["work/flaky/flaky"].status is NodeStatus.WAITING
        clock.advance(5)
        await drain_due(commander)
        failed = await handle.result()
        assert attempts == [1, 2]
        assert failed.status is MissionStatus.FAILED
        assert failed.current_node == "work"
        assert failed.error is not None
        assert failed.error.message == "attempt 2"
        assert failed.nodes["work/flaky/flaky"].status is NodeStatus.FAILED
        assert failed.nodes["work/patient/never"].status is NodeStatus.CANCELLED
        assert failed.nodes["work"].status is NodeStatus.CANCELLED

    async def test_cancelling_a_mission_in_a_parallel_cancels_every_branch(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """A cancellation of a mission whose branches wait cancels each branch's node."""
        flow = (
            m.define("cancel-branches")
            .start(parse=accept)
            .parallel(
                "p",
                {
                    "a": lambda b: b.need_to("go-a", parse=accept),
                    "b": lambda b: b.sleep("nap", 60),
                },
            )
            .end()
        )
        commander = scenario_commander(persistence, clock, flow)
        handle = await commander.start(flow, None)
        cancelled = await handle.cancel("stop")
        assert cancelled.status is MissionStatus.CANCELLED
        assert cancelled.active == ()
        assert cancelled.waits == ()
        assert cancelled.nodes["p/a/go-a"].status is NodeStatus.CANCELLED
        assert cancelled.nodes["p/b/nap"].status is NodeStatus.CANCELLED
        assert await commander.next_due_at() is None

    # -- choice --------------------------------------------------------------------------------

    async def test_a_choice_runs_the_picked_path_and_is_never_made_again(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """The choice's function runs once; the path it picked runs, the other does not, the
        pick is the node's output, and a commander made later (as after a restart) goes on
        along the recorded path without choosing again."""
        calls: list[str] = []

        def pick(ctx: Context[Any, Any]) -> str:
            calls.append(ctx.node)
            return "refund" if ctx.input["amount"] > 100 else "ship"

        def build() -> MissionDefinition[Any, Any, Any]:
            return (
                m.define("route")
                .start(parse=accept)
                .choice(
                    "route",
                    pick,
                    {
                        "refund": lambda p: p.need_to("confirm-refund", parse=accept).step(
                            "refund", lambda ctx: "refunded"
                        ),
                        "ship": lambda p: p.step("ship", lambda ctx: "shipped"),
                    },
                )
                .step("after", lambda ctx: ctx.events["route"].output)
                .end(output=lambda ctx: ctx.events["after"].output)
            )

        flow = build()
        commander = scenario_commander(persistence, clock, flow)
        handle = await commander.start(flow, {"amount": 500})
        waiting = await handle.inspect()
        assert waiting.nodes["route"].output == "refund"
        assert waiting.active == ("route/refund/confirm-refund",)
        again = scenario_commander(persistence, clock, build())
        done = await again.signal(handle.id, "confirm-refund", True)
        assert done.status is MissionStatus.COMPLETED
        assert done.output == "refund"
        assert done.nodes["route/refund/refund"].output == "refunded"
        assert "route/ship/ship" not in done.nodes
        assert calls == ["route"]
        entries = [e for e in await handle.timeline() if e.kind is TimelineKind.PATH_CHOSEN]
        assert [(e.node, e.detail) for e in entries] == [("route", {"path": "refund"})]

    async def test_a_choice_that_picks_no_path_fails_the_mission_saying_so(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """A choice function that returns a name none of its paths has fails the mission with
        ChoiceError naming the pick and the paths."""
        flow = (
            m.define("bad-route")
            .start(parse=accept)
            .choice("route", lambda ctx: "nowhere", {"here": lambda p: p})
            .end()
        )
        commander = scenario_commander(persistence, clock, flow)
        failed = await (await commander.start(flow, None)).result()
        assert failed.status is MissionStatus.FAILED
        assert failed.error is not None
        assert failed.error.type == "ChoiceError"
        assert "'nowhere'" in failed.error.message
        assert "'here'" in failed.error.message

    # -- signal timeouts -----------------------------------------------------------------------

    async def test_a_need_to_timeout_fails_the_mission_or_runs_its_path(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """Past its timeout a need_to fails the mission with SignalTimeoutError, or, with an
        on_timeout path, runs it and goes on after the need_to, whose event is then missing."""
        strict = (
            m.define("strict")
            .start(parse=accept)
            .need_to("shipped", parse=accept, timeout=timedelta(days=7))
            .end()
        )
        lenient = (
            m.define("lenient")
            .start(parse=accept)
            .need_to(
                "delivered",
                parse=accept,
                timeout=timedelta(days=7),
                on_timeout=lambda p: p.step("refund", lambda ctx: "refunded"),
            )
            .step("close", lambda ctx: "delivered" in ctx.events)
            .end(output=lambda ctx: ctx.events["close"].output)
        )
        commander = scenario_commander(persistence, clock, strict, lenient)
        first = await commander.start(strict, None)
        second = await commander.start(lenient, None)
        waiting = await second.inspect()
        assert waiting.wait is not None
        assert waiting.wait.kind is WaitKind.SIGNAL
        assert waiting.wait.due_at == T0 + timedelta(days=7)
        clock.advance(timedelta(days=7))
        await drain_due(commander)
        failed = await first.result()
        assert failed.status is MissionStatus.FAILED
        assert failed.error is not None
        assert failed.error.type == "SignalTimeoutError"
        assert failed.nodes["shipped"].status is NodeStatus.FAILED
        kinds = [e.kind for e in await first.timeline()]
        assert kinds[-2:] == [TimelineKind.SIGNAL_TIMED_OUT, TimelineKind.MISSION_FAILED]
        done = await second.result()
        assert done.status is MissionStatus.COMPLETED
        assert done.output is False
        assert done.nodes["delivered"].status is NodeStatus.TIMED_OUT
        assert done.nodes["delivered/timeout/refund"].output == "refunded"

    async def test_a_signal_buffered_before_the_timeout_wins_over_it(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """A signal that came in time is used even when the mission is looked at only after
        the timeout."""
        flow = (
            m.define("in-time")
            .start(parse=accept)
            .sleep("first", 60)
            .need_to("reply", parse=accept, timeout=30)
            .end(output=lambda ctx: ctx.events["reply"].output)
        )
        commander = scenario_commander(persistence, clock, flow)
        handle = await commander.start(flow, None)
        await handle.signal("reply", "early")
        clock.advance(60 + 30)
        await drain_due(commander)
        done = await handle.result()
        assert done.status is MissionStatus.COMPLETED
        assert done.output == "early"

    # -- deadlines -----------------------------------------------------------------------------

    async def test_a_mission_past_its_deadline_fails_or_runs_its_deadline_path(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """Past the deadline a mission fails with DeadlineExceededError, or, with an
        on_deadline path, stops what it waited for, runs the path and then ends."""
        strict = (
            m.define("strict-deadline")
            .start(parse=accept)
            .need_to("approve", parse=accept)
            .deadline(timedelta(hours=1))
            .end()
        )
        lenient = (
            m.define("lenient-deadline")
            .start(parse=accept)
            .need_to("approve", parse=accept)
            .deadline(
                timedelta(hours=1), on_deadline=lambda p: p.step("expire", lambda ctx: "expired")
            )
            .end(output=lambda ctx: ctx.events["expire"].output)
        )
        commander = scenario_commander(persistence, clock, strict, lenient)
        first = await commander.start(strict, None)
        second = await commander.start(lenient, None)
        assert (await first.inspect()).deadline == T0 + timedelta(hours=1)
        assert await commander.next_due_at() == T0 + timedelta(hours=1)
        clock.advance(timedelta(hours=1))
        await drain_due(commander)
        failed = await first.result()
        assert failed.status is MissionStatus.FAILED
        assert failed.error is not None
        assert failed.error.type == "DeadlineExceededError"
        assert failed.nodes["approve"].status is NodeStatus.FAILED
        done = await second.result()
        assert done.status is MissionStatus.COMPLETED
        assert done.output == "expired"
        assert done.nodes["approve"].status is NodeStatus.CANCELLED
        assert done.nodes["end/deadline/expire"].output == "expired"
