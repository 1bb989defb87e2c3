"""A child process for the crash tests: runs missions on a SQLite file and dies at a chosen point.

    python crash_child.py DB LOG MODE BACKEND

BACKEND is the event loop it runs on: ``trio`` or ``asyncio``.

Every step appends ``"<step> <mission id>"`` to LOG before it returns, so the parent can count
how often each step ran. Modes:

- ``block-in-b``: run ``m1`` to completion, then start ``m2`` and block forever inside its step
  ``b`` (after printing ``STEP-RAN``) for the parent to SIGKILL: a crash before the commit.
- ``die-after-commit-b``: run ``m1``, then start ``m2`` and SIGKILL itself right after the
  commit that stored ``m2``'s step ``b``: a crash after the commit.
- ``waits-then-die``: leave missions waiting for a signal, a timer, a retry and a delayed start,
  one with a buffered signal, and one mid-step with a cancellation request, then SIGKILL itself.
- ``recover``: resume what a crash left running, send the signals missions wait for, move the
  clock on an hour at a time running what is due, and print every mission's status as JSON.
- ``retry``: start ``r1`` (``pipeline``), whose step ``b`` fails the first time, so the
  mission fails; retry it: ``b`` runs again and blocks forever after printing ``RETRY-RAN``
  for the parent to SIGKILL.
- ``block-in-start``: start ``s1``, whose start node runs a function, and block forever inside
  that function (after printing ``START-RAN``) for the parent to SIGKILL.
- ``signal-with-start``: signal ``go`` to ``sws`` with signal-with-start, which starts it; block
  forever inside its start function, as ``block-in-start`` does.
- ``poison``: complete ``h-done``, leave ``h-run-1`` and ``z-run`` mid-step (their callers
  cancelled), then start ``p-poison``, whose step SIGKILLs the process every time it runs.
- ``runtime``: start a runtime on the file (its startup resumes what was left running, one
  mission at a time), stop it, and print every mission's status as JSON.
- ``crowd``: start ``c-1`` to ``c-3``, whose step takes many scheduler turns, and ``p-crowd``,
  whose step SIGKILLs the process once the three are in their step beside it (or at once when
  they are not running).
- ``runtime-concurrent``: as ``runtime``, with the runtime's default concurrency.
- ``parallel``: start ``par``, a parallel of three branches: ``fast`` (step ``p-fast``) and
  ``slow`` (``p-first``, which waits until ``p-fast`` has returned, then ``p-block``, which
  blocks forever after printing ``BLOCK-RAN`` for the parent to SIGKILL), and ``waiting`` (a
  need_to ``go``, then step ``p-after``). ``recover`` then completes it.
- ``loop``: start ``loop-first`` and ``loop-mid``, each a loop of two steps (``l-first``,
  ``l-second``) whose ``until`` holds after iteration 4; in iteration 3, ``loop-first`` blocks
  forever in ``l-first`` (the first function after the verdict that began the iteration) and
  ``loop-mid`` in ``l-second``. Once both are blocked it prints ``LOOPS-BLOCKED`` for the parent
  to SIGKILL. The steps log ``"<step>/<iteration> <mission id>"``, ``until`` logs
  ``"until/<iteration> <mission id>"``.
- ``for-each``: start ``each``, a for_each over five items two at a time, two steps each
  (``e-work``, ``e-done``); the items' function logs ``"items each"``. ``e-work`` of the third
  and fourth items blocks forever, and once both are in flight the child prints
  ``EACH-BLOCKED`` for the parent to SIGKILL. The steps log ``"<step>/<item> each"``.
- ``compensate``: start ``saga``, whose steps ``book-a`` and ``book-b`` complete and whose
  step ``pay`` fails: the compensation of ``book-b`` runs and completes (logged ``undo-b``),
  then that of ``book-a`` (logged ``undo-a``) blocks forever after printing ``UNDO-RAN`` for
  the parent to SIGKILL. ``recover`` then runs ``undo-a`` again and the mission ends
  compensated.
- ``compensate-cancel``: start ``saga-c`` (``saga-waits``), which books ``book-a`` and
  ``book-b`` and waits at ``confirm``; cancel it with ``compensate=True``: ``undo-b`` completes
  inside the cancel call, then ``undo-a`` blocks forever after printing ``UNDO-RAN``.
- ``child``: start ``c-first``, whose child ``c-first/kid`` blocks forever in its first step
  ``k-work`` (run by the parent's start call, the parent stored running at its child node), and
  ``c-wait``, whose child ``c-wait/kid`` waits for the signal ``k-go`` (the parent stored
  waiting for it), then blocks in ``k-work`` once sent it. Once both are blocked it prints
  ``CHILDREN-BLOCKED`` for the parent to SIGKILL. The child nodes' input functions log
  ``"input <parent id>"``, the children's steps ``"<step> <child id>"``.
- ``child-lost``: start ``c-lost``, whose child waits for ``k-go``, send it, and SIGKILL itself
  right after the commit that stored the child completed: its parent never hears of it.
- ``child-orphan``: start ``c-orphan``, whose child waits for ``k-go``, send it (the child then
  blocks in ``k-work``), cancel the parent, and SIGKILL itself right after the commit that
  stored the parent cancelled: the child is never told.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import sys
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import anyio
import anyio.lowlevel

from mission_control.adapter_sqlite import SQLiteCommander
from mission_control.core import (
    Context,
    MissionSnapshot,
    MissionStatus,
    NodeStatus,
    TimelineEntry,
    m,
)
from mission_control.in_memory_commander import ManualClock
from mission_control.runtime import create_commander_runtime

DB, LOG, MODE, BACKEND = sys.argv[1:5]
CLOCK = ManualClock()


def parse(raw: Any) -> Any:
    return raw


def record(step: str, mission_id: str) -> None:
    with open(LOG, "a", encoding="utf-8") as log:
        log.write(f"{step} {mission_id}\n")


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


async def step_a(ctx: Context[Any, Any]) -> str:
    record("a", ctx.mission_id)
    return "a-done"


RETRY_RUNS: list[int] = []
"""The attempts step ``b`` of ``r1`` ran as (mode ``retry``)."""

LEFT_RUNNING: dict[str, anyio.CancelScope] = {}
"""Missions whose caller is cancelled while their step ``b`` runs (mode ``poison``)."""


async def step_b(ctx: Context[Any, Any]) -> str:
    record("b", ctx.mission_id)
    scope = LEFT_RUNNING.get(ctx.mission_id)
    if scope is not None:
        scope.cancel()
        await anyio.sleep_forever()
    if MODE == "block-in-b" and ctx.mission_id == "m2":
        print("STEP-RAN", flush=True)
        await anyio.sleep_forever()
    if MODE == "retry" and ctx.mission_id == "r1":
        RETRY_RUNS.append(ctx.attempt)
        if len(RETRY_RUNS) == 1:
            raise RuntimeError("b is down")
        print("RETRY-RAN", flush=True)
        await anyio.sleep_forever()
    if MODE == "waits-then-die" and ctx.mission_id == "p-cancel":
        # The mission is held by this step, so the request is stored for its next boundary.
        await COMMANDER.cancel(ctx.mission_id, "crash test")
        print("WAITING", flush=True)
        die()
    return "b-done"


async def step_c(ctx: Context[Any, Any]) -> str:
    record("c", ctx.mission_id)
    return "c-done"


async def flaky(ctx: Context[Any, Any]) -> str:
    record("flaky", ctx.mission_id)
    if ctx.attempt == 1:
        raise RuntimeError("the first attempt fails")
    return "flaky-done"


async def started(ctx: Context[Any, Any]) -> str:
    record("start", ctx.mission_id)
    if MODE in {"block-in-start", "signal-with-start"}:
        print("START-RAN", flush=True)
        await anyio.sleep_forever()
    return "started"


async def kill_the_process(ctx: Context[Any, Any]) -> str:
    record("die", ctx.mission_id)
    die()
    return "never"


CROWD = ("c-1", "c-2", "c-3")
IN_CROWD_STEP: set[str] = set()


async def crowd_step(ctx: Context[Any, Any]) -> str:
    record("crowd", ctx.mission_id)
    IN_CROWD_STEP.add(ctx.mission_id)
    try:
        for _ in range(200):
            await anyio.lowlevel.checkpoint()
    finally:
        IN_CROWD_STEP.discard(ctx.mission_id)
    return "crowd-done"


async def kill_amid_the_crowd(ctx: Context[Any, Any]) -> str:
    record("die", ctx.mission_id)
    # Bounded: alone (the crowd done or not running), the step kills the process all the same.
    for _ in range(100):
        if len(IN_CROWD_STEP) == len(CROWD):
            break
        await anyio.lowlevel.checkpoint()
    die()
    return "never"


STARTED = (
    m.define("started")
    .start(parse=parse, run=started)
    .step("a", step_a)
    .step("b", step_b)
    .step("c", step_c)
    .end()
)

SIGNALLED = (
    m.define("signalled")
    .start(parse=parse, run=started)
    .step("a", step_a)
    .need_to("go", parse=parse)
    .end(output=lambda ctx: ctx.events["go"].output)
)

POISON = m.define("poison").start(parse=parse).step("die", kill_the_process).end()
CROWDED = m.define("crowded").start(parse=parse).step("work", crowd_step).end()
CROWD_POISON = m.define("crowd-poison").start(parse=parse).step("die", kill_amid_the_crowd).end()

PIPELINE = (
    m.define("pipeline")
    .start(parse=parse)
    .step("a", step_a)
    .step("b", step_b)
    .step("c", step_c)
    .end()
)

WAITS = (
    m.define("waits")
    .start(parse=parse)
    .need_to("go", parse=parse)
    .sleep("nap", timedelta(minutes=10))
    .step("flaky", flaky, retry=m.retry(3, m.fixed(60)))
    .end()
)

FAST_RETURNED: list[anyio.Event] = []
"""Set by ``p-fast`` when it returns (made inside the loop, by ``main``)."""


async def parallel_fast(ctx: Context[Any, Any]) -> str:
    record("p-fast", ctx.mission_id)
    FAST_RETURNED[0].set()
    return "fast"


async def parallel_first(ctx: Context[Any, Any]) -> str:
    await FAST_RETURNED[0].wait()
    # p-fast's result reached the engine before this one: it is written first.
    await anyio.lowlevel.checkpoint()
    record("p-first", ctx.mission_id)
    return "first"


async def parallel_block(ctx: Context[Any, Any]) -> str:
    record("p-block", ctx.mission_id)
    if MODE == "parallel":
        print("BLOCK-RAN", flush=True)
        await anyio.sleep_forever()
    return "block"


async def parallel_after(ctx: Context[Any, Any]) -> str:
    record("p-after", ctx.mission_id)
    return f"after {ctx.events['go'].output}"


PARALLEL = (
    m.define("parallel")
    .start(parse=parse)
    .parallel(
        "work",
        {
            "fast": lambda b: b.step("p-fast", parallel_fast),
            "slow": lambda b: b.step("p-first", parallel_first).step("p-block", parallel_block),
            "waiting": lambda b: b.need_to("go", parse=parse).step("p-after", parallel_after),
        },
    )
    .end(output=lambda ctx: ctx.events["work"].output)
)

LOOP_BLOCK_AT = {"loop-first": "l-first", "loop-mid": "l-second"}
"""Where each mission of mode ``loop`` blocks, in iteration 3."""
BLOCKED: set[str] = set()
"""The blocked functions of mode ``loop`` or ``for-each``, named for the log."""


async def block_when(expected: int, marker: str, name: str) -> None:
    """Block forever, printing ``marker`` once ``expected`` functions are blocked here."""
    BLOCKED.add(name)
    if len(BLOCKED) == expected:
        print(marker, flush=True)
    await anyio.sleep_forever()


def looped_step(step: str) -> Any:
    async def run(ctx: Context[Any, Any]) -> str:
        record(f"{step}/{ctx.iteration}", ctx.mission_id)
        if MODE == "loop" and ctx.iteration == 3 and LOOP_BLOCK_AT[ctx.mission_id] == step:
            await block_when(len(LOOP_BLOCK_AT), "LOOPS-BLOCKED", f"{step} {ctx.mission_id}")
        return f"{step} {ctx.iteration}"

    return run


def looped_until(ctx: Context[Any, Any]) -> bool:
    record(f"until/{ctx.iteration}", ctx.mission_id)
    return ctx.iteration == 4


LOOPED = (
    m.define("looped")
    .start(parse=parse)
    .loop(
        "rounds",
        lambda b: b.step("l-first", looped_step("l-first")).step(
            "l-second", looped_step("l-second")
        ),
        until=looped_until,
        max_iterations=10,
    )
    .end(output=lambda ctx: ctx.events["rounds"].output)
)

EACH_ITEMS = ["a", "b", "c", "d", "e"]
EACH_BLOCK_AT = {"c", "d"}


def each_items(ctx: Context[Any, Any]) -> list[str]:
    record("items", ctx.mission_id)
    return EACH_ITEMS


async def each_work(ctx: Context[Any, Any]) -> str:
    item: str = ctx.item
    record(f"e-work/{item}", ctx.mission_id)
    if MODE == "for-each" and item in EACH_BLOCK_AT:
        await block_when(len(EACH_BLOCK_AT), "EACH-BLOCKED", f"e-work/{item}")
    return item.upper()


async def each_done(ctx: Context[Any, Any]) -> str:
    record(f"e-done/{ctx.item}", ctx.mission_id)
    return f"{ctx.events['e-work'].output} in iteration {ctx.iteration}"


EACH = (
    m.define("each")
    .start(parse=parse)
    .for_each(
        "items",
        each_items,
        lambda b: b.step("e-work", each_work).step("e-done", each_done),
        max_iterations=10,
        concurrency=2,
    )
    .end(output=lambda ctx: ctx.events["items"].output)
)


async def undo_step(ctx: Context[Any, Any], output: str) -> None:
    name = ctx.node.removeprefix("book-")
    record(f"undo-{name}", ctx.mission_id)
    if MODE in ("compensate", "compensate-cancel") and name == "a":
        print("UNDO-RAN", flush=True)
        await anyio.sleep_forever()


async def pay(ctx: Context[Any, Any]) -> str:
    record("pay", ctx.mission_id)
    raise RuntimeError("card declined")


SAGA = (
    m.define("saga")
    .start(parse=parse)
    .step("book-a", step_a, compensate=undo_step)
    .step("book-b", step_c, compensate=undo_step)
    .step("pay", pay)
    .end()
)

SAGA_WAITS = (
    m.define("saga-waits")
    .start(parse=parse)
    .step("book-a", step_a, compensate=undo_step)
    .step("book-b", step_c, compensate=undo_step)
    .need_to("confirm", parse=parse)
    .end()
)
"""``compensate-cancel``: books two things, then waits to be confirmed (or cancelled)."""

CHILD_BLOCK_AT = {
    "child": {"c-first/kid", "c-wait/kid"},
    "child-orphan": {"c-orphan/kid"},
}
"""The children whose step ``k-work`` blocks, by mode."""


async def kid_work(ctx: Context[Any, Any]) -> str:
    record("k-work", ctx.mission_id)
    blocking = CHILD_BLOCK_AT.get(MODE, set())
    if ctx.mission_id in blocking:
        await block_when(len(blocking), "CHILDREN-BLOCKED", f"k-work {ctx.mission_id}")
    return f"worked on {ctx.input['parcels']}"


async def kid_after(ctx: Context[Any, Any]) -> str:
    record("k-after", ctx.mission_id)
    return f"{ctx.events['k-work'].output}, checked"


def kid_input(ctx: Context[Any, Any]) -> Any:
    record("input", ctx.mission_id)
    return {"parcels": ctx.input["parcels"]}


async def parent_after(ctx: Context[Any, Any]) -> str:
    record("p-after", ctx.mission_id)
    return f"after {ctx.events['kid'].output}"


KID = (
    m.define("kid")
    .start(parse=parse)
    .step("k-work", kid_work)
    .step("k-after", kid_after)
    .end(output=lambda ctx: ctx.events["k-after"].output)
)
KID_WAITS = (
    m.define("kid-waits")
    .start(parse=parse)
    .need_to("k-go", parse=parse)
    .step("k-work", kid_work)
    .step("k-after", kid_after)
    .end(output=lambda ctx: ctx.events["k-after"].output)
)


def parent_of(name: str, kid: Any) -> Any:
    return (
        m.define(name)
        .start(parse=parse)
        .child("kid", kid, kid_input)
        .step("p-after", parent_after)
        .end(output=lambda ctx: ctx.events["kid"].output)
    )


PARENT = parent_of("parent", KID)
PARENT_WAITS = parent_of("parent-waits", KID_WAITS)

COMMANDER = SQLiteCommander(
    DB,
    [
        PIPELINE,
        WAITS,
        STARTED,
        SIGNALLED,
        POISON,
        CROWDED,
        CROWD_POISON,
        PARALLEL,
        LOOPED,
        EACH,
        SAGA,
        SAGA_WAITS,
        PARENT,
        PARENT_WAITS,
    ],
    clock=CLOCK,
)


async def commit_then_die(
    snapshot: MissionSnapshot,
    *,
    expected_revision: int,
    timeline: Sequence[TimelineEntry],
    consumed_signal: int | None = None,
    reopened: bool = False,
) -> None:
    await ORIGINAL_COMMIT(
        snapshot,
        expected_revision=expected_revision,
        timeline=timeline,
        consumed_signal=consumed_signal,
        reopened=reopened,
    )
    node = snapshot.nodes.get("b")
    if snapshot.id == "m2" and node is not None and node.status is NodeStatus.COMPLETED:
        print("COMMITTED", flush=True)
        die()
    if snapshot.id == "c-lost/kid" and snapshot.status is MissionStatus.COMPLETED:
        print("COMMITTED", flush=True)
        die()
    if snapshot.id == "c-orphan" and snapshot.status is MissionStatus.CANCELLED:
        print("COMMITTED", flush=True)
        die()


ORIGINAL_COMMIT = COMMANDER.persistence.commit


async def run() -> None:
    commander = COMMANDER
    if MODE in {"block-in-b", "die-after-commit-b"}:
        if MODE == "die-after-commit-b":
            commander.persistence.commit = commit_then_die  # type: ignore[method-assign]
        await commander.start(PIPELINE, {}, id="m1")
        await commander.start(PIPELINE, {}, id="m2")
        raise AssertionError("the child should have died inside m2")
    if MODE == "waits-then-die":
        await commander.start(WAITS, {}, id="w-signal")
        await commander.start(WAITS, {}, id="w-timer")
        await commander.signal("w-timer", "go", {})
        await commander.start(WAITS, {}, id="w-retry")
        await commander.signal("w-retry", "go", {})
        CLOCK.advance(timedelta(minutes=10))
        await commander.advance("w-retry")
        start_at = CLOCK.now() + timedelta(minutes=5)
        await commander.start(WAITS, {}, id="w-delayed", start_at=start_at)
        await commander.start(WAITS, {}, id="w-buffered", start_at=start_at)
        await commander.signal("w-buffered", "go", {"early": True})
        await commander.start(PIPELINE, {}, id="p-cancel")
        raise AssertionError("the child should have died inside p-cancel")
    if MODE == "parallel":
        await commander.start(PARALLEL, {}, id="par")
        raise AssertionError("the child should have been killed inside p-block")
    if MODE == "loop":
        async with anyio.create_task_group() as tasks:
            for mission_id in LOOP_BLOCK_AT:
                tasks.start_soon(functools.partial(commander.start, LOOPED, {}, id=mission_id))
        raise AssertionError("the child should have been killed inside the loops")
    if MODE == "for-each":
        await commander.start(EACH, {}, id="each")
        raise AssertionError("the child should have been killed inside the for_each")
    if MODE == "compensate":
        await commander.start(SAGA, {}, id="saga")
        raise AssertionError("the child should have been killed inside undo-a")
    if MODE == "compensate-cancel":
        await commander.start(SAGA_WAITS, {}, id="saga-c")
        await commander.cancel("saga-c", "the customer changed their mind", compensate=True)
        raise AssertionError("the child should have been killed inside undo-a")
    if MODE == "child":

        async def start_then_signal() -> None:
            await commander.start(PARENT_WAITS, {"parcels": 2}, id="c-wait")
            await commander.signal("c-wait/kid", "k-go")

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(
                functools.partial(commander.start, PARENT, {"parcels": 1}, id="c-first")
            )
            tasks.start_soon(start_then_signal)
        raise AssertionError("the child should have been killed inside the children's steps")
    if MODE == "child-lost":
        commander.persistence.commit = commit_then_die  # type: ignore[method-assign]
        await commander.start(PARENT_WAITS, {"parcels": 3}, id="c-lost")
        await commander.signal("c-lost/kid", "k-go")
        raise AssertionError("the child should have died after c-lost/kid's last commit")
    if MODE == "child-orphan":
        commander.persistence.commit = commit_then_die  # type: ignore[method-assign]
        await commander.start(PARENT_WAITS, {"parcels": 4}, id="c-orphan")
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(commander.signal, "c-orphan/kid", "k-go")
            while not BLOCKED:
                await anyio.lowlevel.checkpoint()
            await commander.cancel("c-orphan", "crash test")
        raise AssertionError("the child should have died after c-orphan's cancelling commit")
    if MODE == "retry":
        failed = await (await commander.start(PIPELINE, {}, id="r1")).inspect()
        assert failed.status is MissionStatus.FAILED, failed
        await commander.retry("r1")
        raise AssertionError("the child should have been killed inside the retried step")
    if MODE == "block-in-start":
        await commander.start(STARTED, {}, id="s1")
        raise AssertionError("the child should have been killed inside the start")
    if MODE == "signal-with-start":
        await commander.signal_with_start(
            SIGNALLED, {}, mission_id="sws", signal="go", payload={"sent": 1}
        )
        raise AssertionError("the child should have been killed inside the start")
    if MODE == "poison":
        await commander.start(PIPELINE, {}, id="h-done")
        for mission_id in ("h-run-1", "z-run"):
            with anyio.CancelScope() as scope:
                LEFT_RUNNING[mission_id] = scope
                await commander.start(PIPELINE, {}, id=mission_id)
        await commander.start(POISON, {}, id="p-poison")
        raise AssertionError("the child should have died inside p-poison")
    if MODE == "crowd":
        async with anyio.create_task_group() as tasks:
            for mission_id in CROWD:
                tasks.start_soon(functools.partial(commander.start, CROWDED, {}, id=mission_id))
            tasks.start_soon(functools.partial(commander.start, CROWD_POISON, {}, id="p-crowd"))
        raise AssertionError("the child should have died inside p-crowd")
    if MODE == "runtime-concurrent":
        async with create_commander_runtime(commander):
            pass
        print(json.dumps({s.id: s.status.value for s in await commander.list()}), flush=True)
        return
    if MODE == "runtime":
        # One mission at a time, in id order: what a SIGKILL interrupts is then known exactly.
        async with create_commander_runtime(commander, max_concurrency=1):
            pass
        print(json.dumps({s.id: s.status.value for s in await commander.list()}), flush=True)
        return
    if MODE == "recover":
        for _ in range(4):
            for mission_id in await commander.running_missions(100):
                await commander.advance(mission_id)
            for snapshot in await commander.list(status=MissionStatus.WAITING):
                if snapshot.wait is not None and snapshot.wait.signal == "go":
                    await commander.signal(snapshot.id, "go", {})
            CLOCK.advance(timedelta(hours=1))
            for mission_id in await commander.due_missions(100):
                await commander.advance(mission_id)
        print(json.dumps({s.id: s.status.value for s in await commander.list()}), flush=True)
        return
    raise SystemExit(f"unknown mode {MODE!r}")


async def main() -> None:
    FAST_RETURNED.append(anyio.Event())
    async with COMMANDER:
        await run()


anyio.run(main, backend=BACKEND)
