"""scripts/benchmark_postgres.py runs against a real server and prints its figures. Only that:
no timing is checked here (the figures are in docs/postgres.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[3] / "scripts" / "benchmark_postgres.py"


@pytest.mark.slow
def test_a_quick_run_measures_every_figure_on_both_loops(postgres_url: str) -> None:
    """A quick run gives missions/s with 1 and 3 runtimes and a tick's cost per due mission on
    trio and asyncio, each a positive number, with the server's settings."""
    done = subprocess.run(
        [sys.executable, str(SCRIPT), postgres_url, "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert set(document["results"]) == {"trio", "asyncio"}
    for figures in document["results"].values():
        assert set(figures) == {
            "missions/s, 1 runtime(s)",
            "missions/s, 3 runtime(s)",
            "tick, ms per due mission",
        }
        assert all(value > 0 for value in figures.values())
    assert "server_version" in document["settings"]
