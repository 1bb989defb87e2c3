"""retry, fork and purge on a real SQLite file, through the example shop owning it in another
process where the owner matters."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any


def wait_until(read: Any, done: Any, seconds: float = 60.0) -> Any:
    """Re-read until ``done(value)``: the owner is another process, no notice reaches here."""
    deadline = time.monotonic() + seconds
    while True:
        value = read()
        if done(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def test_retry_runs_a_failed_mission_again_in_the_owner(
    shop_db: Path, start_owner: Any, invoke: Any, invoke_json: Any
) -> None:
    """A mission that failed (out of stock) retried once the owner has stock again goes on
    from its failed node, in the same mission, its history kept."""
    start_owner(shop_db, stock=20)
    retried = invoke_json("retry", "--db", shop_db, "o-3", "--json")
    assert retried["submission"]["kind"] == "retry"
    assert retried["submission"]["state"] == "applied"
    assert retried["mission"]["status"] == "waiting"
    assert retried["mission"]["current_node"] == "approve"
    timeline = [
        e["kind"] for e in invoke_json("show", "--db", shop_db, "o-3", "--json")["timeline"]
    ]
    assert timeline.count("step-failed") == 1
    assert timeline.index("mission-failed") < timeline.index("mission-retried")
    text = invoke("retry", "--db", shop_db, "o-3")
    assert text.exit_code == 1
    assert text.stderr.startswith("Error: MissionNotRetryableError: ")


def test_retry_refuses_here_what_cannot_be_retried(shop_db: Path, invoke: Any) -> None:
    """With --app, a waiting mission is refused before anything is stored, and so is a --from
    node the definition does not have (no owner runs: nothing would be applied anyway)."""
    waiting = invoke("retry", "--db", shop_db, "o-1", "--app", "shop:DEFINITIONS")
    assert waiting.exit_code == 1
    assert "MissionNotRetryableError" in waiting.stderr
    bad_node = invoke(
        "retry", "--db", shop_db, "o-3", "--from", "pack", "--app", "shop:DEFINITIONS"
    )
    assert bad_node.exit_code == 1
    assert "InvalidInputError" in bad_node.stderr
    assert "'pack'" in bad_node.stderr
    nothing = invoke("submission", "--db", shop_db, "1")
    assert "there is no submission 1" in nothing.stderr


def test_fork_copies_a_mission_from_a_node_and_the_owner_runs_it(
    shop_db: Path, start_owner: Any, invoke: Any, invoke_json: Any
) -> None:
    """`fork --at approve` makes a new mission of the completed o-4 that reuses its start and
    reserve and waits at approve, run by the owner; o-4 stays as it was."""
    start_owner(shop_db)
    forked = invoke_json(
        "fork",
        "--db",
        shop_db,
        "o-4",
        "--at",
        "approve",
        "--id",
        "o-4b",
        "--app",
        "shop:DEFINITIONS",
        "--json",
    )
    assert forked["id"] == "o-4b"

    def show() -> Any:
        return invoke_json("show", "--db", shop_db, "o-4b", "--json")["mission"]

    fork = wait_until(show, lambda m: m["status"] == "waiting" and m["current_node"] == "approve")
    assert (fork["status"], fork["current_node"]) == ("waiting", "approve")
    assert fork["forked_from"] == "o-4"
    assert fork["nodes"]["reserve"]["output"] == {"reserved": 1}
    assert invoke_json("show", "--db", shop_db, "o-4", "--json")["mission"]["status"] == (
        "completed"
    )
    text = invoke("fork", "--db", shop_db, "o-4", "--at", "approve")
    assert text.exit_code == 2
    assert "fork needs the definitions: pass --app" in text.stderr


def test_purge_deletes_finished_missions_by_age_and_status(
    shop_db: Path, invoke: Any, invoke_json: Any
) -> None:
    """A dry run counts and deletes nothing; a purge deletes the finished missions older than
    the age (of the statuses asked), and never a waiting one."""
    dry = invoke_json("purge", "--db", shop_db, "--older-than", "1h", "--dry-run", "--json")
    assert (dry["matched"], dry["deleted"], dry["dry_run"]) == (1, 0, True)
    assert len(invoke_json("list", "--db", shop_db, "--json")["missions"]) == 4
    text = invoke("purge", "--db", shop_db, "--older-than", "1h", "--dry-run")
    assert text.stdout.startswith("would delete 1 missions finished before ")

    done = invoke("purge", "--db", shop_db, "--older-than", "1h")
    assert done.exit_code == 0, done.output
    assert done.stdout.startswith("deleted 1 missions finished before ")
    ids = [m["id"] for m in invoke_json("list", "--db", shop_db, "--json")["missions"]]
    assert ids == ["o-1", "o-2", "o-4"]

    failed_only = invoke_json(
        "purge", "--db", shop_db, "--older-than", "1m", "--status", "failed", "--json"
    )
    assert failed_only["deleted"] == 0
    everything = invoke_json("purge", "--db", shop_db, "--older-than", "1m", "--json")
    assert everything["deleted"] == 1
    ids = [m["id"] for m in invoke_json("list", "--db", shop_db, "--json")["missions"]]
    assert ids == ["o-1", "o-2"]


def test_purge_beside_a_running_owner_leaves_it_working(
    shop_db: Path, start_owner: Any, invoke: Any, invoke_json: Any
) -> None:
    """Purging while the owner runs deletes what is finished and the owner goes on applying
    signals."""
    start_owner(shop_db)
    assert invoke_json("purge", "--db", shop_db, "--older-than", "1m", "--json")["deleted"] == 2
    moved = invoke_json("signal", "--db", shop_db, "o-2", "pickup", '{"carrier": "ups"}', "--json")
    assert moved["mission"]["status"] == "completed"


def test_purge_needs_an_age_and_a_finished_status(shop_db: Path, invoke: Any) -> None:
    """Without --older-than, or with a status that is not a finished one, purge is a usage
    error (2) and deletes nothing."""
    no_age = invoke("purge", "--db", shop_db)
    assert no_age.exit_code == 2
    assert "Missing option '--older-than'" in no_age.stderr
    waiting = invoke("purge", "--db", shop_db, "--older-than", "1m", "--status", "waiting")
    assert waiting.exit_code == 2
    assert "'waiting' is not one of" in waiting.stderr
