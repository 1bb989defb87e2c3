"""The single-writer rule: one adapter at a time may open a database for writing.

Two writers reaching one file corrupt it, also through two names (a hard link, a name the
file got by a rename while open, a bind mount): SQLite keeps a database's write-ahead log next
to the name it was opened by, so each would write its own log into the same pages. So the guard
belongs to the file itself, not to a name:

- On Linux the writer holds an exclusive ``flock`` on a descriptor of the database file, taken
  without waiting right after SQLite has opened (and, when missing, created) it and before
  anything is written. It follows the inode whatever the file is called, in every process, and
  the kernel drops it when its holder closes it or dies (even by SIGKILL), so a crash never
  leaves a stale lock. ``flock`` locks are independent of the POSIX ``fcntl`` locks SQLite takes
  on the same file. On the BSDs and macOS they interact, so the file is not locked there and only
  the two checks below apply. Network file systems are not detected: Linux's NFS client emulates
  ``flock`` with a whole-file POSIX lock, which needs a descriptor open for writing to be
  exclusive, so on NFS the lock on this read-only descriptor fails (``EBADF``) and the writer is
  refused, unless the mount has ``local_lock=flock``, where the lock is local to this machine.
  SQLite's write-ahead log does not work over a network file system anyway.
- In this process, the files open for writing are known by identity (device and inode), so a
  second adapter is refused before it opens anything, and told which name the file is open
  under. So is a read-only adapter of this process coming by another name than the writer's
  (see ``_paths.py`` for what each role sees through another name).
- The writer also holds an exclusive ``flock`` on a sidecar file ``<realpath>.lock``, which
  0.1.0 used alone: an older process and this one still exclude each other. The sidecar is never
  deleted: unlinking it would let a newcomer lock a fresh file while the holder locks the old
  one.
- A file with more than one name (hard links) is refused for writing: a writer killed while
  it wrote through one name leaves its log under that name, and a writer coming later through
  the other name would not see that log, write its own, and corrupt the file when the first
  log is replayed.

The trap of POSIX locks: closing *any* descriptor of a file drops every POSIX lock the process
holds on it, SQLite's included. So this module holds one descriptor per database file that
adapters of this process have open (for writing or read-only), shared by all of them (headers are
read through it, the writer's ``flock`` is taken on it), and closes it only once the last of them
has closed its SQLite connection; SQLite defers its own closes the same way (its
``unixInodeInfo`` keeps "pending" descriptors). Opening and closing adapters therefore never adds
descriptors while one stays open. SQLite connections made outside this package are beyond its
reach.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
import threading

import attrs

from mission_control.core import PersistenceError

_Identity = tuple[int, int]


class OwnedElsewhere(PersistenceError):
    """Another adapter (of this process or another one) owns the database: it holds the
    writer's locks."""


@attrs.define
class _OpenFile:
    """A database file adapters of this process have open, by identity."""

    users: int = 0
    writer: str | None = None
    """The name the file is open for writing under, if it is."""
    fd: int | None = None
    """The one descriptor this module holds on the file (headers are read and the writer's
    lock is taken through it), so that users coming and going never add descriptors."""
    unclosed: list[int] = attrs.field(factory=list[int])
    """Descriptors opened by a user that lost a race to register the file first."""


_open_files: dict[_Identity, _OpenFile] = {}
# Reentrant: a dropped adapter's __del__ may release its file from a garbage collection that
# runs while this thread holds the lock.
_open_files_lock = threading.RLock()


# The descriptors of the writers' sidecar lock files in this process.
_sidecar_fds: set[int] = set()


def _forget_after_fork() -> None:
    """In a forked child: no adapter of this process has a file open. The parent's entries
    (and its lock, which a thread of the parent may have held at the fork) are not the child's;
    the child's copies of the parent's adapters must not unlock what the parent still holds
    (``flock`` locks are shared with the parent through the inherited descriptors). The child
    closes its copies of those descriptors (closing, unlike unlocking, leaves the parent's
    lock in place): a child that outlives its parent (a worker pool, a helper process) must not
    keep the database owned, which would keep every other process from taking it over."""
    global _open_files_lock
    inherited = set(_sidecar_fds)
    for entry in _open_files.values():
        inherited.update(entry.unclosed)
        if entry.fd is not None:
            inherited.add(entry.fd)
    _sidecar_fds.clear()
    _open_files.clear()
    _open_files_lock = threading.RLock()
    for fd in inherited:
        with contextlib.suppress(OSError):
            os.close(fd)


os.register_at_fork(after_in_child=_forget_after_fork)


def _identity(info: os.stat_result) -> _Identity:
    return (info.st_dev, info.st_ino)


