"""Bad files give clear errors and lose nothing; one writer owns a database while read-only
inspectors look on, from this process or another.

On both backends in real time: the deadline around another process is a watchdog for a hung
one, which virtual time would fire at once (the other processes are trio programs).
"""

from __future__ import annotations

import gc
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import apsw
import pytest

from mission_control.adapter_sqlite import create_sqlite_persistence_adapter
from mission_control.core import (
    CancelRequest,
    MissionSnapshot,
    MissionStatus,
    PersistenceError,
    TimelineEntry,
)

START_ISO = "2030-01-01T00:00:00+00:00"
Make = Callable[..., MissionSnapshot]
Entry = Callable[..., TimelineEntry]
Dump = Callable[[Path], dict[str, list[tuple[Any, ...]]]]

pytestmark = [pytest.mark.anyio, pytest.mark.real_time]


async def run_python(code: str, *args: str) -> tuple[int, str, str]:
    """Run ``code`` in a fresh interpreter (another process, as a second program would be);
    return its exit code, stdout and stderr."""
    with anyio.fail_after(60):
        result = await anyio.run_process(
            [sys.executable, "-c", textwrap.dedent(code), *args],
            check=False,
        )
    return result.returncode, result.stdout.decode(), result.stderr.decode()


def tamper(path: Path, sql: str, *params: Any) -> None:
    connection = apsw.Connection(str(path))
    connection.execute(sql, params)
    connection.close()


# -- files that are not (our) databases ---------------------------------------------------------


def test_a_file_that_is_not_a_database_is_refused_untouched(tmp_path: Path) -> None:
    """A text file raises ``PersistenceError`` naming its path, keeps its bytes, and gets no
    lock file next to it."""
    path = tmp_path / "notes.txt"
    path.write_text("shopping list: eggs, milk\n" * 10)
    for read_only in (False, True):
        with pytest.raises(PersistenceError, match=r"notes\.txt is not a SQLite database"):
            create_sqlite_persistence_adapter(path, read_only=read_only)
    assert path.read_text() == "shopping list: eggs, milk\n" * 10
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_a_damaged_database_is_reported_with_its_path(tmp_path: Path) -> None:
    """A file with the SQLite header but garbage after it raises ``PersistenceError`` naming
    the path instead of a raw SQLite error."""
    path = tmp_path / "damaged.sqlite"
    path.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4080)
    with pytest.raises(PersistenceError, match=r"damaged\.sqlite"):
        create_sqlite_persistence_adapter(path, role="owner")


def test_a_directory_or_a_missing_directory_is_refused(tmp_path: Path) -> None:
    """A directory, a file in a directory that does not exist, and a missing file opened
    read-only each give a clear ``PersistenceError``."""
    with pytest.raises(PersistenceError, match="is a directory"):
        create_sqlite_persistence_adapter(tmp_path, role="owner")
    with pytest.raises(PersistenceError, match=r"directory .* does not exist"):
        create_sqlite_persistence_adapter(tmp_path / "nowhere" / "x.sqlite", role="owner")
    with pytest.raises(PersistenceError, match="no database at"):
        create_sqlite_persistence_adapter(tmp_path / "missing.sqlite", read_only=True)
    assert list(tmp_path.iterdir()) == []


async def test_a_read_only_file_is_refused_for_writing_but_can_be_inspected(
    db_path: Path, make_snapshot: Make, read_only_file: Callable[[Path], None]
) -> None:
    """A database file the process may not write raises ``PersistenceError`` that suggests
    ``read_only=True``, and read-only inspection of it works."""
    async with create_sqlite_persistence_adapter(db_path, role="owner") as adapter:
        await adapter.insert(make_snapshot("m"), [])
    read_only_file(db_path)
    with pytest.raises(PersistenceError, match=r"cannot be written.*read_only=True"):
        create_sqlite_persistence_adapter(db_path, role="owner")
    async with create_sqlite_persistence_adapter(db_path, read_only=True) as inspector:
        assert [s.id for s in await inspector.list_missions(limit=100)] == ["m"]


def test_an_unwritable_directory_is_refused_for_writing(
    tmp_path: Path, read_only_file: Callable[[Path], None]
) -> None:
    """When the database's directory is not writable (no lock file, no WAL), opening for
    writing fails with a clear ``PersistenceError``."""
    folder = tmp_path / "locked"
    folder.mkdir()
    read_only_file(folder)
    with pytest.raises(PersistenceError, match="directory must be writable"):
        create_sqlite_persistence_adapter(folder / "x.sqlite", role="owner")


