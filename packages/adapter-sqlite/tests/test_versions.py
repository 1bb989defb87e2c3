"""Definition versions on SQLite: the start-up check of a runtime, a start submitted by name,
the offline check on a read-only adapter, and the queries the check makes at start-up (index
seeks). The schema 3 migration of a 0.1.0 file is tested in test_upgrade_from_0_1.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import apsw
import pytest

from mission_control.adapter_sqlite import (
    SQLiteCommander,
    _adapter,  # pyright: ignore[reportPrivateUsage]
    create_sqlite_persistence_adapter,
)
from mission_control.core import (
    DefinitionVersionError,
    MissionStatus,
    check_definitions,
    m,
)
from mission_control.runtime import create_commander_runtime

pytestmark = pytest.mark.anyio


def accept(value: Any) -> Any:
    return value


def waiting(version: int, *, extra: bool = False) -> Any:
    built = m.define("order", version=version).start(parse=accept)
    if extra:
        built = built.step("extra", lambda ctx: "extra")
    return built.need_to("pay", parse=accept).end()


async def test_a_runtime_does_not_start_when_a_version_in_use_changed(db_path: Path) -> None:
    """runtime.start() raises DefinitionVersionError (the runtime never starts) when v1 was
    changed in place while missions wait on it; registered as v2 beside v1, it starts."""
    v1 = waiting(1)
    async with SQLiteCommander(db_path, [v1]) as commander:
        await commander.start(v1, {}, id="w-1")
    changed = waiting(1, extra=True)
    # Not entered: entering would run the same check.
    commander = SQLiteCommander(db_path, [changed])
    try:
        runtime = create_commander_runtime(commander)
        async with anyio.create_task_group() as tasks:
            with pytest.raises(DefinitionVersionError, match="registered with another shape"):
                await runtime.start(nursery=tasks)
        assert not runtime.is_running
    finally:
        await commander.aclose()
    async with (
        SQLiteCommander(db_path, [v1, waiting(2, extra=True)]) as commander,
        create_commander_runtime(commander),
    ):
        done = await commander.signal("w-1", "pay", {})
        assert done.status is MissionStatus.COMPLETED


async def test_a_start_submitted_by_name_runs_the_latest_version(db_path: Path) -> None:
    """A start submitted by the definition's name starts the latest registered version."""
    async with SQLiteCommander(db_path, [waiting(1), waiting(2)]) as commander:
        submission = await commander.submit_start("order", {}, id="by-name")
        await commander.verdict(submission)
        assert (await commander.inspect("by-name")).definition_version == 2


async def test_the_offline_check_reads_a_live_database_read_only(db_path: Path) -> None:
    """check_definitions on a read-only adapter, beside the owner, reports a missing version
    with its missions and writes nothing."""
    v1 = waiting(1)
    async with SQLiteCommander(db_path, [v1]) as owner:
        await owner.start(v1, {}, id="w-1")
        async with create_sqlite_persistence_adapter(db_path, read_only=True) as reader:
            report = await check_definitions(reader, [waiting(2)])
            assert [(p.version, p.kind, p.missions) for p in report.problems] == [
                (1, "missing", ("w-1",))
            ]
            assert report.unrecorded == (("order", 2),)
            assert (await check_definitions(reader, [v1])).ok
        assert ("order", 2) not in await owner.persistence.fingerprints()


def test_the_versions_query_seeks_the_partial_index(db_path: Path) -> None:
    """The queries of versions_in_use and missions_on_version search the partial index
    missions_unfinished_versions, never scanning the missions table."""

    async def create() -> None:
        async with create_sqlite_persistence_adapter(db_path):
            pass

    anyio.run(create)
    connection = apsw.Connection(str(db_path))
    for sql, params in [
        (_adapter._NEXT_VERSION, ("order", 1)),
        (_adapter._NEXT_DEFINITION, ("order",)),
        (_adapter._ON_VERSION, ("order", 1, 5)),
    ]:
        plan = " ".join(
            str(row[3]) for row in connection.execute(f"EXPLAIN QUERY PLAN {sql}", params)
        )
        assert "SEARCH missions USING INDEX missions_unfinished_versions" in plan, plan
    connection.close()
