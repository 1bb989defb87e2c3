"""doctor: one line on why a mission is not moving, and what would move it."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
from shop import DEFINITIONS, ORDER  # examples/, on sys.path by conftest.py

from mission_control.adapter_sqlite import SQLiteCommander, create_sqlite_persistence_adapter
from mission_control.cli._doctor import Facts, Finding, diagnose
from mission_control.core import MissionSnapshot, Pause, TimelineEntry, TimelineKind, m
from mission_control.core.storage import NewSignal

CHANGED_APPS = {
    "shop_v2": 'from mission_control.core import m\nDEFINITIONS = [m.define("order", version=2)'
    '.start(parse=dict).need_to("approve", parse=dict).end()]\n',
    "shop_renamed": 'from mission_control.core import m\nDEFINITIONS = [m.define("order")'
    '.start(parse=dict).step("reserve", dict).need_to("approval", parse=dict).end()]\n',
    "refunds_only": 'from mission_control.core import m\nDEFINITIONS = [m.define("refund")'
    ".start(parse=dict).end()]\n",
    # A child mission whose step fails (failing its parent), and a saga whose undo fails.
    "failing": "from mission_control.core import m\n"
    "def broken(ctx):\n    raise RuntimeError('broken')\n"
    'KID = m.define("kid").start(parse=dict).step("work", broken).end()\n'
    'PARENT = m.define("parent").start(parse=dict).child("kid", KID, lambda ctx: {}).end()\n'
    'SAGA = m.define("saga").start(parse=dict).step("charge", lambda ctx: "ch-1", '
    'compensate=broken).step("ship", broken).end()\n'
    "DEFINITIONS = [PARENT, SAGA]\n",
    # A loop whose body's need_to is renamed without a new version: only below the top level.
    "looper": "from mission_control.core import m\nLOOPER = m.define('looper').start(parse=dict)"
    ".loop('rounds', lambda b: b.need_to('tick', parse=dict), "
    "until=lambda ctx: ctx.iteration >= 3, max_iterations=5).end()\nDEFINITIONS = [LOOPER]\n",
    "looper_changed": "from mission_control.core import m\nDEFINITIONS = [m.define('looper')"
    ".start(parse=dict).loop('rounds', lambda b: b.need_to('tock', parse=dict), "
    "until=lambda ctx: ctx.iteration >= 3, max_iterations=5).end()]\n",
}


@pytest.fixture
def apps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Applications whose definitions changed since the shop's missions started."""
    for name, source in CHANGED_APPS.items():
        (tmp_path / f"{name}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))


def doctor(invoke_json: Any, db: Path, mission: str, *args: str) -> dict[str, Any]:
    return invoke_json("doctor", "--db", db, mission, "--json", *args)


def test_a_mission_waiting_for_a_signal_never_sent_is_told_with_the_buffered_ones(
    shop_db: Path, invoke: Any, invoke_json: Any
) -> None:
    """A mission waiting for a signal never sent: the line names the signal, since when, the
    other signals it has buffered, and the `signal` command that would move it."""
    found = doctor(invoke_json, shop_db, "o-1")
    assert found["problem"] == "waiting-for-signal"
    assert found["buffered_signals"] == ["pickup"]
    assert found["owner_pid"] is None
    assert "waiting for the signal 'approve' since " in found["diagnosis"]
    assert found["diagnosis"].endswith("never sent; buffered: 'pickup'")
    assert found["command"] == f"mission-control signal o-1 approve PAYLOAD-JSON --db {shop_db}"
    text = invoke("doctor", "--db", shop_db, "o-2").stdout.splitlines()
    assert text[0].startswith("o-2: waiting for the signal 'pickup' since ")
    assert text[0].endswith("never sent; nothing buffered")
    assert text[1] == f"  fix: mission-control signal o-2 pickup PAYLOAD-JSON --db {shop_db}"


def test_failed_and_ended_missions_are_told_so(shop_db: Path, invoke_json: Any) -> None:
    """A failed mission is told with its node and error, a completed one as ended."""
    failed = doctor(invoke_json, shop_db, "o-3")
    assert failed["problem"] == "failed"
    assert failed["diagnosis"].startswith("failed at 'reserve' ")
    assert failed["diagnosis"].endswith("RuntimeError: only 10 lamp in stock")
    assert failed["command"] == f"fix the cause, then mission-control retry o-3 --db {shop_db}"
    ended = doctor(invoke_json, shop_db, "o-4")
    assert ended["problem"] == "ended"
    assert ended["diagnosis"].startswith("completed ")
    assert ended["command"] is None


def test_work_submitted_with_no_owner_is_told_to_need_one(
    shop_db: Path, invoke: Any, invoke_json: Any
) -> None:
    """A signal submitted while no process owns the database: doctor names the pending
    submission and says to start the application."""
    invoke("signal", "--db", shop_db, "o-1", "approve", '{"by": "ops"}', "--no-wait")
    found = doctor(invoke_json, shop_db, "o-1")
    assert found["problem"] == "no-owner"
    assert found["pending_submissions"] == [1]
    assert found["diagnosis"] == (
        "submission 1 (signal) waits, but no process owns the database: nothing moves it"
    )
    assert found["command"].startswith("start the application that owns the database")


async def _leave_pause_requested(db: Path) -> None:
    # What a pause's first write leaves when its process dies before the second pauses it.
    adapter = create_sqlite_persistence_adapter(db)
    try:
        asked = datetime(2030, 1, 1, tzinfo=UTC)
        await adapter.request_pause(
            "o-1",
            Pause(asked, "audit"),
            [TimelineEntry(asked, TimelineKind.PAUSE_REQUESTED, "approve")],
        )
    finally:
        await adapter.aclose()


def test_a_waiting_mission_left_with_its_pause_not_applied_is_told_then_paused_by_the_owner(
    shop_db: Path, start_owner: Any, invoke_json: Any
) -> None:
    """A waiting mission whose pause request was stored and not applied (its process died
    between the pause's two writes) is told as such; with no owner, that one is needed, and
    the owner that starts pauses it with that request."""
    trio.run(_leave_pause_requested, shop_db)
    found = doctor(invoke_json, shop_db, "o-1")
    assert found["problem"] == "no-owner"
    assert found["diagnosis"].startswith(
        "waiting at 'approve' with a pause requested 2030-01-01 00:00:00Z ("
    )
    assert found["diagnosis"].endswith(
        " (audit) and not applied, but no process owns the database: nothing moves it"
    )
    start_owner(shop_db)
    paused = doctor(invoke_json, shop_db, "o-1")
    assert paused["problem"] == "paused"
    assert "paused since 2030-01-01 00:00:00Z (" in paused["diagnosis"]
    assert "(audit) at 'approve'" in paused["diagnosis"]


def test_a_pause_pending_with_an_owner_is_told_with_the_pause_that_applies_it(
    shop_db: Path,
) -> None:
    """Told while an owner lives (its process let go of the mission between the pause's two
    writes: a cancelled caller), a waiting mission's pause request not applied is a pause
    pending, and the fix is the pause command, which applies it."""
    trio.run(_leave_pause_requested, shop_db)

    async def snapshot() -> MissionSnapshot:
        adapter = create_sqlite_persistence_adapter(shop_db, read_only=True)
        try:
            found = await adapter.load("o-1")
        finally:
            await adapter.aclose()
        assert found is not None
        return found

    facts = Facts(
        snapshot=trio.run(snapshot),
        timeline=[],
        buffered={},
        pending=[],
        owner=4242,
        parent_status=None,
        recorded={},
        definitions=None,
        now=datetime(2030, 1, 1, 0, 5, tzinfo=UTC),
        margin=timedelta(minutes=1),
        db="shop.sqlite",
    )
    told = diagnose(facts)
    assert told.finding is Finding.PAUSE_PENDING
    assert told.line == (
        "waiting at 'approve' with a pause requested 2030-01-01 00:00:00Z (5m ago) (audit) and "
        "not applied: the process that ran it stopped as it reached its wait; the owner pauses "
        "it at its next tick"
    )
    assert told.command == "to pause it now: mission-control pause o-1 --db shop.sqlite"


async def _start_in_background(db: Path) -> None:
    # As a web worker beside a dead owner would: stored at once, due now, run by the owner.
    async with SQLiteCommander(db, DEFINITIONS, role="submitter") as commander:
        await commander.start(ORDER, {"item": "lamp", "quantity": 2}, id="o-5", background=True)


def test_a_due_mission_is_told_whether_an_owner_runs_and_which(
    shop_db: Path, invoke_json: Any
) -> None:
    """A mission due past the margin: with no owner, doctor says to start one; with an owner
    running no runtime (this process here), it names the owner's process."""
    trio.run(_start_in_background, shop_db)
    found = doctor(invoke_json, shop_db, "o-5", "--margin", "0s")
    assert found["problem"] == "no-owner"
    assert found["diagnosis"].startswith("due since ")
    assert found["diagnosis"].endswith("but no process owns the database: nothing moves it")
    assert doctor(invoke_json, shop_db, "o-5", "--margin", "1h")["problem"] == "moving"
    owner = create_sqlite_persistence_adapter(shop_db, role="owner")
    try:
        found = doctor(invoke_json, shop_db, "o-5", "--margin", "0s")
    finally:
        owner.close()
    assert found["problem"] == "overdue"
    assert found["owner_pid"] == os.getpid()
    assert f"although process {os.getpid()} owns the database" in found["diagnosis"]
    assert f"make sure process {os.getpid()} runs a runtime" in found["command"]


SKEW_V2 = m.define("order", version=2).start(parse=dict).need_to("approve", parse=dict).end()


async def _start_v2_from_a_newer_worker(db: Path) -> None:
    # A rolling deploy: the owner's release registers version 1 only (its start recorded that
    # in the store); a web worker of the next release (a submitter) starts a version-2 order.
    async with SQLiteCommander(db, DEFINITIONS, role="owner"):
        pass
    async with SQLiteCommander(db, [*DEFINITIONS, SKEW_V2], role="submitter") as worker:
        await worker.start(SKEW_V2, {"item": "lamp"}, id="o-new", background=True)


def test_a_version_no_owner_registered_is_named_not_the_runtime(
    shop_db: Path, invoke: Any, invoke_json: Any
) -> None:
    """A mission on a version no owner of the database has registered (started by a newer
    submitter): doctor says no owner can move it and to deploy that version, without --app,
    instead of blaming the owner's runtime."""
    trio.run(_start_v2_from_a_newer_worker, shop_db)
    owner = create_sqlite_persistence_adapter(shop_db, role="owner")
    try:
        found = doctor(invoke_json, shop_db, "o-new", "--margin", "0s")
        text = invoke("doctor", "--db", shop_db, "o-new", "--margin", "0s").stdout
    finally:
        owner.close()
    assert found["problem"] == "version-unregistered"
    assert found["diagnosis"] == (
        "it runs on version 2 of 'order', which no process owning the database has registered "
        f"(process {os.getpid()} owns it now; the owners registered version 1 of it): none can "
        "move it"
    )
    assert found["command"].startswith("deploy version 2 of 'order' to the application")
    assert text.startswith("o-new: it runs on version 2 of 'order', which no process")
    # The orders on version 1 are told as before.
    assert doctor(invoke_json, shop_db, "o-1")["problem"] == "waiting-for-signal"


def test_with_app_a_missing_definition_version_or_node_is_named(
    shop_db: Path, apps: None, invoke_json: Any
) -> None:
    """With --app, doctor compares the mission with the application's definitions: a
    definition it no longer has, another version, a node renamed."""
    missing = doctor(invoke_json, shop_db, "o-1", "--app", "refunds_only:DEFINITIONS")
    assert missing["problem"] == "definition-missing"
    assert (
        "its definition 'order' is not among the application's (refund)" in (missing["diagnosis"])
    )
    version = doctor(invoke_json, shop_db, "o-1", "--app", "shop_v2:DEFINITIONS")
    assert version["problem"] == "version-missing"
    assert version["diagnosis"] == (
        "it runs on version 1 of 'order', but the application has version 2"
    )
    renamed = doctor(invoke_json, shop_db, "o-1", "--app", "shop_renamed:DEFINITIONS")
    assert renamed["problem"] == "node-missing"
    assert renamed["diagnosis"] == (
        "it is at 'approve', a node its definition 'order' (version 1) no longer has"
    )
    same = doctor(invoke_json, shop_db, "o-1", "--app", "shop:DEFINITIONS")
    assert same["problem"] == "waiting-for-signal"


def test_doctor_of_an_unknown_mission_fails(shop_db: Path, invoke: Any) -> None:
    """doctor of a mission the database does not hold fails (1), pointing to `list`."""
    result = invoke("doctor", "--db", shop_db, "o-9")
    assert result.exit_code == 1
    assert "there is no mission 'o-9'" in result.stderr


def test_a_mission_left_running_is_told_by_whether_its_owner_lives(
    tmp_path: Path, invoke: Any, invoke_json: Any
) -> None:
    """A mission running a step that hangs in a live owner is told as running long in that
    process, with the pause asked for meanwhile; once the owner is SIGKILLed, as left running
    with no owner to resume it, and the pause still requested."""
    db = tmp_path / "hang.sqlite"
    child = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("hanging_owner.py")), str(db)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        ready, _, _ = select.select([child.stdout], [], [], 60)
        assert ready, "the owner did not start its step in time"
        assert child.stdout.readline().strip() == "HANGING"
        running = doctor(invoke_json, db, "h-1", "--margin", "0s")
        assert running["problem"] == "running-long"
        assert running["owner_pid"] == child.pid
        assert "running 'work' since " in running["diagnosis"]
        assert (
            f"in process {child.pid}: a step that takes this long, or hangs"
            in (running["diagnosis"])
        )
        assert doctor(invoke_json, db, "h-1")["problem"] == "moving"
        asked = invoke("pause", "--db", db, "h-1", "--reason", "audit")
        assert asked.exit_code == 0, asked.output
        requested = doctor(invoke_json, db, "h-1")
        assert requested["problem"] == "moving"
        assert requested["diagnosis"].startswith(f"running 'work' in process {child.pid}; ")
        assert "; a pause was requested " in requested["diagnosis"]
        assert requested["diagnosis"].endswith(
            " (audit): it pauses at its next node boundary (after a crash, before it runs its "
            "node again)"
        )
    finally:
        child.send_signal(signal.SIGKILL)
        child.communicate(timeout=60)
    left = doctor(invoke_json, db, "h-1")
    assert left["problem"] == "no-owner"
    assert left["owner_pid"] is None
    assert left["diagnosis"].startswith(
        "left running at 'work' by a process that stopped, but no process owns the database: "
        "nothing moves it; a pause was requested "
    )
    assert left["diagnosis"].endswith(
        " (audit): it pauses at its next node boundary (after a crash, before it runs its "
        "node again)"
    )


