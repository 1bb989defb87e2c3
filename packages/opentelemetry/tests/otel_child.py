"""A child process for the crash test: starts a traced mission on a SQLite file and SIGKILLs
itself inside its step, before the step's result is committed.

    python otel_child.py DB BACKEND
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

import anyio
from opentelemetry.sdk.trace import TracerProvider

from mission_control.adapter_sqlite import SQLiteCommander
from mission_control.core import Context, m
from mission_control.opentelemetry import MissionTracer


def same(raw: Any) -> Any:
    return raw


def die(ctx: Context[Any, Any]) -> str:
    os.kill(os.getpid(), signal.SIGKILL)
    return "never"


CRASHED = m.define("crashed").start(parse=same).step("work", die).end()


async def main(db: str) -> None:
    tracer = MissionTracer(TracerProvider())
    async with SQLiteCommander(db, [CRASHED], observer=tracer) as commander:
        await commander.start(CRASHED, {}, id="crashed")


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], backend=sys.argv[2])
