"""Loops in the engine: iterations, their records and paths, the verdicts and items kept across a
crash, the limits, and loops nested in other control flow."""

from __future__ import annotations

from functools import partial
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from mission_control.core import (
    Context,
    InvalidDefinitionError,
    LoopError,
    LoopLimitExceededError,
    MissionStatus,
    NodeStatus,
    TimelineKind,
    m,
)
from mission_control.in_memory_commander import ManualClock, create_in_memory_commander
from mission_control.testing import interrupt_when

pytestmark = pytest.mark.anyio


def identity(value: Any) -> Any:
    return value


def counting_loop(limit: int, stop_at: int) -> Any:
    """A loop whose body counts (its output is the iteration) until ``stop_at``."""
    return (
        m.define("count")
        .start(parse=identity)
        .loop(
            "again",
            lambda b: b.step("count", lambda ctx: ctx.iteration),
            until=lambda ctx: ctx.events["count"].output >= stop_at,
            max_iterations=limit,
        )
        .end(output=lambda ctx: [ctx.events["again"].output, ctx.events["count"].output])
    )


async def test_a_loop_runs_its_body_until_its_condition_holds() -> None:
    """The body runs once per iteration until ``until`` holds; the loop's output and what later
    nodes read are the last iteration's, and each iteration is on the timeline."""
    flow = counting_loop(limit=10, stop_at=4)
    commander = create_in_memory_commander([flow])
    await commander.start(flow, None, id="m-1")
    done = await commander.inspect("m-1")
    assert done.status is MissionStatus.COMPLETED
    assert done.output == [4, 4]
    assert done.nodes["again"].attempts == 4
    assert set(done.nodes) == {"start", "again", "again/4/count", "end"}
    iterations = [
        (e.attempt, e.detail)
        for e in await commander.timeline("m-1")
        if e.kind is TimelineKind.ITERATION_STARTED
    ]
    assert iterations == [
        (1, None),
        (2, {"until": False}),
        (3, {"until": False}),
        (4, {"until": False}),
    ]


async def test_a_loop_whose_condition_never_holds_fails_at_its_limit() -> None:
    """After ``max_iterations`` iterations whose verdict was false the mission fails with
    LoopLimitExceededError, having run the body exactly that many times."""
    runs: list[int] = []
    flow = (
        m.define("endless")
        .start(parse=identity)
        .loop(
            "again",
            lambda b: b.step("work", lambda ctx: runs.append(ctx.iteration or 0)),
            until=lambda ctx: False,
            max_iterations=3,
        )
        .end()
    )
    commander = create_in_memory_commander([flow])
    await commander.start(flow, None, id="m-1")
    failed = await commander.inspect("m-1")
    assert failed.status is MissionStatus.FAILED
    assert runs == [1, 2, 3]
    assert failed.error is not None
    assert failed.error.type == LoopLimitExceededError.__qualname__
    assert "max_iterations=3" in failed.error.message
    assert failed.current_node == "again"


@pytest.mark.parametrize(
    ("until", "says"),
    [
        (lambda ctx: 1 / 0, "until raised: ZeroDivisionError"),
        (lambda ctx: "yes", "until must return a bool"),
    ],
)
async def test_a_condition_that_raises_or_returns_no_bool_fails_the_mission(
    until: Any, says: str
) -> None:
    """An until that raises, or returns anything but a bool, fails the mission with LoopError
    naming the loop."""
    flow = (
        m.define("bad")
        .start(parse=identity)
        .loop("again", lambda b: b.step("work", lambda ctx: 1), until=until, max_iterations=5)
        .end()
    )
    commander = create_in_memory_commander([flow])
    await commander.start(flow, None, id="m-1")
    failed = await commander.inspect("m-1")
    assert failed.status is MissionStatus.FAILED
    assert failed.error is not None
    assert failed.error.type == LoopError.__qualname__
    assert "loop 'again'" in failed.error.message
    assert says in failed.error.message


