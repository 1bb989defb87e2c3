"""The backends every anyio-marked test runs on: trio and asyncio, each in virtual time (a new
clock per test).

It lives here, at the root, because a conftest fixture reliably replaces AnyIO's own
``anyio_backend``, and every package's tests share it.
"""

from __future__ import annotations

from typing import Any

import pytest

from mission_control.testing import VIRTUAL_TIME_BACKENDS, virtual_time_backend


@pytest.fixture(params=VIRTUAL_TIME_BACKENDS)
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    return virtual_time_backend(request.param)