async def test_read_only_opens_a_database_in_a_read_only_directory(
    tmp_path: Path,
    make_snapshot: Make,
    make_entry: Entry,
    read_only_file: Callable[[Path], None],
) -> None:
    """``read_only=True`` reads a database whose directory cannot be written (so SQLite can
    create no ``-shm`` file), refuses writes, and leaves the directory as it was."""
    folder = tmp_path / "media"
    folder.mkdir()
    path = folder / "missions.sqlite"
    async with create_sqlite_persistence_adapter(path, role="owner") as writer:
        await writer.insert(make_snapshot("m"), [make_entry()])
        await writer.insert(make_snapshot("n", status=MissionStatus.WAITING, due_in=5), [])
    (folder / "missions.sqlite.lock").unlink()
    read_only_file(folder)
    async with create_sqlite_persistence_adapter(path, read_only=True) as inspector:
        assert [s.id for s in await inspector.list_missions(limit=100)] == ["m", "n"]
        assert len(await inspector.timeline("m")) == 1
        assert await inspector.due_missions(datetime(2100, 1, 1, tzinfo=UTC), 10) == ["n"]
        with pytest.raises(PersistenceError, match="open read-only"):
            await inspector.insert(make_snapshot("x"), [])
    assert sorted(p.name for p in folder.iterdir()) == ["missions.sqlite"]


async def test_read_only_refuses_a_read_only_directory_whose_log_it_cannot_read(
    tmp_path: Path, read_only_file: Callable[[Path], None]
) -> None:
    """A writer killed mid-run leaves commits in its ``-wal`` file; in a read-only directory
    ``read_only=True`` reads them through the ``-shm`` file left next to it, and without that
    file it refuses with a clear error rather than show the database without them."""
    folder = tmp_path / "media"
    folder.mkdir()
    path = folder / "missions.sqlite"
    code, _, err = await run_python(
        """
        import os, signal, sys, trio
        from mission_control.adapter_sqlite import create_sqlite_persistence_adapter
        from mission_control.core import SortableIds, MissionSnapshot, MissionStatus
        from datetime import datetime, UTC
        async def main():
            adapter = create_sqlite_persistence_adapter(sys.argv[1], role="owner")
            now = datetime(2030, 1, 1, tzinfo=UTC)
            snapshot = MissionSnapshot(
                id="m", definition="test", definition_version=1, status=MissionStatus.RUNNING,
                current_node="work", input=None, created_at=now, updated_at=now, revision=1,
            )
            await adapter.insert(snapshot, [])
            os.kill(os.getpid(), signal.SIGKILL)
        trio.run(main)
        """,
        str(path),
    )
    assert code == -9, err
    assert (folder / "missions.sqlite-wal").stat().st_size > 0
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("missions.sqlite", "missions.sqlite-wal"):
        shutil.copy(folder / name, bare / name)
    read_only_file(folder)
    read_only_file(bare)
    async with create_sqlite_persistence_adapter(path, read_only=True) as inspector:
        assert [s.id for s in await inspector.list_missions(limit=100)] == ["m"]
    with pytest.raises(PersistenceError, match=r"log .* holds commits that are not in the"):
        create_sqlite_persistence_adapter(bare / "missions.sqlite", read_only=True)


# -- corrupt rows ---------------------------------------------------------------------------------


