"""The single-writer rule: one adapter at a time may open a database for writing.

The lock is an exclusive ``flock`` on a sidecar file ``<database>.lock``, taken without
waiting. The kernel drops it when its holder closes it or dies (even by SIGKILL), so a crash
never leaves a stale lock behind, and two adapters in one process exclude each other too.
The file is never deleted: unlinking it would let a newcomer lock a fresh file while the
holder still locks the old one.
"""

from __future__ import annotations

import contextlib
import os
import sys

from mission_control.core import PersistenceError


class WriterLock:
    """An exclusive, non-blocking lock held from :meth:`acquire` until :meth:`release`."""

    __slots__ = ("_fd", "path")

    def __init__(self, path: str, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

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

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
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