async def test_the_verdict_of_an_iteration_is_never_asked_again_after_a_crash() -> None:
    """A crash in iteration 3 resumes that iteration; the verdicts of iterations 1 and 2 were
    written before it began and are not asked again, and earlier iterations do not run again."""
    verdicts: list[int] = []
    runs: list[int] = []
    entered = anyio.Event()

    def until(ctx: Context[Any, Any]) -> bool:
        verdicts.append(ctx.iteration or 0)
        return ctx.iteration == 3

    async def work(ctx: Context[Any, Any]) -> int:
        runs.append(ctx.iteration or 0)
        if len(runs) == 3:
            entered.set()
            await anyio.sleep_forever()  # the crash: its caller is cancelled
        return ctx.iteration or 0

    flow = (
        m.define("resumed")
        .start(parse=identity)
        .loop("again", lambda b: b.step("work", work), until=until, max_iterations=5)
        .end(output=lambda ctx: ctx.events["work"].output)
    )
    commander = create_in_memory_commander([flow])
    await interrupt_when(partial(commander.start, flow, None, id="m-1"), entered)
    assert verdicts == [1, 2]
    stored = await commander.inspect("m-1")
    assert stored.status is MissionStatus.RUNNING
    assert stored.active == ("again/3/work",)
    resumed = await commander.advance("m-1")
    assert resumed is not None
    assert resumed.status is MissionStatus.COMPLETED
    assert resumed.output == 3
    assert runs == [1, 2, 3, 3]
    assert verdicts == [1, 2, 3]


async def test_snapshot_records_stay_bounded_however_many_iterations_ran() -> None:
    """Only the latest iteration's node records are kept: after 200 iterations a mission holds
    as many records as after 2."""
    sizes: dict[int, int] = {}
    flow = (
        m.define("long")
        .start(parse=identity)
        .loop(
            "again",
            lambda b: b.need_to("tick", parse=identity),
            until=lambda ctx: ctx.events["tick"].output == "stop",
            max_iterations=1000,
        )
        .end()
    )
    commander = create_in_memory_commander([flow])
    await commander.start(flow, None, id="m-1")
    for iteration in range(1, 201):
        snapshot = await commander.signal("m-1", "tick", "go")
        sizes[iteration] = len(snapshot.nodes)
    assert sizes[2] == sizes[200] == 3  # start, the loop, the waiting need_to
    done = await commander.signal("m-1", "tick", "stop")
    assert done.status is MissionStatus.COMPLETED
    assert done.nodes["again"].attempts == 201


async def test_a_body_that_ends_by_itself_loops_without_recursion() -> None:
    """A body that settles without a function (a choice of an empty path) runs 2,000 iterations
    in one move without exhausting the stack."""
    flow = (
        m.define("quick")
        .start(parse=identity)
        .loop(
            "again",
            lambda b: b.choice("pick", lambda ctx: "skip", {"skip": lambda p: p}),
            until=lambda ctx: ctx.iteration == 2000,
            max_iterations=2000,
        )
        .end(output=lambda ctx: ctx.events["again"].output)
    )
    commander = create_in_memory_commander([flow])
    await commander.start(flow, None, id="m-1")
    done = await commander.inspect("m-1")
    assert done.status is MissionStatus.COMPLETED
    assert done.output == "skip"
    assert done.nodes["again"].attempts == 2000


async def test_for_each_runs_each_item_with_at_most_its_concurrency_at_once() -> None:
    """Each item runs the body (``ctx.item``, ``ctx.iteration``), never more than
    ``concurrency`` at once; the output lists each item's result in the items' order."""
    clock = ManualClock()
    in_flight: list[int] = []
    most = 0

    async def double(ctx: Context[Any, Any]) -> int:
        nonlocal most
        in_flight.append(ctx.iteration or 0)
        most = max(most, len(in_flight))
        await anyio.lowlevel.checkpoint()
        in_flight.remove(ctx.iteration or 0)
        return ctx.item * 2

    flow = (
        m.define("each")
        .start(parse=identity)
        .for_each(
            "items",
            lambda ctx: ctx.input,
            lambda b: b.step("double", double).sleep("pause", 5),
            max_iterations=10,
            concurrency=3,
        )
        .end(output=lambda ctx: ctx.events["items"].output)
    )
    commander = create_in_memory_commander([flow], clock=clock)
    await commander.start(flow, [1, 2, 3, 4, 5, 6, 7], id="m-1")
    snapshot = await commander.inspect("m-1")
    assert sorted(snapshot.active) == ["items/1/pause", "items/2/pause", "items/3/pause"]
    while not snapshot.is_terminal:
        clock.advance(5)
        moved = await commander.advance("m-1")
        assert moved is not None
        snapshot = moved
        assert len({path.split("/")[1] for path in snapshot.active}) <= 3
    assert snapshot.status is MissionStatus.COMPLETED
    assert snapshot.output == [None] * 7  # each item's last node is the sleep
    assert most <= 3
    # The body's last node decides each item's result.
    assert set(snapshot.nodes) == {"start", "items", "end"}


