"""Child missions in the engine: ids, links both ways, outputs, failures and retries, who cancels
whom, the wake-up of the parent and the due time that covers a lost one, recovery, and the
definitions a commander registers."""

from __future__ import annotations

import logging
from datetime import timedelta
from functools import partial
from typing import Any

import anyio
import anyio.lowlevel
import attrs
import pytest

from mission_control.core import (
    ChildMissionFailedError,
    Context,
    EventKey,
    InvalidDefinitionError,
    InvalidInputError,
    MissionNotActiveError,
    MissionSnapshot,
    MissionStatus,
    NodeStatus,
    ParentLink,
    TimelineKind,
    WaitKind,
    create_commander,
    m,
)
from mission_control.core.storage import snapshot_from_json, snapshot_to_json
from mission_control.in_memory_commander import (
    InMemoryPersistenceAdapter,
    ManualClock,
    SequentialIds,
    create_in_memory_commander,
)
from mission_control.testing import interrupt_when

pytestmark = pytest.mark.anyio


def identity(value: Any) -> Any:
    return value


@attrs.frozen
class Shipment:
    tracking: str


SHIP = (
    m.define("ship")
    .start(parse=dict)
    .need_to("picked", parse=identity)
    .end(output=lambda ctx: {"tracking": f"T-{ctx.input['order']}-{ctx.events['picked'].output}"})
)

SHIPMENT = EventKey("shipping", Shipment)

ORDER = (
    m.define("order")
    .start(parse=dict)
    .child(SHIPMENT, SHIP, lambda ctx: {"order": ctx.input["id"]}, retry=m.retry(2, m.fixed(5)))
    .end(output=lambda ctx: ctx.events[SHIPMENT].output.tracking)
)


async def test_a_child_runs_and_its_output_becomes_the_nodes() -> None:
    """The parent waits on its child, both link each other, and the child's end moves the
    parent on in the same call, with the child's output rebuilt as the key's type."""
    commander = create_in_memory_commander([ORDER])
    await commander.start(ORDER, {"id": 7}, id="o-1")
    parent = await commander.inspect("o-1")
    assert parent.status is MissionStatus.WAITING
    (wait,) = parent.waits
    assert (wait.kind, wait.node) == (WaitKind.CHILD, "shipping")
    record = parent.nodes["shipping"]
    assert (record.kind, record.status, record.attempts) == ("child", NodeStatus.WAITING, 1)
    assert record.input == {"mission_id": "o-1/shipping", "input": {"order": 7}}
    child = await commander.inspect("o-1/shipping")
    assert child.parent == ParentLink("o-1", "shipping")
    assert child.definition == "ship"

    await commander.signal("o-1/shipping", "picked", "x")
    done = await commander.inspect("o-1")
    assert done.status is MissionStatus.COMPLETED
    assert done.output == "T-7-x"
    kinds = [(e.kind, e.detail) for e in await commander.timeline("o-1")]
    assert (TimelineKind.CHILD_STARTED, {"mission_id": "o-1/shipping"}) in kinds
    assert (
        TimelineKind.CHILD_ENDED,
        {"mission_id": "o-1/shipping", "status": "completed"},
    ) in kinds


async def test_a_failed_child_is_a_failed_attempt_and_a_retry_starts_a_new_child() -> None:
    """A child that ends cancelled fails the node's attempt with ChildMissionFailedError; the
    retry starts a child with the next attempt's id, and when it fails too the parent fails."""
    clock = ManualClock()
    commander = create_in_memory_commander([ORDER], clock=clock)
    await commander.start(ORDER, {"id": 1}, id="o-1")
    await commander.cancel("o-1/shipping", "lost in the post")
    waiting = await commander.inspect("o-1")
    assert waiting.wait is not None
    assert waiting.wait.kind is WaitKind.RETRY
    error = waiting.nodes["shipping"].error
    assert error is not None
    assert error.type == "ChildMissionFailedError"
    assert error.message == "child mission 'o-1/shipping' cancelled: lost in the post"

    clock.advance(5)
    await commander.advance("o-1")
    assert [c.id for c in await commander.list(parent="o-1")] == ["o-1/shipping", "o-1/shipping#2"]
    await commander.cancel("o-1/shipping#2", "lost again")
    failed = await commander.inspect("o-1")
    assert failed.status is MissionStatus.FAILED
    assert failed.error is not None
    assert failed.error.type == ChildMissionFailedError.__qualname__
    assert failed.error.attempt == 2


