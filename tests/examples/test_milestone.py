"""examples/milestone.py, the milestone flow of the peer seed 002, on both adapters."""

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "milestone.py"


@pytest.fixture(scope="module")
def output() -> str:
    result = subprocess.run(
        [sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize("adapter", ["memory", "sqlite"])
def test_the_milestone_ships_through_its_child_or_undoes_its_work(
    output: str, adapter: str
) -> None:
    """On each adapter, the signed-off milestone ships through its deployment child (staging,
    an hour's soak, production) and completes; the refused one and the one never signed off
    throw their builds away in the reverse of the order they were built, then close their
    ticket, and end compensated."""
    lines = [line for line in output.splitlines() if line.startswith(f"[{adapter}]")]
    assert lines[:4] == [
        f"[{adapter}] m1's child m1/ship is waiting",
        f"[{adapter}] m1: completed: m1: m1.0 live, signed off by the founder",
        f"[{adapter}] m2: compensated: CompensationRequested: sign-off refused by the founder",
        f"[{adapter}] m3: compensated: SignalTimeoutError: need_to 'sign-off' of mission 'm3' "
        "got no signal within 259200 s",
    ]
    done = [line.removeprefix(f"[{adapter}]   ") for line in lines[4:]]
    assert done.index("m1/ship: m1.0 on staging") < done.index("m1/ship: m1.0 on production")
    for name in ("m2", "m3"):
        mine = [line.removeprefix(f"{name}: ") for line in done if line.startswith(f"{name}: ")]
        built = [line.removeprefix("built ") for line in mine if line.startswith("built ")]
        thrown = [line.removeprefix("threw away ") for line in mine if line.startswith("threw")]
        assert sorted(built) == [f"api-{name}.tar", f"ui-{name}.tar"]
        assert thrown == built[::-1]
        assert mine[0] == f"opened TICKET-{name}"
        assert mine[-1] == f"closed TICKET-{name}"
    assert not any(line.startswith(("m1: threw", "m1: closed")) for line in done)


def test_describe_shows_the_child_node_and_the_definition_it_starts(output: str) -> None:
    """The flow's description names the child node's definition."""
    assert "ship (child) -> deployment" in output.splitlines()
