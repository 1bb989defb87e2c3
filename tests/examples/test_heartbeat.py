"""examples/heartbeat.py, the missed-heartbeat flow of the peer seed 003, on both adapters."""

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "heartbeat.py"


@pytest.fixture(scope="module")
def output() -> str:
    result = subprocess.run(
        [sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize("adapter", ["memory", "sqlite"])
def test_a_missed_heartbeat_opens_an_incident_only_while_the_service_is_down(
    output: str, adapter: str
) -> None:
    """On each adapter, the trigger starts an incident per missed heartbeat; after its five
    minutes the one whose service is still down opens an incident and notifies by e-mail and
    chat in parallel, the one whose service came back ends; the nightly cleanup runs at 03:00
    Paris time each night and deletes the incident once it is two days old; a replay of the
    first fire opens a new incident."""
    lines = [line for line in output.splitlines() if line.startswith(f"[{adapter}] ")]
    assert [line.removeprefix(f"[{adapter}] ") for line in lines] == [
        "hb-api:incident: completed: incident INC-1 opened for api, notified by e-mail and chat",
        "hb-db:incident: completed: db recovered, no incident",
        "sent: chat: INC-1 api; email: INC-1 api",
        "nightly-cleanup@2030-01-02T02:00:00Z: 2030-01-02T03:00:00+01:00: deleted nothing",
        "nightly-cleanup@2030-01-03T02:00:00Z: 2030-01-03T03:00:00+01:00: deleted nothing",
        "nightly-cleanup@2030-01-04T02:00:00Z: 2030-01-04T03:00:00+01:00: deleted INC-1",
        "hb-api-replay:incident (replay of hb-api): incident INC-2 opened for api, notified by "
        "e-mail and chat",
        "nightly-cleanup fired 3 times, last nightly-cleanup@2030-01-04T02:00:00Z",
    ]
