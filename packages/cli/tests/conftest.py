"""Fixtures of the command's tests: a real SQLite file holding the example shop's orders, and
the command run in this process (click's runner) or as the installed console script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import trio
from click.testing import CliRunner, Result

from mission_control.adapter_sqlite import SQLiteCommander
from mission_control.cli import cli
from mission_control.in_memory_commander import ManualClock

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
sys.path.insert(0, str(EXAMPLES))

from shop import DEFINITIONS, ORDER  # noqa: E402

NOW = datetime.now(UTC)


async def _fill(path: Path) -> None:
    """Orders in every state, created 3 days, 2 hours and 10 minutes ago."""
    clock = ManualClock(NOW - timedelta(days=3))
    async with SQLiteCommander(path, DEFINITIONS, clock=clock) as commander:
        # o-1: waits for approve since 3 days, with a pickup already buffered.
        await commander.start(ORDER, {"item": "lamp", "quantity": 1}, id="o-1")
        await commander.signal("o-1", "pickup", {"carrier": "dhl"})
        clock.advance(timedelta(days=3) - timedelta(hours=2))
        # o-2: approved, waits for pickup.
        await commander.start(ORDER, {"item": "desk", "quantity": 2}, id="o-2")
        await commander.signal("o-2", "approve", {"by": "ada"})
        # o-3: failed in reserve (out of stock).
        await commander.start(ORDER, {"item": "lamp", "quantity": 11}, id="o-3")
        clock.advance(timedelta(hours=2) - timedelta(minutes=10))
        # o-4: completed.
        await commander.start(ORDER, {"item": "chair", "quantity": 1}, id="o-4")
        await commander.signal("o-4", "approve", {"by": "bob"})
        await commander.signal("o-4", "pickup", {"carrier": "ups"})


@pytest.fixture
def shop_db(tmp_path: Path) -> Path:
    path = tmp_path / "shop.sqlite"
    trio.run(_fill, path)
    return path


@pytest.fixture
def invoke() -> Any:
    """Run ``mission-control ARGS`` in this process; returns click's result."""
    runner = CliRunner()

    def run(*args: str | os.PathLike[str], env: dict[str, str] | None = None) -> Result:
        return runner.invoke(cli, [str(a) for a in args], env=env, catch_exceptions=False)

    return run


@pytest.fixture
def invoke_json(invoke: Any) -> Any:
    """Run ``mission-control ARGS``, which must succeed; returns the JSON it printed."""

    def run(*args: str | os.PathLike[str]) -> Any:
        result = invoke(*args)
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    return run


@pytest.fixture
def command() -> Any:
    """Run ``python -m mission_control.cli ARGS`` in a process of its own."""

    def run(*args: str | os.PathLike[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "mission_control.cli", *map(str, args)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            **kwargs,
        )

    return run
