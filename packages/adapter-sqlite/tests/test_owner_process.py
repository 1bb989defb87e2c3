"""owner_process(path): who owns a database now, asked without taking any lock."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from mission_control.adapter_sqlite import create_sqlite_persistence_adapter, owner_process

OWNER = Path(__file__).with_name("owner_child.py")


def test_owner_process_names_this_process_while_it_owns_the_database(db_path: Path) -> None:
    """None before any owner, this process's id while it owns the file (by any spelling of the
    path), None again once it closed it; a read-only adapter owns nothing."""
    assert owner_process(db_path) is None
    adapter = create_sqlite_persistence_adapter(db_path)
    try:
        assert owner_process(db_path) == os.getpid()
        assert owner_process(f"{db_path.parent}/./{db_path.name}") == os.getpid()
    finally:
        adapter.close()
    assert owner_process(db_path) is None
    reader = create_sqlite_persistence_adapter(db_path, read_only=True)
    try:
        assert owner_process(db_path) is None
    finally:
        reader.close()


def test_owner_process_names_another_process_until_it_exits(db_path: Path) -> None:
    """A database owned by a child process is owned by that child's id; once the child has
    exited, by no process, though its lock file is left."""
    child = subprocess.Popen(
        [sys.executable, str(OWNER), str(db_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        assert owner_process(db_path) == child.pid
        # Asking took no lock: the owner goes on writing.
        assert child.stdin is not None
        child.stdin.write("signal\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == "done signal"
    finally:
        child.communicate(timeout=60)
    assert child.returncode == 0
    assert Path(f"{db_path}.lock").exists()
    assert owner_process(db_path) is None
