"""Scenario (4): 200 missions sleeping 1 s then a step, driven by the real runtime."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

import trio
from bench_bare import BareDb, Write, bare_mission, describe_writes, record_timer
from bench_common import close_all, sqlite_commanders
from bench_definitions import Definition, sleeper
from bench_loops import Config, Loops
from bench_profile import Profiles
from bench_report import Result, Target, row

from mission_control.client import create_mission_client
from mission_control.core import (
    Commander,
    SortableIds,
)
from mission_control.runtime import create_commander_runtime


async def _sleepers(commander: Commander, definition: Definition, count: int) -> dict[str, float]:
    """Start the runtime, start ``count`` sleeping missions through the client, wait for all."""
    began = time.perf_counter()
    up = last_start = done = began
    async with create_commander_runtime(commander, auto_schedule=True) as runtime:
        up = time.perf_counter()
        client = create_mission_client(runtime)
        ids = [(await client.start(definition, {"i": i})).id for i in range(count)]
        last_start = time.perf_counter()
        for mission_id in ids:
            await commander.wait_for_completion(mission_id)
        done = time.perf_counter()
    return {
        "total": done - began,
        "runtime_start": up - began,
        "starting": last_start - up,
        "after_last_due": done - last_start,
    }


async def _bare_sleepers(
    db: BareDb, first: Write, after: Sequence[Write], count: int, seconds: float
) -> float:
    ids = SortableIds()
    began = time.perf_counter()

    async def wake(mission_id: str, due: float) -> None:
        await trio.sleep_until(due)
        await bare_mission(db, mission_id, after)

    async with trio.open_nursery() as nursery:
        for _ in range(count):
            mission_id = ids()
            db.write(mission_id, first)
            nursery.start_soon(wake, mission_id, trio.current_time() + seconds)
    return time.perf_counter() - began


def scenario_4(cfg: Config, directory: str, loops: Loops, profiles: Profiles) -> Result:
    n, seconds = cfg.s4_missions, cfg.s4_sleep
    definition = sleeper(seconds)
    result = Result(4, f"{n} missions sleeping {seconds:g} s then a step, real runtime")
    (start_writes, start_calls), (writes, calls) = loops.reference(
        record_timer, definition, seconds
    )
    (start_write,) = start_writes  # starting one of these missions is one insert
    result.details["writes_per_mission"] = {
        "start": describe_writes(start_writes),
        "timer": describe_writes(writes),
    }
    result.details["adapter_calls_per_mission"] = {"start": start_calls, "timer": calls}
    backends = loops.backends
    commanders = sqlite_commanders(loops, definition, directory, "s4")
    bare = BareDb(os.path.join(directory, "s4-bare.sqlite"))
    runs: dict[str, list[dict[str, float]]] = loops.samples()
    ref: list[float] = []
    try:
        for order in loops.rounds(cfg.repeat):
            loops.measure(order, runs, lambda b: _sleepers(commanders[b], definition, n))
            ref.append(loops.reference(_bare_sleepers, bare, start_write, writes, n, seconds))
        result.profiles = profiles.each(loops, lambda b: _sleepers(commanders[b], definition, n))
    finally:
        loops.each(lambda b: close_all(commanders[b]))
        bare.close()
    result.details["runs"] = runs

    def part(name: str) -> dict[str, list[float]]:
        return {b: [r[name] for r in runs[b]] for b in backends}

    limit = seconds * 1.1
    result.rows += [
        row(
            4,
            f"SQLite NORMAL, {n} sleeping {seconds:g} s: all done",
            "s",
            part("total"),
            ref,
            target=Target(f"<= {limit:g} s", limit, at_most=True),
        ),
        row(4, f"  of which starting {n} missions through the client", "s", part("starting")),
        row(4, "  of which after the last start (sleep + ticks)", "s", part("after_last_due")),
    ]
    return result
