"""A child process owning a SQLite file, for the tests that need the owner in another process.

    python owner_child.py DB

It opens DB for writing, starts ``m-1`` (a mission of ``w`` waiting for the signal ``go``;
idempotent, so a database that has it already keeps it), prints ``ready``, then obeys the lines
it reads on stdin, answering ``done <line>`` to each, until its input ends; then it closes the
database and exits. Lines: ``signal`` (sends ``go`` to ``m-1``).
"""

from __future__ import annotations

import sys

import trio

from mission_control.adapter_sqlite import SQLiteCommander
from mission_control.core import m

FLOW = m.define("w").start(parse=lambda v: v).need_to("go", parse=lambda v: v).end()


async def main() -> None:
    async with SQLiteCommander(sys.argv[1], [FLOW]) as commander:
        await commander.start(FLOW, {}, id="m-1")
        print("ready", flush=True)
        while line := (await trio.to_thread.run_sync(sys.stdin.readline)).strip():
            if line == "signal":
                await commander.signal("m-1", "go", {})
            else:
                raise SystemExit(f"unknown command {line!r}")
            print(f"done {line}", flush=True)


trio.run(main)
