"""Child mission scenarios: a parent that waits for the child it started and takes its output,
a failed child retried as a new one or failing its parent, a cancelled parent that cancels its
child, the listing of a mission's children, and a later commander (a restart) that finishes
what another began, run by a commander on the adapter under test."""

from __future__ import annotations

import functools
from datetime import timedelta
from typing import Any

import anyio
import attrs

from mission_control.core import (
    ChildMissionFailedError,
    Commander,
    Context,
    MissionDefinition,
    MissionSnapshot,
    MissionStatus,
    NodeStatus,
    ParentLink,
    TimelineEntry,
    TimelineKind,
    WaitKind,
    m,
)
from mission_control.core.storage import PersistenceAdapter
from mission_control.in_memory_commander import ManualClock

from ._control_flow_scenarios import accept, scenario_commander
from ._engine_scenarios import FatalError, ScenarioFixtures, drain_due
from ._protocol_battery import T0


@attrs.frozen
class Shipment:
    """What a shipping child mission gives its parent."""

    carrier: str
    parcels: int


SHIPPED = m.key("ship", Shipment)


def _shipping() -> MissionDefinition[Any, Any, Any]:
    """A child that waits for its parcels to be picked up, then gives a :class:`Shipment`."""
    return (
        m.define("shipping")
        .start(parse=accept)
        .need_to("picked-up", parse=accept)
        .end(
            output=lambda ctx: Shipment(
                ctx.events["picked-up"].output["carrier"], ctx.input["parcels"]
            )
        )
    )


def _order(seen: list[Any] | None = None) -> MissionDefinition[Any, Any, Any]:
    """A parent that ships its order through a ``shipping`` child and completes with the
    child's output; ``seen`` collects what its next step reads of the child node's event."""

    def confirm(ctx: Context[Any, Any]) -> str:
        shipment = ctx.events[SHIPPED].output
        if seen is not None:
            seen.append(shipment)
        return f"{shipment.parcels} parcels with {shipment.carrier}"

    return (
        m.define("order")
        .start(parse=accept)
        .child(SHIPPED, _shipping(), lambda ctx: {"parcels": ctx.input["parcels"]})
        .step("confirm", confirm)
        .end(output=lambda ctx: ctx.events[SHIPPED].output)
    )


def _entries(timeline: list[TimelineEntry], kind: TimelineKind) -> list[tuple[str | None, Any]]:
    return [(e.node, e.detail) for e in timeline if e.kind is kind]


async def _ids(commander: Commander, parent: str, **filters: Any) -> list[str]:
    return [s.id for s in await commander.list(parent=parent, **filters)]


class _Billing:
    """A child whose step ``work`` holds until ``release`` is set (``in_step`` tells it has
    begun), then ``charge``: for cancelling its parent while ``work`` runs. ``ran`` lists the
    steps that ran."""

    def __init__(self) -> None:
        self.in_step = anyio.Event()
        self.release = anyio.Event()
        self.ran: list[str] = []

    async def _work(self, ctx: Context[Any, Any]) -> str:
        self.ran.append("work")
        self.in_step.set()
        await self.release.wait()
        return "worked"

    def _charge(self, ctx: Context[Any, Any]) -> str:
        self.ran.append("charge")
        return "charged"

    def order(self, *, waits_first: bool) -> MissionDefinition[Any, Any, Any]:
        """A parent of this child, which waits for the signal ``go`` before ``work`` when
        ``waits_first`` (and after ``charge`` otherwise, so that it does not end at once)."""
        first = m.define("billing").start(parse=accept)
        if waits_first:
            first = first.need_to("go", parse=accept)
        billing = first.step("work", self._work).step("charge", self._charge)
        if not waits_first:
            billing = billing.need_to("go", parse=accept)
        return (
            m.define("billed-order")
            .start(parse=accept)
            .child("bill", billing.end(), lambda ctx: None)
            .end()
        )