def _enter(path: str) -> tuple[_Identity, int]:
    """Count one more user of the file at ``path``; return its identity and the descriptor its
    entry holds, opening one only when the entry has none yet."""
    known = _identity(os.stat(path))
    with _open_files_lock:
        entry = _open_files.get(known)
        if entry is not None and entry.fd is not None:
            entry.users += 1
            return known, entry.fd
    fd = os.open(path, os.O_RDONLY)
    try:
        identity = _identity(os.fstat(fd))
    except BaseException:
        os.close(fd)
        raise
    with _open_files_lock:
        entry = _open_files.setdefault(identity, _OpenFile())
        entry.users += 1
        if entry.fd is None:
            entry.fd = fd
        else:
            entry.unclosed.append(fd)
        return identity, entry.fd


def _leave(identity: _Identity) -> None:
    """One user of the file has closed its connection; the last one closes the descriptors."""
    with _open_files_lock:
        entry = _open_files[identity]
        entry.users -= 1
        if entry.users > 0:
            return
        del _open_files[identity]
        # Closed before the lock is let go: a thread registering the file anew must not open a
        # connection (whose POSIX locks any close of the file would drop) before these are gone.
        for waiting in [*entry.unclosed, *([] if entry.fd is None else [entry.fd])]:
            with contextlib.suppress(OSError):
                os.close(waiting)


def read_header(path: str, size: int) -> bytes:
    """The first ``size`` bytes of the file at ``path``."""
    identity, fd = _enter(path)
    try:
        return os.pread(fd, size, 0)
    finally:
        _leave(identity)


class Reader:
    """Registers a read-only adapter's database file while its connection is open."""

    __slots__ = ("_identity", "_pid")

    def __init__(self, database: str) -> None:
        self._pid = os.getpid()
        try:
            identity = _identity(os.stat(database))
        except OSError:
            identity = None
        if identity is not None:
            with _open_files_lock:
                entry = _open_files.get(identity)
                writer = None if entry is None else entry.writer
                if writer is not None and os.path.realpath(writer) != os.path.realpath(database):
                    raise _other_name_here(database, writer)
                _open_files.setdefault(identity, _OpenFile()).users += 1
        self._identity = identity

    def release(self) -> None:
        """Call after the connection is closed."""
        identity, self._identity = self._identity, None
        if identity is not None and self._pid == os.getpid():
            _leave(identity)


class WriterLock:
    """The writer's locks, held from :meth:`acquire` (and :meth:`claim`) until :meth:`release`,
    which is called after the SQLite connection is closed."""

    __slots__ = ("_fd", "_file_fd", "_identity", "_pid")

    def __init__(self, fd: int) -> None:
        self._pid = os.getpid()
        self._fd: int | None = fd
        self._file_fd: int | None = None
        self._identity: _Identity | None = None

    @classmethod
    def acquire(cls, database: str, lock_path: str) -> WriterLock:
        """Lock the sidecar file, before SQLite opens the database. A file this process
        already writes is refused by its identity before anything is opened."""
        try:
            identity = _identity(os.stat(database))
        except OSError:
            identity = None
        with _open_files_lock:
            entry = None if identity is None else _open_files.get(identity)
            if entry is not None and entry.writer is not None:
                raise _open_here(database, entry.writer)
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise PersistenceError(
                f"cannot open the lock file {lock_path} for {database}: {error.strerror}; "
                "the directory must be writable to open the database for writing "
                "(use read_only=True to inspect it)"
            ) from error
        try:
            _lock(fd)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise OwnedElsewhere(
                f"{database} is already open for writing by another Mission Control adapter"
                f"{holder} (lock file {lock_path}); only one process may own a database. "
                'Submit work to it (role="auto" or role="submitter"), stop the other one, or '
                "open this one with read_only=True to inspect it"
            ) from None
        except OSError as error:
            os.close(fd)
            raise PersistenceError(
                f"cannot lock {lock_path} for {database}: {error.strerror}"
            ) from error
        _record_holder(fd)
        _sidecar_fds.add(fd)
        return cls(fd)

    def claim(self, database: str) -> None:
        """Lock the file SQLite has just opened (and created when it was missing), before
        anything is written to it; its connection holds no lock yet."""
        try:
            identity, fd = _enter(database)
        except OSError as error:
            raise PersistenceError(
                f"cannot open the database {database}: {error.strerror}"
            ) from error
        with _open_files_lock:
            entry = _open_files[identity]
            other = entry.writer
            if other is None:
                entry.writer = database
        try:
            _check_claim(database, fd, other)
        except BaseException:
            if other is None:
                # Only this claim may have locked the descriptor; the other writer's lock, on
                # the same descriptor, stays.
                with _open_files_lock:
                    entry.writer = None
                _unlock_file(fd)
            _leave(identity)
            raise
        self._file_fd = fd
        self._identity = identity

    def release(self) -> None:
        identity, self._identity = self._identity, None
        file_fd, self._file_fd = self._file_fd, None
        if self._pid != os.getpid():
            # A forked child's copy: the locks are the parent's, and the child closed its
            # copies of their descriptors when it was forked (_forget_after_fork).
            self._fd = None
            return
        if identity is not None and file_fd is not None:
            # Unlocked now, so that another writer may open the file; closed only when no
            # connection of this process holds SQLite's locks on it any more.
            _unlock_file(file_fd)
            with _open_files_lock:
                _open_files[identity].writer = None
            _leave(identity)
        fd, self._fd = self._fd, None
        if fd is not None:
            # Closing the descriptor drops the lock.
            _sidecar_fds.discard(fd)
            os.close(fd)


