"""One name per database file: every process opens the database by the path its owner recorded,
or is refused with an error that names it, and nothing stored changes.

On both backends in real time: the deadline around another process is a watchdog for a hung
one, which virtual time would fire at once (the other processes are trio programs).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import apsw
import pytest

from mission_control.adapter_sqlite import Role, SQLiteCommander, create_sqlite_persistence_adapter
from mission_control.core import MissionSnapshot, MissionStatus, PersistenceError, m

pytestmark = [
    pytest.mark.skipif(sys.platform == "win32", reason="hard links and SIGKILL, POSIX"),
    pytest.mark.anyio,
    pytest.mark.real_time,
]

Dump = Callable[[Path], dict[str, list[tuple[Any, ...]]]]
Make = Callable[..., MissionSnapshot]
DEADLINE = 60  # seconds; a watchdog for a hung child, never a wait the tests rely on


def identity(value: Any) -> Any:
    return value


FLOW = m.define("w").start(parse=identity).need_to("go", parse=identity).end()

OWNER = Path(__file__).with_name("owner_child.py")


class Owner:
    """The owner process (``owner_child.py``) of a database."""

    def __init__(self, process: anyio.abc.Process) -> None:
        self.process = process
        self._output = b""

    async def said(self, line: str) -> None:
        """Wait until the owner has printed ``line``."""
        assert self.process.stdout is not None
        with anyio.fail_after(DEADLINE):
            while f"{line}\n".encode() not in self._output:
                self._output += await self.process.stdout.receive()

    async def ask(self, command: str) -> None:
        assert self.process.stdin is not None
        await self.process.stdin.send(f"{command}\n".encode())
        await self.said(f"done {command}")


@asynccontextmanager
async def owner_of(db: Path) -> AsyncIterator[Owner]:
    """An owner process holding ``db``, with mission m-1 started; ended (or killed) on exit."""
    process = await anyio.open_process(
        [sys.executable, str(OWNER), str(db)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        owner = Owner(process)
        await owner.said("ready")
        yield owner
    finally:
        # Its input closed first, the owner closes its database and exits.
        with anyio.CancelScope(shield=True), anyio.fail_after(DEADLINE):
            await process.aclose()


async def kill(owner: Owner) -> None:
    owner.process.send_signal(signal.SIGKILL)
    with anyio.fail_after(DEADLINE):
        await owner.process.wait()


def real(path: Path) -> str:
    return os.path.realpath(path)


def files(db: Path) -> dict[str, bytes]:
    """The bytes of the database file and of its write-ahead log (the shared-memory index,
    which every reader writes, is left out, and so is an empty log, which a reader coming by a
    name without one makes)."""
    found = {db.name: db.read_bytes()}
    log = db.with_name(f"{db.name}-wal")
    if log.exists() and os.stat(log).st_size > 0:
        found[log.name] = log.read_bytes()
    return found


def recorded(db: Path) -> list[tuple[Any, ...]]:
    connection = apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        return list(connection.execute("SELECT key, value FROM store"))
    finally:
        connection.close()


def refusal(name: Path, *, read_only: bool, role: Role = "owner") -> str:
    """The message of the :class:`PersistenceError` opening ``name`` raises (for writing, as
    an owner unless ``role`` says otherwise)."""
    with pytest.raises(PersistenceError) as raised:
        create_sqlite_persistence_adapter(name, read_only=read_only, role=role)
    return str(raised.value)


async def status(db: Path, mission_id: str = "m-1") -> MissionStatus:
    async with create_sqlite_persistence_adapter(db, read_only=True) as reader:
        snapshot = await reader.load(mission_id)
    assert snapshot is not None
    return snapshot.status


async def test_the_owner_records_the_real_path_of_the_name_it_opened_the_file_by(
    tmp_path: Path,
) -> None:
    """The owner records ``os.path.realpath`` of its name in ``store``, also when it comes
    through a symbolic link to the directory; a symbolic link to the file is the same name."""
    (tmp_path / "real").mkdir()
    (tmp_path / "alias").symlink_to(tmp_path / "real")
    async with create_sqlite_persistence_adapter(tmp_path / "alias" / "missions.sqlite"):
        pass
    db = tmp_path / "real" / "missions.sqlite"
    assert recorded(db) == [("path", real(db))]
    (tmp_path / "link.sqlite").symlink_to(db)
    async with SQLiteCommander(tmp_path / "link.sqlite", [FLOW]) as commander:
        await commander.start(FLOW, {}, id="m-1")
    assert recorded(db) == [("path", real(db))]
    assert await status(tmp_path / "link.sqlite") is MissionStatus.WAITING


async def test_a_reader_through_a_hard_link_is_refused_and_told_the_recorded_name(
    db_path: Path, dump: Dump
) -> None:
    """While an owner process runs, a read-only adapter through a hard link (which would see the
    main file without the owner's write-ahead log) is refused with a message naming the
    recorded path, changing nothing; through the recorded name, or a symbolic link to it, it
    reads the owner's latest commits while the link exists."""
    link = db_path.with_name("link.sqlite")
    symlink = db_path.with_name("symlink.sqlite")
    symlink.symlink_to(db_path)
    async with owner_of(db_path) as owner:
        os.link(db_path, link)
        before, rows = files(db_path), dump(db_path)
        for _ in range(2):
            message = refusal(link, read_only=True)
            assert message.startswith(f"{link} is the database file its owner opened as ")
            assert f"Open it as {real(db_path)}; nothing was changed" in message
            assert files(db_path) == before
        assert dump(db_path) == rows
        for name in (db_path, symlink):
            assert await status(name) is MissionStatus.WAITING
        await owner.ask("signal")
        for name in (db_path, symlink):
            assert await status(name) is MissionStatus.COMPLETED
        before = files(db_path)
        assert "its owner opened as" in refusal(link, read_only=True)
        assert files(db_path) == before
    # With the owner gone the record still tells the names apart.
    assert f"Open it as {real(db_path)}" in refusal(link, read_only=True)
    assert await status(db_path) is MissionStatus.COMPLETED


async def test_a_writer_through_a_hard_link_is_refused(db_path: Path, dump: Dump) -> None:
    """A writer through a hard link is refused while the owner runs (its lock) and after it
    stopped (a file with two names), with a message saying to keep the recorded name and how to
    learn it; nothing changes, and once the link is gone the recorded name opens for writing."""
    link = db_path.with_name("link.sqlite")
    async with owner_of(db_path):
        os.link(db_path, link)
        before = files(db_path)
        assert "already open for writing by another process" in refusal(link, read_only=False)
        for role in ("auto", "submitter"):
            message = refusal(link, read_only=False, role=role)
            assert f"Open it as {real(db_path)}; nothing was changed" in message
        assert files(db_path) == before
    before, rows = files(db_path), dump(db_path)
    for name in (link, db_path):
        message = refusal(name, read_only=False)
        assert message.startswith(f"{name} has 2 names (hard links)")
        assert "keeping the one its owner recorded (read_only=True by any of them tells which" in (
            message
        )
        assert files(db_path) == before
    assert dump(db_path) == rows
    os.unlink(link)
    async with SQLiteCommander(db_path, [FLOW]) as commander:
        assert (await commander.inspect("m-1")).status is MissionStatus.WAITING


async def test_a_reader_of_this_process_by_another_name_than_its_writer_is_refused(
    db_path: Path, make_snapshot: Make
) -> None:
    """A read-only adapter of the process that writes the database, coming through another name
    (where SQLite would read the writer's shared-memory index against another log), is refused
    before it opens anything, with the writer's name; by the writer's name it reads."""
    link = db_path.with_name("link.sqlite")
    async with create_sqlite_persistence_adapter(db_path) as writer:
        await writer.insert(make_snapshot("m"), [])
        os.link(db_path, link)
        before = files(db_path)
        message = refusal(link, read_only=True)
        assert message == (
            f"{link} is open for writing in this process under the name {db_path}, and SQLite "
            f"keeps the write-ahead log next to the name a file is opened by; open it as "
            f"{db_path} to read it (nothing was changed)"
        )
        assert files(db_path) == before
        assert not link.with_name("link.sqlite-wal").exists()
        async with create_sqlite_persistence_adapter(db_path, read_only=True) as reader:
            assert await reader.load("m") is not None
        assert await writer.load("m") is not None


def forget_the_record(db: Path) -> None:
    connection = apsw.Connection(str(db))
    connection.execute("DELETE FROM store")
    connection.close()


async def test_a_reader_cannot_tell_which_of_two_names_is_safe_without_the_record(
    db_path: Path, dump: Dump
) -> None:
    """A file with two names whose owner's record is missing, or names a path that no longer
    exists, is refused read-only by both names, nothing changed; with one name left it opens."""
    async with SQLiteCommander(db_path, [FLOW]) as commander:
        await commander.start(FLOW, {}, id="m-1")
    forget_the_record(db_path)
    link = db_path.with_name("link.sqlite")
    os.link(db_path, link)
    before, rows = files(db_path), dump(db_path)
    for name in (db_path, link):
        message = refusal(name, read_only=True)
        assert message == (
            f"{name} has 2 names (hard links) and no owner has recorded the name it is opened "
            "by, so which name leads to its write-ahead log cannot be told (SQLite keeps the log "
            "next to the name a file is opened by). Remove the other names, then open it as the "
            "one left; nothing was changed"
        )
    assert (files(db_path), dump(db_path)) == (before, rows)

    moved = db_path.with_name("moved.sqlite")
    os.rename(link, moved)
    os.unlink(db_path)
    async with create_sqlite_persistence_adapter(moved):  # records moved.sqlite
        pass
    os.link(moved, link)
    os.rename(moved, db_path)
    message = refusal(link, read_only=True)
    assert (
        f"none of them is the one its owner recorded ({real(moved)}, which no longer exists)"
    ) in message
    os.unlink(link)
    assert await status(db_path) is MissionStatus.WAITING


async def test_a_database_moved_while_closed_is_recorded_again_by_its_next_owner(
    db_path: Path,
) -> None:
    """A database renamed while nothing had it open is read under its new name, and its next
    owner records the new name and carries on with what was stored."""
    async with SQLiteCommander(db_path, [FLOW]) as commander:
        await commander.start(FLOW, {}, id="m-1")
    moved = db_path.with_name("moved.sqlite")
    os.rename(db_path, moved)
    assert not db_path.with_name(f"{db_path.name}-wal").exists()
    assert await status(moved) is MissionStatus.WAITING
    assert recorded(moved) == [("path", real(db_path))]
    async with SQLiteCommander(moved, [FLOW]) as commander:
        await commander.signal("m-1", "go", {})
    assert recorded(moved) == [("path", real(moved))]
    assert await status(moved) is MissionStatus.COMPLETED


async def test_a_database_moved_away_from_its_log_is_refused_until_the_log_follows(
    db_path: Path, dump: Dump
) -> None:
    """A database moved after its owner was killed, its write-ahead log (holding the last
    commits) left under the old name, is refused by every role with a message saying how to
    move the log; nothing changes, and once the log is moved the commits are all there."""
    async with owner_of(db_path) as owner:
        await owner.ask("signal")
        await kill(owner)
    log = Path(f"{real(db_path)}-wal")
    assert os.stat(log).st_size > 0
    moved = db_path.with_name("moved.sqlite")
    os.rename(db_path, moved)
    before, rows = files(moved), dump(moved)
    for read_only in (False, True):
        message = refusal(moved, read_only=read_only)
        assert message == (
            f"{moved} was opened by its owner as {real(db_path)}, which no longer "
            f"exists, but its write-ahead log {log} does, holding {os.stat(log).st_size} bytes: "
            f"commits that may not be in the file (it was moved while open, or after its owner "
            f"was killed). If {moved} is that file moved, then once no process has it open move "
            f"{log} to {real(moved)}-wal, delete {real(db_path)}-shm and open it again; if it is "
            "not, delete them. Nothing was changed"
        )
        assert (files(moved), dump(moved)) == (before, rows)
    os.rename(log, f"{moved}-wal")
    os.unlink(f"{db_path}-shm")
    async with SQLiteCommander(moved, [FLOW]) as commander:
        assert (await commander.inspect("m-1")).status is MissionStatus.COMPLETED
    assert recorded(moved) == [("path", real(moved))]


async def test_a_copied_database_opens_on_its_own(db_path: Path) -> None:
    """A copy of a closed database opens for writing beside the original, while the original's
    owner runs, and records its own name; what each stores stays its own."""
    async with SQLiteCommander(db_path, [FLOW]) as commander:
        await commander.start(FLOW, {}, id="m-1")
    copy = db_path.with_name("copy.sqlite")
    shutil.copyfile(db_path, copy)
    assert await status(copy) is MissionStatus.WAITING
    async with owner_of(db_path) as owner, SQLiteCommander(copy, [FLOW]) as commander:
        await commander.signal("m-1", "go", {})
        await commander.start(FLOW, {}, id="m-copy")
        await owner.ask("signal")
    assert recorded(copy) == [("path", real(copy))]
    assert recorded(db_path) == [("path", real(db_path))]
    async with create_sqlite_persistence_adapter(db_path, read_only=True) as original:
        assert [s.id for s in await original.list_missions(limit=10)] == ["m-1"]
    assert await status(copy, "m-copy") is MissionStatus.WAITING


_OPEN = """
import sys
from mission_control.adapter_sqlite import create_sqlite_persistence_adapter
from mission_control.core import PersistenceError
try:
    create_sqlite_persistence_adapter(sys.argv[1], read_only=sys.argv[2] == "read-only").close()
except PersistenceError as error:
    print(error)
    sys.exit(3)
"""


def _bind_mounts() -> bool:
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        return False
    probe = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "mount", "--bind", "/", "/mnt"],
        capture_output=True,
        check=False,
    )
    return probe.returncode == 0


