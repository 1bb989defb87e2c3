"""A commit's compare-and-set that sets only what changed (``update_mission``) writes the row its
plain reference writes (``update_mission_plainly``: one UPDATE setting every column), from every
kind of stored row, and leaves the status and due-time indexes alone when it may."""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import apsw
import pytest

from mission_control.adapter_sqlite import create_sqlite_persistence_adapter
from mission_control.adapter_sqlite._adapter import update_mission, update_mission_plainly
from mission_control.core import CancelRequest, MissionSnapshot, MissionStatus, Pause
from mission_control.core.storage import mission_update

pytestmark = pytest.mark.anyio

START = datetime.fromisoformat("2030-01-01T00:00:00+00:00")
Make = Callable[..., MissionSnapshot]
Dump = Callable[[Path], dict[str, list[tuple[Any, ...]]]]

# What a stored mission may be at revision 1: its status, its snapshot's fields, and whether a
# pause and a cancellation were asked for (in their own columns).
STORED: dict[str, tuple[MissionStatus, dict[str, Any], bool, bool]] = {
    "running": (MissionStatus.RUNNING, {}, False, False),
    "running, pause and cancellation asked": (MissionStatus.RUNNING, {}, True, True),
    "running with a deadline": (
        MissionStatus.RUNNING,
        {"deadline": START + timedelta(minutes=1)},
        False,
        False,
    ),
    "waiting for a timer": (MissionStatus.WAITING, {"due_in": 30}, False, False),
    "waiting for a signal, pause asked": (MissionStatus.WAITING, {"signal": "go"}, True, False),
    "paused": (MissionStatus.PAUSED, {"signal": "go", "pause": Pause(START)}, False, False),
    "completed": (MissionStatus.COMPLETED, {}, False, False),
}
# What a commit may store at revision 2.
COMMITTED: dict[str, tuple[MissionStatus, dict[str, Any]]] = {
    "running": (MissionStatus.RUNNING, {}),
    "running, cancellation in the snapshot": (
        MissionStatus.RUNNING,
        {"cancel_request": CancelRequest(START, "stop")},
    ),
    "running with a deadline": (
        MissionStatus.RUNNING,
        {"deadline": START + timedelta(minutes=2)},
    ),
    "waiting for a timer": (MissionStatus.WAITING, {"due_in": 45}),
    "paused": (MissionStatus.PAUSED, {"signal": "go", "pause": Pause(START)}),
    "completed": (MissionStatus.COMPLETED, {}),
}


async def _store(path: Path, make_snapshot: Make, stored: str) -> None:
    status, fields, pause, cancel = STORED[stored]
    async with create_sqlite_persistence_adapter(path) as adapter:
        await adapter.insert(make_snapshot("m", status=status, **fields), [])
        await adapter.insert(make_snapshot("other"), [])
        if pause:
            await adapter.request_pause("m", Pause(START, "later"), [])
        if cancel:
            await adapter.request_cancel("m", CancelRequest(START, "enough"), [])


def _apply(path: Path, update: tuple[Any, ...], reopened: bool, how: Any) -> tuple[bool, int]:
    """Whether ``how`` found the row at its expected revision, and the pages it wrote."""
    db = apsw.Connection(str(path))
    try:
        before = db.status(apsw.SQLITE_DBSTATUS_CACHE_WRITE)[0]
        with db:
            found = how(db.cursor(), db, update, reopened)
        return found, db.status(apsw.SQLITE_DBSTATUS_CACHE_WRITE)[0] - before
    finally:
        db.close()


@pytest.mark.parametrize(
    ("stored", "committed", "reopened", "expected_revision"),
    [
        (stored, committed, reopened, expected)
        for stored, committed, reopened, expected in itertools.product(
            STORED, COMMITTED, (False, True), (1, 0)
        )
        # A retry reopens a finished mission only.
        if not reopened or stored == "completed"
    ],
)
async def test_a_lean_update_writes_the_row_the_plain_one_writes(
    tmp_path: Path,
    make_snapshot: Make,
    dump: Dump,
    stored: str,
    committed: str,
    reopened: bool,
    expected_revision: int,
) -> None:
    """From every kind of stored mission (its requests stored beside it), a commit of every kind
    of snapshot, at the expected revision or at a stale one, finds the row or not as the plain
    update does and leaves every table exactly as it does."""
    lean, plain = tmp_path / "lean.sqlite", tmp_path / "plain.sqlite"
    await _store(lean, make_snapshot, stored)
    shutil.copyfile(lean, plain)
    status, fields = COMMITTED[committed]
    snapshot = make_snapshot("m", status=status, revision=2, **fields)
    due = snapshot.due_at
    micros = (
        None
        if due is None
        else (due - datetime(1970, 1, 1, tzinfo=due.tzinfo)) // (timedelta(microseconds=1))
    )
    update = mission_update(snapshot, micros, expected_revision)

    found, _ = _apply(lean, update, reopened, update_mission)
    found_plainly, _ = _apply(plain, update, reopened, update_mission_plainly)

    assert found == found_plainly == (expected_revision == 1)
    assert dump(lean) == dump(plain)


async def test_a_commit_of_a_mission_still_running_leaves_its_indexes_alone(
    tmp_path: Path, make_snapshot: Make
) -> None:
    """Committing a running mission that stays running with no due time writes only the page of
    its row, where setting every column also rewrites its status index entries."""
    lean, plain = tmp_path / "lean.sqlite", tmp_path / "plain.sqlite"
    await _store(lean, make_snapshot, "running")
    shutil.copyfile(lean, plain)
    update = mission_update(make_snapshot("m", revision=2), None, 1)

    assert _apply(lean, update, False, update_mission) == (True, 1)
    found, pages = _apply(plain, update, False, update_mission_plainly)
    assert found
    assert pages > 1