async def test_for_each_results_are_each_items_last_output_in_order() -> None:
    """An item that finishes late still takes its own place in the output."""
    order: list[int] = []

    async def slow_first(ctx: Context[Any, Any]) -> str:
        if ctx.iteration == 1:
            for _ in range(5):
                await anyio.lowlevel.checkpoint()
        order.append(ctx.iteration or 0)
        return f"item {ctx.item}"

    flow = (
        m.define("ordered")
        .start(parse=identity)
        .for_each(
            "each",
            lambda ctx: ["a", "b", "c"],
            lambda b: b.step("name", slow_first),
            max_iterations=3,
            concurrency=3,
        )
        .end(output=lambda ctx: ctx.events["each"].output)
    )
    commander = create_in_memory_commander([flow])
    await commander.start(flow, None, id="m-1")
    done = await commander.inspect("m-1")
    assert done.output == ["item a", "item b", "item c"]
    assert order[-1] == 1


@pytest.mark.parametrize(
    ("items", "error", "says"),
    [
        (lambda ctx: [1, 2, 3, 4], LoopLimitExceededError, "got 4 items"),
        (lambda ctx: {"a": 1}, LoopError, "must return a list"),
        (lambda ctx: "abc", LoopError, "must return a list"),
        (lambda ctx: [object()], LoopError, "items of for_each 'each'"),
        (lambda ctx: 1 / 0, LoopError, "items raised: ZeroDivisionError"),
    ],
)
async def test_bad_items_fail_the_mission_before_any_item_runs(
    items: Any, error: type[Exception], says: str
) -> None:
    """Too many items, items that are no list, that JSON cannot hold, or an items function that
    raises fail the mission at the for_each with a LoopError saying which; nothing runs."""
    runs: list[Any] = []
    flow = (
        m.define("bad-items")
        .start(parse=identity)
        .for_each(
            "each", items, lambda b: b.step("run", lambda ctx: runs.append(1)), max_iterations=3
        )
        .end()
    )
    commander = create_in_memory_commander([flow])
    await commander.start(flow, None, id="m-1")
    failed = await commander.inspect("m-1")
    assert failed.status is MissionStatus.FAILED
    assert failed.error is not None
    assert failed.error.type == error.__qualname__
    assert says in failed.error.message
    assert runs == []


async def test_an_empty_list_of_items_completes_at_once_with_no_results() -> None:
    """A for_each given no items completes with an empty list and goes on."""
    flow = (
        m.define("none")
        .start(parse=identity)
        .for_each("each", lambda ctx: [], lambda b: b.step("x", lambda ctx: 1), max_iterations=1)
        .end(output=lambda ctx: ctx.events["each"].output)
    )
    commander = create_in_memory_commander([flow])
    await commander.start(flow, None, id="m-1")
    done = await commander.inspect("m-1")
    assert done.status is MissionStatus.COMPLETED
    assert done.output == []


async def test_items_are_computed_once_even_when_a_crash_interrupts_an_item() -> None:
    """The items are written before any item runs, so the mission resumed after a crash runs
    the interrupted item on the list first computed, without computing it again."""
    computed: list[int] = []
    seen: list[Any] = []
    entered = anyio.Event()

    def items(ctx: Context[Any, Any]) -> list[int]:
        computed.append(1)
        return [10 * len(computed), 20 * len(computed)]

    async def work(ctx: Context[Any, Any]) -> Any:
        seen.append(ctx.item)
        if len(seen) == 2:
            entered.set()
            await anyio.sleep_forever()
        return ctx.item

    flow = (
        m.define("once")
        .start(parse=identity)
        .for_each("each", items, lambda b: b.step("work", work), max_iterations=5)
        .end(output=lambda ctx: ctx.events["each"].output)
    )
    commander = create_in_memory_commander([flow])
    await interrupt_when(partial(commander.start, flow, None, id="m-1"), entered)
    resumed = await commander.advance("m-1")
    assert resumed is not None
    assert resumed.output == [10, 20]
    assert computed == [1]
    assert seen == [10, 20, 20]


