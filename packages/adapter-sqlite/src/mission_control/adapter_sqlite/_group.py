"""Group commit: mission writes that arrive together share one transaction.

A transaction's ``COMMIT`` is most of what a small write costs. When several missions are being
moved at once (a runtime tick's workers, concurrent ``start`` calls), the first write to arrive
yields to the other tasks; the writes they reach in the meantime join it, and all of them are
stored by one ``BEGIN … COMMIT``. Each write still keeps its own all-or-nothing: it runs inside a
savepoint, so a write that fails (a revision conflict, a broken row) is undone alone and the
others are committed. No caller returns before its write is committed.

Another connection (an inspector, the ``sqlite3`` shell) may hold the database's write lock.
SQLite's own busy timeout would wait for it inside C, freezing the event loop; so SQLite is
told not to wait, and a write that finds the database busy retries from :func:`when_free`,
which sleeps on the event loop's clock between tries, until ``busy_timeout`` has passed.

Yielding costs trips through the event loop's scheduler, which a program that writes one mission at
a time should not pay. So writes go straight to their own transaction while they come from the task
that made the previous one; a write from another task is a sign of concurrency and yields to see
whether others join it (a probe). Once some did, grouping stays on until ``_SOLO_LIMIT`` groups in a
row had no one to join them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Final, TypeVar, cast

import anyio
import apsw

from mission_control.core import PersistenceError
from mission_control.core.lowlevel import current_task_key

from ._parking import PLAIN_PARKING, Parking, Spot, parking_for_this_loop
from ._sqlite import Connection, Cursor

T = TypeVar("T")

_SOLO_LIMIT: Final = 16
_FIRST_PAUSE: Final = 0.001
_LONGEST_PAUSE: Final = 0.05


async def when_free(
    attempt: Callable[[], T],
    patience: float,
    error: apsw.BusyError,
    sleep: Callable[[float], Awaitable[object]] = anyio.sleep,
) -> T:
    """Call ``attempt``, which raised ``error`` (another connection holds the lock and nothing of
    it was stored), again until it does not raise :class:`apsw.BusyError`, sleeping on the event
    loop's clock between tries with a growing pause (through ``sleep``), so other tasks run
    meanwhile. Once ``patience`` seconds have passed, raise the last :class:`apsw.BusyError`."""
    deadline = anyio.current_time() + patience
    pause = _FIRST_PAUSE
    while True:
        left = deadline - anyio.current_time()
        if left <= 0:
            raise error
        await sleep(min(pause, left))
        pause = min(pause * 2, _LONGEST_PAUSE)
        try:
            return attempt()
        except apsw.BusyError as busy:
            error = busy


class Transaction:
    """``with transaction:`` runs the block as one ``BEGIN IMMEDIATE … COMMIT``, rolled back
    when the block raises. Not reentrant; a class rather than a generator for speed."""

    __slots__ = ("_cursor", "_db", "begun")

    def __init__(self, db: Connection, cursor: Cursor) -> None:
        self._db = db
        self._cursor = cursor
        self.begun = 0
        """How many transactions were begun."""

    def __enter__(self) -> None:
        # IMMEDIATE takes the write lock up front: a busy database fails here, before any work
        # (and before it is counted: a retry on a busy database begins nothing).
        self._cursor.execute("BEGIN IMMEDIATE")
        self.begun += 1

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            try:
                self._cursor.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise
        else:
            self._rollback()

    def _rollback(self) -> None:
        # A failed COMMIT or statement may have ended the transaction already.
        if not self._db.get_autocommit():
            self._cursor.execute("ROLLBACK")


class _Write:
    """One caller's write in a group, and how it ended."""

    __slots__ = ("action", "error", "result", "run", "spot")

    def __init__(self, run: Callable[[], object], action: str, spot: Spot | None) -> None:
        self.run = run
        self.action = action
        self.spot = spot
        """Where a write that joined a group waits for its commit (the leader's has none)."""
        self.result: object = None
        self.error: BaseException | None = None

    def outcome(self) -> object:
        if self.error is not None:
            raise self.error
        return self.result


