"""schedule: create, list, show, pause, resume and delete a database's schedules, with and
without the process that owns it running (the example shop, whose runtime fires them)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import trio

from mission_control.adapter_sqlite import SQLiteCommander

WATCHDOG = 60.0
"""Seconds a test reads the owner's database at most, waiting for it to fire a schedule."""

ORDER_INPUT = '{"item": "lamp", "quantity": 1}'


def test_a_schedule_created_while_the_owner_runs_is_fired_by_its_runtime(
    shop_db: Path, owner: Any, invoke_json: Any
) -> None:
    """`schedule create` stores the schedule and wakes the owner, whose runtime arms a tick for
    its first slot and starts the mission, named after the schedule and the slot."""
    created = invoke_json(
        "schedule", "create", "--db", shop_db, "--app", "shop:DEFINITIONS",
        "restock", "order", "--every", "1", "--input", ORDER_INPUT, "--json",
    )  # fmt: skip
    assert created["fires"] == 0
    assert created["trigger"]["every"] == 1
    deadline = time.monotonic() + WATCHDOG
    while (shown := invoke_json("schedule", "show", "--db", shop_db, "restock", "--json"))[
        "fires"
    ] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert shown["fires"] >= 1
    mission_id = shown["last_mission_id"]
    assert mission_id.startswith("restock@")
    mission = invoke_json("show", "--db", shop_db, mission_id, "--json")["mission"]
    assert mission["definition"] == "order"
    assert mission["input"] == {"item": "lamp", "quantity": 1}

    paused = invoke_json("schedule", "pause", "--db", shop_db, "restock", "--json")
    assert paused["paused"]
    assert paused["next_fire_at"] is None


def test_schedules_are_listed_shown_paused_resumed_and_deleted_without_an_owner(
    shop_db: Path, invoke: Any, invoke_json: Any
) -> None:
    """Without an owner the commands write the store directly: create and update (checked
    with --app), list as a table and as JSON, show, pause, resume and delete."""
    created = invoke(
        "schedule", "create", "--db", shop_db, "--app", "shop:DEFINITIONS", "nightly", "order",
        "--cron", "30 2 * * *", "--timezone", "Europe/Paris", "--input", ORDER_INPUT,
        "--missed", "once",
    )  # fmt: skip
    assert created.exit_code == 0, created.output
    assert "schedule nightly" in created.stdout
    assert "cron '30 2 * * *' (Europe/Paris)" in created.stdout

    table = invoke("schedule", "list", "--db", shop_db)
    assert table.exit_code == 0, table.output
    assert "nightly" in table.stdout
    assert "active" in table.stdout
    listed = invoke_json("schedule", "list", "--db", shop_db, "--json")
    assert [s["id"] for s in listed] == ["nightly"]
    assert listed[0]["missed"] == "once"
    assert listed[0]["trigger"] == {"cron": "30 2 * * *", "timezone": "Europe/Paris"}

    app = ("--app", "shop:DEFINITIONS")
    updated = invoke_json(
        "schedule", "update", "--db", shop_db, *app, "nightly", "--cron", "0 4 * * *",
        "--timezone", "Europe/Paris", "--missed", "all", "--json",
    )  # fmt: skip
    assert updated["trigger"] == {"cron": "0 4 * * *", "timezone": "Europe/Paris"}
    assert updated["missed"] == "all"
    assert updated["input"] == {"item": "lamp", "quantity": 1}
    refused = invoke("schedule", "update", "--db", shop_db, *app, "nightly", "--input", "{}")
    assert refused.exit_code == 1
    assert "rejected its input" in refused.stderr
    alone = invoke("schedule", "update", "--db", shop_db, *app, "nightly", "--timezone", "UTC")
    assert "--timezone goes with --cron" in alone.stderr
    assert invoke_json("schedule", "show", "--db", shop_db, "nightly", "--json") == updated

    paused = invoke_json("schedule", "pause", "--db", shop_db, "nightly", "--json")
    assert paused["paused"]
    assert "paused" in invoke("schedule", "show", "--db", shop_db, "nightly").stdout
    resumed = invoke_json("schedule", "resume", "--db", shop_db, "nightly", "--json")
    assert not resumed["paused"]
    assert resumed["next_fire_at"] is not None
    assert resumed["revision"] == paused["revision"] + 1

    deleted = invoke("schedule", "delete", "--db", shop_db, "nightly")
    assert deleted.exit_code == 0
    assert deleted.stdout == "schedule nightly deleted\n"
    assert invoke("schedule", "list", "--db", shop_db).stdout == "no schedules\n"


