from collections.abc import AsyncIterator

import pytest

from mission_control.adapter_postgres import (
    PostgresPersistenceAdapter,
    open_postgres_persistence_adapter,
)
from mission_control.testing import AdapterConformance

pytestmark = pytest.mark.anyio


class TestPostgresConformance(AdapterConformance):
    """The shared adapter contract, run against a real PostgreSQL server."""

    @pytest.fixture
    async def persistence(
        self, postgres_url: str, postgres_schema: str
    ) -> AsyncIterator[PostgresPersistenceAdapter]:
        adapter = await open_postgres_persistence_adapter(postgres_url, schema=postgres_schema)
        yield adapter
        await adapter.aclose()