def test_check_names_versions_the_app_lacks_or_changed(
    shop_db: Path, apps: None, invoke: Any, invoke_json: Any
) -> None:
    """`check --app` passes (0) when the application can run every unfinished mission, and
    fails (1) naming the version it lacks, or whose shape changed, and the missions on it."""
    fine = invoke("check", "--db", shop_db, "--app", "shop:DEFINITIONS")
    assert fine.exit_code == 0, fine.output
    assert fine.stdout.startswith("every version unfinished missions use is registered")
    missing = invoke("check", "--db", shop_db, "--app", "shop_v2:DEFINITIONS")
    assert missing.exit_code == 1
    assert "definition 'order' version 1 is not registered" in missing.stdout
    assert "o-1, o-2" in missing.stdout
    changed = invoke("check", "--db", shop_db, "--app", "shop_renamed:DEFINITIONS", "--json")
    assert changed.exit_code == 1
    report = json.loads(changed.stdout)
    assert report["ok"] is False
    assert [(p["definition"], p["version"], p["kind"]) for p in report["problems"]] == [
        ("order", 1, "changed")
    ]
    assert report["problems"][0]["missions"] == ["o-1", "o-2"]
    no_app = invoke("check", "--db", shop_db)
    assert no_app.exit_code == 2
    assert "check needs the definitions" in no_app.stderr