def test_bad_schedule_commands_fail_clearly_and_store_nothing(
    shop_db: Path, invoke: Any, invoke_json: Any
) -> None:
    """An input the definition refuses, no --app, no timetable or two, a bad cron expression
    and an unknown schedule each fail with a message naming the problem; nothing is stored."""
    create = ("schedule", "create", "--db", shop_db, "nightly", "order")
    app = ("--app", "shop:DEFINITIONS")
    refused = invoke(*create, *app, "--every", "60", "--input", '{"item": "lamp"}')
    assert refused.exit_code == 1
    assert "InvalidInputError: mission 'order' rejected its input" in refused.stderr
    no_app = invoke(*create, "--every", "60", "--input", ORDER_INPUT)
    assert no_app.exit_code == 2
    assert "needs --app" in no_app.stderr
    neither = invoke(*create, *app, "--input", ORDER_INPUT)
    assert "either --cron EXPRESSION or --every SECONDS" in neither.stderr
    both = invoke(*create, *app, "--cron", "@daily", "--every", "60", "--input", ORDER_INPUT)
    assert "either --cron EXPRESSION or --every SECONDS" in both.stderr
    bad_cron = invoke(*create, *app, "--cron", "61 * * * *", "--input", ORDER_INPUT)
    assert "invalid cron expression '61 * * * *'" in bad_cron.stderr
    bad_zone = invoke(*create, *app, "--cron", "@daily", "--timezone", "Mars/Olympus")
    assert "unknown time zone 'Mars/Olympus'" in bad_zone.stderr
    assert invoke_json("schedule", "list", "--db", shop_db, "--json") == []
    for action in ("show", "pause", "resume", "delete"):
        missing = invoke("schedule", action, "--db", shop_db, "nope")
        assert missing.exit_code == 1, (action, missing.output)
        assert "schedule 'nope'" in missing.stderr
        assert "schedule list" in missing.stderr


ALERTS_APP = """
from mission_control.core import m

def service(raw):
    if not isinstance(raw, dict) or not isinstance(raw.get("service"), str):
        raise ValueError("needs {'service': str}")
    return raw

PAGE = m.define("page").start(parse=service, run=lambda ctx: "paged")
DEFINITIONS = [PAGE.triggered_by("heartbeat.missed").end()]
"""


def test_fired_triggers_are_listed_shown_and_replayed_for_the_owner(
    shop_db: Path, tmp_path: Path, monkeypatch: Any, invoke: Any, invoke_json: Any
) -> None:
    """`trigger list` and `show` read the recorded fires; `trigger replay --app` fires one again
    as a new fire naming the original, its missions stored for the owner's runtime; an unknown
    fire, or a replay without --app, fails clearly."""
    (tmp_path / "alerts.py").write_text(ALERTS_APP)
    monkeypatch.syspath_prepend(str(tmp_path))
    from alerts import DEFINITIONS  # pyright: ignore[reportMissingImports]
    from shop import DEFINITIONS as SHOP

    async def fire() -> None:
        async with SQLiteCommander(shop_db, [*SHOP, *DEFINITIONS]) as commander:
            await commander.fire_trigger("heartbeat.missed", {"service": "api"}, id="hb-1")

    trio.run(fire)
    assert invoke("trigger", "list", "--db", shop_db).stdout.count("hb-1") == 2  # id, mission
    shown = invoke_json("trigger", "show", "--db", shop_db, "hb-1", "--json")
    assert shown["missions"] == ["hb-1:page"]
    assert shown["payload"] == {"service": "api"}

    replayed = invoke_json(
        "trigger", "replay", "--db", shop_db, "--app", "alerts:DEFINITIONS", "hb-1",
        "--id", "hb-1-again", "--json",
    )  # fmt: skip
    assert replayed["replay_of"] == "hb-1"
    assert replayed["missions"] == ["hb-1-again:page"]
    mission = invoke_json("show", "--db", shop_db, "hb-1-again:page", "--json")["mission"]
    assert mission["status"] == "waiting"  # a background start: the owner's runtime runs it
    listed = invoke_json("trigger", "list", "--db", shop_db, "--name", "heartbeat.missed", "--json")
    assert [f["id"] for f in listed] == ["hb-1", "hb-1-again"]

    missing = invoke("trigger", "show", "--db", shop_db, "nope")
    assert missing.exit_code == 1
    assert "trigger list" in missing.stderr
    no_app = invoke("trigger", "replay", "--db", shop_db, "hb-1")
    assert no_app.exit_code == 2
    assert "needs --app" in no_app.stderr


