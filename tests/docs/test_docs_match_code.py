"""Statements in the docs that can be checked against the code are."""

from __future__ import annotations

import itertools
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mission_control.core import MissionControlError, m
from mission_control.in_memory_commander import (
    InMemoryPersistenceAdapter,
    create_in_memory_commander,
)

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]


def _section(text: str, heading: str) -> str:
    start = text.index(f"\n{heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def test_the_testing_readme_lists_exactly_the_fixtures_its_plugin_registers(tmp_path: Path) -> None:
    """The testing README's fixture list names every fixture the installed plugin gives pytest,
    and no other."""
    # pytest's own listing, from an empty directory: what a user's test suite gets.
    listing = subprocess.run(
        [sys.executable, "-m", "pytest", "--fixtures", "-p", "no:cacheprovider"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    ).stdout
    registered = set(
        re.findall(r"^(\w+)(?: \[[^\]]*\])? -- \S*mission_control/testing/\S*$", listing, re.M)
    )
    assert registered, listing

    readme = (ROOT / "packages/testing/README.md").read_text()
    documented = set(re.findall(r"^- `(\w+)`:", _section(readme, "## Fixtures"), re.M))
    assert documented == registered


def _signal_check_order() -> list[str]:
    """The exceptions guarantees.md names for ``signal``'s checks, in the order it gives."""
    section = _section((ROOT / "docs/guarantees.md").read_text(), "## Signals")
    sentence = section[section.index("checks, in this order") : section.index("Then:")]
    return re.findall(r"\(`(\w+Error)`\)", sentence)


async def test_signal_checks_in_the_order_guarantees_md_gives() -> None:
    """A signal that breaks several of the rules raises the error of the rule guarantees.md
    lists first."""
    order = _signal_check_order()
    assert sorted(order) == sorted(
        [
            "MissionNotFoundError",
            "UnknownDefinitionError",
            "UnknownSignalError",
            "MissionNotActiveError",
            "InvalidSignalPayloadError",
        ]
    )

    def parse(value: object) -> object:
        if value != "ok":
            raise ValueError("only 'ok'")
        return value

    flow = m.define("flow").start(parse=dict).need_to("go", parse=parse).end()
    other = m.define("other").start(parse=dict).end()
    store = InMemoryPersistenceAdapter()
    owner = create_in_memory_commander([flow], persistence=store)
    await owner.start(flow, {}, id="active")
    await owner.start(flow, {}, id="ended")
    await owner.cancel("ended", "for the test")
    stranger = create_in_memory_commander([other], persistence=store)

    for broken in itertools.chain.from_iterable(
        itertools.combinations(order, size) for size in range(2, len(order) + 1)
    ):
        mission_id = "ended" if "MissionNotActiveError" in broken else "active"
        if "MissionNotFoundError" in broken:
            mission_id = "missing"
        commander = stranger if "UnknownDefinitionError" in broken else owner
        name = "nope" if "UnknownSignalError" in broken else "go"
        payload = "bad" if "InvalidSignalPayloadError" in broken else "ok"
        with pytest.raises(MissionControlError) as raised:
            await commander.signal(mission_id, name, payload)
        assert type(raised.value).__name__ == broken[0], broken
