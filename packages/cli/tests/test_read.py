"""The read commands (list, show, stats) on a real SQLite file."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import trio
from shop import DEFINITIONS  # examples/, on sys.path by conftest.py

from mission_control.adapter_sqlite import SQLiteCommander
from mission_control.core import m


def test_list_prints_every_mission_in_id_order(shop_db: Path, invoke: Any) -> None:
    """`list` prints one row per mission, with its status and what it waits for."""
    result = invoke("list", "--db", shop_db)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["ID", "DEFINITION", "STATUS", "NODE", "WAITING", "FOR", "UPDATED"]
    rows = [line.split()[:3] for line in lines[1:]]
    assert rows == [
        ["o-1", "order", "v1"],
        ["o-2", "order", "v1"],
        ["o-3", "order", "v1"],
        ["o-4", "order", "v1"],
    ]
    assert "signal 'approve'" in lines[1]
    assert "failed" in lines[3]


def test_list_filters_by_status_definition_and_age(shop_db: Path, invoke_json: Any) -> None:
    """`list --json` keeps the missions of the status, definition and ages asked for."""

    def ids(*args: str) -> list[str]:
        listed = invoke_json("list", "--db", shop_db, "--json", *args)
        return [mission["id"] for mission in listed["missions"]]

    assert ids("--status", "waiting") == ["o-1", "o-2"]
    assert ids("--status", "failed") == ["o-3"]
    assert ids("--definition", "order") == ["o-1", "o-2", "o-3", "o-4"]
    assert ids("--definition", "refund") == []
    assert ids("--older-than", "1d") == ["o-1"]
    assert ids("--older-than", "1h") == ["o-1", "o-2", "o-3"]
    assert ids("--newer-than", "30m") == ["o-4"]
    assert ids("--older-than", "1h", "--newer-than", "1d", "--status", "waiting") == ["o-2"]


def test_list_pages_with_limit_and_after(shop_db: Path, invoke: Any, invoke_json: Any) -> None:
    """`--limit` cuts a page and names the next one's `--after`; the last page names none."""
    first = invoke_json("list", "--db", shop_db, "--json", "--limit", "3")
    assert [m["id"] for m in first["missions"]] == ["o-1", "o-2", "o-3"]
    assert first["next_after"] == "o-3"
    second = invoke_json(
        "list", "--db", shop_db, "--json", "--limit", "3", "--after", first["next_after"]
    )
    assert [m["id"] for m in second["missions"]] == ["o-4"]
    assert second["next_after"] is None
    table = invoke("list", "--db", shop_db, "--limit", "2")
    assert table.stdout.splitlines()[-1] == "more: --after o-2"


def test_list_json_gives_each_missions_place(shop_db: Path, invoke: Any, invoke_json: Any) -> None:
    """A listed mission in JSON has its status, node, waits and error."""
    missions = invoke_json("list", "--db", shop_db, "--json")["missions"]
    o1, _, o3, o4 = missions
    assert o1["status"] == "waiting"
    assert o1["current_node"] == "approve"
    assert o1["waits"] == [
        {"kind": "signal", "node": "approve", "signal": "approve", "due_at": None}
    ]
    assert o3["status"] == "failed"
    assert o3["error"] == {"type": "RuntimeError", "message": "only 10 lamp in stock"}
    assert o4["status"] == "completed"
    assert o4["error"] is None


def test_list_rejects_a_bad_age_saying_what_an_age_is(shop_db: Path, invoke: Any) -> None:
    """An age that is not a number and a unit is a usage error naming the units."""
    result = invoke("list", "--db", shop_db, "--older-than", "3 days")
    assert result.exit_code == 2
    assert "'3 days' is not an age" in result.stderr
    assert "h (hours), d (days)" in result.stderr


def test_an_age_too_large_is_a_usage_error(shop_db: Path, invoke: Any) -> None:
    """An age past what a date can count back (or a float can hold) is a usage error saying the
    largest one, for every option taking an age; nothing is deleted."""
    for args in (
        ("list", "--older-than", "99999999999999d"),
        ("purge", "--older-than", "999999999999w"),
        ("purge", "--older-than", "1000000d", "--dry-run"),
        ("doctor", "o-1", "--margin", "99999999999999d"),
        ("list", "--newer-than", "9" * 400 + "s"),
    ):
        result = invoke(*args, "--db", shop_db)
        assert result.exit_code == 2, (args, result.output)
        assert "is too large an age: at most 365000d" in result.stderr, args
    assert invoke("list", "--db", shop_db, "--older-than", "365000d").exit_code == 0
    assert len(invoke("list", "--db", shop_db).stdout.splitlines()) == 5


