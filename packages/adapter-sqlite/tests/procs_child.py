"""A child process for the several-processes tests: owns a SQLite file, submits work to its
owner, or waits to take it over.

    python procs_child.py DB DIR MODE BACKEND [ARGS...]

BACKEND is the event loop it runs on: ``trio`` or ``asyncio``. Every step appends
``"<step> <mission id>"`` to ``DIR/steps-<pid>.log`` (one file per process, so the parent can
count how often each step ran, and in which process). Modes:

- ``owner``: open the file with ``role="owner"``, run a runtime, print ``RUNNING`` once its
  startup tick is done, and run until SIGTERM (then print ``STOPPED``).
- ``auto``: as ``owner`` with the default role ``"auto"``: it owns the file when nobody does,
  else its runtime stands by to take it over. Each runtime event is appended to
  ``DIR/events-<pid>.log`` as ``"<event> <unix time>"``, and ``"owner <unix time>"`` is
  appended once the process owns the file (at once, or when it took the file over).
- ``submit PREFIX COUNT``: as a submitter with the definitions, start missions ``PREFIX-0`` to
  ``PREFIX-<COUNT-1>`` of ``approval`` (input ``{"n": i}``) and signal each ``approve`` once
  with ``{"by": PREFIX, "n": i}``: ``signal()`` for even ``i``, ``submit_signal()`` then
  ``verdict()`` for odd ones, a few missions at a time. Prints one JSON object: mission id ->
  the submission's number (odd ``i``) or ``None``.
- ``raw-signal MISSION``: as a submitter without definitions, send ``approve`` with a payload
  its parser refuses, first with ``submit_signal()`` then ``verdict()``, then with
  ``signal()``. Prints one JSON object: the first submission (``seq``, ``submitted_by``) and the
  error each way raised (class name and message).
- ``submit-alone``: as a submitter with the definitions, start ``n-1`` and submit its signal
  ``approve`` (``{"by": "cron", "n": 1}``), and submit a start of ``n-2``; return at once.
  Prints one JSON object: the submissions' numbers and states.
- ``singleton DEFINITION TAG AT``: as a submitter with the definitions, wait until the unix
  time AT, then start ``<DEFINITION>-<TAG>`` of ``refuse`` or ``join`` (singletons of the key
  ``{"c": ...}`` waiting for the signal ``go``) with key ``race``. Prints one JSON object: the
  handle's id, or the error's class name.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio

from mission_control.adapter_sqlite import SQLiteCommander
from mission_control.core import ConcurrencyLimitError, Context, InvalidSignalPayloadError, m
from mission_control.runtime import create_commander_runtime

DB, DIR, MODE, BACKEND = sys.argv[1:5]
ARGS = sys.argv[5:]
HERE = Path(DIR)
WATCHDOG = 60.0
"""Seconds after which a step waiting for the parent gives up: a hung test, never a wait."""


def parse(raw: Any) -> Any:
    return raw


def parse_approval(raw: Any) -> Any:
    if not isinstance(raw, dict) or "by" not in raw:
        raise ValueError(f"an approval names who approves, as {{'by': ...}}; got {raw!r}")
    return raw


def record(step: str, mission_id: str) -> None:
    with open(HERE / f"steps-{os.getpid()}.log", "a", encoding="utf-8") as log:
        log.write(f"{step} {mission_id}\n")


def note(event: str) -> None:
    with open(HERE / f"events-{os.getpid()}.log", "a", encoding="utf-8") as log:
        log.write(f"{event} {time.time()!r}\n")


async def prepare(ctx: Context[Any, Any]) -> int:
    record("prepare", ctx.mission_id)
    return int(ctx.input["n"])


async def finish(ctx: Context[Any, Any]) -> str:
    record("finish", ctx.mission_id)
    return f"approved by {ctx.events['approve'].output['by']}"


APPROVAL = (
    m.define("approval")
    .start(parse=parse)
    .step("prepare", prepare)
    .need_to("approve", parse=parse_approval)
    .step("finish", finish)
    .end(output=lambda ctx: ctx.events["approve"].output)
)


async def held(step: str, mission_id: str) -> None:
    """Tell the parent ``step`` runs (``DIR/holding``), then wait until it says go."""
    record(step, mission_id)
    (HERE / "holding").write_text(str(os.getpid()))
    with anyio.fail_after(WATCHDOG):
        # Polled: the parent is another process, which no Event reaches.
        while not (HERE / "go").exists():  # noqa: ASYNC110
            await anyio.sleep(0.01)


async def hold(ctx: Context[Any, Any]) -> str:
    await held("hold", ctx.mission_id)
    return "held"


async def after(ctx: Context[Any, Any]) -> str:
    record("after", ctx.mission_id)
    return "after"


HOLD = m.define("hold").start(parse=parse).step("hold", hold).step("after", after).end()


async def undo_held(ctx: Context[Any, Any], output: Any) -> None:
    await held("undo", ctx.mission_id)


UNDO = (
    m.define("undo")
    .start(parse=parse)
    .step("book", lambda ctx: "booked", compensate=undo_held)
    .need_to("confirm", parse=parse)
    .end()
)


def singleton(name: str, when_busy: Any) -> Any:
    return (
        m.define(name)
        .start(parse=parse)
        .concurrency(lambda value: str(value["c"]), limit=1, when_busy=when_busy)
        .need_to("go", parse=parse)
        .end()
    )


SINGLETONS = {"refuse": singleton("refuse", "refuse"), "join": singleton("join", "join")}

DEFINITIONS = [APPROVAL, HOLD, UNDO, *SINGLETONS.values()]


class EventFile:
    """A runtime logger writing each event with its time, for the parent to order them."""

    def log(
        self, event: str, fields: Mapping[str, object], *, error: BaseException | None = None
    ) -> None:
        note(event)
        if event == "runtime-took-ownership":
            note("owner")


async def run_owner(role: str) -> None:
    # Listened for before RUNNING is printed: the parent may stop it as soon as it reads that.
    with anyio.open_signal_receiver(signal.SIGTERM) as terminated:
        async with SQLiteCommander(
            DB, DEFINITIONS, role="owner" if role == "owner" else "auto"
        ) as commander:
            if commander.is_owner:
                note("owner")
            async with create_commander_runtime(commander, logger=EventFile()):
                print("RUNNING", flush=True)
                async for _ in terminated:
                    break
    print("STOPPED", flush=True)


async def run_submitter(prefix: str, count: int) -> None:
    seqs: dict[str, int | None] = {}
    async with SQLiteCommander(DB, DEFINITIONS, role="submitter") as commander:
        assert not commander.is_owner

        async def one(i: int) -> None:
            mission_id = f"{prefix}-{i}"
            await commander.start(APPROVAL, {"n": i}, id=mission_id)
            payload = {"by": prefix, "n": i}
            if i % 2 == 0:
                await commander.signal(mission_id, "approve", payload)
                seqs[mission_id] = None
            else:
                submission = await commander.submit_signal(mission_id, "approve", payload)
                await commander.verdict(submission)
                seqs[mission_id] = submission.seq

        async def several(first: int, step: int) -> None:
            for i in range(first, count, step):
                await one(i)

        async with anyio.create_task_group() as tasks:
            for first in range(8):
                tasks.start_soon(several, first, 8)
    print(json.dumps(seqs), flush=True)


def error_of(error: Exception) -> list[str]:
    return [type(error).__name__, str(error)]


async def run_raw_signal(mission_id: str) -> None:
    bad = {"nobody": "approves"}
    found: dict[str, Any] = {}
    async with SQLiteCommander(DB, [], role="submitter") as commander:
        submission = await commander.submit_signal(mission_id, "approve", bad)
        found["seq"] = submission.seq
        found["submitted_by"] = submission.submitted_by
        try:
            await commander.verdict(submission)
        except InvalidSignalPayloadError as error:
            found["verdict"] = error_of(error)
        try:
            await commander.signal(mission_id, "approve", bad)
        except InvalidSignalPayloadError as error:
            found["signal"] = error_of(error)
    print(json.dumps(found), flush=True)


async def run_submit_alone() -> None:
    async with SQLiteCommander(DB, DEFINITIONS, role="submitter") as commander:
        await commander.start(APPROVAL, {"n": 1}, id="n-1")
        signalled = await commander.submit_signal("n-1", "approve", {"by": "cron", "n": 1})
        started = await commander.submit_start("approval", {"n": 2}, id="n-2")
    print(
        json.dumps(
            {
                "signal": [signalled.seq, signalled.state.value],
                "start": [started.seq, started.state.value],
            }
        ),
        flush=True,
    )


async def run_singleton(name: str, tag: str, at: float) -> None:
    async with SQLiteCommander(DB, DEFINITIONS, role="submitter") as commander:
        # Polled: the moment is shared with the other submitter processes.
        while time.time() < at:  # noqa: ASYNC110
            await anyio.sleep(0.001)
        try:
            handle = await commander.start(SINGLETONS[name], {"c": "race"}, id=f"{name}-{tag}")
        except ConcurrencyLimitError as error:
            print(json.dumps({"error": type(error).__name__}), flush=True)
            return
    print(json.dumps({"id": handle.id}), flush=True)


async def main() -> None:
    match MODE:
        case "owner" | "auto":
            await run_owner(MODE)
        case "submit":
            await run_submitter(ARGS[0], int(ARGS[1]))
        case "raw-signal":
            await run_raw_signal(ARGS[0])
        case "submit-alone":
            await run_submit_alone()
        case "singleton":
            await run_singleton(ARGS[0], ARGS[1], float(ARGS[2]))
        case _:
            raise SystemExit(f"unknown mode {MODE!r}")


anyio.run(main, backend=BACKEND)
