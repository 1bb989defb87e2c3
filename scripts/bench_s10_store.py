"""Scenario (10): in-memory 3-step missions one after another with 2,000, 20,000 and 100,000
missions stored: what a mission costs as the store grows (issue 20: at least 20,000/s, and flat).

The store is filled with copies of a finished mission of the same definition, decoded from the
JSON the engine wrote for it (a distinct set of objects per copy, as a mission the engine ran
leaves), under fresh ids, through the adapter's ``insert``: running 100,000 real missions per
run would take a minute. The store then grows by the measured missions themselves."""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass

from bench_bare import Write, record_start
from bench_common import GcTimer, sequential
from bench_definitions import THREE_STEPS
from bench_loops import Config, Loops
from bench_profile import Profiles
from bench_report import Result, Target, paired_ratio, row

from mission_control.core import MissionSnapshot, SortableIds, TimelineEntry, create_commander
from mission_control.core.storage import snapshot_from_json, timeline_entry_from_json
from mission_control.in_memory_commander import InMemoryPersistenceAdapter


@dataclass(frozen=True)
class Finished:
    """A finished mission as stored: its last snapshot and its whole timeline, as JSON."""

    mission_id: str
    snapshot: str
    entries: tuple[str, ...]

    @classmethod
    def of(cls, writes: Sequence[Write]) -> Finished:
        last = writes[-1].snapshot
        entries = tuple(entry for write in writes for entry in write.entries)
        return cls(snapshot_from_json(last).id, last, entries)

    def copy(self, mission_id: str) -> tuple[MissionSnapshot, list[TimelineEntry]]:
        snapshot = snapshot_from_json(self.snapshot.replace(self.mission_id, mission_id))
        return snapshot, [timeline_entry_from_json(entry) for entry in self.entries]


@dataclass(frozen=True)
class Level:
    """One measured run at a store size."""

    rate: float
    cpu_us: float
    """CPU time per mission (``time.process_time``), in microseconds."""
    gc_share: float
    """The share of the run's time spent in the cyclic garbage collector."""


async def _grow(
    finished: Finished, stored: Sequence[int], missions: int, warm_up: int
) -> dict[int, Level]:
    """A fresh in-memory commander, filled to each size of ``stored`` in turn, with ``missions``
    missions run and measured at each."""
    adapter = InMemoryPersistenceAdapter()
    ids = SortableIds()
    levels: dict[int, Level] = {}
    async with create_commander([THREE_STEPS], persistence=adapter) as commander:
        await sequential(commander, THREE_STEPS, warm_up)
        held = warm_up
        for size in stored:
            for _ in range(size - held):
                snapshot, timeline = finished.copy(ids())
                await adapter.insert(snapshot, timeline)
            timer = GcTimer()
            cpu = time.process_time()
            with timer:
                rate = await sequential(commander, THREE_STEPS, missions)
            cpu = time.process_time() - cpu
            levels[size] = Level(rate, cpu / missions * 1e6, timer.seconds * rate / missions)
            held = max(held, size) + missions
    return levels


def scenario_10(cfg: Config, loops: Loops, profiles: Profiles) -> Result:
    stored, n = cfg.s10_stored, cfg.s10_missions
    sizes = ", ".join(f"{size:,}" for size in stored)
    result = Result(10, f"in-memory missions one after another with {sizes} stored")
    writes, _ = loops.reference(record_start, THREE_STEPS)
    finished = Finished.of(writes)
    result.details["missions_per_run"] = n
    # Each run fills a store of its own up to the largest size: fewer rounds than elsewhere.
    rounds = max(1, min(cfg.repeat, 3))
    runs: dict[str, list[dict[int, Level]]] = loops.samples()
    for order in loops.rounds(rounds):
        loops.measure(order, runs, lambda b: _grow(finished, stored, n, cfg.warm_up))
    result.profiles = profiles.each(loops, lambda b: _grow(finished, stored[-1:], n, 0))
    backends = loops.backends
    result.details["gc_share"] = {
        b: {
            f"{size:,}": statistics.median(run[size].gc_share for run in runs[b]) for size in stored
        }
        for b in backends
    }

    def rates(size: int) -> dict[str, list[float]]:
        return {b: [run[size].rate for run in runs[b]] for b in backends}

    def cpus(size: int) -> dict[str, list[float]]:
        return {b: [run[size].cpu_us for run in runs[b]] for b in backends}

    for size in stored:
        result.rows += [
            row(
                10,
                f"in-memory, {size:,} stored",
                "missions/s",
                rates(size),
                target=Target(">= 20,000/s", 20_000, at_most=False),
            ),
            row(10, f"  CPU per mission, {size:,} stored", "us", cpus(size)),
        ]
    first, last = stored[0], stored[-1]
    growth = {b: paired_ratio(cpus(last)[b], cpus(first)[b]).samples for b in backends}
    result.rows.append(row(10, f"  CPU per mission, {last:,} / {first:,} stored", "x", growth))
    return result