async def test_a_child_that_fails_passes_its_error_to_the_parent() -> None:
    """A child that fails gives the parent an error naming the child and the child's own error."""

    def boom(ctx: Context[Any, Any]) -> None:
        raise ValueError("no stock")

    failing = m.define("failing").start(parse=identity, run=boom).end()
    parent = m.define("parent").start(parse=identity).child("kid", failing, lambda ctx: 1).end()
    commander = create_in_memory_commander([parent])
    await commander.start(parent, None, id="p")
    failed = await commander.inspect("p")
    assert failed.status is MissionStatus.FAILED
    assert failed.error is not None
    assert failed.error.message == "child mission 'p/kid' failed: ValueError: no stock"


async def test_a_child_input_its_parser_refuses_fails_the_attempt() -> None:
    """An input the child's definition rejects is a failed attempt of the child node, and no
    child is stored."""

    def positive(value: Any) -> int:
        if not isinstance(value, int) or value <= 0:
            raise ValueError("a positive number, please")
        return value

    kid = m.define("kid").start(parse=positive).end()
    parent = m.define("parent").start(parse=identity).child("kid", kid, lambda ctx: -1).end()
    commander = create_in_memory_commander([parent])
    await commander.start(parent, None, id="p")
    failed = await commander.inspect("p")
    assert failed.status is MissionStatus.FAILED
    assert failed.error is not None
    assert failed.error.type == "InvalidInputError"
    assert "a positive number, please" in failed.error.message
    assert await commander.list(parent="p") == []


async def test_cancelling_the_parent_cancels_its_waiting_child() -> None:
    """A cancelled parent cancels the child it waits for, saying why."""
    commander = create_in_memory_commander([ORDER])
    await commander.start(ORDER, {"id": 2}, id="o-2")
    await commander.cancel("o-2", "customer changed their mind")
    child = await commander.inspect("o-2/shipping")
    assert child.status is MissionStatus.CANCELLED
    assert child.cancel_request is not None
    assert child.cancel_request.reason == "its parent 'o-2' stopped waiting for it"


async def test_a_branch_cancelled_by_a_first_parallel_cancels_its_child() -> None:
    """When another branch of a ``first`` parallel ends first, the child of the branch that is
    cancelled is cancelled too; the parent goes on."""
    parent = (
        m.define("race")
        .start(parse=identity)
        .parallel(
            "race",
            {
                "slow": lambda b: b.child("ship", SHIP, lambda ctx: {"order": 1}),
                "fast": lambda b: b.need_to("done", parse=identity),
            },
            mode="first",
        )
        .end()
    )
    commander = create_in_memory_commander([parent])
    await commander.start(parent, None, id="r")
    done = await commander.signal("r", "done", True)
    assert done.status is MissionStatus.COMPLETED
    assert done.nodes["race/slow/ship"].status is NodeStatus.CANCELLED
    assert (await commander.inspect("r/race/slow/ship")).status is MissionStatus.CANCELLED


async def test_list_by_parent_gives_direct_children_only() -> None:
    """``list(parent=...)`` returns the missions the parent's child nodes started, not their own
    children nor missions whose ids merely look alike, with the other filters applied."""
    leaf = m.define("leaf").start(parse=identity).need_to("go", parse=identity).end()
    middle = m.define("middle").start(parse=identity).child("leaf", leaf, lambda ctx: 1).end()
    top = (
        m.define("top")
        .start(parse=identity)
        .parallel(
            "both",
            {
                "a": lambda b: b.child("mid", middle, lambda ctx: 1),
                "b": lambda b: b.child("other", leaf, lambda ctx: 2),
            },
        )
        .end()
    )
    commander = create_in_memory_commander([top])
    await commander.start(top, None, id="t")
    await commander.start(leaf, None, id="t/lookalike")
    children = await commander.list(parent="t")
    assert [c.id for c in children] == ["t/both/a/mid", "t/both/b/other"]
    assert [c.id for c in await commander.list(parent="t/both/a/mid")] == ["t/both/a/mid/leaf"]
    assert [c.id for c in await commander.list(parent="t", definition="leaf")] == ["t/both/b/other"]
    assert [c.id for c in await commander.list(parent="t", limit=1, after="t/both/a/mid")] == [
        "t/both/b/other"
    ]
    assert await commander.list(parent="nobody") == []


