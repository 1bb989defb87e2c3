from collections.abc import AsyncIterator

import pytest

from mission_control.adapter_postgres import (
    SHARDS,
    PostgresPersistenceAdapter,
    open_postgres_persistence_adapter,
)
from mission_control.testing import AdapterConformance, PersistenceProtocolConformance

pytestmark = pytest.mark.anyio


class TestPostgresConformance(AdapterConformance):
    """The shared adapter contract, run against a real PostgreSQL server, on a sharded adapter
    (alone, it owns every shard: each write goes through the ownership check)."""

    @pytest.fixture
    async def persistence(
        self, postgres_url: str, postgres_schema: str
    ) -> AsyncIterator[PostgresPersistenceAdapter]:
        adapter = await open_postgres_persistence_adapter(
            postgres_url, schema=postgres_schema, sharded=True
        )
        assert len(adapter.owned_shards) == SHARDS
        yield adapter
        await adapter.aclose()

    @pytest.fixture
    async def submitter(
        self, persistence: PostgresPersistenceAdapter, postgres_url: str, postgres_schema: str
    ) -> AsyncIterator[PostgresPersistenceAdapter]:
        adapter = await open_postgres_persistence_adapter(
            postgres_url, schema=postgres_schema, role="submitter"
        )
        yield adapter
        await adapter.aclose()


class TestPostgresUnshardedProtocol(PersistenceProtocolConformance):
    """The persistence protocol battery on an adapter opened without shards (one runtime per
    schema), whose queries and writes take the other paths."""

    @pytest.fixture
    async def persistence(
        self, postgres_url: str, postgres_schema: str
    ) -> AsyncIterator[PostgresPersistenceAdapter]:
        adapter = await open_postgres_persistence_adapter(postgres_url, schema=postgres_schema)
        yield adapter
        await adapter.aclose()
