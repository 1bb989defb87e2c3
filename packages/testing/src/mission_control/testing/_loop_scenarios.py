"""Loop scenarios: ``.loop`` driven by signals until its ``until`` holds, ``.for_each`` with a
bound on the items in flight, the iteration limit, recorded verdicts and items that a restart
does not compute again, and a snapshot whose size does not grow with the iterations, run by a
commander on the adapter under test."""

from __future__ import annotations

import re
from typing import Any

import anyio

from mission_control.core import (
    Context,
    MissionDefinition,
    MissionSnapshot,
    MissionStatus,
    NodeStatus,
    TimelineKind,
    WaitKind,
    m,
)
from mission_control.core.storage import PersistenceAdapter, snapshot_to_json
from mission_control.in_memory_commander import ManualClock

from ._control_flow_scenarios import accept, scenario_commander
from ._engine_scenarios import ScenarioFixtures, drain_due


def _iteration_paths(snapshot: MissionSnapshot, loop: str) -> set[str]:
    """The iterations of the loop at ``loop`` that have node records in ``snapshot``."""
    prefix = f"{loop}/"
    return {p[len(prefix) :].partition("/")[0] for p in snapshot.nodes if p.startswith(prefix)}


class LoopConformance(ScenarioFixtures):
    """Loop scenarios every persistence adapter must pass. Subclass it and provide
    ``persistence``."""

    # -- loop ----------------------------------------------------------------------------------

    async def test_a_loop_runs_its_body_again_until_its_until_holds_on_a_signal(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """A loop whose body waits for a signal runs one iteration per signal until ``until``
        holds; its output is the last iteration's, the timeline has one iteration-started entry
        per iteration (with the false verdict that asked for it), and only the latest
        iteration's node records are stored."""
        verdicts: list[tuple[int | None, str]] = []

        def done(ctx: Context[Any, Any]) -> bool:
            answer: str = ctx.events["answer"].output
            verdicts.append((ctx.iteration, answer))
            return answer == "stop"

        flow = (
            m.define("rounds")
            .start(parse=accept)
            .loop(
                "rounds",
                lambda b: (
                    b.step("ask", lambda ctx: f"question {ctx.iteration}")
                    .need_to("answer", parse=accept)
                    .step(
                        "tally",
                        lambda ctx: f"{ctx.events['ask'].output}: {ctx.events['answer'].output}",
                    )
                ),
                until=done,
                max_iterations=10,
            )
            .step("after", lambda ctx: ctx.events["tally"].output)
            .end(output=lambda ctx: [ctx.events["rounds"].output, ctx.events["after"].output])
        )
        commander = scenario_commander(persistence, clock, flow)
        handle = await commander.start(flow, None)
        first = await handle.inspect()
        assert first.status is MissionStatus.WAITING
        assert first.active == ("rounds/1/answer",)
        assert first.wait is not None
        assert (first.wait.kind, first.wait.signal) == (WaitKind.SIGNAL, "answer")
        assert first.nodes["rounds"].status is NodeStatus.RUNNING
        assert first.nodes["rounds/1/ask"].output == "question 1"

        second = await handle.signal("answer", "more")
        assert second.status is MissionStatus.WAITING
        assert second.active == ("rounds/2/answer",)
        assert _iteration_paths(second, "rounds") == {"2"}
        assert second.nodes["rounds/2/ask"].output == "question 2"
        assert second.nodes["rounds"].attempts == 2

        third = await handle.signal("answer", "again")
        assert third.active == ("rounds/3/answer",)
        assert _iteration_paths(third, "rounds") == {"3"}

        done_snapshot = await handle.signal("answer", "stop")
        assert done_snapshot.status is MissionStatus.COMPLETED
        assert done_snapshot.output == ["question 3: stop", "question 3: stop"]
        assert verdicts == [(1, "more"), (2, "again"), (3, "stop")]
        stored = await handle.inspect()
        assert stored.nodes["rounds"].status is NodeStatus.COMPLETED
        assert stored.nodes["rounds"].attempts == 3
        assert stored.nodes["rounds"].output == "question 3: stop"
        assert _iteration_paths(stored, "rounds") == {"3"}
        assert {p for p in stored.nodes if p.startswith("rounds/")} == {
            "rounds/3/ask",
            "rounds/3/answer",
            "rounds/3/tally",
        }
        assert stored.nodes["rounds/3/answer"].output == "stop"

        timeline = await handle.timeline()
        iterations = [
            (e.node, e.attempt, e.detail)
            for e in timeline
            if e.kind is TimelineKind.ITERATION_STARTED
        ]
        assert iterations == [
            ("rounds", 1, None),
            ("rounds", 2, {"until": False}),
            ("rounds", 3, {"until": False}),
        ]
        # The timeline keeps what the snapshot let go: every iteration's signal.
        received = [e.node for e in timeline if e.kind is TimelineKind.SIGNAL_RECEIVED]
        assert received == ["rounds/1/answer", "rounds/2/answer", "rounds/3/answer"]

    async def test_a_loop_whose_until_never_holds_fails_with_loop_limit_exceeded(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """After ``max_iterations`` false verdicts the mission fails with LoopLimitExceededError
        at the loop, having run the body exactly ``max_iterations`` times."""
        ran: list[int | None] = []

        def work(ctx: Context[Any, Any]) -> int:
            ran.append(ctx.iteration)
            return len(ran)

        flow = (
            m.define("endless")
            .start(parse=accept)
            .loop("spin", lambda b: b.step("work", work), until=lambda ctx: False, max_iterations=3)
            .step("never", lambda ctx: "unreachable")
            .end()
        )
        commander = scenario_commander(persistence, clock, flow)
        failed = await (await commander.start(flow, None)).result()
        assert ran == [1, 2, 3]
        assert failed.status is MissionStatus.FAILED
        assert failed.current_node == "spin"
        assert failed.error is not None
        assert failed.error.type == "LoopLimitExceededError"
        assert "max_iterations=3" in failed.error.message
        assert failed.nodes["spin"].status is NodeStatus.FAILED
        assert "never" not in failed.nodes
        assert failed.active == ()
        assert failed.waits == ()

    async def test_a_loops_recorded_verdict_is_not_asked_again_after_a_restart(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """A commander made later on the same store (as after a restart) goes on with the
        iteration the stored verdict began, and asks ``until`` only about the iterations that
        run after it."""
        asked: list[tuple[str, int | None]] = []

        def build(process: str, *, holds_at: set[int]) -> MissionDefinition[Any, Any, Any]:
            def until(ctx: Context[Any, Any]) -> bool:
                asked.append((process, ctx.iteration))
                return ctx.iteration in holds_at

            return (
                m.define("restartable-loop")
                .start(parse=accept)
                .loop(
                    "again",
                    lambda b: b.need_to("go", parse=accept).step(
                        "echo", lambda ctx: ctx.events["go"].output
                    ),
                    until=until,
                    max_iterations=5,
                )
                .end(output=lambda ctx: ctx.events["again"].output)
            )

        first = build("before", holds_at={3})
        commander = scenario_commander(persistence, clock, first)
        handle = await commander.start(first, None)
        waiting = await handle.signal("go", "one")
        assert waiting.active == ("again/2/go",)
        # Asked again about iteration 1, this until would end the loop there: it must not be.
        again = scenario_commander(persistence, clock, build("after", holds_at={1, 3}))
        still = await again.signal(handle.id, "go", "two")
        assert still.status is MissionStatus.WAITING
        assert still.active == ("again/3/go",)
        done = await again.signal(handle.id, "go", "three")
        assert done.status is MissionStatus.COMPLETED
        assert done.output == "three"
        assert done.nodes["again"].attempts == 3
        assert asked == [("before", 1), ("after", 2), ("after", 3)]

    # -- for_each ------------------------------------------------------------------------------

    async def test_a_for_each_runs_at_most_concurrency_items_at_once_with_results_in_order(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """A for_each with concurrency 2, whose body sleeps, never has more than 2 iterations in
        flight (functions running, or timers waiting), reaches 2, gives each iteration its
        item, and lists the results in the items' order however they finished."""
        items = [3, 1, 2, 5, 4]
        running: set[int] = set()
        most = 0
        finished: list[int] = []

        async def work(ctx: Context[Any, Any]) -> str:
            nonlocal most
            item: int = ctx.item
            running.add(item)
            most = max(most, len(running))
            try:
                # Virtual time: the item's seconds pass at once, in the items' sleep order.
                await anyio.sleep(item)
            finally:
                running.discard(item)
            finished.append(item)
            return f"slept {item} in iteration {ctx.iteration}"

        flow = (
            m.define("batch")
            .start(parse=accept)
            .for_each(
                "each",
                lambda ctx: ctx.input["items"],
                lambda b: (
                    b.step("work", work)
                    .sleep("cool-off", 60)
                    .step("report", lambda ctx: ctx.events["work"].output)
                ),
                max_iterations=10,
                concurrency=2,
            )
            .end(output=lambda ctx: ctx.events["each"].output)
        )
        commander = scenario_commander(persistence, clock, flow)
        handle = await commander.start(flow, {"items": items})
        in_flight: list[set[str]] = []
        snapshot = await handle.inspect()
        while snapshot.status is MissionStatus.WAITING:
            in_flight.append(_iteration_paths(snapshot, "each"))
            assert len(snapshot.waits) <= 2
            assert all(w.kind is WaitKind.TIMER for w in snapshot.waits)
            clock.advance(60)
            await drain_due(commander)
            snapshot = await handle.inspect()
        assert snapshot.status is MissionStatus.COMPLETED, snapshot.error
        assert most == 2
        assert all(len(iterations) <= 2 for iterations in in_flight)
        assert in_flight[0] == {"1", "2"}
        assert sorted(finished) == sorted(items)
        assert snapshot.output == [
            f"slept {item} in iteration {i}" for i, item in enumerate(items, start=1)
        ]
        record = snapshot.nodes["each"]
        assert record.status is NodeStatus.COMPLETED
        assert record.input == items
        assert record.attempts == len(items)
        assert _iteration_paths(snapshot, "each") == set()
        started = [
            e.attempt
            for e in await handle.timeline()
            if e.kind is TimelineKind.ITERATION_STARTED and e.node == "each"
        ]
        assert started == [1, 2, 3, 4, 5]

    async def test_a_for_each_of_no_items_completes_with_no_results(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """An empty list of items completes the for_each at once with output ``[]``, running no
        iteration."""
        ran: list[Any] = []
        flow = (
            m.define("nothing-to-do")
            .start(parse=accept)
            .for_each(
                "each",
                lambda ctx: [],
                lambda b: b.step("work", lambda ctx: ran.append(ctx.item)),
                max_iterations=3,
            )
            .end(output=lambda ctx: ctx.events["each"].output)
        )
        commander = scenario_commander(persistence, clock, flow)
        done = await (await commander.start(flow, None)).result()
        assert done.status is MissionStatus.COMPLETED
        assert done.output == []
        assert ran == []

    async def test_a_for_each_of_too_many_items_fails_before_any_runs(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """More items than ``max_iterations`` fail the mission with LoopLimitExceededError and
        run no iteration."""
        ran: list[Any] = []
        flow = (
            m.define("too-many")
            .start(parse=accept)
            .for_each(
                "each",
                lambda ctx: [1, 2, 3, 4],
                lambda b: b.step("work", lambda ctx: ran.append(ctx.item)),
                max_iterations=3,
            )
            .end()
        )
        commander = scenario_commander(persistence, clock, flow)
        failed = await (await commander.start(flow, None)).result()
        assert failed.status is MissionStatus.FAILED
        assert failed.error is not None
        assert failed.error.type == "LoopLimitExceededError"
        assert failed.current_node == "each"
        assert ran == []

    async def test_a_for_each_keeps_its_items_across_a_restart(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """The items are computed once, on entry: a commander made later on the same store (as
        after a restart), whose ``items`` would give another list, goes on with the stored
        items and never computes them again."""
        computed: list[str] = []
        seen: list[tuple[str, Any]] = []

        def build(process: str, items: list[str]) -> MissionDefinition[Any, Any, Any]:
            def make_items(ctx: Context[Any, Any]) -> list[str]:
                computed.append(process)
                return items

            def work(ctx: Context[Any, Any]) -> str:
                seen.append((process, ctx.item))
                return ctx.item.upper()

            return (
                m.define("restartable-each")
                .start(parse=accept)
                .for_each(
                    "each",
                    make_items,
                    lambda b: (
                        b.step("work", work)
                        .sleep("nap", 60)
                        .step("done", lambda ctx: ctx.events["work"].output)
                    ),
                    max_iterations=5,
                )
                .end(output=lambda ctx: ctx.events["each"].output)
            )

        first = build("before", ["a", "b", "c"])
        commander = scenario_commander(persistence, clock, first)
        handle = await commander.start(first, None)
        waiting = await handle.inspect()
        assert waiting.active == ("each/1/nap",)
        assert waiting.nodes["each"].input == ["a", "b", "c"]
        again = scenario_commander(persistence, clock, build("after", ["x", "y"]))
        for _ in range(3):
            clock.advance(60)
            await drain_due(again)
        done = await again.result(handle.id)
        assert done.status is MissionStatus.COMPLETED
        assert done.output == ["A", "B", "C"]
        assert computed == ["before"]
        assert seen == [("before", "a"), ("after", "b"), ("after", "c")]

    # -- bounded snapshot ----------------------------------------------------------------------

    async def test_a_loops_snapshot_does_not_grow_with_its_iterations(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """The stored snapshot of a loop at iteration 50 has as many node records as at
        iteration 2, and its JSON is the same but for the numbers in it (the iteration in
        paths, the revision)."""
        flow = (
            m.define("ticker")
            .start(parse=accept)
            .loop(
                "ticks",
                lambda b: (
                    b.step("work", lambda ctx: "worked")
                    .need_to("tick", parse=accept)
                    .step("note", lambda ctx: ctx.events["tick"].output)
                ),
                until=lambda ctx: ctx.events["tick"].output == "stop",
                max_iterations=100,
            )
            .end(output=lambda ctx: ctx.events["ticks"].output)
        )
        commander = scenario_commander(persistence, clock, flow)
        handle = await commander.start(flow, None)
        await handle.signal("tick", "more")
        at_2 = await handle.inspect()
        assert at_2.active == ("ticks/2/tick",)
        for _ in range(48):
            await handle.signal("tick", "more")
        at_50 = await handle.inspect()
        assert at_50.active == ("ticks/50/tick",)
        assert len(at_50.nodes) == len(at_2.nodes)
        text_2, text_50 = snapshot_to_json(at_2), snapshot_to_json(at_50)
        assert re.sub(r"\d+", "#", text_50) == re.sub(r"\d+", "#", text_2)
        # Digits only: "2" became "50" in each path, and the revision gained a digit or two.
        assert len(text_50) - len(text_2) < 20
        done = await handle.signal("tick", "stop")
        assert done.status is MissionStatus.COMPLETED
        assert done.output == "stop"
