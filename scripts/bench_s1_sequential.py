"""Scenario (1): 3-step missions one after another, in memory and on SQLite NORMAL and FULL,
next to the mirror loop and to the fixed reference loop."""

from __future__ import annotations

import os

from bench_bare import BareDb, describe_writes, record_start
from bench_common import (
    GcTimer,
    bare_sequential,
    check_completed,
    close_all,
    memory_commanders,
    sequential,
    sqlite_commanders,
    warm_up,
    with_gc,
)
from bench_definitions import THREE_STEPS
from bench_loops import Config, Loops
from bench_profile import Profiles
from bench_reference import ReferenceLoop, find_reference
from bench_report import Result, Row, Target, row


def scenario_1(cfg: Config, directory: str, loops: Loops, profiles: Profiles) -> Result:
    result = Result(1, "3-step missions one after another")
    writes, calls = loops.reference(record_start, THREE_STEPS)
    result.details["writes_per_mission"] = describe_writes(writes)
    result.details["adapter_calls_per_mission"] = calls
    result.details["snapshot_bytes"] = [len(w.snapshot) for w in writes]
    n, n_full = cfg.s1_missions, cfg.s1_full_missions
    result.details["missions_per_run"] = {"memory": n, "NORMAL": n, "FULL": n_full}

    backends = loops.backends
    memory = memory_commanders(loops, THREE_STEPS)
    normal = sqlite_commanders(loops, THREE_STEPS, directory, "s1-normal")
    full = sqlite_commanders(loops, THREE_STEPS, directory, "s1-full", synchronous="FULL")
    bare_normal = BareDb(os.path.join(directory, "s1-bare-normal.sqlite"), "NORMAL")
    bare_full = BareDb(os.path.join(directory, "s1-bare-full.sqlite"), "FULL")
    gc_memory = {b: GcTimer() for b in backends}
    gc_normal = {b: GcTimer() for b in backends}
    mem, nor, ful = loops.samples(), loops.samples(), loops.samples()
    bn: list[float] = []
    bf: list[float] = []
    # The fixed reference loop (issue 20's ceiling), run after the mirror loop in each round.
    script, looked_in = find_reference(cfg.reference)
    fixed = ReferenceLoop(script, directory) if script is not None else None
    result.details["reference_loop"] = looked_in if fixed is not None else f"not found: {looked_in}"
    ln: list[float] = []
    lf: list[float] = []
    try:
        loops.each(lambda b: warm_up((memory[b], normal[b], full[b]), THREE_STEPS, cfg.warm_up))
        loops.reference(bare_sequential, bare_normal, writes, cfg.warm_up)
        loops.reference(bare_sequential, bare_full, writes, cfg.warm_up)
        for order in loops.rounds(cfg.repeat):
            loops.measure(
                order, mem, lambda b: with_gc(gc_memory[b], sequential(memory[b], THREE_STEPS, n))
            )
            loops.measure(
                order, nor, lambda b: with_gc(gc_normal[b], sequential(normal[b], THREE_STEPS, n))
            )
            bn.append(loops.reference(bare_sequential, bare_normal, writes, n))
            if fixed is not None:
                ln.append(fixed.seq(n, "NORMAL"))
            loops.measure(order, ful, lambda b: sequential(full[b], THREE_STEPS, n_full))
            bf.append(loops.reference(bare_sequential, bare_full, writes, n_full))
            if fixed is not None:
                lf.append(fixed.seq(n_full, "FULL"))

        async def check(b: str) -> None:
            for commander, count in ((memory[b], n), (normal[b], n), (full[b], n_full)):
                await check_completed(commander, THREE_STEPS, cfg.warm_up + cfg.repeat * count)

        loops.each(check)
        result.profiles = profiles.each(loops, lambda b: sequential(normal[b], THREE_STEPS, n))
    finally:
        loops.each(lambda b: close_all(memory[b], normal[b], full[b]))
        bare_normal.close()
        bare_full.close()

    # The share of the engine's time spent in the cyclic GC; the in-memory store keeps every
    # mission's objects alive, so its full collections grow with the missions it holds.
    result.details["gc_share"] = {
        b: {
            "memory": gc_memory[b].seconds / sum(n / rate for rate in mem[b]),
            "NORMAL": gc_normal[b].seconds / sum(n / rate for rate in nor[b]),
        }
        for b in backends
    }
    result.details["gc_collections"] = {
        b: {"memory": dict(gc_memory[b].collections), "NORMAL": dict(gc_normal[b].collections)}
        for b in backends
    }
    rate = "missions/s"
    result.rows += [
        row(
            1,
            "in-memory, missions one after another",
            rate,
            mem,
            bn,
            target=Target(">= 20,000/s", 20_000, at_most=False),
        ),
        row(1, "SQLite NORMAL, missions one after another", rate, nor, bn),
        _against_fixed("SQLite NORMAL", nor, ln, looked_in, fixed is not None),
        row(1, "SQLite FULL, missions one after another", rate, ful, bf),
        _against_fixed("SQLite FULL", ful, lf, looked_in, fixed is not None),
    ]
    return result


def _against_fixed(
    label: str, engine: dict[str, list[float]], fixed: list[float], looked_in: str, found: bool
) -> Row:
    """The engine's runs of ``label`` next to the fixed reference loop's of the same rounds
    (issue 20's target on NORMAL: at least 0.6x), or a row saying where it was not found."""
    if not found:
        text = f"  {label} vs the fixed reference loop: not found ({looked_in})"
        return Row(1, text, "", {}, reference="fixed")
    target = Target(">= 0.6x ref", 0.60, at_most=False, of_bare=True) if "NORMAL" in label else None
    text = f"  {label}, vs the fixed reference loop"
    return row(1, text, "missions/s", engine, fixed, target=target, reference="fixed")
