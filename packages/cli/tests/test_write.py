"""signal, cancel and submission: handed to the process that owns the database (the example
shop run as its own process, with its runtime), or checked here first with --app."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import trio

from mission_control.adapter_sqlite import SQLiteCommander

WATCHDOG = 60.0
"""Seconds a test waits for the command's process at most."""


def test_a_signal_is_applied_by_the_owner_and_the_mission_moves(
    shop_db: Path, owner: Any, invoke: Any, invoke_json: Any
) -> None:
    """`signal` stores the signal for the owner, waits for its verdict and prints the mission
    as the owner left it at rest; o-1, approved, goes on with its buffered pickup to the end."""
    signalled = invoke_json("signal", "--db", shop_db, "o-1", "approve", '{"by": "ops"}', "--json")
    assert signalled["submission"]["state"] == "applied"
    assert signalled["submission"]["kind"] == "signal"
    assert signalled["submission"]["payload"] == {"by": "ops"}
    # Not at the pickup it had buffered: the owner takes it on the way, as its own signal() does.
    assert signalled["mission"]["status"] == "completed"
    shown = invoke_json("show", "--db", shop_db, "o-1", "--json")
    assert shown["mission"]["output"] == "shipped with dhl"
    text = invoke("signal", "--db", shop_db, "o-2", "pickup", '{"carrier": "ups"}')
    assert text.exit_code == 0, text.output
    assert text.stdout.startswith("signal 'pickup' to o-2 applied (submission 2); mission o-2 is")
    assert "completed" in text.stdout


def test_a_signal_the_owner_refuses_fails_with_its_error(
    shop_db: Path, owner: Any, invoke: Any, invoke_json: Any
) -> None:
    """Without --app the payload goes raw; the owner's refusal is the command's error (1), kept
    with the submission, and the mission is as it was."""
    before = invoke_json("show", "--db", shop_db, "o-2", "--json")["mission"]
    refused = invoke("signal", "--db", shop_db, "o-2", "pickup", '{"carrier": 7}')
    assert refused.exit_code == 1
    assert refused.stderr.startswith(
        "Error: InvalidSignalPayloadError: signal 'pickup' for mission 'o-2' rejected its "
        "payload: expected an object with the str field 'carrier', got {'carrier': 7}"
    )
    assert "mission-control show MISSION" in refused.stderr
    kept = invoke_json("submission", "--db", shop_db, "1", "--json")
    assert kept["state"] == "refused"
    assert kept["refusal"]["type"] == "InvalidSignalPayloadError"
    assert kept["submitted_by"].startswith("pid ")
    assert invoke_json("show", "--db", shop_db, "o-2", "--json")["mission"] == before


def test_cancel_is_applied_by_the_owner(
    shop_db: Path, owner: Any, invoke: Any, invoke_json: Any
) -> None:
    """`cancel --reason` ends the mission cancelled through the owner, its reason kept."""
    cancelled = invoke_json(
        "cancel", "--db", shop_db, "o-2", "--reason", "customer called", "--json"
    )
    assert cancelled["submission"]["kind"] == "cancel"
    assert cancelled["submission"]["payload"] == {"reason": "customer called", "compensate": False}
    assert cancelled["mission"]["status"] == "cancelled"
    shown = invoke_json("show", "--db", shop_db, "o-2", "--json")["mission"]
    assert shown["cancel_request"]["reason"] == "customer called"
    again = invoke("cancel", "--db", shop_db, "o-2")
    assert again.exit_code == 1
    assert "MissionNotActiveError" in again.stderr


def test_with_app_a_bad_signal_is_refused_here_storing_nothing(shop_db: Path, invoke: Any) -> None:
    """With --app the name and payload are checked in the command, as the owner would: an
    unknown signal or a bad payload fails (1) and no submission is stored (no owner runs)."""
    app = ["--app", "shop:DEFINITIONS"]
    bad = invoke("signal", "--db", shop_db, *app, "o-2", "pickup", '{"carrier": 7}')
    assert bad.exit_code == 1
    assert "InvalidSignalPayloadError" in bad.stderr
    unknown = invoke("signal", "--db", shop_db, *app, "o-2", "refund", "{}")
    assert unknown.exit_code == 1
    assert "UnknownSignalError" in unknown.stderr
    nothing = invoke("submission", "--db", shop_db, "1")
    assert nothing.exit_code == 1
    assert "there is no submission 1" in nothing.stderr


def test_no_wait_returns_the_stored_submission_which_the_next_owner_applies(
    shop_db: Path, start_owner: Any, invoke: Any, invoke_json: Any
) -> None:
    """`--no-wait` returns the pending submission at once, with no owner running; the owner
    started next applies it, and `submission` then says so."""
    stored = invoke_json(
        "signal", "--db", shop_db, "o-1", "approve", '{"by": "ops"}', "--no-wait", "--json"
    )
    assert stored["submission"]["state"] == "pending"
    assert stored["mission"] is None
    seq = str(stored["submission"]["seq"])
    assert invoke_json("submission", "--db", shop_db, seq, "--json")["state"] == "pending"
    owner = start_owner(shop_db)
    # The owner's start-up tick applied it; waiting for the verdict returns at once.
    waited = invoke("signal", "--db", shop_db, "o-2", "pickup", '{"carrier": "ups"}')
    assert waited.exit_code == 0, waited.output
    owner.stop()
    applied = invoke("submission", "--db", shop_db, seq)
    assert applied.stdout.strip() == f"submission {seq}: signal 'approve' for o-1, applied"