async def test_a_corrupt_mission_is_reported_and_the_others_keep_working(
    db_path: Path, make_snapshot: Make, dump: Dump
) -> None:
    """A mission whose stored JSON is corrupt raises ``PersistenceError`` naming it from
    ``load`` and ``list_missions``, while the tick queries still return ids, other missions
    still load, and nothing in the file changes."""
    async with create_sqlite_persistence_adapter(db_path, role="owner") as adapter:
        await adapter.insert(make_snapshot("bad", status=MissionStatus.WAITING, due_in=1), [])
        await adapter.insert(make_snapshot("good", status=MissionStatus.WAITING, due_in=2), [])
        await adapter.insert(make_snapshot("running"), [])
    tamper(db_path, "UPDATE missions SET snapshot = '{\"id\": \"bad\", trunc' WHERE id = 'bad'")
    before = dump(db_path)

    async with create_sqlite_persistence_adapter(db_path, role="owner") as adapter:
        with pytest.raises(PersistenceError, match=r"mission 'bad' .* corrupt"):
            await adapter.load("bad")
        with pytest.raises(PersistenceError, match="mission 'bad'"):
            await adapter.list_missions(limit=100)
        assert [s.id for s in await adapter.list_missions(after_id="bad", limit=100)] == [
            "good",
            "running",
        ]
        later = make_snapshot("good", status=MissionStatus.WAITING, due_in=2).wait
        assert later is not None
        assert later.due_at is not None
        assert await adapter.due_missions(later.due_at, 10) == ["bad", "good"]
        assert await adapter.running_missions(10) == ["running"]
        assert await adapter.load("good") == make_snapshot(
            "good", status=MissionStatus.WAITING, due_in=2
        )
    assert dump(db_path) == before


async def test_a_snapshot_that_does_not_match_its_row_is_reported(
    db_path: Path, make_snapshot: Make
) -> None:
    """A row whose JSON names another id or revision is reported as unreadable rather than
    handed to the engine."""
    async with create_sqlite_persistence_adapter(db_path, role="owner") as adapter:
        await adapter.insert(make_snapshot("m"), [])
    tamper(db_path, "UPDATE missions SET revision = 7 WHERE id = 'm'")
    async with create_sqlite_persistence_adapter(db_path, role="owner") as adapter:
        with pytest.raises(PersistenceError, match="revision 1, its row says revision 7"):
            await adapter.load("m")


async def test_corrupt_timeline_entries_and_signals_name_their_mission(
    db_path: Path, make_snapshot: Make, make_entry: Entry
) -> None:
    """A corrupt timeline entry, signal payload or cancellation request raises
    ``PersistenceError`` naming the mission it belongs to."""
    async with create_sqlite_persistence_adapter(db_path, role="owner") as adapter:
        await adapter.insert(make_snapshot("m"), [make_entry()])
        await adapter.append_signal("m", "go", {"ok": True}, make_entry().at, [])
        await adapter.insert(make_snapshot("c"), [])
        await adapter.request_cancel("c", CancelRequest(make_entry().at), [])
    tamper(db_path, "UPDATE timeline SET entry = 'nope'")
    tamper(db_path, "UPDATE inbox SET payload = '{'")
    tamper(db_path, "UPDATE missions SET cancel_request = '[1]' WHERE id = 'c'")
    async with create_sqlite_persistence_adapter(db_path, role="owner") as adapter:
        with pytest.raises(PersistenceError, match=r"mission 'm' .* timeline"):
            await adapter.timeline("m")
        with pytest.raises(PersistenceError, match=r"mission 'm' .* signal"):
            await adapter.next_signal("m", "go")
        with pytest.raises(PersistenceError, match="mission 'c'"):
            await adapter.load("c")


# -- one writer, many readers ---------------------------------------------------------------------


async def test_a_second_writer_fails_fast_until_the_first_closes(
    db_path: Path, make_snapshot: Make
) -> None:
    """A second adapter opening the same database for writing (also through another spelling
    of its path or a symlink) raises ``PersistenceError`` at once; after ``aclose`` it may
    open."""
    first = create_sqlite_persistence_adapter(db_path, role="owner")
    await first.insert(make_snapshot("m"), [])
    alias = db_path.with_name("alias.sqlite")
    alias.symlink_to(db_path)
    spellings = (db_path, str(db_path), os.path.join(db_path.parent, ".", db_path.name), alias)
    for path in spellings:
        with pytest.raises(PersistenceError, match="already open for writing") as raised:
            create_sqlite_persistence_adapter(path, role="owner")
        assert "read_only=True" in str(raised.value)
    assert await first.load("m") is not None
    await first.aclose()
    async with create_sqlite_persistence_adapter(db_path, role="owner") as second:
        assert await second.load("m") is not None


def _integrity(path: Path) -> str:
    connection = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        return str(connection.execute("PRAGMA integrity_check").fetchall()[0][0])
    finally:
        connection.close()


