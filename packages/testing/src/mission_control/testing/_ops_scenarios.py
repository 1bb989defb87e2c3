"""Operations scenarios: retrying a failed or cancelled mission, forking one into a new
mission, purging finished ones, run by a commander on the adapter under test."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from mission_control.core import (
    Commander,
    Context,
    InvalidInputError,
    MissionAlreadyExistsError,
    MissionNotRetryableError,
    MissionSnapshot,
    MissionStatus,
    NodeStatus,
    PurgeBatch,
    TimelineKind,
    m,
)
from mission_control.core.storage import PersistenceAdapter
from mission_control.in_memory_commander import ManualClock

from ._engine_scenarios import FatalError, ScenarioFixtures, drain_due


def _accept(value: Any) -> Any:
    return value


class _Flaky:
    """Steps that count their runs, and fail while told to."""

    def __init__(self) -> None:
        self.runs: dict[str, int] = {}
        self.attempts: dict[str, list[int]] = {}
        self.failing: set[str] = set()

    def step(self, name: str) -> Any:
        def run(ctx: Context[Any, Any]) -> str:
            self.runs[name] = self.runs.get(name, 0) + 1
            self.attempts.setdefault(name, []).append(ctx.attempt)
            if name in self.failing:
                raise FatalError(f"{name} is down")
            return f"{name} done"

        return run


def _flow(steps: _Flaky) -> Any:
    return (
        m.define("ops")
        .start(parse=_accept)
        .step("a", steps.step("a"))
        .step("b", steps.step("b"), retry=2)
        .need_to("approve", parse=bool)
        .step("c", steps.step("c"))
        .end(output=lambda ctx: ctx.events["c"].output)
    )


async def _unchanged(commander: Commander, mission_id: str) -> tuple[MissionSnapshot, list[Any]]:
    return await commander.inspect(mission_id), await commander.timeline(mission_id)


class OpsConformance(ScenarioFixtures):
    """Retry, fork and purge scenarios every persistence adapter must pass. Subclass it and
    provide ``persistence``."""

    # -- retry ---------------------------------------------------------------------------------

    async def test_a_failed_mission_is_retried_from_the_node_that_failed(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """A retry runs a failed mission again from the node that failed, its attempts from 1,
        keeping the records of the nodes before it (not run again) and its timeline, which
        says it was retried."""
        steps = _Flaky()
        flow = _flow(steps)
        commander = self.commander(persistence, clock, flow)
        steps.failing.add("b")
        handle = await commander.start(flow, {})
        clock.advance(timedelta(minutes=5))
        await drain_due(commander)
        failed = await handle.inspect()
        assert failed.status is MissionStatus.FAILED
        assert steps.attempts["b"] == [1, 2]
        steps.failing.clear()
        clock.advance(timedelta(hours=1))

        retried = await commander.retry(handle.id)

        assert retried.status is MissionStatus.WAITING
        assert retried.current_node == "approve"
        assert retried.error is None
        assert retried.retries == 1
        assert retried.nodes["a"] == failed.nodes["a"]
        assert retried.nodes["b"].status is NodeStatus.COMPLETED
        assert retried.nodes["b"].attempts == 1
        assert steps.runs["a"] == 1
        assert steps.attempts["b"] == [1, 2, 1]
        assert await commander.inspect(handle.id) == retried
        entries = await commander.timeline(handle.id)
        kinds = [e.kind for e in entries]
        assert kinds.index(TimelineKind.MISSION_FAILED) < kinds.index(TimelineKind.MISSION_RETRIED)
        again = next(e for e in entries if e.kind is TimelineKind.MISSION_RETRIED)
        assert (again.node, again.detail) == ("b", {"status": "failed", "retry": 1})
        done = await commander.signal(handle.id, "approve", True)
        assert (done.status, done.output) == (MissionStatus.COMPLETED, "c done")

    async def test_a_retry_from_an_earlier_node_runs_it_and_those_after_it_again(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """``from_node`` runs the mission again from an earlier top-level node: that node and
        the ones after it run again, the ones before keep their records."""
        steps = _Flaky()
        flow = _flow(steps)
        commander = self.commander(persistence, clock, flow)
        handle = await commander.start(flow, {})
        await commander.cancel(handle.id, "wrong order")
        retried = await commander.retry(handle.id, from_node="a")
        assert retried.status is MissionStatus.WAITING
        assert steps.runs == {"a": 2, "b": 2}
        assert retried.nodes["a"].attempts == 1
        assert retried.cancel_request is None

    async def test_a_cancelled_mission_is_retried_without_its_cancellation(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """A cancelled mission retried waits again where it was cancelled, its cancellation
        request gone from the store, and runs to its end."""
        steps = _Flaky()
        flow = _flow(steps)
        commander = self.commander(persistence, clock, flow)
        handle = await commander.start(flow, {})
        cancelled = await commander.cancel(handle.id, "by mistake")
        assert cancelled.status is MissionStatus.CANCELLED
        retried = await commander.retry(handle.id)
        assert retried.status is MissionStatus.WAITING
        assert retried.current_node == "approve"
        stored = await commander.inspect(handle.id)
        assert stored.cancel_request is None
        assert steps.runs == {"a": 1, "b": 1}
        entries = await commander.timeline(handle.id)
        again = next(e for e in entries if e.kind is TimelineKind.MISSION_RETRIED)
        assert again.detail == {"status": "cancelled", "retry": 1}
        done = await commander.signal(handle.id, "approve", True)
        assert done.status is MissionStatus.COMPLETED

    async def test_a_mission_that_is_not_failed_or_cancelled_is_not_retried(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """Retrying a waiting or completed mission raises MissionNotRetryableError and stores
        nothing; so does a node the mission cannot run again from (InvalidInputError)."""
        steps = _Flaky()
        flow = _flow(steps)
        commander = self.commander(persistence, clock, flow)
        waiting = await commander.start(flow, {}, id="waiting")
        before = await _unchanged(commander, waiting.id)
        with pytest.raises(MissionNotRetryableError, match="it is waiting"):
            await commander.retry(waiting.id)
        assert await _unchanged(commander, waiting.id) == before
        done = await commander.start(flow, {}, id="done")
        await done.signal("approve", True)
        with pytest.raises(MissionNotRetryableError, match="it is completed"):
            await commander.retry(done.id)
        failed = await commander.start(flow, {}, id="failed")
        await failed.cancel("stop")
        before = await _unchanged(commander, failed.id)
        with pytest.raises(InvalidInputError, match="has no such node"):
            await commander.retry(failed.id, from_node="nope")
        with pytest.raises(InvalidInputError, match="'approve' before it has not completed"):
            await commander.retry(failed.id, from_node="c")
        assert await _unchanged(commander, failed.id) == before
        assert steps.runs == {"a": 3, "b": 3, "c": 1}

    async def test_a_mission_cancelled_while_a_step_ran_is_retried_after_that_step(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """A cancellation that came while a step ran ends the mission after the step completed;
        a retry runs the mission again from the node after that step, which does not run
        again (its output is kept)."""
        steps = _Flaky()
        commander: Commander | None = None

        async def pay(ctx: Context[Any, Any]) -> str:
            steps.runs["pay"] = steps.runs.get("pay", 0) + 1
            assert commander is not None
            if steps.runs["pay"] == 1:
                await commander.cancel(ctx.mission_id, "changed my mind")
            return "paid"

        flow = (
            m.define("pay-then-ship")
            .start(parse=_accept)
            .step("pay", pay)
            .step("ship", steps.step("ship"))
            .end(output=lambda ctx: ctx.events["pay"].output)
        )
        commander = self.commander(persistence, clock, flow)
        handle = await commander.start(flow, {})
        cancelled = await handle.inspect()
        assert cancelled.status is MissionStatus.CANCELLED
        assert cancelled.nodes["pay"].status is NodeStatus.COMPLETED

        retried = await commander.retry(handle.id)

        assert (retried.status, retried.output) == (MissionStatus.COMPLETED, "paid")
        assert steps.runs == {"pay": 1, "ship": 1}
        assert retried.nodes["pay"] == cancelled.nodes["pay"]
        entries = await commander.timeline(handle.id)
        again = next(e for e in entries if e.kind is TimelineKind.MISSION_RETRIED)
        assert again.node == "ship"

    async def test_a_step_the_deadline_passed_during_keeps_its_output_and_is_not_retried(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """A deadline that passes while a step runs fails the mission after the step, which
        keeps its record completed with its output; a retry runs the mission again from the
        node after it, the step not run again."""
        steps = _Flaky()

        def pay(ctx: Context[Any, Any]) -> str:
            steps.runs["pay"] = steps.runs.get("pay", 0) + 1
            clock.advance(timedelta(hours=2))  # the bank took its time
            return "paid"

        flow = (
            m.define("slow-pay")
            .start(parse=_accept)
            .step("pay", pay)
            .step("ship", steps.step("ship"))
            .deadline(timedelta(hours=1))
            .end(output=lambda ctx: ctx.events["pay"].output)
        )
        commander = self.commander(persistence, clock, flow)
        handle = await commander.start(flow, {})
        failed = await handle.inspect()
        assert failed.status is MissionStatus.FAILED
        assert failed.error is not None
        assert failed.error.type == "DeadlineExceededError"
        assert (failed.nodes["pay"].status, failed.nodes["pay"].output) == (
            NodeStatus.COMPLETED,
            "paid",
        )
        assert "ship" not in failed.nodes

        retried = await commander.retry(handle.id)

        assert (retried.status, retried.output) == (MissionStatus.COMPLETED, "paid")
        assert steps.runs == {"pay": 1, "ship": 1}

    async def test_a_retry_owes_the_compensations_of_the_steps_it_runs_again_until_they_complete(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """The compensation a step made owed stays owed when a retry runs the step again: a
        retried step that completes owes it once, with its new output; one that fails makes
        the mission compensate what the run before the retry did."""
        steps = _Flaky()
        undone: list[str] = []

        def charge(ctx: Context[Any, Any]) -> str:
            steps.step("charge")(ctx)
            return f"ch-{steps.runs['charge']}"

        flow = (
            m.define("charge-saga")
            .start(parse=_accept)
            .step("reserve", steps.step("reserve"), compensate=lambda ctx, o: undone.append(o))
            .step("charge", charge, compensate=lambda ctx, o: undone.append(o))
            .need_to("approve", parse=bool)
            .end()
        )
        commander = self.commander(persistence, clock, flow)
        once = await commander.start(flow, {}, id="once")
        await once.cancel("hold on")
        again = await commander.retry(once.id, from_node="charge")
        assert again.status is MissionStatus.WAITING
        saga = again.compensations
        assert saga is not None
        assert [(c.path, c.output) for c in saga.owed] == [
            ("reserve", "reserve done"),
            ("charge", "ch-2"),
        ]
        twice = await commander.start(flow, {}, id="twice")
        await twice.cancel("hold on")
        steps.failing.add("charge")
        failed = await commander.retry(twice.id, from_node="charge")
        assert failed.status is MissionStatus.COMPENSATED
        assert undone == ["ch-3", "reserve done"]

    async def test_a_retried_child_node_starts_a_new_child_and_keeps_the_old(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """A parent retried from its child node starts a child mission of a new id (the failed
        child stays, as history); the failed child itself is not retried."""
        steps = _Flaky()
        kid = m.define("kid").start(parse=_accept).step("work", steps.step("work")).end()
        parent = (
            m.define("parent")
            .start(parse=_accept)
            .child("kid", kid, lambda ctx: {})
            .end(output=lambda ctx: ctx.events["kid"].output)
        )
        commander = self.commander(persistence, clock, parent)
        steps.failing.add("work")
        handle = await commander.start(parent, {}, id="p")
        assert (await handle.inspect()).status is MissionStatus.FAILED
        first = await commander.inspect("p/kid")
        assert first.status is MissionStatus.FAILED
        with pytest.raises(MissionNotRetryableError, match="retry the parent from its child"):
            await commander.retry("p/kid")
        steps.failing.clear()
        retried = await commander.retry("p")
        assert retried.status is MissionStatus.COMPLETED
        assert retried.nodes["kid"].input["mission_id"] == "p/kid#r1.1"
        assert (await commander.inspect("p/kid")).status is MissionStatus.FAILED
        assert (await commander.inspect("p/kid#r1.1")).status is MissionStatus.COMPLETED

    async def test_a_retried_loop_and_deadline_start_afresh(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """A mission that failed in a loop's body is retried from the loop, which runs from
        its first iteration again; the retried mission's deadline counts from the retry."""
        steps = _Flaky()
        flow = (
            m.define("looping")
            .start(parse=_accept)
            .loop(
                "rounds",
                lambda body: body.step("round", steps.step("round")),
                until=lambda ctx: ctx.iteration == 3,
                max_iterations=5,
            )
            .need_to("approve", parse=bool)
            .deadline(timedelta(hours=1))
            .end()
        )
        commander = self.commander(persistence, clock, flow)
        steps.failing.add("round")
        handle = await commander.start(flow, {})
        failed = await handle.inspect()
        assert failed.status is MissionStatus.FAILED
        assert failed.current_node == "rounds"
        with pytest.raises(InvalidInputError, match="only a top-level node"):
            await commander.retry(handle.id, from_node="round")
        steps.failing.clear()
        clock.advance(timedelta(hours=2))
        retried = await commander.retry(handle.id)
        assert retried.status is MissionStatus.WAITING
        assert steps.runs["round"] == 4
        assert retried.deadline == clock.now() + timedelta(hours=1)

    # -- fork ----------------------------------------------------------------------------------

    async def test_a_fork_reuses_the_nodes_before_its_node_and_leaves_the_source_alone(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """A fork at a node is a new mission of the same definition and input holding copies of
        the records of the nodes before it (not run again), run from that node; the mission
        forked from is unchanged."""
        steps = _Flaky()
        flow = _flow(steps)
        commander = self.commander(persistence, clock, flow)
        source = await commander.start(flow, {"order": 7}, id="source")
        await source.signal("approve", True)
        before = await _unchanged(commander, source.id)
        clock.advance(timedelta(minutes=1))

        fork = await commander.fork(source.id, at_node="b", new_id="copy")

        forked = await fork.inspect()
        assert (forked.id, forked.forked_from, forked.status) == (
            "copy",
            "source",
            MissionStatus.WAITING,
        )
        assert (forked.definition, forked.input) == ("ops", {"order": 7})
        assert forked.nodes["a"] == before[0].nodes["a"]
        assert forked.nodes["b"].finished_at == clock.now()
        assert forked.parent is None
        assert steps.runs == {"a": 1, "b": 2, "c": 1}
        assert await _unchanged(commander, source.id) == before
        entries = await commander.timeline(fork.id)
        assert entries[0].kind is TimelineKind.MISSION_FORKED
        assert (entries[0].node, entries[0].detail) == (
            "b",
            {"from": "source", "copied": ["start", "a"]},
        )
        assert TimelineKind.MISSION_STARTED not in {e.kind for e in entries}
        done = await commander.signal(fork.id, "approve", True)
        assert (done.status, done.output) == (MissionStatus.COMPLETED, "c done")

    async def test_a_fork_of_a_failed_mission_runs_on_and_is_idempotent_by_id(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """A fork of a failed mission at the node that failed runs that node again in the new
        mission; forking again to the same id returns that fork, and an id taken by another
        mission is refused."""
        steps = _Flaky()
        flow = _flow(steps)
        commander = self.commander(persistence, clock, flow)
        steps.failing.add("b")
        source = await commander.start(flow, {}, id="source")
        clock.advance(timedelta(minutes=5))
        await drain_due(commander)
        steps.failing.clear()
        fork = await commander.fork(source.id, at_node="b", new_id="again")
        assert (await fork.inspect()).current_node == "approve"
        assert (await source.inspect()).status is MissionStatus.FAILED
        same = await commander.fork(source.id, at_node="start", new_id="again")
        assert same.id == "again"
        assert steps.runs == {"a": 1, "b": 3}
        with pytest.raises(MissionAlreadyExistsError, match="'source' is taken by a mission"):
            await commander.fork("again", at_node="b", new_id="source")
        fresh = await commander.fork(source.id, at_node="start")
        assert (await fresh.inspect()).forked_from == "source"
        assert steps.runs == {"a": 2, "b": 4}

    async def test_a_fork_at_a_node_it_cannot_start_from_stores_nothing(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """A fork at a node inside a loop's body or a parallel's branch, at an unknown node or
        after a node that did not complete is refused with InvalidInputError, storing
        nothing."""
        flow = (
            m.define("nested")
            .start(parse=_accept)
            .parallel(
                "both",
                {"left": lambda b: b.step("l", lambda ctx: 1), "right": lambda b: b},
            )
            .loop(
                "rounds",
                lambda b: b.step("round", lambda ctx: 2),
                until=lambda ctx: True,
                max_iterations=2,
            )
            .need_to("go", parse=bool)
            .end()
        )
        commander = self.commander(persistence, clock, flow)
        source = await commander.start(flow, {}, id="source")
        for node, message in (
            ("l", "the top-level node it is in is 'both'"),
            ("round", "the top-level node it is in is 'rounds'"),
            ("both/left/l", "only a top-level node"),
            ("nowhere", "has no such node"),
            ("end", "node 'go' before it has not completed"),
        ):
            with pytest.raises(InvalidInputError, match=message):
                await commander.fork(source.id, at_node=node, new_id="f")
        assert [s.id for s in await commander.list()] == ["source"]
        fork = await commander.fork(source.id, at_node="go", new_id="f")
        assert (await fork.inspect()).nodes["both/left/l"].output == 1

    async def test_a_fork_after_a_step_its_compensation_undid_stores_nothing(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """A fork of a compensated mission at a node after a step whose compensation ran is
        refused with InvalidInputError naming the step, storing nothing (its output no longer
        holds); at that step or before it, the fork runs it again and owes its compensation."""
        steps = _Flaky()
        refunds: list[str] = []

        def refund(ctx: Context[Any, Any], output: Any) -> None:
            refunds.append(f"{ctx.mission_id}: {output}")

        flow = (
            m.define("saga")
            .start(parse=_accept)
            .step("prepare", steps.step("prepare"))
            .step("charge", steps.step("charge"), compensate=refund)
            .step("ship", steps.step("ship"))
            .need_to("confirm", parse=bool)
            .end()
        )
        commander = self.commander(persistence, clock, flow)
        source = await commander.start(flow, {}, id="source")
        await source.cancel("customer left", compensate=True)
        before = await _unchanged(commander, source.id)
        assert before[0].status is MissionStatus.COMPENSATED
        assert refunds == ["source: charge done"]
        for node in ("ship", "confirm"):
            with pytest.raises(InvalidInputError, match="compensation of 'charge' before it ran"):
                await commander.fork(source.id, at_node=node, new_id="f")
        assert [s.id for s in await commander.list()] == ["source"]
        assert await _unchanged(commander, source.id) == before
        fork = await commander.fork(source.id, at_node="charge", new_id="f")
        forked = await fork.inspect()
        assert forked.status is MissionStatus.WAITING
        assert "charge/compensate" not in forked.nodes
        assert [c.path for c in forked.compensations.owed] == ["charge"]  # type: ignore[union-attr]
        assert steps.runs == {"prepare": 1, "charge": 2, "ship": 2}

    async def test_a_fork_that_compensates_undoes_only_the_steps_it_ran(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """A fork owes no compensation for the steps it copied: one of a completed mission
        whose own step then fails compensates what it ran, never the source's work."""
        steps = _Flaky()
        undone: list[str] = []
        flow = (
            m.define("ship-saga")
            .start(parse=_accept)
            .step("charge", steps.step("charge"), compensate=lambda ctx, o: undone.append(o))
            .step("label", steps.step("label"), compensate=lambda ctx, o: undone.append(o))
            .step("ship", steps.step("ship"))
            .end()
        )
        commander = self.commander(persistence, clock, flow)
        source = await commander.start(flow, {}, id="source")
        assert (await source.inspect()).status is MissionStatus.COMPLETED
        steps.failing.add("ship")
        fork = await commander.fork(source.id, at_node="label", new_id="again")
        forked = await fork.inspect()
        assert forked.status is MissionStatus.COMPENSATED
        assert undone == ["label done"]
        assert forked.nodes["charge"] == (await source.inspect()).nodes["charge"]

    # -- purge ---------------------------------------------------------------------------------

    async def test_purge_deletes_finished_missions_older_than_the_cutoff_in_batches(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """Purge deletes the finished missions that last changed before the cutoff (of the
        statuses and definition asked for), with their timelines, a batch at a time; newer,
        waiting and other missions stay, and a dry run counts them and deletes nothing."""
        steps = _Flaky()
        flow = _flow(steps)
        other = m.define("other").start(parse=_accept).end()
        commander = self.commander(persistence, clock, flow, other)
        for number in range(5):
            done = await commander.start(flow, {}, id=f"done-{number}")
            await done.signal("approve", True)
        await commander.cancel((await commander.start(flow, {}, id="cancelled")).id)
        await commander.start(other, {}, id="other-done")
        await commander.start(flow, {}, id="waiting")
        clock.advance(timedelta(days=30))
        cutoff = clock.now()
        await (await commander.start(flow, {}, id="done-new")).signal("approve", True)

        dry = await commander.purge(finished_before=cutoff, dry_run=True)
        assert (dry.matched, dry.deleted, dry.dry_run) == (7, 0, True)
        assert len(await commander.list()) == 9
        batches: list[PurgeBatch] = []
        report = await commander.purge(
            finished_before=cutoff,
            status=MissionStatus.COMPLETED,
            definition=flow,
            batch_size=2,
            on_batch=batches.append,
        )

        assert (report.matched, report.deleted, report.batches) == (5, 5, 3)
        assert [(b.read, b.matched, b.deleted) for b in batches] == [
            (2, 2, 2),
            (2, 2, 2),
            (2, 1, 1),
        ]
        assert sorted(s.id for s in await commander.list()) == [
            "cancelled",
            "done-new",
            "other-done",
            "waiting",
        ]
        assert await persistence.timeline("done-0") == []
        everything = await commander.purge(finished_before=cutoff)
        assert everything.deleted == 2
        assert sorted(s.id for s in await commander.list()) == ["done-new", "waiting"]
        with pytest.raises(InvalidInputError, match="finished missions only"):
            await commander.purge(finished_before=cutoff, status=MissionStatus.WAITING)
        with pytest.raises(InvalidInputError, match="batch_size"):
            await commander.purge(finished_before=cutoff, batch_size=0)
        for name in ("\udcff", 7):
            with pytest.raises(InvalidInputError, match="a str UTF-8 can encode"):
                await commander.purge(finished_before=cutoff, definition=name)  # type: ignore[arg-type]

    async def test_purge_keeps_a_child_whose_parent_has_not_finished(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """A finished child mission whose parent still runs (or waits) is not purged: the
        parent may still read or retry it; once the parent has finished, both go."""
        kid = m.define("kid").start(parse=_accept).end(output=lambda ctx: "kid done")
        parent = (
            m.define("parent")
            .start(parse=_accept)
            .child("kid", kid, lambda ctx: {})
            .need_to("approve", parse=bool)
            .end()
        )
        commander = self.commander(persistence, clock, parent)
        await commander.start(parent, {}, id="p")
        assert (await commander.inspect("p/kid")).status is MissionStatus.COMPLETED
        clock.advance(timedelta(days=1))
        report = await commander.purge(finished_before=clock.now())
        assert (report.matched, report.deleted, report.kept_for_parent) == (1, 0, 1)
        await commander.signal("p", "approve", True)
        clock.advance(timedelta(days=1))
        report = await commander.purge(finished_before=clock.now())
        assert report.deleted == 2
        assert await commander.list() == []
