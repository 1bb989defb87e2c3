"""Instructions per mission on trio and on asyncio, by callgrind, on the SQLite adapter.

    uv run python scripts/count_instructions_loops.py                      # every path, both loops
    uv run python scripts/count_instructions_loops.py --backend asyncio --path signal

Paths (SQLite NORMAL file, benchmark-like shapes):
- signal: start N missions waiting at a need_to, then signal them all at once (scenario 3);
- inflight: N 3-step missions started at once, each from its own task (scenario 2);
- tick: N sleeping missions among 2,000 waiting, moved by runtime ticks of 100 (scenario 5).
Each path runs with N = 1 and N = 1 + 1000 after the same warm-up; the difference / 1000.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio

from mission_control.adapter_sqlite import create_sqlite_persistence_adapter
from mission_control.core import Context, create_commander, m
from mission_control.in_memory_commander import ManualClock
from mission_control.runtime import create_commander_runtime

MISSIONS = 1000


def _same(raw: object) -> object:
    return raw


def _one(ctx: Context[Any, Any]) -> int:
    return 1


def _begun(ctx: Context[Any, Any]) -> dict[str, bool]:
    return {"ok": True}


THREE = (
    m.define("three")
    .start(parse=_same, run=_begun)
    .step("a", _one)
    .step("b", _one)
    .step("c", _one)
    .end()
)
SIGNALLED = (
    m.define("signalled").start(parse=_same).need_to("go", parse=_same).step("w", _one).end()
)
SLEEPER = (
    m.define("sleeper").start(parse=_same).sleep("nap", timedelta(days=1)).step("w", _one).end()
)


async def run(path: str, missions: int, directory: str) -> None:
    clock = ManualClock()
    store = create_sqlite_persistence_adapter(os.path.join(directory, "missions.sqlite"))
    async with create_commander(
        [THREE, SIGNALLED, SLEEPER], persistence=store, clock=clock
    ) as commander:
        for number in range(2000):
            await commander.start(SIGNALLED, {"n": number})
        # warm-up of the concurrent paths
        async with anyio.create_task_group() as tasks:
            for number in range(200):
                tasks.start_soon(commander.start, THREE, {"n": number})
        if path == "signal":
            handles = [await commander.start(SIGNALLED, {"n": n}) for n in range(missions)]
            async with anyio.create_task_group() as tasks:
                for handle in handles:
                    tasks.start_soon(handle.signal, "go", {"ok": True})
        elif path == "inflight":
            async with anyio.create_task_group() as tasks:
                for number in range(missions):
                    tasks.start_soon(commander.start, THREE, {"n": number})
        else:
            for number in range(missions):
                await commander.start(SLEEPER, {"n": number})
            clock.advance(timedelta(days=2))
            runtime = create_commander_runtime(
                commander, max_missions_per_tick=100, auto_schedule=False
            )
            async with runtime:
                while await commander.due_missions(1):
                    await runtime.tick()


def _instructions(backend: str, path: str, missions: int) -> int:
    with tempfile.TemporaryDirectory(prefix="mission-control-count-") as directory:
        out = os.path.join(directory, "callgrind.out")
        subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={out}",
                sys.executable,
                __file__,
                "--child",
                backend,
                path,
                str(missions),
                directory,
            ],
            check=True,
            capture_output=True,
            env={**os.environ, "PYTHONHASHSEED": "0"},
        )
        found = re.search(r"^summary:\s+(\d+)", Path(out).read_text(), re.MULTILINE)
        assert found is not None
        return int(found.group(1))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--backend", action="append", choices=("trio", "asyncio"))
    p.add_argument("--path", action="append", choices=("signal", "inflight", "tick"))
    p.add_argument("--child", nargs=4)
    a = p.parse_args()
    if a.child:
        backend, path, missions, directory = a.child
        anyio.run(run, path, int(missions), directory, backend=backend)
        return
    for path in a.path or ("signal", "inflight", "tick"):
        for backend in a.backend or ("trio", "asyncio"):
            per = (
                _instructions(backend, path, 1 + MISSIONS) - _instructions(backend, path, 1)
            ) / MISSIONS
            print(f"{path:9s} {backend:8s} {per / 1e6:.3f} M instructions per mission", flush=True)


if __name__ == "__main__":
    main()