async def _buffer_the_awaited_signal(db: Path) -> None:
    # The state a signal that came while the owner was down (or raced the wait) leaves: the
    # mission waits at `approve` with an `approve` in its inbox, not taken yet.
    async with create_sqlite_persistence_adapter(db) as store:
        waiting = await store.load("o-1")
        assert waiting is not None
        came = waiting.updated_at
        await store.insert(
            attrs.evolve(waiting, id="o-early", revision=1),
            [TimelineEntry(came, TimelineKind.SIGNAL_BUFFERED, "approve")],
            signals=[NewSignal("approve", {"by": "early"}, came)],
        )


def test_a_signal_awaited_and_buffered_is_told_as_buffered_not_never_sent(
    shop_db: Path, invoke_json: Any
) -> None:
    """A mission waiting for a signal that is buffered already: doctor says it is buffered,
    since when, and that the owner takes it (not "never sent" with a command sending a
    second one); with no owner, to start the application."""
    trio.run(_buffer_the_awaited_signal, shop_db)
    found = doctor(invoke_json, shop_db, "o-early")
    assert found["problem"] == "no-owner"
    assert "one sent " in found["diagnosis"]
    assert "is buffered and not taken yet, but no process owns the database" in found["diagnosis"]
    owner = create_sqlite_persistence_adapter(shop_db, role="owner")
    try:
        found = doctor(invoke_json, shop_db, "o-early")
    finally:
        owner.close()
    assert found["problem"] == "signal-buffered"
    assert found["diagnosis"].startswith("waiting for the signal 'approve' since ")
    assert found["diagnosis"].endswith(
        "is buffered and not taken yet: the owner takes it at its next tick"
    )
    assert found["command"] is None