async def test_a_hard_link_does_not_open_a_second_writer(
    db_path: Path, make_snapshot: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The single-writer guard follows the file, not its name: while a database is open for
    writing, no second writer opens it through a hard link, a symlink or a relative path, nor
    later through one of two names, and the file stays intact."""
    first = create_sqlite_persistence_adapter(db_path, role="owner")
    await first.insert(make_snapshot("m"), [])
    link = db_path.with_name("link.sqlite")
    os.link(db_path, link)
    with pytest.raises(
        PersistenceError, match="already open for writing in this process"
    ) as raised:
        create_sqlite_persistence_adapter(link, role="owner")
    assert "read_only=True" in str(raised.value)
    assert str(db_path) in str(raised.value)
    symlink = db_path.with_name("symlink.sqlite")
    symlink.symlink_to(link)
    monkeypatch.chdir(db_path.parent)
    for name in (symlink, "link.sqlite", "./symlink.sqlite"):
        with pytest.raises(PersistenceError, match="already open for writing"):
            create_sqlite_persistence_adapter(name, role="owner")
    await first.commit(make_snapshot("m", revision=2), expected_revision=1, timeline=[])
    await first.aclose()
    assert _integrity(link) == "ok"
    with pytest.raises(PersistenceError, match=r"has 2 names \(hard links\)"):
        create_sqlite_persistence_adapter(link, role="owner")
    os.unlink(db_path)
    async with create_sqlite_persistence_adapter(link, role="owner") as second:
        loaded = await second.load("m")
        assert loaded is not None
        assert loaded.revision == 2


async def test_a_new_database_is_guarded_from_the_moment_it_is_created(
    db_path: Path, make_snapshot: Make
) -> None:
    """A database the adapter creates is keyed on its identity at once: a hard link made to it
    right after does not open a second writer, even once the first name is removed (the link
    is then the file's only name, and no lock file is next to it)."""
    async with create_sqlite_persistence_adapter(db_path, role="owner"):
        link = db_path.with_name("link.sqlite")
        os.link(db_path, link)
        os.unlink(db_path)
        with pytest.raises(PersistenceError, match="already open for writing in this process"):
            create_sqlite_persistence_adapter(link, role="owner")
    assert _integrity(link) == "ok"


_OPEN_FOR_WRITING = """
import sys, attrs, trio
from mission_control.adapter_sqlite import create_sqlite_persistence_adapter
from mission_control.core import PersistenceError
async def main():
    try:
        adapter = create_sqlite_persistence_adapter(sys.argv[1], role="owner")
    except PersistenceError as error:
        print(error)
        sys.exit(3)
    async with adapter:
        m = await adapter.load("m")
        after = attrs.evolve(m, revision=m.revision + 1)
        await adapter.commit(after, expected_revision=m.revision, timeline=[])
        print(m.revision + 1)
trio.run(main)
"""


def _same_name(db_path: Path) -> Path:
    return db_path


def _hard_link(db_path: Path) -> Path:
    link = db_path.with_name("link.sqlite")
    os.link(db_path, link)
    return link


def _renamed(db_path: Path) -> Path:
    renamed = db_path.with_name("renamed.sqlite")
    os.rename(db_path, renamed)
    return renamed


async def _nothing_left(db_path: Path, name: Path) -> None:
    pass


async def _remove_the_other_link(db_path: Path, name: Path) -> None:
    code, out, err = await run_python(_OPEN_FOR_WRITING, str(name))
    assert code == 3, err
    assert "has 2 names (hard links)" in out
    os.unlink(db_path)


async def _move_the_log_along(db_path: Path, name: Path) -> None:
    # SQLite does not fold the log into a file that was renamed while open.
    os.rename(f"{db_path}-wal", f"{name}-wal")
    os.unlink(f"{db_path}-shm")


@pytest.mark.parametrize(
    ("reach", "refusal", "after_close"),
    [
        (
            _same_name,
            rf"open for writing by another Mission Control adapter \(process {os.getpid()}\)",
            _nothing_left,
        ),
        (
            _hard_link,
            "open for writing by another process, under this name or another one",
            _remove_the_other_link,
        ),
        (
            _renamed,
            "open for writing by another process, under this name or another one",
            _move_the_log_along,
        ),
    ],
    ids=["same name", "hard link", "renamed"],
)
async def test_another_process_cannot_open_the_database_for_writing_by_any_name(
    db_path: Path,
    make_snapshot: Make,
    reach: Callable[[Path], Path],
    refusal: str,
    after_close: Callable[[Path, Path], Awaitable[None]],
) -> None:
    """While this process owns a database, another process cannot open it for writing, neither by
    its name, nor through a hard link, nor by the name it got from a rename under the writer; once
    the owner has closed it, another process writes it by one name, and nothing is lost."""
    async with create_sqlite_persistence_adapter(db_path, role="owner") as adapter:
        await adapter.insert(make_snapshot("m"), [])
        name = reach(db_path)
        code, out, err = await run_python(_OPEN_FOR_WRITING, str(name))
        assert code == 3, err
        assert re.search(refusal, out), out
        assert "read_only=True" in out
        await adapter.commit(make_snapshot("m", revision=2), expected_revision=1, timeline=[])
    await after_close(db_path, name)
    code, out, err = await run_python(_OPEN_FOR_WRITING, str(name))
    assert (code, out) == (0, "3\n"), err
    assert _integrity(name) == "ok"


def _locks(path: Path) -> list[str]:
    """The kinds of lock this process holds on the file at ``path``, from ``/proc/locks``."""
    identity = f":{os.stat(path).st_ino}"
    with open("/proc/locks") as table:
        rows = [line.split() for line in table]
    return sorted(
        f"{row[1]} {row[3]} {row[6]}-{row[7]}"
        for row in rows
        if row[4] == str(os.getpid()) and row[5].endswith(identity)
    )


@pytest.mark.skipif(not os.path.exists("/proc/locks"), reason="reads Linux's /proc/locks")
async def test_the_guard_never_drops_the_locks_sqlite_holds(
    db_path: Path, make_snapshot: Make
) -> None:
    """Closing a descriptor drops every POSIX lock the process holds on the file, so the guard
    closes none while a connection of this process uses the file: a refused second writer and a
    writer closing leave the SQLite locks of the other connections in place, and the writer's
    lock on the file itself goes with it."""
    writer = create_sqlite_persistence_adapter(db_path, role="owner")
    await writer.insert(make_snapshot("m"), [])
    inspector = create_sqlite_persistence_adapter(db_path, read_only=True)
    assert await inspector.load("m") is not None
    held = _locks(db_path)
    assert "FLOCK WRITE 0-EOF" in held
    assert any(lock.startswith("POSIX READ") for lock in held)
    link = _hard_link(db_path)
    for name in (db_path, link):
        with pytest.raises(PersistenceError, match="already open for writing"):
            create_sqlite_persistence_adapter(name, role="owner")
        assert _locks(db_path) == held
    writer.close()
    assert _locks(db_path) == [lock for lock in held if not lock.startswith("FLOCK")]
    assert await inspector.load("m") is not None
    inspector.close()
    assert _locks(db_path) == []


class _LocksAtClose(apsw.VFS):
    """SQLite's own unix VFS, noting which locks this process holds on a database file at the
    moment SQLite closes it."""

    def __init__(self) -> None:
        super().__init__("locks-at-close", base="unix", makedefault=True)
        self.seen: list[list[str]] = []

    def xOpen(self, name: str | apsw.URIFilename | None, flags: list[int]) -> apsw.VFSFile:
        main = isinstance(name, apsw.URIFilename) and bool(flags[0] & apsw.SQLITE_OPEN_MAIN_DB)
        return _NotingFile(self, name, flags, main)


class _NotingFile(apsw.VFSFile):
    def __init__(
        self,
        vfs: _LocksAtClose,
        name: str | apsw.URIFilename | None,
        flags: list[int],
        main: bool,
    ) -> None:
        super().__init__("unix", name, flags)
        self._vfs = vfs
        self._path = Path(name.filename()) if main and isinstance(name, apsw.URIFilename) else None

    def xClose(self) -> None:
        if self._path is not None:
            self._vfs.seen.append(_locks(self._path))
        super().xClose()


@pytest.mark.skipif(not os.path.exists("/proc/locks"), reason="reads Linux's /proc/locks")
async def test_a_writer_dropped_without_aclose_closes_its_connection_before_its_guard(
    db_path: Path, make_snapshot: Make
) -> None:
    """A writer dropped without ``aclose()`` and collected still holds its lock on the file when
    SQLite closes the database, and afterwards nothing of it is left: no lock, and another
    process opens the database for writing."""
    vfs = _LocksAtClose()
    try:
        writer = create_sqlite_persistence_adapter(db_path, role="owner")
        await writer.insert(make_snapshot("m"), [])
        del writer
        gc.collect()
    finally:
        vfs.unregister()
    assert vfs.seen == [["FLOCK WRITE 0-EOF"]]
    assert _locks(db_path) == []
    code, out, err = await run_python(_OPEN_FOR_WRITING, str(db_path))
    assert (code, out) == (0, "2\n"), err
    assert _integrity(db_path) == "ok"


def _descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.exists("/proc/self/fd"), reason="counts /proc/self/fd")
async def test_adapters_coming_and_going_do_not_add_descriptors_while_a_writer_runs(
    db_path: Path, make_snapshot: Make
) -> None:
    """While a writer has the database open, read-only adapters opened and closed and second
    writers refused (by the same name or a hard link) leave the process's descriptor count
    flat, instead of keeping one descriptor each until the writer closes."""
    async with create_sqlite_persistence_adapter(db_path, role="owner") as writer:
        await writer.insert(make_snapshot("m"), [])
        for _ in range(3):
            async with create_sqlite_persistence_adapter(db_path, read_only=True) as inspector:
                assert await inspector.load("m") is not None
        link = _hard_link(db_path)
        for name in (db_path, link):
            with pytest.raises(PersistenceError, match=r"already (has )?open for writing"):
                create_sqlite_persistence_adapter(name, role="owner")
        before = _descriptors()
        for _ in range(100):
            async with create_sqlite_persistence_adapter(db_path, read_only=True) as inspector:
                assert await inspector.load("m") is not None
            for name in (db_path, link):
                with pytest.raises(PersistenceError, match=r"already (has )?open for writing"):
                    create_sqlite_persistence_adapter(name, role="owner")
        assert _descriptors() == before
        assert await writer.load("m") is not None
    os.unlink(link)


async def test_read_only_inspection_works_while_the_writer_runs(
    db_path: Path, make_snapshot: Make, make_entry: Entry, dump: Dump
) -> None:
    """While the owner has the database open, a read-only adapter in this process and one in
    another process see every commit as it happens, and cannot write."""
    async with create_sqlite_persistence_adapter(db_path, role="owner") as writer:
        await writer.insert(make_snapshot("m"), [make_entry()])
        async with create_sqlite_persistence_adapter(db_path, read_only=True) as inspector:
            assert inspector.read_only
            assert [s.revision for s in await inspector.list_missions(limit=100)] == [1]
            await writer.commit(make_snapshot("m", revision=2), expected_revision=1, timeline=[])
            loaded = await inspector.load("m")
            assert loaded is not None
            assert loaded.revision == 2

            before = dump(db_path)
            writes: list[Any] = [
                inspector.insert(make_snapshot("x"), []),
                inspector.commit(make_snapshot("m", revision=3), expected_revision=2, timeline=[]),
                inspector.append_signal("m", "go", None, make_entry().at, []),
                inspector.request_cancel("m", CancelRequest(make_entry().at), []),
            ]
            for write in writes:
                with pytest.raises(PersistenceError, match="open read-only"):
                    await write
            assert dump(db_path) == before

        code, out, err = await run_python(
            """
            import json, sys, trio
            from mission_control.adapter_sqlite import create_sqlite_persistence_adapter
            async def main():
                async with create_sqlite_persistence_adapter(sys.argv[1], read_only=True) as a:
                    missions = await a.list_missions(limit=100)
                    entries = await a.timeline("m")
                    print(json.dumps({"revisions": [s.revision for s in missions],
                                      "entries": len(entries)}))
            trio.run(main)
            """,
            str(db_path),
        )
        assert code == 0, err
        assert json.loads(out) == {"revisions": [2], "entries": 1}
        # The owner keeps writing after the inspector has gone.
        await writer.commit(make_snapshot("m", revision=3), expected_revision=2, timeline=[])


def test_the_lock_is_released_when_the_owning_process_dies(db_path: Path) -> None:
    """A process killed while it owns the database leaves no stale lock: the next writer opens
    at once."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                """
                import os, signal, sys
                from mission_control.adapter_sqlite import create_sqlite_persistence_adapter
                adapter = create_sqlite_persistence_adapter(sys.argv[1], role="owner")
                os.kill(os.getpid(), signal.SIGKILL)
                """
            ),
            str(db_path),
        ],
    )
    assert process.wait(timeout=60) == -9
    create_sqlite_persistence_adapter(db_path, role="owner").close()
