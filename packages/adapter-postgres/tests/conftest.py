"""A real PostgreSQL server for the session, and a schema of its own for each test.

The server is, in order of preference: the one ``MISSION_CONTROL_POSTGRES_URL`` names; one
started by ``pgserver`` (PyPI, Python 3.11 and 3.12); Debian's PostgreSQL from
``/usr/lib/postgresql/<version>/bin`` (run as the ``postgres`` user when the tests run as root,
since its initdb and pg_ctl refuse root). When none can be started the tests are skipped with the
reason, except in CI (``MISSION_CONTROL_REQUIRE_POSTGRES=1``, set by ``.ci/run``), where that is
a failure. One server serves the whole session: a test costs a schema, not a server.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from mission_control.testing import VIRTUAL_TIME_BACKENDS, virtual_time_backend

REQUIRED = os.environ.get("MISSION_CONTROL_REQUIRE_POSTGRES") == "1"


def _unavailable(reason: str) -> None:
    if REQUIRED:
        pytest.fail(f"MISSION_CONTROL_REQUIRE_POSTGRES=1 and {reason}")
    pytest.skip(reason)


def _server_dir() -> Path:
    # Outside pytest's own temporary directory, whose 0700 parent the server's user (postgres,
    # or pgserver's own when run as root) cannot cross.
    base = Path(tempfile.mkdtemp(prefix="mission-control-pg-", dir="/tmp"))
    base.chmod(0o755)
    return base


def _pgserver() -> tuple[str, Callable[[], None]] | None:
    try:
        with warnings.catch_warnings():
            # platformdirs warns about XDG_RUNTIME_DIR on import, which says nothing about us.
            warnings.simplefilter("ignore")
            import pgserver  # pyright: ignore[reportMissingTypeStubs]
    except ImportError:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        base = _server_dir()
        server = pgserver.get_server(base / "data", cleanup_mode="stop")

    def stop() -> None:
        server.cleanup()
        shutil.rmtree(base, ignore_errors=True)

    return str(server.get_uri()), stop


def _debian() -> tuple[str, Callable[[], None]] | None:
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
        key=lambda path: int(Path(path).parent.parent.name),
    )
    if not found:
        return None
    bin_dir = Path(found[-1]).parent
    as_root = os.geteuid() == 0
    if as_root and shutil.which("runuser") is None:
        return None
    base = _server_dir()
    data, run = base / "data", base / "run"
    data.mkdir()
    run.mkdir()
    prefix: list[str] = []
    if as_root:
        shutil.chown(data, "postgres")
        shutil.chown(run, "postgres")
        prefix = ["runuser", "-u", "postgres", "--"]
    subprocess.run(
        [
            *prefix,
            str(bin_dir / "initdb"),
            "-D",
            str(data),
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--no-sync",
        ],
        check=True,
        capture_output=True,
    )
    options = f"-c listen_addresses='' -c unix_socket_directories={run} -c fsync=off"
    subprocess.run(
        [
            *prefix,
            str(bin_dir / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(run / "log"),
            "-w",
            "-o",
            options,
            "start",
        ],
        check=True,
        capture_output=True,
    )

    def stop() -> None:
        subprocess.run(
            [*prefix, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            check=False,
            capture_output=True,
        )
        shutil.rmtree(base, ignore_errors=True)

    return f"postgresql://postgres@/postgres?host={run}", stop


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """The URL of a PostgreSQL server that runs for the whole test session."""
    given = os.environ.get("MISSION_CONTROL_POSTGRES_URL")
    if given:
        yield given
        return
    try:
        started = _pgserver() or _debian()
    except (OSError, subprocess.CalledProcessError) as error:
        detail = getattr(error, "stderr", b"") or b""
        _unavailable(f"no PostgreSQL server could be started: {error} {detail.decode()[-500:]}")
        raise AssertionError("unreachable") from error
    if started is None:
        _unavailable(
            "no PostgreSQL server to test on: pgserver is not installed (Python 3.13) and "
            "there is no /usr/lib/postgresql/*/bin/pg_ctl; set MISSION_CONTROL_POSTGRES_URL"
        )
        raise AssertionError("unreachable")
    url, stop = started
    try:
        yield url
    finally:
        stop()


@pytest.fixture
def postgres_schema(postgres_url: str) -> Iterator[str]:
    """A schema name of the test's own, dropped after it."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    yield name
    with psycopg.connect(postgres_url, autocommit=True) as db:
        db.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


Raw = Callable[[str], contextlib.AbstractContextManager[psycopg.Connection[tuple[Any, ...]]]]


@pytest.fixture
def raw(postgres_url: str) -> Raw:
    """``with raw(schema) as db``: a plain psycopg connection to ``schema``, to look at or
    tamper with what is stored."""

    @contextlib.contextmanager
    def connect(schema: str) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
        with psycopg.connect(postgres_url, autocommit=True) as db:
            db.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
            yield db

    return connect


AUTOJUMP_THRESHOLD = 0.25
"""Real seconds without anything to run before virtual time jumps: the adapter's queries wait on
the server in a worker thread, and a jump meanwhile would fire a test's watchdog deadline."""


@pytest.fixture(params=VIRTUAL_TIME_BACKENDS)
def anyio_backend(request: pytest.FixtureRequest) -> str | tuple[str, dict[str, Any]]:
    if request.node.get_closest_marker("real_time") is not None:
        return str(request.param)
    return virtual_time_backend(request.param, autojump_threshold=AUTOJUMP_THRESHOLD)
