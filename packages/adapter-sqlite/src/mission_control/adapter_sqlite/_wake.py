"""The owner's wake-up socket: a Unix datagram socket beside the database, which processes that
are not the owner poke after each write they commit, so that the owner looks at the store at once
instead of polling it.

A datagram carries nothing: the store is the source of truth, and a wake-up that is lost (no
owner, a full queue, a platform without Unix sockets) only delays the owner until its next
recheck. So the sender ignores every error, and the receiver drains the whole queue on each wake:
the owner reads the store after the drain, so a write committed after that read sends a datagram
that wakes the next wait.

- The socket file is ``<realpath>.wake``, bound by the owner, which holds the ownership lock: a
  socket file already there was left by an owner that died (a socket file outlives its process),
  so it is replaced.
- Senders hold an unbound socket and address each datagram by path (no ``connect``), so a new
  owner's socket is found without reconnecting.
- A Unix socket address holds 107 bytes of path (``sun_path``). A longer path is reached on Linux
  through ``/proc/self/fd/<fd>/<name>``, ``<fd>`` being a descriptor of the directory, open for
  the ``bind`` or ``sendto``. A name too long even for that (a very long database file name) is
  replaced by a short one made from a hash of the database's name, by :func:`wake_path`, which
  both sides use.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import socket
import stat
import sys
from collections.abc import Generator
from typing import Final

import anyio

_SUFFIX: Final = ".wake"
_DIRECT: Final = 107 if sys.platform == "linux" else 103
"""The longest path (in bytes) a Unix socket address holds: ``sun_path`` less its NUL."""
_PROC_FD: Final = "/proc/self/fd/"
_MAX_NAME: Final = _DIRECT - len(_PROC_FD) - len(str(2**31)) - len("/")
"""The longest socket file name reachable through ``/proc/self/fd/<fd>/`` whatever ``<fd>`` is."""
_DRAIN_LIMIT: Final = 4096
"""The most datagrams one wait reads (more than a socket queues by default, 512 on Linux): a
stream of senders cannot hold it forever, and what is left makes the next wait return at once."""
_HAS_UNIX: Final = hasattr(socket, "AF_UNIX")
_NOTHING: Final = b"\x00"

_Identity = tuple[int, int]


def wake_path(database_realpath: str) -> str:
    """The path of the owner's wake-up socket for the database at ``database_realpath``:
    ``<realpath>.wake``, or a short name in the same directory when the database's name is too
    long for a socket address."""
    directory, name = os.path.split(database_realpath)
    wake = name + _SUFFIX
    if len(os.fsencode(wake)) > _MAX_NAME:
        digest = hashlib.sha256(os.fsencode(name)).hexdigest()[:32]
        wake = f"mission-control-{digest}{_SUFFIX}"
    return os.path.join(directory, wake)


@contextlib.contextmanager
def _address(path: str) -> Generator[str]:
    """The socket address that reaches the file at ``path``, valid inside the ``with`` block:
    ``path`` itself when it fits, else (on Linux) its name through a descriptor of its
    directory."""
    if sys.platform != "linux" or len(os.fsencode(path)) <= _DIRECT:
        # Elsewhere a path that is too long makes bind() and sendto() raise OSError: no wake-ups,
        # only rechecks.
        yield path
        return
    directory, name = os.path.split(path)
    fd = os.open(directory or ".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield f"{_PROC_FD}{fd}/{name}"
    finally:
        os.close(fd)


def _identity(info: os.stat_result) -> _Identity:
    return (info.st_dev, info.st_ino)


class WakeSender:
    """Wakes the owner of a database: held by an adapter that is not its owner."""

    __slots__ = ("_path", "_pid", "_socket")

    def __init__(self, path: str) -> None:
        self._path = path
        self._pid = os.getpid()
        self._socket: socket.socket | None = None

    def send(self) -> bool:
        """Send one datagram to the owner's socket; return whether an owner's socket took it (or
        has a full queue, so wake-ups are pending anyway). Never raises ``OSError``: a wake-up
        that does not arrive is made up for by the owner's rechecks."""
        if not _HAS_UNIX:
            return False
        try:
            sender = self._sender()
            with _address(self._path) as address:
                sender.sendto(_NOTHING, address)
        except BlockingIOError:
            return True  # the owner's queue is full: it has wake-ups to read already
        except OSError as error:
            # ENOENT, ECONNREFUSED (a dead owner's file): nobody listens. ENOBUFS is how macOS
            # says that the queue is full.
            return error.errno == errno.ENOBUFS
        return True

    def _sender(self) -> socket.socket:
        if self._pid != os.getpid():
            # A forked child: the socket is shared with the parent; the child makes its own.
            self._pid = os.getpid()
            self.close()
        if self._socket is None:
            sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sender.setblocking(False)
            self._socket = sender
        return self._socket

    def close(self) -> None:
        sender, self._socket = self._socket, None
        if sender is not None:
            sender.close()

    def __del__(self) -> None:
        if getattr(self, "_socket", None) is not None:
            self.close()


