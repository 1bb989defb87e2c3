from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mission_control.adapter_sqlite import (
    SQLitePersistenceAdapter,
    create_sqlite_persistence_adapter,
)
from mission_control.testing import AdapterConformance

pytestmark = pytest.mark.anyio


class TestSQLiteConformance(AdapterConformance):
    """The shared adapter contract, run against a SQLite file."""

    @pytest.fixture
    async def persistence(self, tmp_path: Path) -> AsyncIterator[SQLitePersistenceAdapter]:
        adapter = create_sqlite_persistence_adapter(tmp_path / "conformance.sqlite")
        yield adapter
        await adapter.aclose()

    @pytest.fixture
    async def submitter(
        self, persistence: SQLitePersistenceAdapter, tmp_path: Path
    ) -> AsyncIterator[SQLitePersistenceAdapter]:
        adapter = create_sqlite_persistence_adapter(
            tmp_path / "conformance.sqlite", role="submitter"
        )
        yield adapter
        await adapter.aclose()
