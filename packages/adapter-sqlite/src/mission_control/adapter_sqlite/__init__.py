"""Mission Control on SQLite: a durable persistence adapter (apsw, WAL) and ``SQLiteCommander``.

from mission_control.adapter_sqlite import SQLiteCommander

async with SQLiteCommander("missions.sqlite", [approval]) as commander:
    handle = await commander.start(approval, {"user": "ada"})
"""

from ._adapter import (
    READ_ONLY_REREAD_INTERVAL,
    SUBMITTER_REREAD_INTERVAL,
    TAKEOVER_INTERVAL,
    WAKE_RECHECK,
    Role,
    SQLitePersistenceAdapter,
    Synchronous,
    create_sqlite_persistence_adapter,
)
from ._commander import SQLiteCommander
from ._lock import owner_process
from ._schema import SCHEMA_VERSION

__all__ = [
    "READ_ONLY_REREAD_INTERVAL",
    "SCHEMA_VERSION",
    "SUBMITTER_REREAD_INTERVAL",
    "TAKEOVER_INTERVAL",
    "WAKE_RECHECK",
    "Role",
    "SQLiteCommander",
    "SQLitePersistenceAdapter",
    "Synchronous",
    "create_sqlite_persistence_adapter",
    "owner_process",
]