def test_show_prints_the_mission_its_nodes_and_timeline(shop_db: Path, invoke: Any) -> None:
    """`show` prints where the mission is, then its nodes and its timeline."""
    result = invoke("show", "--db", shop_db, "o-3")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert re.search(r"^status +failed", out, re.M)
    assert re.search(r"^error +RuntimeError: only 10 lamp in stock", out, re.M)
    nodes = out[out.index("nodes") : out.index("timeline")]
    assert "reserve" in nodes
    assert "RuntimeError" in nodes
    timeline = out[out.index("timeline") :]
    for event in ("mission-started", "step-started", "step-failed", "mission-failed"):
        assert event in timeline


def test_show_json_is_the_stored_mission_and_timeline(
    shop_db: Path, invoke: Any, invoke_json: Any
) -> None:
    """`show --json` holds the mission as stored (its inputs and outputs too) and its timeline."""
    shown = invoke_json("show", "--db", shop_db, "o-4", "--json")
    assert shown["mission"]["id"] == "o-4"
    assert shown["mission"]["status"] == "completed"
    assert shown["mission"]["input"] == {"item": "chair", "quantity": 1}
    assert shown["mission"]["output"] == "shipped with ups"
    kinds = [entry["kind"] for entry in shown["timeline"]]
    assert kinds[0] == "mission-started"
    assert kinds[-1] == "mission-completed"
    assert kinds.count("signal-received") == 2


async def _long_loop(db: Path) -> None:
    looping = (
        m.define("looping")
        .start(parse=dict)
        .loop(
            "rounds",
            lambda body: body.step("work", lambda ctx: ctx.iteration),
            until=lambda ctx: ctx.iteration >= 100,
            max_iterations=200,
        )
        .end()
    )
    async with SQLiteCommander(db, [looping]) as commander:
        await commander.start(looping, {}, id="long")


def test_show_prints_the_last_timeline_entries_unless_asked_for_all(
    tmp_path: Path, invoke: Any, invoke_json: Any
) -> None:
    """A mission with a long timeline (a loop's) shows its last 50 entries and how many came
    before, `--timeline N` the last N and `--timeline all` every one, in text and JSON."""
    db = tmp_path / "long.sqlite"
    trio.run(_long_loop, db)
    every = invoke_json("show", "--db", db, "long", "--json", "--timeline", "all")
    total = len(every["timeline"])
    assert total > 300
    assert every["earlier_entries"] == 0
    default = invoke_json("show", "--db", db, "long", "--json")
    assert default["timeline"] == every["timeline"][-50:]
    assert default["earlier_entries"] == total - 50
    text = invoke("show", "--db", db, "long", "--timeline", "3").stdout
    assert f"… {total - 3} earlier entries: --timeline all shows them" in text
    events = text[text.index("timeline (the last 3 entries)") :].splitlines()[2:]
    assert len(events) == 3
    assert events[-1].split()[2] == "mission-completed"
    wrong = invoke("show", "--db", db, "long", "--timeline", "some")
    assert wrong.exit_code == 2
    assert "'some' is not a number of entries (0, 1, …) or 'all'" in wrong.stderr


async def _retry_and_fork(db: Path) -> None:
    async with SQLiteCommander(db, DEFINITIONS) as commander:
        await commander.retry("o-3")  # fails again: still out of stock
        await commander.fork("o-4", at_node="ship", new_id="o-4-again")


def test_show_and_json_summaries_say_what_a_mission_was_forked_from_and_its_retries(
    shop_db: Path, invoke: Any, invoke_json: Any
) -> None:
    """A retried mission shows how many times it was retried, a fork the mission it was
    forked from, in `show` and in every JSON summary (`list --json`)."""
    trio.run(_retry_and_fork, shop_db)
    retried = invoke("show", "--db", shop_db, "o-3").stdout
    assert re.search(r"^retries +1 *$", retried, re.M), retried
    forked = invoke("show", "--db", shop_db, "o-4-again").stdout
    assert re.search(r"^forked from +o-4 *$", forked, re.M), forked
    listed = {
        m["id"]: (m["retries"], m["forked_from"])
        for m in invoke_json("list", "--db", shop_db, "--json")["missions"]
    }
    assert listed["o-3"] == (1, None)
    assert listed["o-4-again"] == (0, "o-4")
    assert listed["o-1"] == (0, None)


def test_show_of_an_unknown_mission_says_how_to_find_one(shop_db: Path, invoke: Any) -> None:
    """`show` of a mission the database does not hold fails (1), pointing to `list`."""
    result = invoke("show", "--db", shop_db, "o-9")
    assert result.exit_code == 1
    assert "there is no mission 'o-9' in this database" in result.stderr
    assert "mission-control list" in result.stderr