class GroupCommit:
    """Runs writes in transactions, grouping those that arrive together.

    ``failure(action, error)`` turns an apsw error into the :class:`PersistenceError` a caller
    sees; any other exception a write raises (a revision conflict) reaches its caller as is.
    """

    def __init__(
        self,
        db: Connection,
        cursor: Cursor,
        transaction: Transaction,
        failure: Callable[[str, apsw.Error], PersistenceError],
        busy_timeout: float,
    ) -> None:
        self._db = db
        # How writers wait: set by each group's leader, for the loop it runs on.
        self._parking: Parking = PLAIN_PARKING
        self._cursor = cursor
        self._transaction = transaction
        self._failure = failure
        self._busy_timeout = busy_timeout
        self._open: list[_Write] | None = None
        self._grouping = False
        self._solo_groups = 0
        # The id of the task that made the last write (an id, not the task: nothing is kept
        # alive; were an id reused, a probe would be skipped, nothing worse).
        self._last_writer = 0

    async def run(self, write: Callable[[], T], action: str) -> T:
        """Run ``write`` (apsw statements, no checkpoint) in a transaction and return its result;
        raise what it raised, or a :class:`PersistenceError` for an apsw error, with nothing of it
        stored."""
        group = self._open
        if group is not None:
            spot = self._parking.spot()
            joined = _Write(write, action, spot)
            group.append(joined)
            # The leader commits right after its yields, then wakes this task: the wait is
            # short, and it cannot be cancelled, because a cancelled caller must not leave
            # without knowing whether its write was stored.
            await spot.wait()
            return cast(T, joined.outcome())
        if not self._grouping:
            writer = current_task_key()
            if writer == self._last_writer:
                # The common case of one writer: its own transaction, nothing else.
                try:
                    return self._alone(write, action)
                except apsw.BusyError as error:
                    return await self._alone_when_free(write, action, error)
            self._last_writer = writer
        own = _Write(write, action, None)
        await self._lead(own)
        return cast(T, own.outcome())

    async def _lead(self, own: _Write) -> None:
        group = [own]
        self._open = group
        # Chosen per group: a store may serve one loop after another (trio, then asyncio).
        parking = self._parking = parking_for_this_loop()
        # A cancellation of this task while others wait on it is raised once they are woken.
        held_back: list[BaseException] = []
        ran = False
        try:
            try:
                # Two trips through the scheduler: the first lets the tasks that are ready now
                # reach their writes, the second those that became ready meanwhile (a previous
                # group's writers, woken by its commit).
                for _ in range(2):
                    if (cancelled := await parking.yield_shielded()) is not None:
                        held_back.append(cancelled)
            finally:
                self._open = None
            commit = self._commit_one if len(group) == 1 else self._commit_group
            try:
                commit(group)
            except apsw.BusyError as error:

                async def sleep(seconds: float) -> None:
                    if (cancelled := await parking.sleep_shielded(seconds)) is not None:
                        held_back.append(cancelled)

                try:
                    # Alone, the leader may give up on a cancellation; with writers waiting on
                    # it, it tries on until the busy timeout.
                    await when_free(
                        lambda: commit(group),
                        self._busy_timeout,
                        error,
                        sleep if len(group) > 1 else anyio.sleep,
                    )
                except apsw.BusyError as busy:
                    for write in group:
                        write.error = self._mapped(write, busy)
            ran = True
        finally:
            # Whatever happens to this task (even a KeyboardInterrupt at its checkpoint), the
            # writers waiting on it are woken: they cannot be cancelled, so nobody else would.
            for joined in group[1:]:
                if not ran:
                    joined.error = PersistenceError(
                        f"{joined.action} failed: the task committing its group was interrupted "
                        "before the group was written; nothing of it was stored"
                    )
                assert joined.spot is not None
                joined.spot.wake()
        if len(group) > 1:
            self._grouping = True
            self._solo_groups = 0
        elif self._grouping:
            self._solo_groups += 1
            if self._solo_groups >= _SOLO_LIMIT:
                self._grouping = False
        if held_back:
            raise held_back[0]

    async def run_alone(self, write: Callable[[], T], action: str) -> T:
        """Run ``write`` in a transaction of its own, as :meth:`run` does."""
        try:
            return self._alone(write, action)
        except apsw.BusyError as error:
            return await self._alone_when_free(write, action, error)

    def _alone(self, write: Callable[[], T], action: str) -> T:
        """Run ``write`` in a transaction; a busy database raises :class:`apsw.BusyError`, with
        nothing stored."""
        try:
            with self._transaction:
                return write()
        except apsw.BusyError:
            raise
        except apsw.Error as error:
            raise self._failure(action, error) from error

    async def _alone_when_free(
        self, write: Callable[[], T], action: str, error: apsw.BusyError
    ) -> T:
        try:
            return await when_free(lambda: self._alone(write, action), self._busy_timeout, error)
        except apsw.BusyError as busy:
            raise self._failure(action, busy) from busy

    def _commit_one(self, group: list[_Write]) -> None:
        write = group[0]
        try:
            write.result = self._alone(write.run, write.action)
        except apsw.BusyError:
            raise
        except Exception as error:
            write.error = error

    def _commit_group(self, group: list[_Write]) -> None:
        """Commit the group's writes in one transaction; a busy database raises
        :class:`apsw.BusyError`, with nothing stored."""
        cursor = self._cursor
        try:
            with self._transaction:
                for write in group:
                    cursor.execute("SAVEPOINT mission_write")
                    try:
                        write.result = write.run()
                    except Exception as error:
                        if self._db.get_autocommit():
                            # SQLite ended the whole transaction (a full disk, an I/O error).
                            raise
                        cursor.execute("ROLLBACK TO mission_write")
                        write.error = self._mapped(write, error)
                    cursor.execute("RELEASE mission_write")
        except BaseException as error:
            # Nothing of the group was stored: each write without an error of its own fails
            # with the group's, unless the database was busy and the group is tried again.
            if isinstance(error, apsw.BusyError):
                for write in group:
                    write.error = None
                raise
            for write in group:
                if write.error is None:
                    write.error = (
                        self._mapped(write, error)
                        if isinstance(error, apsw.Error)
                        else PersistenceError(
                            f"{write.action} failed: the transaction it shared was not "
                            f"committed ({type(error).__name__}: {error})"
                        )
                    )
            if not isinstance(error, Exception):
                raise

    def _mapped(self, write: _Write, error: Exception) -> Exception:
        """What ``write``'s caller sees for ``error``: an apsw error as PersistenceError, any
        other as it is."""
        if not isinstance(error, apsw.Error):
            return error
        mapped = self._failure(write.action, error)
        mapped.__cause__ = error
        return mapped
