"""Missions on SQLite survive a process that stops — even one that dies mid-step.

Run it with ``uv run python examples/restart_recovery.py [DATABASE]``. It runs itself twice:

1. the first process starts two onboarding missions. ``ada`` creates her account and waits for
   a one-second grace period (a durable timer). ``bob``'s data import is interrupted: the
   process dies inside that step, before its result could be committed.
2. a second process opens the same file and carries on: it resumes ``bob`` (the interrupted
   step runs again — at-least-once — and nothing before it does), waits for ``ada``'s timer,
   retries a flaky welcome email, and completes both missions once they are activated.

The second phase does by hand what ``mission_control.runtime`` does for you on start-up and on
each tick: ``running_missions`` + ``advance`` to resume, ``due_missions`` + ``advance`` for
timers and retries.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast

import trio

from mission_control.adapter_sqlite import SQLiteCommander
from mission_control.core import Context, MissionStatus, m

CRASH_EXIT_CODE = 70


def text_field(raw: object, name: str) -> str:
    value = cast("dict[str, object]", raw).get(name) if isinstance(raw, dict) else None
    if not isinstance(value, str):
        raise ValueError(f"expected an object with the text field {name!r}, got {raw!r}")
    return value


def parse_user(raw: object) -> dict[str, str]:
    return {"name": text_field(raw, "name")}


def parse_activation(raw: object) -> dict[str, str]:
    return {"via": text_field(raw, "via")}


def say(message: str) -> None:
    print(f"  [pid {os.getpid()}] {message}", flush=True)


async def create_account(ctx: Context[dict[str, str], None]) -> str:
    say(f"create-account for {ctx.input['name']}")
    return f"acct-{ctx.input['name']}"


async def import_data(ctx: Context[dict[str, str], None]) -> int:
    say(f"import-data for {ctx.input['name']} (attempt {ctx.attempt})")
    if os.environ.get("RESTART_RECOVERY_PHASE") == "1" and ctx.input["name"] == "bob":
        say("the process dies in the middle of this step (nothing is committed)")
        os._exit(CRASH_EXIT_CODE)
    return 42


async def send_welcome(ctx: Context[dict[str, str], None]) -> str:
    say(f"send-welcome to {ctx.input['name']} (attempt {ctx.attempt}, key {ctx.idempotency_key})")
    if ctx.attempt == 1:
        raise ConnectionError("mail server busy")
    return "sent"


onboarding = (
    m.define("onboarding")
    .start(parse=parse_user)
    .step("create-account", create_account)
    .step("import-data", import_data)
    .sleep("grace-period", timedelta(seconds=1))
    .step("send-welcome", send_welcome, retry=m.retry(3, m.fixed(0.2)))
    .need_to("activate", parse=parse_activation)
    .end(lambda ctx: {"account": ctx.events["create-account"].output})
)


async def phase_one(database: Path) -> None:
    async with SQLiteCommander(database, [onboarding]) as commander:
        for name in ("ada", "bob"):
            say(f"starting the onboarding of {name}")
            handle = await commander.start(onboarding, {"name": name}, id=name)
            wait = (await handle.inspect()).wait
            if wait is not None and wait.due_at is not None:
                say(f"{name} is waiting for the {wait.kind.value} {wait.node!r}, due {wait.due_at}")


async def phase_two(database: Path) -> None:
    async with SQLiteCommander(database, [onboarding]) as commander:
        # iter_missions reads the store a page at a time, however many missions it holds.
        async for snapshot in commander.iter_missions():
            say(f"found {snapshot.id}: {snapshot.status.value} at {snapshot.current_node!r}")

        for mission_id in await commander.running_missions(100):
            say(f"resuming {mission_id}, which a crash left mid-step")
            await commander.advance(mission_id)

        while True:
            waiting = {
                s.id: s.wait.signal
                async for s in commander.iter_missions(status=MissionStatus.WAITING)
                if s.wait is not None and s.wait.signal is not None
            }
            for mission_id, signal in waiting.items():
                say(f"signal {signal!r} to {mission_id}")
                await commander.signal(mission_id, signal, {"via": "email link"})
            due_at = await commander.next_due_at()
            if due_at is None:
                break
            delay = max(0.0, (due_at - datetime.now(UTC)).total_seconds())
            say(f"next timer or retry is due in {delay:.1f} s; sleeping until then")
            await trio.sleep(delay)
            for mission_id in await commander.due_missions(100):
                await commander.advance(mission_id)

        async for snapshot in commander.iter_missions():
            say(f"{snapshot.id} is {snapshot.status.value} with output {snapshot.output}")
        print("\n  bob's timeline:")
        for entry in await commander.timeline("bob"):
            print(f"    {entry.kind.value:<18} {entry.node or ''}")


def run_phase(phase: str, database: Path) -> int:
    environment = {**os.environ, "RESTART_RECOVERY_PHASE": phase}
    command = [sys.executable, __file__, "--phase", phase, str(database)]
    return subprocess.run(command, env=environment, check=False).returncode


def main() -> int:
    if len(sys.argv) >= 3 and sys.argv[1] == "--phase":
        phase, database = sys.argv[2], Path(sys.argv[3])
        trio.run(phase_one if phase == "1" else phase_two, database)
        return 0
    with tempfile.TemporaryDirectory() as scratch:
        database = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(scratch) / "missions.sqlite"
        print(f"database: {database}\n\nfirst process:")
        code = run_phase("1", database)
        print(f"\nthe first process exited with code {code}\n\nsecond process:")
        return run_phase("2", database)


if __name__ == "__main__":
    sys.exit(main())