def test_a_missing_database_is_named_with_where_to_give_one(tmp_path: Path, invoke: Any) -> None:
    """A --db that does not exist is refused (2), creating nothing, and the message says how
    to give the database."""
    missing = tmp_path / "nope.sqlite"
    result = invoke("list", "--db", missing)
    assert result.exit_code == 2
    assert f"there is no database at {missing}" in result.stderr
    assert "MISSION_CONTROL_DB" in result.stderr
    assert not missing.exists()
    result = invoke("list")
    assert result.exit_code == 2
    assert "Missing option '--db'" in result.stderr


def test_the_database_comes_from_the_environment(shop_db: Path, invoke: Any) -> None:
    """MISSION_CONTROL_DB stands for --db."""
    result = invoke("list", "--json", env={"MISSION_CONTROL_DB": str(shop_db)})
    listed = json.loads(result.stdout)
    assert len(listed["missions"]) == 4


def test_stats_counts_by_status_and_definition(
    shop_db: Path, invoke: Any, invoke_json: Any
) -> None:
    """`stats --json` counts the missions by status and by definition, and those running and
    due; the table shows the same counts."""
    stats = invoke_json("stats", "--db", shop_db, "--json")
    assert stats["total"] == 4
    assert stats["by_status"] == {
        "running": 0,
        "waiting": 2,
        "paused": 0,
        "completed": 1,
        "failed": 1,
        "cancelled": 0,
        "compensated": 0,
    }
    assert stats["by_definition"] == {"order": {"completed": 1, "failed": 1, "waiting": 2}}
    assert stats["running"] == 0
    assert stats["due"] == 0
    table = invoke("stats", "--db", shop_db).stdout.splitlines()
    assert table[1].split() == ["order", "0", "2", "0", "1", "1", "0", "0", "4"]
    assert table[-1] == "running: 0   due now: 0"


def test_the_installed_console_script_runs_the_command(shop_db: Path, command: Any) -> None:
    """The `mission-control` console script and `python -m mission_control.cli` are the same
    command."""
    script = Path(sys.executable).with_name("mission-control")
    listed = subprocess.run(
        [script, "list", "--db", shop_db, "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert [m["id"] for m in json.loads(listed.stdout)["missions"]] == ["o-1", "o-2", "o-3", "o-4"]
    version = command("--version")
    assert version.returncode == 0
    assert version.stdout.startswith("mission-control, version ")


FIXTURES = Path(__file__).with_name("fixtures")


def test_a_database_an_older_release_keeps_is_read_and_checked(
    tmp_path: Path, command: Any
) -> None:
    """`check`, `list` and `doctor` read a database at schema version 3 (``fixtures/
    schema3.sqlite``) as its owner of an older release keeps it before a deploy, when the
    migrations since only add tables, and leave it as it was."""
    db = tmp_path / "schema3.sqlite"
    db.write_bytes((FIXTURES / "schema3.sqlite").read_bytes())
    env = {**os.environ, "PYTHONPATH": str(FIXTURES), "MISSION_CONTROL_DB": str(db)}
    checked = command("check", "--app", "schema3_app:DEFINITIONS", env=env)
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout == "every version unfinished missions use is registered unchanged (1)\n"
    listed = command("list", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    assert [m["status"] for m in json.loads(listed.stdout)["missions"]] == [
        "waiting",
        "failed",
        "completed",
    ]
    found = command("doctor", "p-1", "--app", "schema3_app:DEFINITIONS", "--json", env=env)
    assert json.loads(found.stdout)["problem"] == "waiting-for-signal", found.stderr
    for what, none in (("schedule", "no schedules"), ("trigger", "no fired triggers")):
        listed = command(what, "list", env=env)
        assert (listed.returncode, listed.stdout) == (0, f"{none}\n"), listed.stderr
    assert db.read_bytes() == (FIXTURES / "schema3.sqlite").read_bytes()


def test_an_argument_utf8_cannot_encode_is_a_usage_error(shop_db: Path, invoke: Any) -> None:
    """A mission id, name or node holding a byte the shell passed undecoded (a surrogate) is a
    usage error naming it, for every command taking one; nothing is stored."""
    bad = "o-\udcff"
    for args in (
        ("show", bad),
        ("doctor", bad),
        ("list", "--definition", bad),
        ("list", "--after", bad),
        ("purge", "--older-than", "1d", "--definition", bad, "--dry-run"),
        ("signal", "o-1", bad, "{}", "--no-wait"),
        ("cancel", "o-1", "--reason", bad, "--no-wait"),
        ("retry", "o-3", "--from", bad, "--no-wait"),
    ):
        result = invoke(*args, "--db", shop_db)
        assert result.exit_code == 2, (args, result.output)
        assert "'o-\\udcff' is not text UTF-8 can encode" in result.stderr, args
    assert "there is no submission 1" in invoke("submission", "--db", shop_db, "1").stderr