async def test_children_of_a_for_each_run_side_by_side_with_ids_per_item() -> None:
    """Each item of a for_each starts its own child, and the results come back in order."""
    parent = (
        m.define("batch")
        .start(parse=identity)
        .for_each(
            "each",
            lambda ctx: [1, 2, 3],
            lambda b: b.child("ship", SHIP, lambda ctx: {"order": ctx.item}),
            max_iterations=3,
            concurrency=3,
        )
        .end(output=lambda ctx: ctx.events["each"].output)
    )
    commander = create_in_memory_commander([parent])
    await commander.start(parent, None, id="b")
    ids = [c.id for c in await commander.list(parent="b")]
    assert ids == ["b/each/1/ship", "b/each/2/ship", "b/each/3/ship"]
    for mission_id in reversed(ids):
        await commander.signal(mission_id, "picked", "p")
    done = await commander.inspect("b")
    assert done.status is MissionStatus.COMPLETED
    assert done.output == [{"tracking": f"T-{i}-p"} for i in (1, 2, 3)]


async def test_a_parent_interrupted_while_its_child_starts_adopts_the_same_child() -> None:
    """A crash while the child's first step runs leaves both running; recovering the parent
    finds the child it started (none is started twice), and the child's end completes it."""
    entered = anyio.Event()
    runs: list[str] = []

    async def pack(ctx: Context[Any, Any]) -> str:
        runs.append(ctx.mission_id)
        if len(runs) == 1:
            entered.set()
            await anyio.sleep_forever()
        return "packed"

    kid = m.define("kid").start(parse=identity).step("pack", pack).end(output=lambda ctx: "sent")
    parent = (
        m.define("parent")
        .start(parse=identity)
        .child("kid", kid, lambda ctx: 1)
        .end(output=lambda ctx: ctx.events["kid"].output)
    )
    store = InMemoryPersistenceAdapter()
    first = create_in_memory_commander([parent], persistence=store)
    await interrupt_when(partial(first.start, parent, None, id="p"), entered)
    assert (await first.inspect("p")).status is MissionStatus.RUNNING
    assert (await first.inspect("p/kid")).status is MissionStatus.RUNNING

    restarted = create_in_memory_commander([parent], persistence=store)
    waiting = await restarted.advance("p")
    assert waiting is not None
    assert waiting.status is MissionStatus.WAITING
    assert waiting.nodes["kid"].input == {"mission_id": "p/kid", "input": 1}
    await restarted.advance("p/kid")
    done = await restarted.inspect("p")
    assert done.status is MissionStatus.COMPLETED
    assert done.output == "sent"
    assert [c.id for c in await restarted.list(parent="p")] == ["p/kid"]
    assert runs == ["p/kid", "p/kid"]