async def _loop_once(db: Path) -> None:
    import looper  # type: ignore[import-not-found]  # written by the apps fixture

    async with SQLiteCommander(db, looper.DEFINITIONS) as commander:
        await commander.start(looper.LOOPER, {}, id="l-1")
        await commander.signal("l-1", "tick", {})


def test_with_app_a_version_changed_below_the_top_level_is_named(
    tmp_path: Path, apps: None, invoke_json: Any
) -> None:
    """With --app whose version of the mission's definition was changed in place below the
    top level (a loop body's need_to renamed), doctor says the shape changed, from the stored
    fingerprint, instead of suggesting a signal the owner would refuse."""
    db = tmp_path / "loop.sqlite"
    trio.run(_loop_once, db)
    same = doctor(invoke_json, db, "l-1", "--app", "looper:DEFINITIONS")
    assert same["problem"] == "waiting-for-signal"
    changed = doctor(invoke_json, db, "l-1", "--app", "looper_changed:DEFINITIONS")
    assert changed["problem"] == "version-changed"
    assert changed["diagnosis"].startswith(
        "version 1 of 'looper' in the application has another shape than the one its "
        "missions started on"
    )
    assert changed["command"].startswith("give the changed definition a new version")


async def _fail_a_child_and_a_saga(db: Path) -> None:
    import failing  # type: ignore[import-not-found]  # written by the apps fixture

    async with SQLiteCommander(db, failing.DEFINITIONS) as commander:
        await commander.start(failing.PARENT, {}, id="p-1")
        await commander.start(failing.SAGA, {}, id="s-1")


