"""The single-writer rule: one adapter at a time may open a database for writing.

The lock is an exclusive ``flock`` on a sidecar file ``<database>.lock``, taken without
waiting. The kernel drops it when its holder closes it or dies (even by SIGKILL), so a crash
never leaves a stale lock behind, and two adapters in one process exclude each other too.
The file is never deleted: unlinking it would let a newcomer lock a fresh file while the
holder still locks the old one.

The lock file is found by the database's path, but SQLite keeps a database's write-ahead log
and shared memory next to the name it was opened by, so two writers reaching one file through
two names (a hard link, a file renamed or linked anew while open, a bind mount) would each write
their own log into the same pages and corrupt it. So the guard is also keyed on the file's
identity (device and inode): :meth:`WriterLock.claim` refuses a file this process already writes
under another name, and a file that has more than one name at all, since a process that reached
it through the other name would lock another lock file.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading

from mission_control.core import PersistenceError

_Identity = tuple[int, int]

# The files this process has open for writing, by identity, with the path each was opened by.
_writing: dict[_Identity, str] = {}
_writing_lock = threading.Lock()


class WriterLock:
    """An exclusive, non-blocking lock held from :meth:`acquire` until :meth:`release`."""

    __slots__ = ("_fd", "_identity", "path")

    def __init__(self, path: str, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd
        self._identity: _Identity | None = None

    @classmethod
    def acquire(cls, database: str, lock_path: str) -> WriterLock:
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
            raise PersistenceError(
                f"{database} is already open for writing by another Mission Control adapter"
                f"{holder} (lock file {lock_path}); only one process may own a database. "
                "Stop the other one, or open this one with read_only=True to inspect it"
            ) from None
        except OSError as error:
            os.close(fd)
            raise PersistenceError(
                f"cannot lock {lock_path} for {database}: {error.strerror}"
            ) from error
        _record_holder(fd)
        return cls(lock_path, fd)

    def claim(self, database: str) -> None:
        """Key the lock on the identity of the file SQLite has just opened (and created when it
        was missing), before anything is written to it."""
        try:
            info = os.stat(database)
        except OSError as error:
            raise PersistenceError(
                f"cannot open the database {database}: {error.strerror}"
            ) from error
        identity = (info.st_dev, info.st_ino)
        with _writing_lock:
            other = _writing.get(identity)
            if other is not None:
                raise PersistenceError(
                    f"{database} is the file {other}, which this process already has open for "
                    "writing under that name; only one adapter may own a database. Close the "
                    "other one, or open this one with read_only=True to inspect it"
                )
            if info.st_nlink > 1:
                raise PersistenceError(
                    f"{database} has {info.st_nlink} names (hard links), so another process "
                    "could open it for writing under another name without seeing this one's "
                    "lock, and two writers corrupt it; remove the other links before writing "
                    "to it (read_only=True inspects it as it is)"
                )
            _writing[identity] = database
            self._identity = identity

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        identity, self._identity = self._identity, None
        if identity is not None:
            with _writing_lock:
                del _writing[identity]
        fd, self._fd = self._fd, None
        if fd is not None:
            # Closing the descriptor drops the lock.
            os.close(fd)

    def __del__(self) -> None:
        # An adapter dropped without aclose() must not keep its database locked until exit.
        with contextlib.suppress(OSError):
            self.release()


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