async def test_idempotency_keys_and_events_are_per_iteration() -> None:
    """Each iteration's function has a key of its own, and reads the events of its own
    iteration, not another's."""
    keys: list[str] = []
    reads: list[Any] = []

    def first(ctx: Context[Any, Any]) -> Any:
        keys.append(ctx.idempotency_key)
        return ctx.item

    def second(ctx: Context[Any, Any]) -> Any:
        reads.append(ctx.events["first"].output)
        return None

    flow = (
        m.define("keys")
        .start(parse=identity)
        .for_each(
            "each",
            lambda ctx: ["x", "y"],
            lambda b: b.step("first", first).step("second", second),
            max_iterations=2,
        )
        .end()
    )
    commander = create_in_memory_commander([flow])
    await commander.start(flow, None, id="m-1")
    assert keys == ["m-1:each/1/first", "m-1:each/2/first"]
    assert reads == ["x", "y"]


async def test_ctx_item_outside_a_for_each_raises_lookup_error() -> None:
    """Reading ``ctx.item`` where no for_each holds the node is a LookupError; ``ctx.iteration``
    is None there."""
    seen: list[Any] = []

    def outside(ctx: Context[Any, Any]) -> None:
        seen.append(ctx.iteration)
        with pytest.raises(LookupError, match="for_each"):
            _ = ctx.item

    flow = m.define("plain").start(parse=identity, run=outside).end()
    commander = create_in_memory_commander([flow])
    await commander.start(flow, None, id="m-1")
    assert seen == [None]
    assert (await commander.inspect("m-1")).status is MissionStatus.COMPLETED


async def test_loops_nest_in_each_other_and_in_parallels() -> None:
    """A for_each inside a loop, and a parallel inside a for_each's body, run with paths that
    carry every iteration, and each level's output is its own."""
    seen: list[str] = []

    def mark(ctx: Context[Any, Any]) -> str:
        seen.append(ctx.path)
        return f"{ctx.item}-{ctx.iteration}"

    flow = (
        m.define("nested")
        .start(parse=identity)
        .loop(
            "rounds",
            lambda b: b.for_each(
                "each",
                lambda ctx: ["a", "b"],
                lambda e: e.parallel(
                    "both",
                    {
                        "left": lambda p: p.step("mark", mark),
                        "right": lambda p: p.step("other", lambda ctx: ctx.iteration),
                    },
                ),
                max_iterations=2,
                concurrency=2,
            ),
            until=lambda ctx: ctx.iteration == 2,
            max_iterations=2,
        )
        .end(output=lambda ctx: ctx.events["rounds"].output)
    )
    commander = create_in_memory_commander([flow])
    await commander.start(flow, None, id="m-1")
    done = await commander.inspect("m-1")
    assert done.status is MissionStatus.COMPLETED
    assert sorted(seen) == [
        "rounds/1/each/1/both/left/mark",
        "rounds/1/each/2/both/left/mark",
        "rounds/2/each/1/both/left/mark",
        "rounds/2/each/2/both/left/mark",
    ]
    assert done.output == [
        {"left": "a-1", "right": 1},
        {"left": "b-2", "right": 2},
    ]


async def test_cancelling_a_mission_mid_loop_cancels_the_loop_and_its_iteration() -> None:
    """A cancellation while an iteration waits cancels that iteration's node and the loop."""
    flow = (
        m.define("cancel")
        .start(parse=identity)
        .loop(
            "again",
            lambda b: b.need_to("go", parse=identity),
            until=lambda ctx: False,
            max_iterations=10,
        )
        .end()
    )
    commander = create_in_memory_commander([flow])
    await commander.start(flow, None, id="m-1")
    await commander.signal("m-1", "go", 1)
    cancelled = await commander.cancel("m-1", "enough")
    assert cancelled.status is MissionStatus.CANCELLED
    assert cancelled.nodes["again"].status is NodeStatus.CANCELLED
    assert cancelled.nodes["again/2/go"].status is NodeStatus.CANCELLED