def test_the_fix_for_a_failed_mission_is_one_the_library_accepts(
    tmp_path: Path, apps: None, invoke: Any, invoke_json: Any
) -> None:
    """A failed child mission's fix is its failed parent's retry from the child node, and a
    mission whose compensations ran (one failed) is forked afresh at start: doctor no longer
    suggests the retry the library refuses for them; the retry it suggests is accepted."""
    db = tmp_path / "failing.sqlite"
    trio.run(_fail_a_child_and_a_saga, db)
    kid = doctor(invoke_json, db, "p-1/kid")
    assert kid["problem"] == "failed"
    assert kid["command"] == (f"fix the cause, then mission-control retry p-1 --from kid --db {db}")
    app = ("--app", "failing:DEFINITIONS", "--no-wait")
    refused = invoke("retry", "--db", db, "p-1/kid", *app)
    assert refused.exit_code == 1
    assert "MissionNotRetryableError" in refused.stderr
    accepted = invoke("retry", "--db", db, "p-1", "--from", "kid", *app)
    assert accepted.exit_code == 0, accepted.output
    saga = doctor(invoke_json, db, "s-1")
    assert saga["problem"] == "failed"
    assert "CompensationFailedError" in saga["diagnosis"]
    assert saga["command"] == (
        "fix the cause, then run it afresh: mission-control fork s-1 --at start --app "
        f"MODULE:ATTRIBUTE --db {db}"
    )


