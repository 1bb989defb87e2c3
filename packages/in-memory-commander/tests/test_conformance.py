from collections.abc import AsyncIterator

import pytest

from mission_control.in_memory_commander import InMemoryPersistenceAdapter
from mission_control.testing import AdapterConformance

pytestmark = pytest.mark.anyio


class TestInMemoryConformance(AdapterConformance):
    """The in-memory adapter keeps the whole persistence adapter contract."""

    @pytest.fixture
    async def persistence(self) -> AsyncIterator[InMemoryPersistenceAdapter]:
        adapter = InMemoryPersistenceAdapter()
        yield adapter
        await adapter.aclose()
