"""Definition versions in the core: several versions registered at once, the fingerprint of a
version's shape, and the start-up check's wiring (the scenarios on each adapter are in
mission_control.testing's VersionConformance)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mission_control.core import (
    ConfigurationError,
    DefinitionVersionError,
    InvalidDefinitionError,
    MissionDefinition,
    UnknownDefinitionError,
    check_definitions,
    fingerprint,
    m,
    registered_versions,
)
from mission_control.in_memory_commander import (
    InMemoryPersistenceAdapter,
    create_in_memory_commander,
)

pytestmark = pytest.mark.anyio


def identity(value: Any) -> Any:
    return value


def done(ctx: Any) -> str:
    return "done"


def other(ctx: Any) -> str:
    return "other"


def undo(ctx: Any, output: Any) -> None:
    pass


def shape(
    *,
    version: int = 1,
    step: Any = done,
    attempts: int = 1,
    pause: float = 60,
    names: tuple[str, str] = ("a", "b"),
    compensate: bool = False,
) -> MissionDefinition[Any, Any, Any]:
    return (
        m.define("flow", version=version)
        .start(parse=identity)
        .step(names[0], step, retry=attempts, compensate=undo if compensate else None)
        .sleep("pause", pause)
        .parallel(
            "fan",
            {
                "left": lambda b: b.step(names[1], step),
                "right": lambda b: b.need_to("go", parse=identity),
            },
        )
        .end()
    )


def test_the_fingerprint_ignores_functions_policies_and_durations() -> None:
    """Functions, retry attempts and durations leave the fingerprint alone; so does the
    version number."""
    base = fingerprint(shape())
    assert base.startswith("1:")
    assert fingerprint(shape(step=other)) == base
    assert fingerprint(shape(attempts=5)) == base
    assert fingerprint(shape(pause=3600)) == base
    assert fingerprint(shape(version=2)) == base


def test_the_fingerprint_follows_names_order_branches_and_compensations() -> None:
    """A renamed node, a node in a branch renamed, an added compensation, an inserted step
    and a moved node each give another fingerprint."""
    base = fingerprint(shape())
    inserted = (
        m.define("flow")
        .start(parse=identity)
        .step("a", done)
        .step("new", done)
        .sleep("pause", 60)
        .parallel(
            "fan",
            {
                "left": lambda b: b.step("b", done),
                "right": lambda b: b.need_to("go", parse=identity),
            },
        )
        .end()
    )
    changed = {
        fingerprint(shape(names=("renamed", "b"))),
        fingerprint(shape(names=("a", "renamed"))),
        fingerprint(shape(compensate=True)),
        fingerprint(inserted),
    }
    assert base not in changed
    assert len(changed) == 4


def test_the_fingerprint_is_the_same_in_every_process() -> None:
    """Processes with different hash seeds compute the same fingerprint (nothing hashes by
    id or by Python's salted hash)."""
    script = (
        "import sys; sys.path.insert(0, sys.argv[1]); "
        "from test_versions import shape; from mission_control.core import fingerprint; "
        "print(fingerprint(shape()))"
    )
    here = str(Path(__file__).parent)
    found = {
        subprocess.run(
            [sys.executable, "-c", script, here],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        ).stdout.strip()
        for seed in ("0", "1", "12345")
    }
    assert found == {fingerprint(shape())}


def test_two_versions_of_one_name_are_registered_the_latest_by_name() -> None:
    """Versions 1 and 3 of one definition register side by side; definitions gives the latest
    by name, definition_versions every one; the same name and version twice is refused."""
    one, three = shape(), shape(version=3)
    commander = create_in_memory_commander([three, one])
    assert commander.definitions == {"flow": three}
    assert commander.definition_versions == {("flow", 1): one, ("flow", 3): three}
    with pytest.raises(InvalidDefinitionError, match="named 'flow' with version 1"):
        create_in_memory_commander([one, shape()])


async def test_start_runs_the_version_it_is_given() -> None:
    """start() with an older registered version starts a mission on it; with a version the
    commander was not given it raises UnknownDefinitionError listing the versions it has."""
    one, two = shape(), shape(version=2)
    commander = create_in_memory_commander([one, two])
    started = await commander.start(one, {})
    assert (await started.inspect()).definition_version == 1
    with pytest.raises(UnknownDefinitionError, match=r"known: flow \(versions 1, 2\)"):
        await commander.start(shape(version=3), {})


async def test_async_with_checks_versions_and_closes_the_store_when_it_raises() -> None:
    """Entering a commander whose store has missions of a version it lacks raises
    DefinitionVersionError and closes the store; version_check="warn" enters."""
    store = InMemoryPersistenceAdapter()
    one = shape()
    await create_in_memory_commander([one], persistence=store).start(one, {}, id="m-1")
    with pytest.raises(DefinitionVersionError, match="'flow' version 1 is not registered"):
        async with create_in_memory_commander([shape(version=2)], persistence=store):
            pass
    with pytest.raises(Exception, match="closed"):
        await store.load("m-1")

    store = InMemoryPersistenceAdapter()
    await create_in_memory_commander([one], persistence=store).start(one, {}, id="m-1")
    async with create_in_memory_commander(
        [shape(version=2)], persistence=store, version_check="warn"
    ) as commander:
        assert (await commander.inspect("m-1")).definition_version == 1


def test_version_check_must_be_raise_or_warn() -> None:
    """Another version_check is refused with ConfigurationError."""
    with pytest.raises(ConfigurationError, match="version_check must be 'raise' or 'warn'"):
        create_in_memory_commander([shape()], version_check="ignore")  # type: ignore[arg-type]


async def test_check_definitions_needs_an_adapter_that_keeps_fingerprints() -> None:
    """check_definitions on an adapter without the version store raises ConfigurationError
    naming it."""

    class Bare:
        pass

    with pytest.raises(ConfigurationError, match="keeps no definition fingerprints"):
        await check_definitions(Bare(), [shape()])  # type: ignore[arg-type]


async def test_check_definitions_refuses_what_a_commander_refuses_to_start_with() -> None:
    """Two different definitions of one name and version (given, or started by a child node)
    make check_definitions raise the commander's InvalidDefinitionError, as starting the
    application would; registered_versions names both, the given ones first."""
    kid = m.define("kid").start(parse=identity).end()
    other_kid = m.define("kid").start(parse=identity).step("more", done).end()
    parent = m.define("parent").start(parse=identity).child("kid", kid, lambda ctx: {}).end()
    assert list(registered_versions([parent])) == [("parent", 1), ("kid", 1)]
    for definitions in ([shape(), shape()], [parent, other_kid]):
        with pytest.raises(InvalidDefinitionError, match="two definitions are named") as found:
            create_in_memory_commander(definitions)
        async with create_in_memory_commander([]) as commander:
            with pytest.raises(InvalidDefinitionError) as checked:
                await check_definitions(commander.persistence, definitions)
        assert str(checked.value) == str(found.value)