async def test_a_signal_reaches_the_need_to_of_the_current_iteration() -> None:
    """A signal sent while a loop's need_to waits completes that iteration's need_to, and one
    buffered before the next iteration's need_to waits is taken by it."""
    flow = (
        m.define("inbox")
        .start(parse=identity)
        .loop(
            "again",
            lambda b: b.need_to("item", parse=identity).sleep("pause", 1),
            until=lambda ctx: ctx.events["item"].output == "last",
            max_iterations=5,
        )
        .end(output=lambda ctx: ctx.events["item"].output)
    )
    clock = ManualClock()
    commander = create_in_memory_commander([flow], clock=clock)
    await commander.start(flow, None, id="m-1")
    await commander.signal("m-1", "item", "first")
    # Buffered while iteration 1 sleeps: iteration 2's need_to takes it.
    await commander.signal("m-1", "item", "last")
    clock.advance(1)
    await commander.advance("m-1")
    clock.advance(1)
    done = await commander.advance("m-1")
    assert done is not None
    assert done.status is MissionStatus.COMPLETED
    assert done.output == "last"
    assert done.nodes["again"].attempts == 2


def test_describe_shows_loops_with_their_limits_and_bodies() -> None:
    """describe() gives a loop's and a for_each's kind, limits and body nodes."""
    flow = (
        m.define("described")
        .start(parse=identity)
        .loop("again", lambda b: b.step("a", identity), until=lambda ctx: True, max_iterations=4)
        .for_each(
            "each",
            lambda ctx: [],
            lambda b: b.step("b", identity),
            max_iterations=9,
            concurrency=2,
        )
        .end()
    )
    nodes = {node.name: node for node in flow.describe().nodes}
    assert (nodes["again"].kind, nodes["again"].max_iterations) == ("loop", 4)
    assert nodes["again"].concurrency is None
    assert (nodes["each"].kind, nodes["each"].max_iterations, nodes["each"].concurrency) == (
        "for_each",
        9,
        2,
    )
    ((body_name, body),) = nodes["each"].branches
    assert body_name == "*"
    assert [(n.name, n.path) for n in body] == [("b", "each/*/b")]


async def _never(ctx: Any) -> bool:
    return True


@pytest.mark.parametrize(
    ("build", "says"),
    [
        (
            lambda b: b.loop("l", lambda c: c.step("s", identity), until=_never, max_iterations=1),
            "must be a plain function",
        ),
        (
            lambda b: b.loop("l", lambda c: c, until=lambda ctx: True, max_iterations=1),
            "body adds no nodes",
        ),
        (
            lambda b: b.loop(
                "l", lambda c: c.step("s", identity), until=lambda ctx: True, max_iterations=0
            ),
            "max_iterations must be a whole number >= 1",
        ),
        (
            lambda b: b.loop(
                "l", lambda c: c.step("s", identity), until=lambda ctx: True, max_iterations=True
            ),
            "max_iterations must be a whole number >= 1",
        ),
        (
            lambda b: b.for_each(
                "f",
                lambda ctx: [],
                lambda c: c.step("s", identity),
                max_iterations=2,
                concurrency=0,
            ),
            "concurrency must be a whole number >= 1",
        ),
        (
            lambda b: b.for_each("f", 3, lambda c: c.step("s", identity), max_iterations=2),
            "items must be callable",
        ),
        (
            lambda b: b.parallel("p", {"*": lambda c: c.step("s", identity)}),
            "must not be named '*'",
        ),
        (
            lambda b: b.step("s", identity).loop(
                "l", lambda c: c.step("s", identity), until=lambda ctx: True, max_iterations=1
            ),
            "two nodes named 's'",
        ),
    ],
)
def test_malformed_loops_are_refused_while_the_definition_is_built(build: Any, says: str) -> None:
    """Each mistake in a loop or for_each raises InvalidDefinitionError saying what is wrong."""
    with pytest.raises(InvalidDefinitionError, match=says.replace("(", r"\(").replace("*", r"\*")):
        build(m.define("bad").start(parse=identity)).end()