@pytest.mark.skipif(not _bind_mounts(), reason="needs unshare and bind mounts (root)")
async def test_a_bind_mount_is_another_name_for_every_role(tmp_path: Path, dump: Dump) -> None:
    """Through a bind mount of its directory (one name for the file system, another path for
    SQLite), a database is refused for writing and read-only alike, naming the recorded path."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    db = tmp_path / "a" / "missions.sqlite"
    async with SQLiteCommander(db, [FLOW]) as commander:
        await commander.start(FLOW, {}, id="m-1")
    before, rows = files(db), dump(db)
    for role in ("owner", "read-only"):
        script = textwrap.dedent(_OPEN)
        command = 'mount --bind "$1" "$2" && exec "$3" -c "$4" "$2/missions.sqlite" "$5"'
        with anyio.fail_after(DEADLINE):
            result = await anyio.run_process(
                [
                    "unshare",
                    "-m",
                    "--propagation",
                    "private",
                    "sh",
                    "-c",
                    command,
                    "sh",
                    str(tmp_path / "a"),
                    str(tmp_path / "b"),
                    sys.executable,
                    script,
                    role,
                ],
                check=False,
            )
        out = result.stdout.decode()
        assert result.returncode == 3, (out, result.stderr.decode())
        assert out.startswith(f"{tmp_path / 'b' / 'missions.sqlite'} is the database file its ")
        assert f"Open it as {real(db)}; nothing was changed" in out
        assert (files(db), dump(db)) == (before, rows)