class WakeReceiver:
    """The owner's end: the socket bound at the wake-up path, from :meth:`bind` until
    :meth:`close`."""

    __slots__ = ("_buffer", "_identity", "_path", "_pid", "_socket", "_waiting")

    def __init__(self, path: str, receiver: socket.socket, identity: _Identity) -> None:
        self._path = path
        self._socket: socket.socket | None = receiver
        self._identity = identity
        self._pid = os.getpid()
        self._waiting = False
        self._buffer = bytearray(16)

    @classmethod
    def bind(cls, path: str) -> WakeReceiver:
        """Bind the socket at ``path``, replacing a socket file left there by an owner that died.
        Call it holding the ownership lock (so no live owner is bound there). Raises ``OSError``
        when it cannot be bound (no Unix sockets on this platform, a path too long, a file that
        is not a socket in the way): the owner then relies on its rechecks."""
        if not _HAS_UNIX:
            raise OSError(errno.EAFNOSUPPORT, "Unix sockets are not available", path)
        _remove_stale(path)
        receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            receiver.setblocking(False)
            with _address(path) as address:
                receiver.bind(address)
            # Recorded while the socket is bound: its inode cannot be reused before it closes.
            identity = _identity(os.stat(path))
        except BaseException:
            receiver.close()
            raise
        return cls(path, receiver, identity)

    async def wait(self) -> None:
        """Wait until at least one datagram is queued, then read every queued one (up to
        a bound) and return. Raises ``anyio.ClosedResourceError`` once the receiver is closed
        (also while waiting), and in a process forked from its owner (whose wake-ups these are)."""
        receiver = self._open()
        self._waiting = True
        try:
            await anyio.wait_readable(receiver)
        finally:
            self._waiting = False
        if self._socket is not receiver:
            raise _closed()  # closed while this task was about to resume
        view = memoryview(self._buffer)
        for _ in range(_DRAIN_LIMIT):
            try:
                receiver.recv_into(view)
            except BlockingIOError:
                return

    def _open(self) -> socket.socket:
        if self._socket is None or self._pid != os.getpid():
            raise _closed()
        return self._socket

    def close(self) -> None:
        """Close the socket, and remove its file unless another owner has bound its own there
        since. A waiting :meth:`wait` raises ``anyio.ClosedResourceError``; call it from the
        loop the wait runs on."""
        receiver, self._socket = self._socket, None
        if receiver is None:
            return
        if self._pid == os.getpid():
            if self._waiting:
                anyio.notify_closing(receiver)
            # Compared while this socket is still bound, so the inode cannot be another's.
            with contextlib.suppress(OSError):
                if _identity(os.lstat(self._path)) == self._identity:
                    os.unlink(self._path)
        # In a forked child only the child's copy of the descriptor closes: the file is the
        # parent's, which still owns the database.
        receiver.close()

    def __del__(self) -> None:
        if getattr(self, "_socket", None) is not None:
            self.close()


def _remove_stale(path: str) -> None:
    """Remove the socket file an owner that died left at ``path``; refuse any other file."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise FileExistsError(
            errno.EEXIST, "not a socket, left in place where the wake-up socket goes", path
        )
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _closed() -> anyio.ClosedResourceError:
    return anyio.ClosedResourceError("the wake-up socket is closed")
