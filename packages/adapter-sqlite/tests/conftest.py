"""Fixtures the SQLite adapter tests share: a database path, a manual clock, snapshot builders
and raw access to the file."""

from __future__ import annotations

import os
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import apsw
import pytest

from mission_control.adapter_sqlite import (
    SQLitePersistenceAdapter,
    create_sqlite_persistence_adapter,
)
from mission_control.core import (
    MissionSnapshot,
    MissionStatus,
    TimelineEntry,
    TimelineKind,
    Wait,
    WaitKind,
)
from mission_control.in_memory_commander import ManualClock

START = datetime.fromisoformat("2030-01-01T00:00:00+00:00")

SnapshotFactory = Callable[..., MissionSnapshot]
EntryFactory = Callable[..., TimelineEntry]


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "missions.sqlite"


@pytest.fixture
async def adapter(db_path: Path) -> AsyncIterator[SQLitePersistenceAdapter]:
    """An open adapter on ``db_path``, closed after the test."""
    async with create_sqlite_persistence_adapter(db_path) as opened:
        yield opened


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def make_snapshot() -> SnapshotFactory:
    """``make_snapshot(id, status=..., revision=..., due_in=seconds, signal=name, **fields)``."""

    def make(
        mission_id: str,
        *,
        status: MissionStatus = MissionStatus.RUNNING,
        revision: int = 1,
        due_in: float | None = None,
        signal: str | None = None,
        definition: str = "test",
        **fields: Any,
    ) -> MissionSnapshot:
        wait = None
        if due_in is not None:
            wait = Wait(WaitKind.TIMER, "nap", due_at=START + timedelta(seconds=due_in))
        elif signal is not None:
            wait = Wait(WaitKind.SIGNAL, signal, signal=signal)
        values: dict[str, Any] = {
            "id": mission_id,
            "definition": definition,
            "definition_version": 1,
            "status": status,
            "current_node": "nap" if wait is not None else "work",
            "input": {"n": 1},
            "created_at": START,
            "updated_at": START,
            "waits": () if wait is None else (wait,),
            "active": () if status.is_terminal else ("nap" if wait is not None else "work",),
            "revision": revision,
        }
        return MissionSnapshot(**(values | fields))

    return make


@pytest.fixture
def make_entry() -> EntryFactory:
    def make(
        kind: TimelineKind = TimelineKind.STEP_COMPLETED, node: str | None = "work"
    ) -> TimelineEntry:
        return TimelineEntry(START, kind, node)

    return make


@pytest.fixture
def dump() -> Callable[[Path], dict[str, list[tuple[Any, ...]]]]:
    """Every row of the database's tables (and its pragmas), to compare before and after."""

    def read(path: Path) -> dict[str, list[tuple[Any, ...]]]:
        connection = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
        try:
            tables = [
                row[0]
                for row in connection.execute(
                    "SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name"
                )
            ]
            result = {
                t: list(connection.execute(f'SELECT * FROM "{t}" ORDER BY 1')) for t in tables
            }
            result["pragmas"] = [
                (connection.pragma("user_version"), connection.pragma("application_id"))
            ]
            return result
        finally:
            connection.close()

    return read


@pytest.fixture
def read_only_file() -> Iterator[Callable[[Path], None]]:
    """Make files unwritable for this process, even as root (where chmod is not enough)."""
    protected: list[Path] = []

    def protect(path: Path) -> None:
        if os.geteuid() == 0:
            result = subprocess.run(["chattr", "+i", str(path)], capture_output=True, check=False)
            if result.returncode != 0:
                pytest.skip("running as root without chattr +i, cannot make a file read-only")
        else:
            path.chmod(0o444 if path.is_file() else 0o555)
        protected.append(path)

    yield protect
    for path in protected:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(path)], check=False)
        else:
            path.chmod(0o644 if path.is_file() else 0o755)