FAMILY_APP = """\
from mission_control.core import m

KID = m.define("kid").start(parse=dict).need_to("done", parse=dict).end()
PARENT = m.define("parent").start(parse=dict).child("kid", KID, lambda ctx: {}).end()
DEFINITIONS = [PARENT]
"""


def test_a_child_mission_is_diagnosed_and_drawn_with_the_definition_its_parent_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, invoke: Any, invoke_json: Any
) -> None:
    """--app gives doctor and graph the definitions the application's child nodes start, as
    its commander registers them: a waiting child mission is diagnosed by its own wait."""
    (tmp_path / "family.py").write_text(FAMILY_APP)
    monkeypatch.syspath_prepend(str(tmp_path))
    import family  # pyright: ignore[reportMissingImports]

    db = tmp_path / "family.sqlite"

    async def fill() -> None:
        async with SQLiteCommander(db, family.DEFINITIONS) as commander:
            await commander.start(family.PARENT, {}, id="p")

    trio.run(fill)
    found = doctor(invoke_json, db, "p/kid", "--app", "family:DEFINITIONS")
    assert found["problem"] == "waiting-for-signal"
    assert found["command"] == f"mission-control signal p/kid done PAYLOAD-JSON --db {db}"
    drawn = invoke("graph", "kid", "p/kid", "--db", db, "--app", "family:DEFINITIONS")
    assert drawn.exit_code == 0, drawn.output
    assert "class n1 waiting" in drawn.stdout


def test_an_app_the_application_could_not_start_with_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, invoke: Any
) -> None:
    """--app holding two different definitions of one name and version is refused (2) with
    the error the application's commander would raise, by check and graph alike."""
    (tmp_path / "twice.py").write_text(
        "from mission_control.core import m\n"
        'DEFINITIONS = [m.define("w").start(parse=dict).end(),\n'
        '               m.define("w").start(parse=dict).step("x", dict).end()]\n'
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    db = tmp_path / "empty.sqlite"
    trio.run(_create, db)
    for args in (("check", "--db", db), ("graph", "w")):
        result = invoke(*args, "--app", "twice:DEFINITIONS")
        assert result.exit_code == 2, result.output
        assert "two definitions are named 'w' with version 1" in result.stderr


async def _create(db: Path) -> None:
    async with SQLiteCommander(db, []):
        pass
