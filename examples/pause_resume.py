"""A run paused at a stage boundary, its events buffered, then resumed after a restart.

Run it with ``uv run python examples/pause_resume.py``. The flow is a small publishing pipeline
(the pause/resume flow of the @asaidimu/runtime seed): ``draft`` -> ``review`` (waits for the
reviewer's approval, the ``review`` event) -> ``embargo`` (a one-hour sleep) -> ``publish``.

1. An operator pauses the run while its ``draft`` stage runs: the stage finishes and its result
   is stored, and the run stops at the boundary before ``review``.
2. The ``review`` event arrives while the run is paused: it is buffered, not taken, and the
   clock passes the time the embargo would have lasted.
3. The process stops and a new one opens the same SQLite file: the run is still paused, and
   nothing is due.
4. The operator resumes it: the run goes on exactly where it stopped, takes the buffered event
   at ``review``, and waits out its embargo from the resume; a runtime tick then publishes it.

The clock is a ``ManualClock``, so the hour passes at once.
"""

from __future__ import annotations

import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import trio
import trio.testing

from mission_control.adapter_sqlite import SQLiteCommander
from mission_control.core import Context, MissionStatus, m
from mission_control.in_memory_commander import ManualClock
from mission_control.runtime import create_commander_runtime

operator_paused = trio.Event()
"""Set once the operator has asked for the pause (the draft stage waits for it, so that the pause
comes while the stage runs)."""


def parse_article(raw: Any) -> dict[str, str]:
    title = cast("dict[str, Any]", raw).get("title") if isinstance(raw, dict) else None
    if not isinstance(title, str):
        raise ValueError(f"an article needs a 'title' string, got {raw!r}")
    return {"title": title}


def parse_approval(raw: Any) -> str:
    by = cast("dict[str, Any]", raw).get("by") if isinstance(raw, dict) else None
    if not isinstance(by, str):
        raise ValueError(f"an approval needs a 'by' string, got {raw!r}")
    return by


async def write_draft(ctx: Context[dict[str, str], None]) -> str:
    await operator_paused.wait()
    print(f"  draft stage: writing {ctx.input['title']!r} (the pause waits for this stage)")
    return f"draft of {ctx.input['title']}"


async def publish(ctx: Context[dict[str, str], None]) -> str:
    approved_by = ctx.events["review"].output
    print(f"  publish stage: {ctx.events['draft'].output}, approved by {approved_by}")
    return f"published, approved by {approved_by}"


pipeline = (
    m.define("publishing")
    .start(parse=parse_article)
    .step("draft", write_draft)
    .need_to("review", parse=parse_approval)
    .sleep("embargo", timedelta(hours=1))
    .step("publish", publish)
    .end(output=lambda ctx: ctx.events["publish"].output)
)


async def first_process(database: Path, clock: ManualClock) -> None:
    async with SQLiteCommander(database, [pipeline], clock=clock) as commander:

        async def start() -> None:
            await commander.start(pipeline, {"title": "Pause and resume"}, id="run-1")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(start)
            # The operator pauses the run while its draft stage runs (blocked until then).
            await trio.testing.wait_all_tasks_blocked()
            await commander.pause("run-1", "legal check")
            operator_paused.set()
        paused = await commander.inspect("run-1")
        assert paused.pause is not None
        print(
            f"run-1 is {paused.status.value} at {paused.current_node!r} "
            f"({paused.pause.reason}); draft is {paused.nodes['draft'].status.value}"
        )

        await commander.signal("run-1", "review", {"by": "grace"})
        print("the 'review' event came while paused: buffered, not taken")
        clock.advance(timedelta(hours=2))
        print(f"two hours later, due: {await commander.due_missions(10)}")


async def second_process(database: Path, clock: ManualClock) -> None:
    async with SQLiteCommander(database, [pipeline], clock=clock) as commander:
        stored = await commander.inspect("run-1")
        print(f"after the restart run-1 is {stored.status.value}, due at {stored.due_at}")
        resumed = await commander.resume("run-1")
        print(
            f"resumed: {resumed.status.value} at {resumed.current_node!r}, "
            f"review took {resumed.nodes['review'].output!r}, due {resumed.due_at}"
        )
        clock.advance(timedelta(hours=1))
        async with create_commander_runtime(commander, auto_schedule=False) as runtime:
            await runtime.tick()
        done = await commander.inspect("run-1")
        assert done.status is MissionStatus.COMPLETED
        print(f"run-1 is {done.status.value}: {done.output}")
        print("\ntimeline:")
        for entry in await commander.timeline("run-1"):
            print(f"  {entry.kind.value:<18} {entry.node or ''}")


async def main() -> None:
    clock = ManualClock()
    with tempfile.TemporaryDirectory() as scratch:
        database = Path(scratch) / "runs.sqlite"
        await first_process(database, clock)
        print("\n(the process stops; another one opens the file)\n")
        await second_process(database, clock)


if __name__ == "__main__":
    trio.run(main)