def test_schedule_and_trigger_commands_act_within_their_tenant(
    shop_db: Path, tmp_path: Path, monkeypatch: Any, invoke: Any, invoke_json: Any
) -> None:
    """With --tenant, the schedule and trigger commands create, list, show, update, pause,
    resume, delete and replay that tenant's schedules and fires, by the ids the tenant gave
    them; another tenant's (or, without --tenant, any tenant's) are not found."""
    app = ("--app", "shop:DEFINITIONS")
    for tenant in (("--tenant", "acme"), ()):
        created = invoke_json(
            "schedule", "create", "--db", shop_db, *app, "nightly", "order", "--cron",
            "30 2 * * *", "--input", ORDER_INPUT, *tenant, "--json",
        )  # fmt: skip
        assert (created["id"], created["tenant"]) == ("nightly", tenant[1] if tenant else None)
    acme = ("--tenant", "acme")
    listed = invoke_json("schedule", "list", "--db", shop_db, *acme, "--json")
    assert [(s["id"], s["tenant"]) for s in listed] == [("nightly", "acme")]
    plain = invoke_json("schedule", "list", "--db", shop_db, "--json")
    assert [(s["id"], s["tenant"]) for s in plain] == [("nightly", None)]
    paused = invoke_json("schedule", "pause", "--db", shop_db, "nightly", *acme, "--json")
    assert paused["paused"]
    assert not invoke_json("schedule", "show", "--db", shop_db, "nightly", "--json")["paused"]
    updated = invoke_json(
        "schedule", "update", "--db", shop_db, *app, "nightly", "--missed", "all", *acme, "--json"
    )  # fmt: skip
    assert (updated["id"], updated["missed"]) == ("nightly", "all")
    assert invoke_json("schedule", "resume", "--db", shop_db, "nightly", *acme, "--json")[
        "next_fire_at"
    ]
    for command in ("show", "pause", "resume", "update", "delete"):
        app_of = app if command == "update" else ()
        other = invoke("schedule", command, "--db", shop_db, *app_of, "nightly", "--tenant", "beta")
        assert other.exit_code == 1, (command, other.output)
        assert "schedule 'nightly'" in other.stderr
        assert "in tenant 'beta'" in other.stderr
        assert "hint: `mission-control schedule list --tenant beta` shows" in other.stderr
    assert invoke("schedule", "delete", "--db", shop_db, "nightly", *acme).exit_code == 0
    assert invoke("schedule", "list", "--db", shop_db, *acme).stdout == "no schedules\n"
    assert invoke_json("schedule", "show", "--db", shop_db, "nightly", "--json")["tenant"] is None

    (tmp_path / "alerts.py").write_text(ALERTS_APP)
    monkeypatch.syspath_prepend(str(tmp_path))
    from alerts import DEFINITIONS  # pyright: ignore[reportMissingImports]
    from shop import DEFINITIONS as SHOP

    async def fire() -> None:
        async with SQLiteCommander(shop_db, [*SHOP, *DEFINITIONS]) as commander:
            await commander.fire_trigger(
                "heartbeat.missed", {"service": "acme"}, id="hb", tenant="acme"
            )

    trio.run(fire)
    shown = invoke_json("trigger", "show", "--db", shop_db, "hb", *acme, "--json")
    assert (shown["id"], shown["tenant"], shown["payload"]) == ("hb", "acme", {"service": "acme"})
    assert invoke("trigger", "show", "--db", shop_db, "hb").exit_code == 1
    assert invoke_json("trigger", "list", "--db", shop_db, "--json") == []
    replayed = invoke_json(
        "trigger", "replay", "--db", shop_db, "--app", "alerts:DEFINITIONS", "hb", "--id",
        "hb-2", *acme, "--json",
    )  # fmt: skip
    assert (replayed["id"], replayed["tenant"], replayed["replay_of"]) == ("hb-2", "acme", "hb")
    fires = invoke_json("trigger", "list", "--db", shop_db, *acme, "--json")
    assert [f["id"] for f in fires] == ["hb", "hb-2"]