def _open_here(database: str, other: str) -> PersistenceError:
    return OwnedElsewhere(
        f"{database} is already open for writing in this process, under the name {other}; "
        'only one adapter may own a database. Submit work to it (role="auto" or '
        'role="submitter"), close the other one, or open this one with read_only=True to '
        "inspect it"
    )


def _other_name_here(database: str, writer: str) -> PersistenceError:
    # SQLite shares one shared-memory index per file between the connections of a process, so
    # a connection through a second name would read the writer's index against another log.
    return PersistenceError(
        f"{database} is open for writing in this process under the name {writer}, and SQLite "
        "keeps the write-ahead log next to the name a file is opened by; open it as "
        f"{writer} to read it (nothing was changed)"
    )


def _check_claim(database: str, fd: int, other: str | None) -> None:
    """Raise unless the writer may have the file ``fd`` is open on, ``other`` being the name
    this process already writes it under, if any."""
    if other is not None:
        raise _open_here(database, other)
    try:
        _lock_file(fd)
    except BlockingIOError:
        raise OwnedElsewhere(
            f"{database} is already open for writing by another process, under this "
            "name or another one (a hard link, or the name it had before it was "
            "renamed); only one process may own a database. Stop the other one, or "
            "open this one with read_only=True to inspect it"
        ) from None
    except OSError as error:
        hint = (
            " (is it on a network file system? keep the database on a local one)"
            if error.errno == errno.EBADF
            else ""
        )
        raise PersistenceError(
            f"cannot lock the database {database}: {error.strerror}{hint}"
        ) from error
    try:
        info = os.fstat(fd)
    except OSError as error:
        raise PersistenceError(f"cannot open the database {database}: {error.strerror}") from error
    if info.st_nlink > 1:
        raise PersistenceError(
            f"{database} has {info.st_nlink} names (hard links): a writer stopped by a "
            "crash leaves its write-ahead log under the name it used, a writer coming "
            "through the other name would not see it, and the file would be corrupted; "
            "remove the other names before writing to it, keeping the one its owner "
            "recorded (read_only=True by any of them tells which, and inspects the file "
            "by that one)"
        )


if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _lock(fd: int) -> None:
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError as error:
            raise BlockingIOError(str(error)) from error

    def _record_holder(fd: int) -> None:
        pass

    def _read_holder(fd: int) -> str:
        return ""

    # Windows refuses to rename or delete a file SQLite has open; its locks are mandatory, so
    # the database file itself is not locked.
    def _lock_file(fd: int) -> None:
        pass

    def _unlock_file(fd: int) -> None:
        pass

else:
    import fcntl

    def _lock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def _record_holder(fd: int) -> None:
        # Who holds the lock, for the error message the next opener gets; advisory only.
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)

    def _read_holder(fd: int) -> str:
        try:
            text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        except OSError:
            return ""
        return f" (process {text})" if text.isdigit() else ""

    if sys.platform == "linux":

        def _lock_file(fd: int) -> None:
            _lock(fd)

        def _unlock_file(fd: int) -> None:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)

    else:  # pragma: no cover - on the BSDs and macOS, flock and SQLite's fcntl locks conflict

        def _lock_file(fd: int) -> None:
            pass

        def _unlock_file(fd: int) -> None:
            pass


def owner_process(database: str | os.PathLike[str]) -> int | None:
    """The id of the process that owns ``database`` now (holds its writer's lock), or ``None``
    when no process does. Takes no lock and opens nothing for writing, so an inspector asking
    never stands in an owner's way. On Linux the kernel's lock table (``/proc/locks``) says who
    holds the lock file's ``flock``; elsewhere the process the lock file names is checked to be
    alive (a process that reused a dead owner's id would pass for it)."""
    lock_path = os.path.realpath(database) + ".lock"
    try:
        info = os.stat(lock_path)
    except OSError:
        return None  # never opened for writing
    try:
        with open("/proc/locks", encoding="ascii", errors="replace") as table:
            lines = table.read().splitlines()
    except OSError:
        return _recorded_owner(lock_path)
    device = f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}:{info.st_ino}"
    for line in lines:
        # "1: FLOCK  ADVISORY  WRITE 4242 08:01:1234 0 EOF"; a waiter's line has "->" first.
        fields = line.split()
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == device:
            with contextlib.suppress(ValueError):
                return int(fields[4])
    return None


def _recorded_owner(lock_path: str) -> int | None:
    try:
        with open(lock_path, encoding="ascii", errors="replace") as file:
            text = file.read(32).strip()
    except OSError:
        return None
    if not text.isdigit():
        return None
    try:
        os.kill(int(text), 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # alive, under another user
    return int(text)
