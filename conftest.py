"""The backends every anyio-marked test runs on: trio and asyncio, each in virtual time (a new
clock per test), or in real time for a test marked ``real_time``.

It lives here, at the root, because a conftest fixture reliably replaces AnyIO's own
``anyio_backend``, and every package's tests share it.
"""

from __future__ import annotations

from typing import Any

import pytest

from mission_control.testing import VIRTUAL_TIME_BACKENDS, virtual_time_backend


@pytest.fixture(params=VIRTUAL_TIME_BACKENDS)
def anyio_backend(request: pytest.FixtureRequest) -> str | tuple[str, dict[str, Any]]:
    if request.node.get_closest_marker("real_time") is not None:
        return str(request.param)
    return virtual_time_backend(request.param)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Under pytest-xdist (`-n`, a worker process has `workerinput`) the slow tests go first,
    # in their order: a test of a minute or two left to the end of the run (the benchmark
    # script's, the last directory) would keep one worker busy while the others sit idle.
    if hasattr(config, "workerinput"):
        items.sort(key=lambda item: item.get_closest_marker("slow") is None)
