"""The part of apsw this package uses, typed.

apsw's stubs import ``collections.abc.Buffer``, which exists from Python 3.12 only, so on 3.11
a type checker sees an unknown type in every apsw signature. The protocols below name the calls
this package makes; :func:`connect` is the one place an apsw object is seen through them.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Iterable, Sequence
from typing import Any, Protocol, Self, cast

import apsw

Row = tuple[Any, ...]


class Cursor(Protocol):
    def execute(self, statements: str, bindings: Sequence[Any] | None = None, /) -> Self: ...

    def executemany(
        self, statements: str, sequenceofbindings: Iterable[Sequence[Any]], /
    ) -> Self: ...

    def fetchall(self) -> list[Row]: ...


class Connection(Protocol):
    def cursor(self) -> Cursor: ...

    def execute(self, statements: str, bindings: Sequence[Any] | None = None, /) -> Cursor: ...

    def changes(self) -> int: ...

    def get_autocommit(self) -> bool: ...

    def last_insert_rowid(self) -> int: ...

    def pragma(self, name: str, value: int | str | None = None, /) -> Any: ...

    def readonly(self, name: str, /) -> bool: ...

    def set_busy_timeout(self, milliseconds: int, /) -> None: ...

    def close(self) -> None: ...


def connect(path: str, *, read_only: bool, immutable: bool = False) -> Connection:
    """Open ``path``: read-only, or read-write and created when missing.

    ``immutable`` (read-only only) tells SQLite the file cannot change, so it reads it without
    locks, ``-wal`` or ``-shm`` files: the only way to read a WAL database whose directory cannot
    be written, and right only while nobody writes the file and its log is empty.
    """
    if immutable:
        uri = pathlib.Path(os.path.abspath(path)).as_uri() + "?mode=ro&immutable=1"
        flags = apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI
        return cast(Connection, apsw.Connection(uri, flags=flags))
    if read_only:
        flags = apsw.SQLITE_OPEN_READONLY
    else:
        flags = apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_CREATE
    return cast(Connection, apsw.Connection(path, flags=flags))
