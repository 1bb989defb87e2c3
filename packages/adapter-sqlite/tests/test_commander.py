"""``SQLiteCommander``: the core commander on a SQLite file, opened and closed in one place."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mission_control.adapter_sqlite import (
    SQLiteCommander,
    SQLitePersistenceAdapter,
    create_sqlite_persistence_adapter,
)
from mission_control.core import (
    Commander,
    CommanderProtocol,
    InvalidDefinitionError,
    MissionStatus,
    PersistenceError,
    create_commander,
    m,
)
from mission_control.core.lowlevel import MissionDriver
from mission_control.in_memory_commander import ManualClock, SequentialIds

pytestmark = pytest.mark.anyio


def parse(raw: Any) -> Any:
    return raw


GREETING = (
    m.define("greeting")
    .start(parse=parse, run=lambda ctx: f"hello {ctx.input['name']}")
    .need_to("reply", parse=parse)
    .end(lambda ctx: ctx.events["reply"].output)
)


async def test_sqlite_commander_is_the_core_commander_on_a_file(
    db_path: Path, clock: ManualClock
) -> None:
    """``SQLiteCommander`` satisfies ``CommanderProtocol`` and ``MissionDriver``, is a core
    ``Commander`` and runs a mission to completion on its file."""
    async with SQLiteCommander(db_path, [GREETING], clock=clock, ids=SequentialIds()) as commander:
        assert isinstance(commander, CommanderProtocol)
        assert isinstance(commander, MissionDriver)
        assert isinstance(commander, Commander)
        assert isinstance(commander.persistence, SQLitePersistenceAdapter)
        assert commander.clock is clock
        handle = await commander.start(GREETING, {"name": "ada"})
        assert handle.id == "mission-000001"
        await handle.signal("reply", "hi!")
        assert (await handle.wait_for_completion()).output == "hi!"
    assert commander.persistence.closed


async def test_create_commander_with_the_adapter_is_equivalent(
    db_path: Path, clock: ManualClock
) -> None:
    """A commander made by ``create_commander(persistence=adapter)`` reads what
    ``SQLiteCommander`` wrote: one shared commander path for every backend."""
    async with SQLiteCommander(db_path, [GREETING], clock=clock) as commander:
        await commander.start(GREETING, {"name": "ada"}, id="g")
    adapter = create_sqlite_persistence_adapter(db_path)
    async with create_commander([GREETING], persistence=adapter, clock=clock) as commander:
        snapshot = await commander.signal("g", "reply", "hello back")
        assert snapshot.status is MissionStatus.COMPLETED
    assert adapter.closed


async def test_bad_definitions_do_not_leave_the_database_locked(db_path: Path) -> None:
    """When the commander rejects its definitions, the adapter it opened is closed again, so
    the next attempt can open the database."""
    with pytest.raises(InvalidDefinitionError):
        SQLiteCommander(db_path, ["not a definition"])  # type: ignore[list-item]
    async with SQLiteCommander(db_path, [GREETING]):
        pass


async def test_a_read_only_commander_inspects_but_does_not_write(
    db_path: Path, clock: ManualClock
) -> None:
    """``SQLiteCommander(read_only=True)`` lists, inspects and reads timelines of another
    owner's database, and refuses to start missions."""
    async with SQLiteCommander(db_path, [GREETING], clock=clock) as owner:
        await owner.start(GREETING, {"name": "ada"}, id="g")
        async with SQLiteCommander(db_path, [GREETING], read_only=True) as viewer:
            assert [s.id for s in await viewer.list(status=MissionStatus.WAITING)] == ["g"]
            assert (await viewer.inspect("g")).nodes["start"].output == "hello ada"
            assert len(await viewer.timeline("g")) > 0
            with pytest.raises(PersistenceError, match="read-only"):
                await viewer.start(GREETING, {"name": "bob"}, id="h")
        await owner.signal("g", "reply", "still writable")
