"""A real PostgreSQL server for the session, and a schema of its own for each test.

The server is the one ``MISSION_CONTROL_POSTGRES_URL`` names, else one ``start_local_server``
starts: ``pgserver``'s (PyPI, Python 3.11 and 3.12), else Debian's PostgreSQL from
``/usr/lib/postgresql/<version>/bin`` (run as the ``postgres`` user when the tests run as root,
since its initdb and pg_ctl refuse root). When none can be started the tests are skipped with the
reason, except in CI (``MISSION_CONTROL_REQUIRE_POSTGRES=1``, set by ``.ci/run``), where that is
a failure. One server serves the whole session: a test costs a schema, not a server. Under
pytest-xdist (``-n``) each worker starts a server of its own. When the URL is given, each worker
of each run gets a database of its own on that server, named by the run (the role needs
CREATEDB).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import IO, Any

import psycopg
import pytest
from psycopg import conninfo, sql

from mission_control.adapter_postgres import NoLocalServerError, start_local_server
from mission_control.core import Every, MissedFires, Schedule
from mission_control.testing import VIRTUAL_TIME_BACKENDS, virtual_time_backend

REQUIRED = os.environ.get("MISSION_CONTROL_REQUIRE_POSTGRES") == "1"


def _unavailable(reason: str) -> None:
    if REQUIRED:
        pytest.fail(f"MISSION_CONTROL_REQUIRE_POSTGRES=1 and {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """The URL of a PostgreSQL server that runs for the whole test session."""
    given = os.environ.get("MISSION_CONTROL_POSTGRES_URL")
    if given:
        # The server given may serve other runs at the same time (and, under pytest-xdist, this
        # run's other workers): each gets a database of its own, since some tests look at the
        # whole database's sessions and locks. Named by the run (xdist's id, shared by its
        # workers, else a new one) and the worker, so that no run drops another's.
        run = os.environ.get("PYTEST_XDIST_TESTRUNUID") or uuid.uuid4().hex
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        yield from _database_of_its_own(given, f"mission_control_test_{run}_{worker}")
        return
    try:
        server = start_local_server()
    except NoLocalServerError as error:
        _unavailable(
            f"no PostgreSQL server to test on: {error}; or set MISSION_CONTROL_POSTGRES_URL"
        )
        raise AssertionError("unreachable") from error
    try:
        yield server.url
    finally:
        server.stop()


def _database_of_its_own(url: str, name: str) -> Iterator[str]:
    """A new database ``name`` on the server of ``url``, yielded as the URL of ``url`` with
    that database, dropped after (only it: a run killed before leaves its own behind)."""
    if len(name.encode()) > 63:  # PostgreSQL would cut it, and two runs could share the rest
        raise AssertionError(f"the test database's name {name!r} is longer than 63 bytes")
    drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
    with psycopg.connect(url, autocommit=True) as db:
        db.execute(
            sql.SQL("CREATE DATABASE {} ENCODING 'UTF8' TEMPLATE template0").format(
                sql.Identifier(name)
            )
        )
    if url.startswith(("postgresql://", "postgres://")):
        parts = urllib.parse.urlsplit(url)
        yield urllib.parse.urlunsplit(parts._replace(path=f"/{name}"))
    else:
        yield conninfo.make_conninfo(url, dbname=name)
    with psycopg.connect(url, autocommit=True) as db:
        db.execute(drop)


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


ReadLine = Callable[[IO[str], str, float], None]


@pytest.fixture
def read_line() -> ReadLine:
    """``read_line(stream, expected, deadline)``: read a child's output until the line
    ``expected``, failing at the deadline (``time.monotonic()``) or when the child ends first
    (the child's own deadline bounds each read)."""

    def read(stream: IO[str], expected: str, deadline: float) -> None:
        while time.monotonic() < deadline:
            line = stream.readline()
            if not line:
                raise AssertionError(f"the child ended before printing {expected}")
            if line.strip() == expected:
                return
        raise AssertionError(f"no {expected} before the deadline")

    return read


@pytest.fixture
def children() -> Iterator[list[subprocess.Popen[str]]]:
    """The child processes a test starts, ended after it (SIGTERM, then SIGKILL after 30 s)."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for child in started:
        if child.poll() is None:
            child.terminate()
    for child in started:
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        if child.stdout is not None:
            child.stdout.close()


MakeSchedule = Callable[[str, datetime | None], Schedule]


@pytest.fixture
def make_schedule() -> MakeSchedule:
    """``make_schedule(id, next_fire_at)``: a schedule every minute from 2030-01-01 UTC, at
    revision 1, never fired, paused when ``next_fire_at`` is ``None``."""
    created = datetime(2030, 1, 1, tzinfo=UTC)

    def make(schedule_id: str, next_fire_at: datetime | None) -> Schedule:
        return Schedule(
            id=schedule_id,
            definition="cleanup",
            trigger=Every(60, anchor=created),
            input={"keep_days": 1},
            fire_time_field=None,
            missed=MissedFires.SKIP,
            max_catch_up=5,
            grace=timedelta(seconds=30),
            paused=next_fire_at is None,
            next_fire_at=next_fire_at,
            last_fire_at=None,
            last_mission_id=None,
            fires=0,
            last_error=None,
            created_at=created,
            updated_at=created,
            revision=1,
        )

    return make
