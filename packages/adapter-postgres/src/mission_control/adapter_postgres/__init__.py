"""Mission Control on PostgreSQL: a durable persistence adapter on psycopg 3, for trio and
asyncio.

from mission_control.adapter_postgres import open_postgres_persistence_adapter

adapter = await open_postgres_persistence_adapter("postgresql://app@db/missions")
async with create_commander([approval], persistence=adapter) as commander:
    handle = await commander.start(approval, {"user": "ada"})
"""

from ._adapter import (
    DEFAULT_SCHEMA,
    LISTEN_RETRY,
    REREAD_INTERVAL,
    WAKE_RECHECK,
    PostgresPersistenceAdapter,
    Role,
    open_postgres_persistence_adapter,
)
from ._local import LocalServer, NoLocalServerError, start_local_server
from ._schema import SCHEMA_VERSION
from ._shards import REBALANCE_INTERVAL, SHARDS, ShardLostError, shard_of

__all__ = [
    "DEFAULT_SCHEMA",
    "LISTEN_RETRY",
    "LocalServer",
    "NoLocalServerError",
    "REBALANCE_INTERVAL",
    "REREAD_INTERVAL",
    "SCHEMA_VERSION",
    "SHARDS",
    "WAKE_RECHECK",
    "PostgresPersistenceAdapter",
    "Role",
    "ShardLostError",
    "open_postgres_persistence_adapter",
    "shard_of",
    "start_local_server",
]
