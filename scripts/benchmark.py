"""Benchmarks: throughput, tick cost and memory of Mission Control, on trio and on asyncio, next to
a bare loop.

    uv run python scripts/benchmark.py                # every scenario, as a table (~2 minutes)
    uv run python scripts/benchmark.py --quick        # small counts: a smoke run of seconds
    uv run python scripts/benchmark.py --scenario 5   # one scenario (repeat the option for more)
    uv run python scripts/benchmark.py --backends asyncio  # one event loop only (default: both)
    uv run python scripts/benchmark.py --json         # JSON on stdout (the table on stderr)
    uv run python scripts/benchmark.py --profile      # and cProfile one engine run per scenario

Each figure is the median of several runs, with their spread (half the min-to-max range, as a
share of the median). The engine's runs are made on each backend (trio and asyncio, through
AnyIO), one fresh event loop per run, the backends alternating round by round, so that both
meet the same phases of a noisy machine; *asyncio/trio* pairs the two runs of each round. Each
scenario also runs, in the same process and interleaved with the engine's runs, a *bare loop*:
trio + apsw writing the same rows with the same statements and no engine, one transaction per
write. It is trio's reference, and runs on trio only. The rows are the JSON the engine writes,
captured from a real mission of the scenario, and the number of writes per mission is the one
counted on the adapter, so each figure can also be read as a ratio to the bare loop, which holds
better than absolute figures on a noisy machine. (Where missions move concurrently, the
adapter's group commit puts several writes in one transaction; the bare loop does not, and the
scenario records how many transactions the adapter took.)

Scenarios (docs/performance.md has the targets and what dominates each):

1. 3-step missions one after another: in-memory, SQLite NORMAL and FULL;
2. 1,000 missions in flight at once (their steps yield to the event loop);
3. 500 missions waiting on a signal, then all signalled at once;
4. 200 missions sleeping 1 s then running a step, driven by the real runtime and system clock;
5. a runtime tick over 100,000 waiting missions of which 100 are due;
6. runtime start-up over 100,000 waiting missions;
7. the cost of a transition at a timeline (history) length of 1 and of 1,000;
8. peak RSS (a fresh process per measurement) for (1) and for 100,000 persisted missions;
9. the cost of a loop's iteration at iteration 1 and at iteration 1,000;
10. in-memory missions one after another with 2,000, 20,000 and 100,000 missions stored.

Scenario (1) also runs the fixed reference loop (``../shared/reference/lean_loop.py``, issue 20's
ceiling; ``--reference PATH`` names it) interleaved with its rounds, and shows SQLite's ratio to
it beside the ratio to the bare loop. Each scenario is a module ``scripts/bench_s<N>_*.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib import metadata
from typing import Any, cast

import apsw
import trio
from bench_loops import BACKENDS, Config, Loops
from bench_profile import CATEGORIES, Profiles, format_shares
from bench_report import Result, render_table
from bench_s1_sequential import scenario_1
from bench_s2_in_flight import scenario_2
from bench_s3_signalled import scenario_3
from bench_s4_sleepers import scenario_4
from bench_s5_tick import scenario_5
from bench_s6_start_up import scenario_6
from bench_s7_history import scenario_7
from bench_s8_rss import rss_child, scenario_8
from bench_s9_loop import scenario_9
from bench_s10_store import scenario_10
from bench_waiting import Shared

# -- main ---------------------------------------------------------------------------------------


NOTES = (
    "writes_per_mission",
    "tick_writes_per_mission",
    "transition",
    "gc_share",
    "history_lengths",
    "loop_snapshots",
    "build_seconds",
)
"""Details printed under the table (the JSON has them all)."""


def _note(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, dict):
        items = cast(dict[str, object], value).items()
        return ", ".join(f"{k}: {_note(v)}" for k, v in items)
    return str(value)


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as file:
            for line in file:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
            cwd=os.path.dirname(os.path.abspath(__file__)),
        ).stdout.strip()
    except OSError:
        commit = ""
    apsw_module: Any = apsw
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "sqlite": str(apsw_module.sqlite_lib_version()),
        "apsw": str(apsw_module.apsw_version()),
        "trio": trio.__version__,
        "anyio": metadata.version("anyio"),
        "commit": commit,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


SCENARIOS = range(1, 11)


def run(cfg: Config, scenarios: Sequence[int], directory: str, loops: Loops) -> list[Result]:
    profiles = Profiles(cfg.profile)
    shared = Shared(cfg, directory, loops, rss_runs=3)
    results: list[Result] = []
    for number in scenarios:
        began = time.perf_counter()
        print(f"scenario {number} ...", file=sys.stderr, flush=True)
        if number == 1:
            result = scenario_1(cfg, directory, loops, profiles)
        elif number == 2:
            result = scenario_2(cfg, directory, loops, profiles)
        elif number == 3:
            result = scenario_3(cfg, directory, loops, profiles)
        elif number == 4:
            result = scenario_4(cfg, directory, loops, profiles)
        elif number == 5:
            result = scenario_5(cfg, shared.database(), loops, profiles)
        elif number == 6:
            result = scenario_6(cfg, shared.database(), loops, profiles)
        elif number == 7:
            result = scenario_7(cfg, directory, loops, profiles)
        elif number == 9:
            result = scenario_9(cfg, directory, loops, profiles)
        elif number == 10:
            result = scenario_10(cfg, loops, profiles)
        else:
            result = scenario_8(cfg, shared, loops)
        result.seconds = time.perf_counter() - began
        results.append(result)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Mission Control benchmarks (see docs/performance.md)"
    )
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke run")
    parser.add_argument(
        "--scenario", type=int, action="append", choices=SCENARIOS, help="run only these"
    )
    parser.add_argument("--repeat", type=int, help="runs per figure (default 5, quick 2)")
    parser.add_argument(
        "--backends",
        nargs="+",
        choices=BACKENDS,
        default=list(BACKENDS),
        help="the event loops to run the engine on (default: both; the bare loop is trio's)",
    )
    parser.add_argument("--json", action="store_true", help="JSON on stdout, the table on stderr")
    parser.add_argument("--markdown", action="store_true", help="the table in Markdown")
    parser.add_argument(
        "--profile", action="store_true", help="cProfile one engine run each: where time goes"
    )
    parser.add_argument(
        "--profile-text", action="store_true", help="with --profile, print the top functions"
    )
    parser.add_argument(
        "--reference",
        metavar="PATH",
        help="the fixed reference loop's lean_loop.py (default: ../shared/reference beside the "
        "checkout, or beside the main checkout of a worktree; a row says so when absent)",
    )
    parser.add_argument("--rss-child", help=argparse.SUPPRESS)
    parser.add_argument("--rss-missions", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--rss-db", default="", help=argparse.SUPPRESS)
    parser.add_argument("--rss-batch", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--rss-due", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--rss-backend", default="trio", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    loops = Loops(args.backends)
    if args.rss_child:
        child = (args.rss_child, args.rss_missions, args.rss_db, args.rss_batch, args.rss_due)
        info = loops.run(args.rss_backend, rss_child, *child)
        print(json.dumps(info))
        return 0
    if args.repeat is not None and args.repeat < 1:
        parser.error("--repeat must be at least 1")
    cfg = Config.make(
        quick=args.quick, repeat=args.repeat, profile=args.profile, reference=args.reference
    )
    scenarios = sorted(set(args.scenario or SCENARIOS))
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mission-control-bench-") as directory:
        results = run(cfg, scenarios, directory, loops)
    info = machine()
    table = render_table(results, loops.backends, markdown=args.markdown)
    heading = (
        f"{info['cpus']} x {info['cpu']}, Python {info['python']}, SQLite {info['sqlite']}, "
        f"{'quick' if cfg.quick else 'full'} run, {cfg.repeat} runs per figure, "
        f"{time.perf_counter() - began:.0f} s, at {info['commit']}; the engine on "
        f"{' and '.join(loops.backends)} (trio {info['trio']}, AnyIO {info['anyio']}), "
        "the bare loop on trio only"
    )
    out = sys.stderr if args.json else sys.stdout
    print(heading, file=out)
    print(table, file=out)
    print(file=out)
    for result in results:
        for key in NOTES:
            if key in result.details:
                print(f"{result.number}  {key}: {_note(result.details[key])}", file=out)
    if cfg.profile:
        print(
            "\nWhere the time goes (cProfile of one engine run; " + ", ".join(CATEGORIES) + "):",
            file=out,
        )
        for result in results:
            for backend, profile in result.profiles.items():
                shares = format_shares(profile.shares)
                print(f"{result.number}  {backend:<8} {shares}", file=out)
        if args.profile_text:
            for result in results:
                for backend, profile in result.profiles.items():
                    title = f"scenario {result.number} on {backend}: {result.title}"
                    print(f"\n== profile of {title}", file=out)
                    print(profile.text, file=out)
    if args.json:
        document = {
            "machine": info,
            "quick": cfg.quick,
            "repeat": cfg.repeat,
            "backends": list(loops.backends),
            "seconds": time.perf_counter() - began,
            "scenarios": [result.to_json() for result in results],
        }
        print(json.dumps(document, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
