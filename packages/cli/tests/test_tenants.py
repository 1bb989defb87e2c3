"""`--tenant`: the commands find a tenant's missions by naming it, and no other's."""

from __future__ import annotations

import shlex
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import trio
from shop import DEFINITIONS, ORDER  # importable: conftest puts examples/ on the path

from mission_control.adapter_sqlite import SQLiteCommander
from mission_control.in_memory_commander import ManualClock


async def _fill(path: Path) -> None:
    """o-1 of no tenant, o-1 and o-2 of tenant acme, o-1 of beta: all waiting for approve."""
    async with SQLiteCommander(
        path, DEFINITIONS, clock=ManualClock(datetime.now(UTC))
    ) as commander:
        await commander.start(ORDER, {"item": "lamp", "quantity": 1}, id="o-1")
        for number, tenant in ((1, "acme"), (2, "acme"), (1, "beta")):
            order = {"item": f"{tenant} desk", "quantity": number}
            await commander.start(ORDER, order, id=f"o-{number}", tenant=tenant)


@pytest.fixture
def tenants_db(tmp_path: Path) -> Path:
    path = tmp_path / "tenants.sqlite"
    trio.run(_fill, path)
    return path


def test_reading_commands_see_the_tenant_named_and_no_other(
    tenants_db: Path, invoke: Any, invoke_json: Any
) -> None:
    """list, show and doctor with --tenant see that tenant's missions under their own ids, and
    without it the missions of no tenant; another tenant's mission is not found (1) and a bad
    tenant name is a usage error (2)."""
    listed = invoke_json("list", "--db", tenants_db, "--tenant", "acme", "--json")
    assert [(m["id"], m["tenant"]) for m in listed["missions"]] == [
        ("o-1", "acme"),
        ("o-2", "acme"),
    ]
    paged = invoke_json("list", "--db", tenants_db, "--tenant", "acme", "--after", "o-1", "--json")
    assert [m["id"] for m in paged["missions"]] == ["o-2"]
    plain = invoke_json("list", "--db", tenants_db, "--json")
    assert [(m["id"], m["tenant"]) for m in plain["missions"]] == [("o-1", None)]
    shown = invoke_json("show", "--db", tenants_db, "o-1", "--tenant", "beta", "--json")
    assert shown["mission"]["input"] == {"item": "beta desk", "quantity": 1}
    assert shown["mission"]["id"] == "o-1"
    doctor = invoke_json("doctor", "--db", tenants_db, "o-2", "--tenant", "acme", "--json")
    assert doctor["problem"] == "waiting-for-signal"
    for args in (("show", "o-2"), ("show", "o-2", "--tenant", "beta"), ("show", "acme::o-2")):
        missing = invoke(*args, "--db", tenants_db)
        assert missing.exit_code == 1, args
        assert "there is no mission" in missing.stderr
    assert (
        "of tenant 'beta'" in invoke("show", "o-2", "--tenant", "beta", "--db", tenants_db).stderr
    )
    for args in (("list", "--tenant", "a b"), ("show", "o-1", "--tenant", "a::b")):
        bad = invoke(*args, "--db", tenants_db)
        assert bad.exit_code == 2, args
        assert "tenant must be" in bad.stderr


def test_writing_commands_reach_the_tenant_named_only(
    tenants_db: Path, start_owner: Any, invoke: Any, invoke_json: Any
) -> None:
    """signal, cancel, pause and resume with --tenant reach that tenant's mission through the
    owner and leave the missions of the same id elsewhere as they were, and its submission is
    read within that tenant; naming another tenant (or none) is not found."""
    start_owner(tenants_db)
    before = invoke_json("show", "--db", tenants_db, "o-1", "--json")["mission"]
    signalled = invoke_json(
        "signal",
        "--db",
        tenants_db,
        "o-1",
        "approve",
        '{"by": "ada"}',
        "--tenant",
        "acme",
        "--json",
    )
    assert signalled["submission"]["state"] == "applied"
    kept = signalled["submission"]
    assert (kept["mission_id"], kept["tenant"]) == ("o-1", "acme")
    seq = str(kept["seq"])
    read = invoke_json("submission", "--db", tenants_db, seq, "--tenant", "acme", "--json")
    assert (read["seq"], read["mission_id"], read["state"]) == (kept["seq"], "o-1", "applied")
    for elsewhere in ((), ("--tenant", "beta")):
        hidden = invoke("submission", "--db", tenants_db, seq, *elsewhere)
        absent = invoke("submission", "--db", tenants_db, "999", *elsewhere)
        assert hidden.exit_code == absent.exit_code == 1
        assert hidden.stderr.replace(seq, "N") == absent.stderr.replace("999", "N")
    assert (signalled["mission"]["id"], signalled["mission"]["tenant"]) == ("o-1", "acme")
    assert signalled["mission"]["current_node"] == "pickup"
    assert invoke_json("show", "--db", tenants_db, "o-1", "--json")["mission"] == before
    refused = invoke("cancel", "--db", tenants_db, "o-2", "--tenant", "beta")
    assert refused.exit_code == 1
    assert "o-2" in refused.stderr
    cancelled = invoke_json("cancel", "--db", tenants_db, "o-1", "--tenant", "beta", "--json")
    assert cancelled["mission"]["status"] == "cancelled"
    paused = invoke_json("pause", "--db", tenants_db, "o-2", "--tenant", "acme", "--json")
    assert (paused["mission"]["id"], paused["mission"]["status"]) == ("o-2", "paused")
    assert invoke("resume", "--db", tenants_db, "o-2").exit_code == 1
    resumed = invoke_json("resume", "--db", tenants_db, "o-2", "--tenant", "acme", "--json")
    assert resumed["mission"]["status"] == "waiting"
    acme = invoke_json("list", "--db", tenants_db, "--tenant", "acme", "--json")["missions"]
    assert [m["status"] for m in acme] == ["waiting", "waiting"]


def test_doctors_fix_run_as_printed_reaches_the_diagnosed_tenants_mission(
    tenants_db: Path, start_owner: Any, invoke: Any, invoke_json: Any
) -> None:
    """The fix doctor prints for a tenant's mission names its tenant, so running it moves that
    mission and leaves the mission of the same id of no tenant as it was."""
    start_owner(tenants_db)
    before = invoke_json("show", "--db", tenants_db, "o-1", "--json")["mission"]
    doctor = invoke_json("doctor", "--db", tenants_db, "o-1", "--tenant", "acme", "--json")
    fix = shlex.split(doctor["command"])
    assert fix[0] == "mission-control"
    assert fix[fix.index("--tenant") + 1] == "acme"
    payload = '{"by": "ada"}'
    ran = invoke(*[payload if arg == "PAYLOAD-JSON" else arg for arg in fix[1:]])
    assert ran.exit_code == 0, ran.output
    acme = invoke_json("show", "--db", tenants_db, "o-1", "--tenant", "acme", "--json")
    assert acme["mission"]["current_node"] == "pickup"
    assert invoke_json("show", "--db", tenants_db, "o-1", "--json")["mission"] == before
