"""Opening the database the way each command needs it, and running the command's coroutine.

Reads go through a read-only adapter: it takes no lock, so an application owning the database
goes on undisturbed. Writes go through a submitter commander: it never owns the database, it
stores the work for the owner to apply."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import TypeVar

import trio

from mission_control.adapter_sqlite import (
    SQLiteCommander,
    SQLitePersistenceAdapter,
    create_sqlite_persistence_adapter,
)
from mission_control.core import MissionControlError

from ._app import Definitions
from ._errors import CommandError, bad_input, from_library

_T = TypeVar("_T")


def run(function: Callable[[], Awaitable[_T]]) -> _T:
    """Run a command's coroutine; the library's errors become the command's."""

    async def main() -> _T:
        try:
            return await function()
        except MissionControlError as error:
            raise from_library(error) from error

    return trio.run(main)


def _existing(path: str) -> str:
    if not os.path.exists(path):
        raise bad_input(
            f"there is no database at {path}",
            hint="give --db the path of your application's SQLite file (or set MISSION_CONTROL_DB)",
        )
    if os.path.isdir(path):
        raise bad_input(f"{path} is a directory, not a SQLite database")
    return path


@contextlib.asynccontextmanager
async def reading(path: str) -> AsyncGenerator[SQLitePersistenceAdapter]:
    """The database, read-only."""
    try:
        store = create_sqlite_persistence_adapter(_existing(path), read_only=True)
    except MissionControlError as error:
        raise CommandError(f"cannot read {path}: {error}") from error
    try:
        yield store
    finally:
        await store.aclose()


@contextlib.asynccontextmanager
async def reading_commander(path: str) -> AsyncGenerator[SQLiteCommander]:
    """A read-only commander of the database (for its submissions)."""
    try:
        commander = SQLiteCommander(_existing(path), [], read_only=True)
    except MissionControlError as error:
        raise CommandError(f"cannot read {path}: {error}") from error
    async with commander:
        yield commander


@contextlib.asynccontextmanager
async def submitting(path: str, definitions: Definitions) -> AsyncGenerator[SQLiteCommander]:
    """A commander that hands its writes to the process owning the database."""
    try:
        commander = SQLiteCommander(_existing(path), definitions, role="submitter")
    except MissionControlError as error:
        raise CommandError(f"cannot submit to {path}: {error}") from error
    async with commander:
        yield commander
