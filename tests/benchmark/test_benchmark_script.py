"""scripts/benchmark.py runs and writes its JSON. Only that: no timing is checked here (the
figures are in docs/performance.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "benchmark.py"


def _run(
    args: list[str], *, script: Path = SCRIPT, timeout: int = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``script`` with ``args``; it must succeed (its stderr is the failure's message)."""
    done = subprocess.run(
        [sys.executable, str(script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done


def test_quick_scenario_1_runs_on_both_backends_and_prints_json() -> None:
    """A quick run of scenario 1 measures every row on trio and on asyncio, with their ratio
    and the bare loop's, and prints the JSON and a table with an asyncio column."""
    done = _run(["--quick", "--scenario", "1", "--repeat", "1", "--json"])
    document = json.loads(done.stdout)
    assert document["backends"] == ["trio", "asyncio"]
    (scenario,) = document["scenarios"]
    assert scenario["scenario"] == 1
    labels = [row["label"] for row in scenario["rows"]]
    assert any("SQLite NORMAL" in label for label in labels)
    fixed = [row for row in scenario["rows"] if row["reference"] == "fixed"]
    assert [row["label"].split(",")[0].split(" vs ")[0].strip() for row in fixed] == [
        "SQLite NORMAL",
        "SQLite FULL",
    ]
    for row in scenario["rows"]:
        if row["reference"] == "fixed" and row["bare"] is None:
            # ../shared/reference is not beside this checkout: the row says where it looked.
            assert "not found" in row["label"]
            assert scenario["details"]["reference_loop"].startswith("not found")
            continue
        assert set(row["values"]) == {"trio", "asyncio"}
        assert all(value["median"] > 0 for value in row["values"].values())
        assert row["asyncio_to_trio"]["median"] > 0
        assert row["bare"]["median"] > 0
        assert set(row["ratio_to_bare"]) == {"trio", "asyncio"}
    # The bare loop does as many commits per mission as the engine: counted, not assumed.
    assert scenario["details"]["adapter_calls_per_mission"] == {"commit": 3, "insert": 1}
    table = done.stderr
    assert "in-memory, missions one after another" in table
    assert "asyncio/trio" in table
    assert "bare loop (trio only)" in table


def test_an_absent_reference_loop_is_named_in_its_row_and_the_run_goes_on(tmp_path: Path) -> None:
    """Without the fixed reference loop where it is looked for, scenario 1 still measures every
    other row, and the reference rows say where the loop was not found."""
    missing = tmp_path / "lean_loop.py"
    quick = ["--quick", "--scenario", "1", "--repeat", "1", "--json", "--backends", "trio"]
    done = _run([*quick, "--reference", str(missing)])
    (scenario,) = json.loads(done.stdout)["scenarios"]
    rows = {row["label"]: row for row in scenario["rows"]}
    absent = [label for label, row in rows.items() if row["reference"] == "fixed"]
    assert absent == [
        f"  SQLite NORMAL vs the fixed reference loop: not found ({missing})",
        f"  SQLite FULL vs the fixed reference loop: not found ({missing})",
    ]
    assert all(rows[label]["values"] == {} for label in absent)
    assert rows["SQLite NORMAL, missions one after another"]["bare"]["median"] > 0
    assert f"not found ({missing})" in done.stderr


def test_quick_scenario_10_measures_the_in_memory_store_at_three_sizes() -> None:
    """Scenario 10 gives a rate and a CPU time per mission at each store size, and how the CPU
    time at the largest compares with the smallest."""
    quick = ["--quick", "--scenario", "10", "--repeat", "1", "--json", "--backends", "trio"]
    done = _run(quick)
    (scenario,) = json.loads(done.stdout)["scenarios"]
    assert [row["label"] for row in scenario["rows"]] == [
        "in-memory, 500 stored",
        "  CPU per mission, 500 stored",
        "in-memory, 2,000 stored",
        "  CPU per mission, 2,000 stored",
        "in-memory, 5,000 stored",
        "  CPU per mission, 5,000 stored",
        "  CPU per mission, 5,000 / 500 stored",
    ]
    for row in scenario["rows"]:
        assert row["values"]["trio"]["median"] > 0
    assert set(scenario["details"]["gc_share"]["trio"]) == {"500", "2,000", "5,000"}


def test_one_backend_can_be_chosen() -> None:
    """``--backends asyncio`` measures on asyncio alone (the steps of scenario 2 yield to
    whichever loop runs them), still next to trio's bare loop."""
    quick = ["--quick", "--scenario", "2", "--repeat", "1", "--json"]
    done = _run([*quick, "--backends", "asyncio"])
    (scenario,) = json.loads(done.stdout)["scenarios"]
    for row in scenario["rows"]:
        assert set(row["values"]) == {"asyncio"}
        assert row["asyncio_to_trio"] is None
        assert row["bare"]["median"] > 0
    assert "asyncio/trio" not in done.stderr


def test_the_bare_loop_runs_the_adapters_own_statements(monkeypatch: pytest.MonkeyPatch) -> None:
    """The bare loop's SQL is word for word the SQLite adapter's, so that it measures the same
    statements (the script keeps copies; this catches one drifting)."""
    import importlib

    # The adapter's statements are private to it: read here only to hold the copies to them.
    from mission_control.adapter_sqlite import _adapter as adapter

    monkeypatch.syspath_prepend(str(SCRIPT.parent))
    bare = importlib.import_module("bench_bare")
    statements = (
        "INSERT_MISSION",
        "UPDATE_MISSION",
        "UPDATE_STILL_RUNNING",
        "INSERT_ENTRY",
        "LOAD",
        "DUE",
    )
    versions = ("FIRST_VERSION", "NEXT_VERSION", "NEXT_DEFINITION", "FINGERPRINTS")
    for name in (*statements, *versions, "NEXT_DUE", "RUNNING"):
        assert getattr(bare, name) == getattr(adapter, f"_{name}"), name


def test_the_bare_loops_missions_have_the_adapters_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 3-step mission the bare loop writes is listed as a mission of no tenant by the
    adapter: its missions_of_no_tenant row comes from the schema's trigger, as the adapter's
    does, so the loop stays a faithful mirror without writing it itself."""
    import importlib

    import anyio

    from mission_control.adapter_sqlite import create_sqlite_persistence_adapter

    monkeypatch.syspath_prepend(str(SCRIPT.parent))
    bare = importlib.import_module("bench_bare")
    definitions = importlib.import_module("bench_definitions")
    writes, _ = anyio.run(bare.record_start, definitions.THREE_STEPS)
    mission_id = json.loads(writes[0].snapshot)["id"]
    path = str(tmp_path / "bare.db")
    db = bare.BareDb(path)
    for write in writes:
        db.write(mission_id, write)
    db.close()

    async def listed() -> list[str]:
        async with create_sqlite_persistence_adapter(path, read_only=True) as adapter:
            return [s.id for s in await adapter.list_missions(limit=10, tenant=None)]

    assert anyio.run(listed) == [mission_id]


def test_quick_scenario_9_measures_a_loop_early_and_late_with_its_snapshot_sizes() -> None:
    """Scenario 9 times an iteration at iteration 1 and at iteration 1,000 and tells how large
    the mission's snapshot is at each (the same number of records)."""
    done = _run(["--quick", "--scenario", "9", "--repeat", "1", "--json"])
    (scenario,) = json.loads(done.stdout)["scenarios"]
    assert scenario["scenario"] == 9
    assert len(scenario["rows"]) == 3
    for row in scenario["rows"]:
        assert all(value["median"] > 0 for value in row["values"].values())
    sizes = scenario["details"]["loop_snapshots"]
    assert list(sizes) == ["iteration 1", "iteration 1,000"]
    records = {size.split(" records")[0] for size in sizes.values()}
    assert records == {"3"}


@pytest.mark.slow
def test_a_quick_run_of_every_scenario_completes() -> None:
    """A quick run of every scenario ends with a figure for each of them (a scenario that stops
    on its own check, as (5) and (8) did once the owner ticked after its startup tick, fails it)."""
    done = _run(["--quick", "--repeat", "1", "--json"], timeout=600)
    scenarios = json.loads(done.stdout)["scenarios"]
    assert [scenario["scenario"] for scenario in scenarios] == list(range(1, 11))
    for scenario in scenarios:
        assert scenario["rows"], scenario["scenario"]


def test_where_the_time_goes_counts_bytecodes_per_node_kind() -> None:
    """scripts/bench_where.py counts the bytecodes a mission runs, in memory and on SQLite, per
    node kind and per function, and a step costs more on SQLite (its encoding) than in memory."""
    where = SCRIPT.parent / "bench_where.py"
    done = _run(["--missions", "5", "--profiled", "20", "--top", "5"], script=where)
    steps: dict[str, int] = {}
    kind = ""
    for line in done.stdout.splitlines():
        if line.startswith(("memory: by node kind", "sqlite: by node kind")):
            kind = line.split(":")[0]
        elif line.strip().startswith("a step (its commit)"):
            steps[kind] = int(line.split()[-2].replace(",", ""))
    assert set(steps) == {"memory", "sqlite"}
    assert 0 < steps["memory"] < steps["sqlite"]
    assert "sqlite, a 3-step mission, cProfile over 20 missions" in done.stdout
