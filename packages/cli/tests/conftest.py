"""Fixtures of the command's tests: a real SQLite file holding the example shop's orders, and
the command run in this process (click's runner) or as the installed console script."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
from collections.abc import Iterator
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


WATCHDOG = 60.0
"""Seconds a test waits for the owner process at most: a hung owner fails the test."""


class Owner:
    """The example shop serving a database in another process, until its input is closed."""

    def __init__(self, db: Path, stock: int = 10) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(EXAMPLES / "shop.py"), str(db)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "SHOP_STOCK": str(stock)},
        )
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], WATCHDOG)
        assert ready, "the owner did not start in time"
        assert self.process.stdout.readline().strip() == "RUNNING"

    def stop(self) -> None:
        self.process.communicate(timeout=WATCHDOG)
        assert self.process.returncode == 0


@pytest.fixture
def start_owner() -> Iterator[Any]:
    """Start the example shop owning a database (``start_owner(db, stock=10)``); each is
    stopped at the end of the test, if the test did not stop it."""
    started: list[Owner] = []

    def start(db: Path, stock: int = 10) -> Owner:
        started.append(Owner(db, stock))
        return started[-1]

    yield start
    for owner in started:
        if owner.process.returncode is None:
            owner.stop()


@pytest.fixture
def owner(shop_db: Path, start_owner: Any) -> Owner:
    """The example shop owning the shop's database, with its runtime."""
    return start_owner(shop_db)