async def test_a_lost_wake_up_is_covered_by_the_parents_due_time(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A child ended by a process that cannot move its parent (it does not know the parent's
    definition) leaves the parent waiting; the parent's child wait comes due a minute after the
    child started, and the parent then takes the child's end."""
    clock = ManualClock()
    store = InMemoryPersistenceAdapter()
    owner = create_in_memory_commander([ORDER], persistence=store, clock=clock)
    await owner.start(ORDER, {"id": 3}, id="o-3")
    # A process that knows only the child's definition.
    worker = create_commander([SHIP], persistence=store, clock=clock, ids=SequentialIds())
    with caplog.at_level(logging.ERROR, logger="mission_control.missions"):
        await worker.signal("o-3/shipping", "picked", "w")
    assert "moving its parent 'o-3' on failed" in caplog.text
    waiting = await owner.inspect("o-3")
    assert waiting.status is MissionStatus.WAITING
    assert waiting.due_at == clock.now() + timedelta(minutes=1)
    clock.advance(60)
    assert await owner.due_missions(10) == ["o-3"]
    done = await owner.advance("o-3")
    assert done is not None
    assert done.status is MissionStatus.COMPLETED
    assert done.output == "T-3-w"


async def test_a_parent_looks_again_later_and_later_while_its_child_runs() -> None:
    """While the child runs on, each look the parent's due time brings waits as long again as
    the child has run so far, from one minute up to an hour, one write each."""
    clock = ManualClock()
    commander = create_in_memory_commander([ORDER], clock=clock)
    began = clock.now()
    await commander.start(ORDER, {"id": 4}, id="o-4")
    dues: list[timedelta] = []
    for _ in range(9):
        snapshot = await commander.inspect("o-4")
        assert snapshot.due_at is not None
        dues.append(snapshot.due_at - began)
        clock.set(snapshot.due_at)
        await commander.advance("o-4")
    minutes = [int(due.total_seconds() // 60) for due in dues]
    assert minutes == [1, 2, 4, 8, 16, 32, 64, 124, 184]


async def store_as_cancelled(store: InMemoryPersistenceAdapter, mission_id: str) -> None:
    """Store the mission as cancelled and nothing else: what a crash between a parent's
    cancellation and its child's leaves in the store."""
    parent = await store.load(mission_id)
    assert parent is not None
    stored = snapshot_from_json(snapshot_to_json(parent))
    ended = attrs.evolve(
        stored, status=MissionStatus.CANCELLED, waits=(), revision=stored.revision + 1
    )
    await store.commit(ended, expected_revision=stored.revision, timeline=[])


async def test_a_child_whose_parent_stopped_waiting_cancels_itself_when_moved() -> None:
    """A child left running by a parent that ended without cancelling it (a crash came between)
    cancels itself the next time it is moved."""
    clock = ManualClock()
    store = InMemoryPersistenceAdapter()
    commander = create_in_memory_commander([ORDER], persistence=store, clock=clock)
    await commander.start(ORDER, {"id": 5}, id="o-5")
    await store_as_cancelled(store, "o-5")
    moved = await commander.advance("o-5/shipping")
    assert moved is not None
    assert moved.status is MissionStatus.CANCELLED
    assert moved.cancel_request is not None
    assert moved.cancel_request.reason == "its parent 'o-5' no longer waits for it"


async def test_a_signal_to_a_child_whose_parent_stopped_waiting_is_refused() -> None:
    """A signal to an orphaned child runs none of its steps: the child is cancelled and the
    signal refused with MissionNotActiveError."""
    clock = ManualClock()
    store = InMemoryPersistenceAdapter()
    commander = create_in_memory_commander([ORDER], persistence=store, clock=clock)
    await commander.start(ORDER, {"id": 6}, id="o-6")
    await store_as_cancelled(store, "o-6")
    with pytest.raises(MissionNotActiveError, match="'o-6/shipping' is cancelled"):
        await commander.signal("o-6/shipping", "picked", "late")
    child = await commander.inspect("o-6/shipping")
    assert child.status is MissionStatus.CANCELLED
    assert child.nodes["picked"].status is NodeStatus.CANCELLED


async def test_a_child_whose_parent_still_waits_is_moved_as_usual() -> None:
    """A child whose parent waits for it is not taken for an orphan: a due move runs it."""
    clock = ManualClock()
    napping = m.define("napping").start(parse=identity).sleep("nap", 10).end(output=lambda ctx: 9)
    parent = (
        m.define("parent")
        .start(parse=identity)
        .child("kid", napping, lambda ctx: 1)
        .end(output=lambda ctx: ctx.events["kid"].output)
    )
    commander = create_in_memory_commander([parent], clock=clock)
    await commander.start(parent, None, id="p")
    clock.advance(10)
    await commander.advance("p/kid")
    done = await commander.inspect("p")
    assert done.status is MissionStatus.COMPLETED
    assert done.output == 9


def test_a_commander_registers_children_and_refuses_a_name_taken_twice() -> None:
    """A parent's child definitions are registered with it; another definition under a child's
    name is refused."""
    commander = create_in_memory_commander([ORDER])
    assert set(commander.definitions) == {"order", "ship"}
    impostor = m.define("ship").start(parse=identity).end()
    with pytest.raises(InvalidDefinitionError, match="two definitions are named 'ship'"):
        create_in_memory_commander([ORDER, impostor])


def test_describe_names_the_childs_definition() -> None:
    """describe() gives a child node's kind, the definition it starts and its attempts."""
    (_, node, _) = ORDER.describe().nodes
    assert (node.kind, node.child, node.max_attempts) == ("child", "ship", 2)


@pytest.mark.parametrize(
    ("build", "says"),
    [
        (lambda b: b.child("c", "ship", lambda ctx: 1), "definition must be built with m.define"),
        (lambda b: b.child("c", SHIP, None), "child 'c' input must be callable"),
        (
            lambda b: b.child("c", SHIP, lambda ctx: 1, retry="3"),
            "child 'c' retry must be a RetryPolicy",
        ),
    ],
)
def test_malformed_child_nodes_are_refused_while_the_definition_is_built(
    build: Any, says: str
) -> None:
    """Each mistake in a child node raises InvalidDefinitionError saying what is wrong."""
    with pytest.raises(InvalidDefinitionError, match=says):
        build(m.define("bad").start(parse=identity)).end()


@pytest.mark.parametrize("before", ["a start's run", "a timer", "a retry"])
async def test_a_crash_while_a_child_starts_never_makes_it_an_orphan(before: str) -> None:
    """The parent is stored at its child node before the child starts, whatever came before it
    (a start's run, a timer, a retry: none of them writes by itself), so a child found running
    after a crash, and moved before its parent, is still its parent's: both complete."""
    clock = ManualClock()
    entered = anyio.Event()
    runs: list[str] = []

    async def pack(ctx: Context[Any, Any]) -> str:
        runs.append(ctx.mission_id)
        if len(runs) == 1 or (before == "a retry" and len(runs) == 2):
            if before == "a retry" and len(runs) == 1:
                raise ConnectionError("the first child fails")
            entered.set()
            await anyio.sleep_forever()
        return "packed"

    kid = m.define("kid").start(parse=identity).step("pack", pack).end(output=lambda ctx: "sent")
    begun = m.define("parent").start(parse=identity, run=lambda ctx: "begun")
    if before == "a timer":
        begun = begun.sleep("nap", 10)
    parent = begun.child("kid", kid, lambda ctx: 1, retry=m.retry(2, m.fixed(5))).end(
        output=lambda ctx: ctx.events["kid"].output
    )
    store = InMemoryPersistenceAdapter()
    first = create_in_memory_commander([parent], persistence=store, clock=clock)
    if before == "a start's run":
        await interrupt_when(partial(first.start, parent, None, id="p"), entered)
    else:
        await first.start(parent, None, id="p")
        clock.advance(10 if before == "a timer" else 5)
        await interrupt_when(partial(first.advance, "p"), entered)
    child_id = "p/kid#2" if before == "a retry" else "p/kid"

    restarted = create_in_memory_commander([parent], persistence=store, clock=clock)
    moved = await restarted.advance(child_id)  # the child first: it must not cancel itself
    assert moved is not None
    assert moved.status is MissionStatus.COMPLETED
    done = await restarted.inspect("p")
    assert done.status is MissionStatus.COMPLETED
    assert done.output == "sent"


async def test_a_child_id_taken_by_another_mission_is_not_adopted() -> None:
    """A mission stored under a child's id that this node did not start (by hand) is not taken
    for its child: the attempt fails saying so, and the retry starts the child under its next
    id."""
    clock = ManualClock()
    commander = create_in_memory_commander([ORDER], clock=clock)
    await commander.start(SHIP, {"order": 0}, id="o-7/shipping")
    await commander.start(ORDER, {"id": 7}, id="o-7")
    waiting = await commander.inspect("o-7")
    error = waiting.nodes["shipping"].error
    assert error is not None
    assert error.type == "ChildMissionFailedError"
    assert error.message == (
        "mission id 'o-7/shipping' is taken by a mission that is not the child of child "
        "'shipping' (started by hand, or by another parent): the node starts no child under it"
    )
    clock.advance(5)
    await commander.advance("o-7")
    assert [c.id for c in await commander.list(parent="o-7")] == ["o-7/shipping#2"]


def test_a_child_node_name_with_a_hash_is_refused() -> None:
    """A child node's name may not hold '#', which its children's ids use for attempts."""
    with pytest.raises(InvalidDefinitionError, match="child name 'ship#2' must not contain '#'"):
        m.define("p").start(parse=identity).child("ship#2", SHIP, lambda ctx: {})


async def test_a_child_waits_record_keeps_the_due_time_of_its_wait() -> None:
    """Each later look the parent schedules is its child node record's due time too."""
    clock = ManualClock()
    commander = create_in_memory_commander([ORDER], clock=clock)
    await commander.start(ORDER, {"id": 8}, id="o-8")
    for _ in range(3):
        snapshot = await commander.inspect("o-8")
        assert snapshot.nodes["shipping"].due_at == snapshot.due_at
        assert snapshot.due_at is not None
        clock.set(snapshot.due_at)
        await commander.advance("o-8")


def test_a_child_definition_clashing_with_a_given_one_says_where_each_came_from() -> None:
    """Two definitions of one name and version, one given and one a child node starts, are
    refused with a message naming both."""
    other = m.define("ship").start(parse=identity).end()
    with pytest.raises(InvalidDefinitionError) as raised:
        create_in_memory_commander([other, ORDER])
    assert str(raised.value) == (
        "two definitions are named 'ship' with version 1; a name and version must be unique "
        "(one given, the other started by child node 'shipping' of 'order'): give a changed "
        "definition a new version (m.define(name, version=...)), and build a parent with the "
        "very definition object the commander is given"
    )


async def test_a_node_whose_kind_changed_between_versions_fails_the_mission_saying_so() -> None:
    """A mission waiting at a child node continued on its version changed in place, where that
    node is a step, fails with MissingNodeError naming both kinds, instead of raising inside the
    engine."""
    store = InMemoryPersistenceAdapter()
    first = create_in_memory_commander([ORDER], persistence=store)
    await first.start(ORDER, {"id": 9}, id="o-9")
    changed = (
        m.define("order")
        .start(parse=dict)
        .step("shipping", lambda ctx: "by hand")
        .end(output=lambda ctx: ctx.events["shipping"].output)
    )
    later = create_in_memory_commander([changed, SHIP], persistence=store)
    failed = await later.advance("o-9")
    assert failed is not None
    assert failed.status is MissionStatus.FAILED
    assert failed.error is not None
    assert failed.error.type == "MissingNodeError"
    assert failed.error.message == (
        "definition 'order' version 1 has a step at 'shipping', where the mission is at a "
        "child (it changed since the mission started on it: a changed definition needs a new "
        "version, registered beside the old one until the old one's missions end)"
    )


class ReadCountingStore(InMemoryPersistenceAdapter):
    """The in-memory adapter, counting the missions its pages hand out."""

    def __init__(self) -> None:
        super().__init__()
        self.read = 0

    async def list_missions(self, **query: Any) -> list[MissionSnapshot]:
        page = await super().list_missions(**query)
        self.read += len(page)
        return page


async def test_listing_children_reads_about_as_many_missions_as_it_returns() -> None:
    """``list(parent=...)`` pages through the range of the parent's ids, starting small: with
    3,000 other missions stored after it, it reads a few more missions than it returns, not a
    page of a thousand."""
    store = ReadCountingStore()
    leaf = m.define("leaf").start(parse=identity).need_to("go", parse=identity).end()
    fan = (
        m.define("fan")
        .start(parse=identity)
        .for_each(
            "each",
            lambda ctx: list(range(5)),
            lambda b: b.child("kid", leaf, lambda ctx: ctx.item),
            max_iterations=5,
            concurrency=5,
        )
        .end()
    )
    commander = create_in_memory_commander([fan], persistence=store)
    await commander.start(fan, None, id="f")
    for i in range(3_000):
        await commander.start(leaf, i, id=f"g-{i:04}")
    store.read = 0
    first = await commander.list(parent="f", limit=2)
    assert [c.id for c in first] == ["f/each/1/kid", "f/each/2/kid"]
    rest = await commander.list(parent="f", after=first[-1].id)
    assert [c.id for c in rest] == ["f/each/3/kid", "f/each/4/kid", "f/each/5/kid"]
    assert store.read <= 2 + 3 + 5


class CancellingStore(InMemoryPersistenceAdapter):
    """The in-memory adapter, cancelling ``scope`` once the mission ``after`` is written
    cancelled (a caller giving up at that moment)."""

    def __init__(self, after: str) -> None:
        super().__init__()
        self.after = after
        self.scope: anyio.CancelScope | None = None

    async def commit(self, snapshot: MissionSnapshot, **changes: Any) -> None:
        await super().commit(snapshot, **changes)
        if snapshot.id == self.after and snapshot.status is MissionStatus.CANCELLED:
            assert self.scope is not None
            self.scope.cancel()

    async def load(self, mission_id: str) -> MissionSnapshot | None:
        # As a store on disk does: every read lets a cancellation in.
        await anyio.lowlevel.checkpoint()
        return await super().load(mission_id)


async def test_a_caller_giving_up_while_children_are_cancelled_leaves_none_running() -> None:
    """Cancelling a parent cancels every child it waits for, even when the caller of the
    cancellation is itself cancelled after the first child is."""
    leaf = m.define("leaf").start(parse=identity).need_to("go", parse=identity).end()
    fan = (
        m.define("fan")
        .start(parse=identity)
        .for_each(
            "each",
            lambda ctx: [1, 2, 3],
            lambda b: b.child("kid", leaf, lambda ctx: ctx.item),
            max_iterations=3,
            concurrency=3,
        )
        .end()
    )
    store = CancellingStore(after="f/each/1/kid")
    commander = create_in_memory_commander([fan], persistence=store)
    await commander.start(fan, None, id="f")
    with anyio.CancelScope() as scope:
        store.scope = scope
        await commander.cancel("f", "customer gave up")
    children = await commander.list(parent="f")
    assert [c.status for c in children] == [MissionStatus.CANCELLED] * 3


async def test_a_child_found_after_a_crash_is_adopted_whatever_the_input_function_says_now() -> (
    None
):
    """Recovery finds the child already stored and takes it as it is, with its stored input,
    even when the input function now gives one the child's parser would refuse."""
    entered = anyio.Event()
    inputs = [1, -1]

    def positive(value: Any) -> int:
        if not isinstance(value, int) or value <= 0:
            raise ValueError("a positive number, please")
        return value

    async def pack(ctx: Context[Any, Any]) -> int:
        if not entered.is_set():
            entered.set()
            await anyio.sleep_forever()
        return ctx.input

    kid = (
        m.define("kid")
        .start(parse=positive)
        .step("pack", pack)
        .end(output=lambda ctx: ctx.events["pack"].output)
    )
    parent = (
        m.define("parent")
        .start(parse=identity)
        .child("kid", kid, lambda ctx: inputs.pop(0))
        .end(output=lambda ctx: ctx.events["kid"].output)
    )
    store = InMemoryPersistenceAdapter()
    first = create_in_memory_commander([parent], persistence=store)
    await interrupt_when(partial(first.start, parent, None, id="p"), entered)
    restarted = create_in_memory_commander([parent], persistence=store)
    waiting = await restarted.advance("p")
    assert waiting is not None
    assert waiting.nodes["kid"].input == {"mission_id": "p/kid", "input": 1}
    await restarted.advance("p/kid")
    done = await restarted.inspect("p")
    assert (done.status, done.output) == (MissionStatus.COMPLETED, 1)


async def test_listing_by_a_parent_that_is_no_id_is_refused_and_reads_nothing() -> None:
    """``list(parent=...)`` with something other than a mission id raises InvalidInputError
    before the store is read."""
    store = ReadCountingStore()
    commander = create_in_memory_commander([ORDER], persistence=store)
    await commander.start(ORDER, {"id": 10}, id="o-10")
    with pytest.raises(InvalidInputError, match="parent must be a mission id"):
        await commander.list(parent=10)  # type: ignore[arg-type]
    assert store.read == 0
    assert [c.id for c in await commander.list(parent="o-10")] == ["o-10/shipping"]