def test_a_verdict_not_come_within_the_timeout_exits_3_leaving_it_stored(
    shop_db: Path, invoke: Any, invoke_json: Any
) -> None:
    """With no owner, `--timeout` runs out: exit 3, saying the submission is stored and how to
    follow it."""
    late = invoke("cancel", "--db", shop_db, "o-1", "--timeout", "0.2")
    assert late.exit_code == 3
    assert "cancellation of o-1 is stored as submission 1, but no owner had applied it" in (
        late.stderr
    )
    assert "mission-control submission 1" in late.stderr
    assert invoke_json("submission", "--db", shop_db, "1", "--json")["state"] == "pending"


def test_bad_input_is_refused_before_anything_is_stored(
    shop_db: Path, invoke: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    """A payload that is not JSON, a --timeout that is not a number and an --app that cannot be
    loaded (its module raising or not Python) are usage errors (2) saying what to write
    instead; nothing is submitted."""
    (tmp_path / "raising_app.py").write_text("raise RuntimeError('config missing')\n")
    (tmp_path / "broken_app.py").write_text("def (\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    not_json = invoke("signal", "--db", shop_db, "o-1", "approve", "{by: ops}")
    assert not_json.exit_code == 2
    assert "the payload is not JSON" in not_json.stderr
    assert "quote it for the shell" in not_json.stderr
    nan = invoke("signal", "--db", shop_db, "o-1", "approve", "{}", "--timeout", "nan")
    assert nan.exit_code == 2
    assert "nan is not a number of seconds" in nan.stderr
    for app, message in [
        ("shop", "is not of the form module:attribute"),
        ("no_such_module:X", "cannot import 'no_such_module'"),
        ("raising_app:X", "importing 'raising_app' raised RuntimeError: config missing"),
        ("broken_app:X", "importing 'broken_app' raised SyntaxError: invalid syntax"),
        ("shop:NOPE", "shop has no attribute 'NOPE'"),
        ("shop:parse_order", "is a function that needs arguments"),
        ("shop:ORDER.name", "is a str: it must be a mission definition, a list of them"),
    ]:
        result = invoke("signal", "--db", shop_db, "--app", app, "o-1", "approve", "{}")
        assert result.exit_code == 2, app
        assert message in result.stderr, (app, result.stderr)
    nothing = invoke("submission", "--db", shop_db, "1")
    assert "there is no submission 1" in nothing.stderr


def test_submission_json_survives_a_round_trip(shop_db: Path, invoke_json: Any) -> None:
    """A stored submission reads back with what was submitted: kind, mission, name, payload."""
    stored = invoke_json(
        "signal", "--db", shop_db, "o-2", "pickup", '{"carrier": "ups"}', "--no-wait", "--json"
    )["submission"]
    read = invoke_json("submission", "--db", shop_db, str(stored["seq"]), "--json")
    assert read == stored
    assert (read["kind"], read["mission_id"], read["name"]) == ("signal", "o-2", "pickup")
    assert json.dumps(read["payload"]) == '{"carrier": "ups"}'


def test_an_app_without_the_missions_definition_is_said_so(
    shop_db: Path, invoke: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    """With an --app that lacks the mission's definition, fork's hint says --app must hold it
    (not to pass --app, which was passed), and signal and retry --from say on stderr that the
    owner alone checks what --app would have checked here."""
    (tmp_path / "refunds.py").write_text(
        "from mission_control.core import m\n"
        'DEFINITIONS = [m.define("refund").start(parse=dict).end()]\n'
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    app = ("--db", shop_db, "--app", "refunds:DEFINITIONS")
    fork = invoke("fork", "o-3", "--at", "reserve", *app)
    assert fork.exit_code == 1
    assert "UnknownDefinitionError" in fork.stderr
    assert "hint: --app module:attribute must name the application's definitions, the one " in (
        fork.stderr
    )
    signal = invoke("signal", "o-1", "approve", "{}", "--no-wait", *app)
    assert signal.exit_code == 0, signal.output
    assert signal.stderr == (
        "note: --app refunds:DEFINITIONS has no version 1 of 'order' (mission o-1's), so the "
        "owner alone checks the signal's name and payload\n"
    )
    retry = invoke("retry", "o-3", "--from", "reserve", "--no-wait", *app)
    assert retry.exit_code == 0, retry.output
    assert "so the owner alone checks the node of --from" in retry.stderr
    shop = ("--db", shop_db, "--app", "shop:DEFINITIONS")
    checked = invoke("signal", "o-2", "pickup", '{"carrier": "ups"}', "--no-wait", *shop)
    assert checked.exit_code == 0, checked.output
    assert checked.stderr == ""


MARKUP_APP = """
from mission_control.core import m
BRACKETED = m.define("y[/bold]").start(parse=dict).need_to("go", parse=dict).end()
RED = m.define("[red]def").start(parse=dict).end()
DEFINITIONS = [BRACKETED, RED]
"""


async def _bracketed(db: Path) -> None:
    import markup_app  # type: ignore[import-not-found]  # written by the test

    async with SQLiteCommander(db, markup_app.DEFINITIONS) as commander:
        for mission_id in ("z[/bold]", "z[/bold]2"):
            await commander.start(markup_app.BRACKETED, {}, id=mission_id)
        await commander.start(markup_app.RED, {}, id="[/]r")


def test_ids_and_names_holding_markup_are_printed_as_they_are(
    tmp_path: Path, monkeypatch: Any, invoke: Any
) -> None:
    """Ids and definition names holding rich markup (`[/bold]`, `[red]`) are printed as they
    are by stats, list's next page, signal and fork, never read as markup (a crash after
    storing the submission, or a colour)."""
    (tmp_path / "markup_app.py").write_text(MARKUP_APP)
    monkeypatch.syspath_prepend(str(tmp_path))
    db = tmp_path / "markup.sqlite"
    trio.run(_bracketed, db)
    stats = invoke("stats", "--db", db)
    assert stats.exit_code == 0, stats.output
    assert "y[/bold]" in stats.stdout
    assert "[red]def" in stats.stdout
    page = invoke("list", "--db", db, "--limit", "1")
    assert page.stdout.splitlines()[-1] == "more: --after [/]r"
    signal = invoke("signal", "z[/bold]", "go", "{}", "--no-wait", "--db", db)
    assert signal.exit_code == 0, signal.output
    assert signal.stdout.startswith("signal 'go' to z[/bold] stored as submission 1 (pending)")
    fork = invoke(
        "fork",
        "z[/bold]2",
        "--at",
        "go",
        "--id",
        "f[/]",
        "--db",
        db,
        "--app",
        "markup_app:DEFINITIONS",
    )
    assert fork.exit_code == 0, fork.output
    assert fork.stdout.startswith("forked z[/bold]2 at 'go' into f[/] (waiting")


def test_an_interrupted_wait_says_the_submission_is_stored(shop_db: Path, invoke: Any) -> None:
    """Ctrl-C (SIGINT) while `signal` waits for a verdict no owner gives: exit 3 saying the
    signal is stored as a pending submission and how to follow it, not "Aborted!"."""
    waiting = subprocess.Popen(
        [sys.executable, "-m", "mission_control.cli", "signal", "o-1", "approve", '{"by": "x"}'],
        env={**os.environ, "MISSION_CONTROL_DB": str(shop_db)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + WATCHDOG
        while invoke("submission", "--db", shop_db, "1").exit_code != 0:
            assert time.monotonic() < deadline, "the signal was not stored in time"
            assert waiting.poll() is None, waiting.communicate()
        waiting.send_signal(signal.SIGINT)
        _, stderr = waiting.communicate(timeout=WATCHDOG)
    finally:
        if waiting.poll() is None:
            waiting.kill()
    assert waiting.returncode == 3, stderr
    assert (
        "Error: interrupted: signal 'approve' to o-1 is stored as submission 1 (pending); the "
        "owner applies it at its next tick\n"
    ) in stderr
    assert "mission-control submission 1 --db" in stderr


def test_pause_and_resume_are_applied_by_the_owner(
    shop_db: Path, owner: Any, invoke: Any, invoke_json: Any
) -> None:
    """`pause --reason` pauses the mission through the owner; `list --status paused` finds it,
    a signal sent meanwhile is buffered (the mission stays paused), `doctor` says it is paused
    and how to resume it, and `resume` has the owner take the signal and run the mission to its
    end."""
    paused = invoke_json("pause", "--db", shop_db, "o-2", "--reason", "stock count", "--json")
    assert paused["submission"]["kind"] == "pause"
    assert paused["submission"]["payload"] == {"reason": "stock count"}
    assert paused["mission"]["status"] == "paused"
    assert paused["mission"]["pause"]["reason"] == "stock count"
    listed = invoke_json("list", "--db", shop_db, "--status", "paused", "--json")
    assert [mission["id"] for mission in listed["missions"]] == ["o-2"]
    signalled = invoke_json(
        "signal", "--db", shop_db, "o-2", "pickup", '{"carrier": "ups"}', "--json"
    )
    assert signalled["mission"]["status"] == "paused"
    told = invoke_json("doctor", "--db", shop_db, "o-2", "--json")
    assert told["problem"] == "paused"
    assert "(stock count) at 'pickup'" in told["diagnosis"]
    assert told["command"] == f"when it may go on: mission-control resume o-2 --db {shop_db}"
    text = invoke("resume", "--db", shop_db, "o-2")
    assert text.exit_code == 0, text.output
    assert text.stdout.startswith("resume of o-2 applied (submission 3); mission o-2 is")
    assert "completed" in text.stdout
    again = invoke("pause", "--db", shop_db, "o-2")
    assert again.exit_code == 1
    assert "MissionNotActiveError" in again.stderr
