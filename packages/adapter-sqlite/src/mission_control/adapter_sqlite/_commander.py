"""``SQLiteCommander``: the core commander on a SQLite database, opened in one call."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from mission_control.core import (
    DEFAULT_MAX_RECOVERY_ATTEMPTS,
    Clock,
    Commander,
    MissionDefinition,
    SortableIds,
    SystemClock,
    VersionCheck,
)

from ._adapter import Role, SQLitePersistenceAdapter, Synchronous

if TYPE_CHECKING:
    import cattrs

    from mission_control.core.lowlevel import MissionObserver


class SQLiteCommander(Commander):
    """A :class:`mission_control.core.Commander` whose missions live in the SQLite file ``path``.

    The same commander :func:`mission_control.core.create_commander` makes, with a
    :class:`SQLitePersistenceAdapter` it opens itself and closes in :meth:`aclose` (or at the end
    of ``async with``). ``synchronous``, ``busy_timeout``, ``read_only`` and ``role`` are those of
    :func:`create_sqlite_persistence_adapter`; ``max_recovery_attempts``, ``converter``,
    ``version_check`` and ``observer`` are those of :func:`mission_control.core.create_commander`.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        definitions: Iterable[MissionDefinition[Any, Any, Any]],
        *,
        clock: Clock | None = None,
        ids: Callable[[], str] | None = None,
        converter: cattrs.Converter | None = None,
        synchronous: Synchronous = "NORMAL",
        busy_timeout: float = 5.0,
        read_only: bool = False,
        role: Role = "auto",
        max_recovery_attempts: int = DEFAULT_MAX_RECOVERY_ATTEMPTS,
        version_check: VersionCheck = "raise",
        observer: MissionObserver | None = None,
    ) -> None:
        adapter = SQLitePersistenceAdapter(
            path,
            synchronous=synchronous,
            busy_timeout=busy_timeout,
            read_only=read_only,
            role=role,
        )
        try:
            super().__init__(
                definitions,
                adapter,
                clock if clock is not None else SystemClock(),
                ids if ids is not None else SortableIds(),
                max_recovery_attempts=max_recovery_attempts,
                converter=converter,
                version_check=version_check,
                observer=observer,
            )
        except BaseException:
            # Bad definitions must not leave the database locked.
            adapter.close()
            raise
        self._sqlite = adapter

    @property
    def persistence(self) -> SQLitePersistenceAdapter:
        """The adapter this commander opened."""
        return self._sqlite

    def __repr__(self) -> str:
        return f"<SQLiteCommander {self._sqlite.path!r}>"