class ChildConformance(ScenarioFixtures):
    """Child mission scenarios every persistence adapter must pass. Subclass it and provide
    ``persistence``."""

    async def test_a_parent_waits_for_its_child_and_completes_in_the_call_that_ends_it(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """A parent whose child waits for a signal waits for the child (a child wait naming
        it, the child's snapshot linking back); the signal that completes the child completes
        the parent in the same call, with the child's output, read as the EventKey's attrs
        class by the parent's next step."""
        seen: list[Any] = []
        order = _order(seen)
        commander = scenario_commander(persistence, clock, order)
        parent = await commander.start(order, {"parcels": 2}, id="o1")
        waiting = await parent.inspect()
        assert waiting.status is MissionStatus.WAITING
        assert waiting.active == ("ship",)
        assert waiting.wait is not None
        assert (waiting.wait.kind, waiting.wait.node) == (WaitKind.CHILD, "ship")
        assert waiting.due_at == T0 + timedelta(minutes=1)
        record = waiting.nodes["ship"]
        assert record.status is NodeStatus.WAITING
        assert record.attempts == 1
        assert record.input == {"mission_id": "o1/ship", "input": {"parcels": 2}}

        child = await commander.inspect("o1/ship")
        assert child.definition == "shipping"
        assert child.parent == ParentLink(mission_id="o1", node="ship")
        assert child.input == {"parcels": 2}
        assert child.status is MissionStatus.WAITING
        assert child.wait is not None
        assert (child.wait.kind, child.wait.signal) == (WaitKind.SIGNAL, "picked-up")
        assert waiting.parent is None

        ended = await commander.signal("o1/ship", "picked-up", {"carrier": "ACME"})
        assert ended.status is MissionStatus.COMPLETED
        assert ended.output == {"carrier": "ACME", "parcels": 2}
        done = await parent.inspect()
        assert done.status is MissionStatus.COMPLETED
        assert done.output == ended.output
        assert done.nodes["ship"].status is NodeStatus.COMPLETED
        assert done.nodes["ship"].output == ended.output
        assert done.nodes["confirm"].output == "2 parcels with ACME"
        assert seen == [Shipment("ACME", 2)]
        assert done.waits == ()

        timeline = await parent.timeline()
        assert _entries(timeline, TimelineKind.CHILD_STARTED) == [
            ("ship", {"mission_id": "o1/ship"})
        ]
        assert _entries(timeline, TimelineKind.CHILD_ENDED) == [
            ("ship", {"mission_id": "o1/ship", "status": "completed"})
        ]
        assert timeline[-1].kind is TimelineKind.MISSION_COMPLETED

    async def test_a_failed_child_is_retried_as_a_new_child_that_completes_the_parent(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """A child that fails is a failed attempt of its node: the retry, when due, starts a
        new child ``<id>#2`` (the failed one left as it ended), whose output completes the
        parent."""
        ran: list[str] = []

        def pack(ctx: Context[Any, Any]) -> str:
            ran.append(ctx.mission_id)
            if ctx.input["try"] == 1:
                raise FatalError("the label printer jammed")
            return f"packed on try {ctx.input['try']}"

        packing = (
            m.define("packing")
            .start(parse=accept)
            .step("pack", pack)
            .end(output=lambda ctx: ctx.events["pack"].output)
        )
        order = (
            m.define("retried-order")
            .start(parse=accept)
            .child(
                "pack",
                packing,
                lambda ctx: {"try": ctx.attempt},
                retry=m.retry(2, m.fixed(60)),
            )
            .end(output=lambda ctx: ctx.events["pack"].output)
        )
        commander = scenario_commander(persistence, clock, order)
        parent = await commander.start(order, None, id="o2")
        retrying = await parent.inspect()
        assert retrying.status is MissionStatus.WAITING
        assert retrying.wait is not None
        assert retrying.wait.kind is WaitKind.RETRY
        assert retrying.due_at == T0 + timedelta(seconds=60)
        record = retrying.nodes["pack"]
        assert record.attempts == 1
        assert record.error is not None
        assert record.error.type == ChildMissionFailedError.__qualname__
        assert record.error.message == (
            "child mission 'o2/pack' failed: FatalError: the label printer jammed"
        )
        first = await commander.inspect("o2/pack")
        assert first.status is MissionStatus.FAILED
        assert await _ids(commander, "o2") == ["o2/pack"]

        clock.advance(60)
        await drain_due(commander)
        done = await parent.inspect()
        assert done.status is MissionStatus.COMPLETED, done.error
        assert done.output == "packed on try 2"
        assert done.nodes["pack"].attempts == 2
        assert done.nodes["pack"].input == {"mission_id": "o2/pack#2", "input": {"try": 2}}
        second = await commander.inspect("o2/pack#2")
        assert second.status is MissionStatus.COMPLETED
        assert second.parent == ParentLink(mission_id="o2", node="pack")
        assert (await commander.inspect("o2/pack")).status is MissionStatus.FAILED
        assert ran == ["o2/pack", "o2/pack#2"]
        assert await _ids(commander, "o2") == ["o2/pack", "o2/pack#2"]
        timeline = await parent.timeline()
        assert _entries(timeline, TimelineKind.CHILD_STARTED) == [
            ("pack", {"mission_id": "o2/pack"}),
            ("pack", {"mission_id": "o2/pack#2"}),
        ]
        assert _entries(timeline, TimelineKind.CHILD_ENDED) == [
            ("pack", {"mission_id": "o2/pack", "status": "failed"}),
            ("pack", {"mission_id": "o2/pack#2", "status": "completed"}),
        ]

    async def test_a_child_that_fails_with_no_retry_fails_its_parent(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """A child that fails, once its parent waits for it, fails the parent (no retry by
        default) with ChildMissionFailedError naming the child and its error, in the call that
        failed the child; the parent's later nodes never run."""
        after: list[str] = []

        def refuse(ctx: Context[Any, Any]) -> None:
            raise FatalError(f"no courier for {ctx.events['picked-up'].output}")

        doomed = (
            m.define("doomed-shipping")
            .start(parse=accept)
            .need_to("picked-up", parse=accept)
            .step("refuse", refuse)
            .end()
        )
        order = (
            m.define("doomed-order")
            .start(parse=accept)
            .child("ship", doomed, lambda ctx: ctx.input)
            .step("after", lambda ctx: after.append(ctx.mission_id))
            .end()
        )
        commander = scenario_commander(persistence, clock, order)
        parent = await commander.start(order, {"parcels": 1}, id="o3")
        assert (await parent.inspect()).status is MissionStatus.WAITING
        child = await commander.signal("o3/ship", "picked-up", "ACME")
        assert child.status is MissionStatus.FAILED
        failed = await parent.inspect()
        assert failed.status is MissionStatus.FAILED
        assert failed.current_node == "ship"
        assert failed.error is not None
        assert failed.error.type == ChildMissionFailedError.__qualname__
        assert failed.error.message == (
            "child mission 'o3/ship' failed: FatalError: no courier for ACME"
        )
        assert failed.nodes["ship"].status is NodeStatus.FAILED
        assert failed.nodes["ship"].attempts == 1
        assert "after" not in failed.nodes
        assert after == []
        assert failed.waits == ()
        ended = _entries(await parent.timeline(), TimelineKind.CHILD_ENDED)
        assert ended == [("ship", {"mission_id": "o3/ship", "status": "failed"})]

    async def test_a_child_cancelled_by_hand_fails_its_parent_with_the_reason(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """Cancelling a child (not its parent) is a failed attempt of the parent's child node:
        with no retry the parent fails with ChildMissionFailedError giving the reason."""
        order = _order()
        commander = scenario_commander(persistence, clock, order)
        parent = await commander.start(order, {"parcels": 3}, id="o5")
        cancelled = await commander.cancel("o5/ship", "lost")
        assert cancelled.status is MissionStatus.CANCELLED
        failed = await parent.inspect()
        assert failed.status is MissionStatus.FAILED
        assert failed.error is not None
        assert failed.error.type == ChildMissionFailedError.__qualname__
        assert failed.error.message == "child mission 'o5/ship' cancelled: lost"

    async def test_cancelling_a_parent_cancels_the_child_it_waits_for(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """Cancelling a parent that waits for its child cancels the child too, saying why; the
        parent stays cancelled (the child's end does not move it again)."""
        order = _order()
        commander = scenario_commander(persistence, clock, order)
        parent = await commander.start(order, {"parcels": 1}, id="o4")
        cancelled = await parent.cancel("the customer gave up")
        assert cancelled.status is MissionStatus.CANCELLED
        assert cancelled.nodes["ship"].status is NodeStatus.CANCELLED
        child = await commander.inspect("o4/ship")
        assert child.status is MissionStatus.CANCELLED
        assert child.cancel_request is not None
        assert child.cancel_request.reason == "its parent 'o4' stopped waiting for it"
        stored = await parent.inspect()
        assert stored.status is MissionStatus.CANCELLED
        assert stored.revision == cancelled.revision
        assert stored.cancel_request is not None
        assert stored.cancel_request.reason == "the customer gave up"
        assert await drain_due(commander) == []

    async def test_listing_by_parent_gives_its_direct_children_only(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """``list(parent=id)`` gives the missions that id's child nodes started, in id order,
        with the other filters and paging (``iter_missions`` too): not their own children, not
        a mission whose id merely begins with the parent's, not another parent's children."""
        load = (
            m.define("load")
            .start(parse=accept)
            .need_to("loaded", parse=accept)
            .end(output=lambda ctx: ctx.events["loaded"].output)
        )
        depot = (
            m.define("depot")
            .start(parse=accept)
            .child("truck", load, lambda ctx: ctx.input)
            .end(output=lambda ctx: ctx.events["truck"].output)
        )
        region = (
            m.define("region")
            .start(parse=accept)
            .parallel(
                "fan",
                {
                    "a": lambda b: b.child("north", depot, lambda ctx: "n"),
                    "b": lambda b: b.child("south", depot, lambda ctx: "s"),
                },
            )
            .end(output=lambda ctx: ctx.events["fan"].output)
        )
        commander = scenario_commander(persistence, clock, region)
        await commander.start(region, None, id="r1")
        await commander.start(region, None, id="r2")
        # Ids inside and beside the parent's range, of missions no child node started.
        await commander.start(load, None, id="r1/by-hand")
        await commander.start(load, None, id="r1x")

        assert await _ids(commander, "r1") == ["r1/fan/a/north", "r1/fan/b/south"]
        assert await _ids(commander, "r1/fan/a/north") == ["r1/fan/a/north/truck"]
        assert await _ids(commander, "r1/fan/a/north/truck") == []
        assert await _ids(commander, "r2") == ["r2/fan/a/north", "r2/fan/b/south"]
        assert await _ids(commander, "r1/fan") == []
        assert await _ids(commander, "nobody") == []
        assert await _ids(commander, "r1", limit=1) == ["r1/fan/a/north"]
        assert await _ids(commander, "r1", after="r1/fan/a/north") == ["r1/fan/b/south"]
        paged = [s.id async for s in commander.iter_missions(parent="r1", page_size=1)]
        assert paged == ["r1/fan/a/north", "r1/fan/b/south"]
        assert await _ids(commander, "r1", definition="depot") == [
            "r1/fan/a/north",
            "r1/fan/b/south",
        ]
        assert await _ids(commander, "r1", definition="load") == []
        assert await _ids(commander, "r1", status=MissionStatus.COMPLETED) == []
        grandchild = await commander.inspect("r1/fan/a/north/truck")
        assert grandchild.parent == ParentLink(mission_id="r1/fan/a/north", node="truck")

        # A grandchild's end moves its parent, whose end moves the grandparent, in one call.
        await commander.signal("r1/fan/a/north/truck", "loaded", "north-load")
        assert await _ids(commander, "r1", status=MissionStatus.COMPLETED) == ["r1/fan/a/north"]
        await commander.signal("r1/fan/b/south/truck", "loaded", "south-load")
        done = await commander.inspect("r1")
        assert done.status is MissionStatus.COMPLETED
        assert done.output == {"a": "north-load", "b": "south-load"}
        assert await _ids(commander, "r1", status=MissionStatus.COMPLETED) == [
            "r1/fan/a/north",
            "r1/fan/b/south",
        ]

    async def test_a_later_commander_sees_the_same_state_and_finishes_the_flow(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """A commander made later on the same store (as after a restart) reads the parent and
        child as they were stored, and the signal it gives the child completes both."""
        order = _order()
        first = scenario_commander(persistence, clock, order)
        await first.start(order, {"parcels": 4}, id="o6")
        before = (await first.inspect("o6"), await first.inspect("o6/ship"))

        again = scenario_commander(persistence, clock, _order())
        after = (await again.inspect("o6"), await again.inspect("o6/ship"))
        assert after == before
        assert await _ids(again, "o6") == ["o6/ship"]
        await again.signal("o6/ship", "picked-up", {"carrier": "Post"})
        done = await again.inspect("o6")
        assert done.status is MissionStatus.COMPLETED
        assert done.output == {"carrier": "Post", "parcels": 4}
        assert done.nodes["confirm"].output == "4 parcels with Post"

    async def test_a_parent_whose_wake_up_was_lost_looks_at_its_child_when_due(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """A parent not told of its child's end (the child ended in a process that does not
        know the parent's definition) looks at the child by itself when its child wait is due:
        before the child ends, each look only moves the due time on (one write, waiting as
        long again as the child has run, from a minute); after, it completes with the
        child's output."""
        order = _order()
        commander = scenario_commander(persistence, clock, order)
        await commander.start(order, {"parcels": 5}, id="o7")
        looks: list[tuple[Any, int]] = []
        for _ in range(3):
            waiting = await commander.inspect("o7")
            looks.append((waiting.due_at, waiting.revision))
            assert waiting.due_at is not None
            clock.set(waiting.due_at)
            await drain_due(commander)
        (at_1, rev_1), (at_2, rev_2), (at_4, rev_4) = looks
        assert (at_1, at_2, at_4) == (
            T0 + timedelta(minutes=1),
            T0 + timedelta(minutes=2),
            T0 + timedelta(minutes=4),
        )
        assert (rev_2, rev_4) == (rev_1 + 1, rev_1 + 2)
        assert (await commander.inspect("o7")).status is MissionStatus.WAITING

        # Only the child's definition: the parent cannot be moved here.
        children_only = scenario_commander(persistence, clock, _shipping())
        ended = await children_only.signal("o7/ship", "picked-up", {"carrier": "Van"})
        assert ended.status is MissionStatus.COMPLETED
        still: MissionSnapshot = await commander.inspect("o7")
        assert still.status is MissionStatus.WAITING
        assert still.due_at == T0 + timedelta(minutes=8)

        clock.set(T0 + timedelta(minutes=8))
        await drain_due(commander)
        done = await commander.inspect("o7")
        assert done.status is MissionStatus.COMPLETED
        assert done.output == {"carrier": "Van", "parcels": 5}

    async def test_a_child_input_its_definition_rejects_is_a_failed_attempt_storing_no_child(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """An input the child's parser rejects fails the child node's attempt (retried as its
        policy says) and stores no child mission; the next attempt's input starts one."""

        def whole_parcels(value: Any) -> int:
            if not isinstance(value, int):
                raise ValueError(f"parcels must be a whole number, got {value!r}")
            return value

        counting = (
            m.define("counting").start(parse=whole_parcels).end(output=lambda ctx: ctx.input * 10)
        )
        order = (
            m.define("counted-order")
            .start(parse=accept)
            .child(
                "count",
                counting,
                lambda ctx: "two" if ctx.attempt == 1 else 2,
                retry=m.retry(2, m.fixed(60)),
            )
            .end(output=lambda ctx: ctx.events["count"].output)
        )
        commander = scenario_commander(persistence, clock, order)
        parent = await commander.start(order, None, id="o8")
        retrying = await parent.inspect()
        assert retrying.status is MissionStatus.WAITING
        record = retrying.nodes["count"]
        assert record.error is not None
        assert record.error.type == "InvalidInputError"
        assert "parcels must be a whole number, got 'two'" in record.error.message
        assert await commander.list() == [retrying]
        clock.advance(60)
        await drain_due(commander)
        done = await parent.inspect()
        assert done.status is MissionStatus.COMPLETED
        assert done.output == 20
        assert await _ids(commander, "o8") == ["o8/count#2"]

    async def test_children_in_a_for_each_are_named_by_their_iteration(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """A child node in a for_each's body starts one child per item, its id carrying the
        iteration (``<id>/<for_each>/<i>/<node>``); the for_each's results are the children's
        outputs in the items' order, whatever order they ended in."""
        order = (
            m.define("multi-order")
            .start(parse=accept)
            .for_each(
                "each",
                lambda ctx: ctx.input["parcels"],
                lambda b: b.child("ship", _shipping(), lambda ctx: {"parcels": ctx.item}),
                max_iterations=5,
                concurrency=2,
            )
            .end(output=lambda ctx: ctx.events["each"].output)
        )
        commander = scenario_commander(persistence, clock, order)
        parent = await commander.start(order, {"parcels": [1, 2, 3]}, id="o9")
        assert await _ids(commander, "o9") == ["o9/each/1/ship", "o9/each/2/ship"]
        await commander.signal("o9/each/2/ship", "picked-up", {"carrier": "B"})
        assert await _ids(commander, "o9") == [
            "o9/each/1/ship",
            "o9/each/2/ship",
            "o9/each/3/ship",
        ]
        await commander.signal("o9/each/3/ship", "picked-up", {"carrier": "C"})
        assert (await parent.inspect()).status is MissionStatus.WAITING
        await commander.signal("o9/each/1/ship", "picked-up", {"carrier": "A"})
        done = await parent.inspect()
        assert done.status is MissionStatus.COMPLETED
        assert done.output == [
            {"carrier": "A", "parcels": 1},
            {"carrier": "B", "parcels": 2},
            {"carrier": "C", "parcels": 3},
        ]
        third = await commander.inspect("o9/each/3/ship")
        assert third.parent == ParentLink(mission_id="o9", node="each/3/ship")

    async def test_a_first_parallel_cancels_the_child_of_the_branch_that_lost(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """When another branch of a ``first`` parallel ends first, the branch waiting for a
        child is cancelled and so is its child."""
        order = (
            m.define("raced-order")
            .start(parse=accept)
            .parallel(
                "race",
                {
                    "ship": lambda b: b.child("ship", _shipping(), lambda ctx: {"parcels": 1}),
                    "collect": lambda b: b.need_to("collected", parse=accept),
                },
                mode="first",
            )
            .end(output=lambda ctx: ctx.events["race"].output)
        )
        commander = scenario_commander(persistence, clock, order)
        await commander.start(order, None, id="o10")
        done = await commander.signal("o10", "collected", "at the counter")
        assert done.status is MissionStatus.COMPLETED
        assert done.output == {"collect": "at the counter"}
        assert done.nodes["race/ship/ship"].status is NodeStatus.CANCELLED
        child = await commander.inspect("o10/race/ship/ship")
        assert child.status is MissionStatus.CANCELLED
        assert child.cancel_request is not None
        assert child.cancel_request.reason == "its parent 'o10' stopped waiting for it"

    async def test_a_parent_failing_in_another_branch_cancels_its_child(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """A parent that fails in one branch of a parallel while another waits for a child
        cancels that child."""

        def refuse(ctx: Context[Any, Any]) -> None:
            raise FatalError("the customer's card was refused")

        order = (
            m.define("refused-order")
            .start(parse=accept)
            .parallel(
                "both",
                {
                    "ship": lambda b: b.child("ship", _shipping(), lambda ctx: {"parcels": 1}),
                    "pay": lambda b: b.need_to("paid", parse=accept).step("charge", refuse),
                },
            )
            .end()
        )
        commander = scenario_commander(persistence, clock, order)
        await commander.start(order, None, id="o14")
        failed = await commander.signal("o14", "paid")
        assert failed.status is MissionStatus.FAILED
        assert failed.error is not None
        assert failed.error.message == "the customer's card was refused"
        assert failed.nodes["both/ship/ship"].status is NodeStatus.CANCELLED
        child = await commander.inspect("o14/both/ship/ship")
        assert child.status is MissionStatus.CANCELLED
        assert child.cancel_request is not None
        assert child.cancel_request.reason == "its parent 'o14' stopped waiting for it"

    async def test_cancelling_a_parent_stops_its_child_at_the_childs_next_boundary(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """A parent cancelled while its child runs a step (moved by another caller) is
        cancelled at once; the child finishes that step and is cancelled before its next."""
        billing = _Billing()
        order = billing.order(waits_first=True)
        commander = scenario_commander(persistence, clock, order)
        await commander.start(order, None, id="o11")
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(commander.signal, "o11/bill", "go")
                await billing.in_step.wait()
                cancelled = await commander.cancel("o11", "changed my mind")
                assert cancelled.status is MissionStatus.CANCELLED
                billing.release.set()
        child = await commander.inspect("o11/bill")
        assert child.status is MissionStatus.CANCELLED
        assert child.nodes["work"].status is NodeStatus.COMPLETED
        assert billing.ran == ["work"]

    async def test_cancelling_a_parent_during_its_childs_first_run_stops_the_child_too(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """A parent cancelled while its child runs a step of its first run (in the parent's
        own call) stops the child as it would had the child been moved by another caller:
        the child is cancelled before its next step, and so is the parent."""
        billing = _Billing()
        order = billing.order(waits_first=False)
        commander = scenario_commander(persistence, clock, order)
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(functools.partial(commander.start, order, None, id="o12"))
                await billing.in_step.wait()
                await commander.cancel("o12", "changed my mind")
                billing.release.set()
        parent = await commander.inspect("o12")
        assert parent.status is MissionStatus.CANCELLED
        child = await commander.inspect("o12/bill")
        assert child.status is MissionStatus.CANCELLED
        assert billing.ran == ["work"], "the child ran its next step after its parent was cancelled"

    async def test_a_parent_whose_deadline_passes_while_it_waits_cancels_its_child(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """A parent that fails at its deadline while waiting for its child (no on_deadline)
        cancels the child, as any parent that stops waiting does."""
        order = (
            m.define("late-order")
            .start(parse=accept)
            .deadline(60)
            .child("ship", _shipping(), lambda ctx: {"parcels": 1})
            .end()
        )
        commander = scenario_commander(persistence, clock, order)
        await commander.start(order, None, id="o13")
        clock.advance(60)
        await drain_due(commander)
        failed = await commander.inspect("o13")
        assert failed.status is MissionStatus.FAILED
        assert failed.error is not None
        assert failed.error.type == "DeadlineExceededError"
        child = await commander.inspect("o13/ship")
        assert child.status is MissionStatus.CANCELLED, "the child still waits, orphaned"
        assert child.cancel_request is not None
        assert child.cancel_request.reason == "its parent 'o13' stopped waiting for it"
