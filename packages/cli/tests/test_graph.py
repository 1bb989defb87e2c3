"""graph: a definition as a Mermaid flowchart, a mission's node states laid over it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import trio

from mission_control.adapter_sqlite import SQLiteCommander


def parse(chart: str) -> tuple[set[tuple[str, str, str]], dict[str, str]]:
    """The chart's edges as (from, label, to) node names, and each node's class."""
    names: dict[str, str] = {}
    for ident, name in re.findall(r'^\s+(n\d+)[(\[{]+"([^"<]+)', chart, re.M):
        names[ident] = name
    edges = {
        (names[a], label or "", names[b])
        for a, label, b in re.findall(r'^\s+(n\d+) -->(?:\|"([^"]*)"\|)? (n\d+)$', chart, re.M)
    }
    classes = {names[i]: c for i, c in re.findall(r"^\s+class (n\d+) (\w+)$", chart, re.M)}
    return edges, classes


def test_graph_draws_the_definition_in_order(invoke: Any) -> None:
    """`graph` prints a Mermaid flowchart whose edges follow the definition's nodes."""
    result = invoke("graph", "order", "--app", "shop:DEFINITIONS")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("flowchart TD\n  %% order, version 1\n")
    edges, classes = parse(result.stdout)
    assert edges == {
        ("start", "", "reserve"),
        ("reserve", "", "approve"),
        ("approve", "", "pickup"),
        ("pickup", "", "ship"),
        ("ship", "", "end"),
    }
    assert classes == {}
    for name in ("done", "running", "waiting", "failed"):
        assert f"  classDef {name} " in result.stdout


def test_graph_branches_leave_their_container_and_rejoin_its_chain(invoke: Any) -> None:
    """A parallel's branches and a choice's paths start from their node and lead to the node
    after it; a need_to's timeout path is a labelled edge too."""
    result = invoke("graph", "order", "--app", "order:order")
    assert result.exit_code == 0, result.output
    edges, _ = parse(result.stdout)
    assert {
        ("checks", "credit", "check-credit"),
        ("checks", "stock", "reserve-stock"),
        ("check-credit", "", "decide"),
        ("reserve-stock", "", "decide"),
        ("decide", "accept", "charge"),
        ("decide", "reject", "end"),
        ("shipped", "timeout", "refund"),
        ("refund", "", "end"),
        ("shipped", "", "end"),
    } <= edges
    assert ("checks", "", "decide") not in edges
    assert ("decide", "", "end") not in edges


def test_graph_colours_a_missions_nodes_by_their_state(shop_db: Path, invoke: Any) -> None:
    """With MISSION, each node the mission reached gets the class of its state."""
    app = ("--app", "shop:DEFINITIONS", "--db", str(shop_db))
    _, waiting = parse(invoke("graph", "order", "o-2", *app).stdout)
    assert waiting == {
        "start": "done",
        "reserve": "done",
        "approve": "done",
        "pickup": "waiting",
    }
    _, failed = parse(invoke("graph", "order", "o-3", *app).stdout)
    assert failed == {"start": "done", "reserve": "failed"}


def test_graph_says_what_it_needs(shop_db: Path, invoke: Any) -> None:
    """Without --app, with a definition --app lacks, or a mission of another definition,
    `graph` is a usage error (2) saying what to pass."""
    no_app = invoke("graph", "order")
    assert no_app.exit_code == 2
    assert "graph needs the definitions: pass --app module:attribute" in no_app.stderr
    unknown = invoke("graph", "refund", "--app", "shop:DEFINITIONS")
    assert unknown.exit_code == 2
    assert "--app has no definition 'refund'" in unknown.stderr
    assert "it has: order" in unknown.stderr
    no_db = invoke("graph", "order", "o-1", "--app", "shop:DEFINITIONS")
    assert no_db.exit_code == 2
    assert "pass --db PATH" in no_db.stderr


def test_graph_draws_the_version_asked_for(
    shop_db: Path, invoke: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    """With several versions in --app, `graph` draws the latest, `--version N` that one, and a
    mission the version it runs on; a version --app lacks is a usage error naming those it has."""
    (tmp_path / "shop_both.py").write_text(
        "from mission_control.core import m\nfrom shop import ORDER\n"
        'V2 = m.define("order", version=2).start(parse=dict).need_to("approve", parse=dict)'
        ".end()\nDEFINITIONS = [ORDER, V2]\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    app = ("--app", "shop_both:DEFINITIONS")
    assert "%% order, version 2" in invoke("graph", "order", *app).stdout
    assert "%% order, version 1" in invoke("graph", "order", *app, "--version", "1").stdout
    on_mission = invoke("graph", "order", "o-2", *app, "--db", shop_db).stdout
    assert "%% order, version 1" in on_mission
    _, classes = parse(on_mission)
    assert classes["pickup"] == "waiting"
    drawn_other = invoke("graph", "order", "o-2", *app, "--db", shop_db, "--version", "2")
    assert drawn_other.stdout.startswith(
        "flowchart TD\n  %% order, version 2\n  %% mission o-2 runs on version 1, drawn on 2\n"
    )
    missing = invoke("graph", "order", *app, "--version", "3")
    assert missing.exit_code == 2
    assert "--app has no version 3 of 'order'" in missing.stderr
    assert "it has version 1, 2" in missing.stderr


LOOP_APP = """
from datetime import timedelta
from mission_control.core import m
looper = (
    m.define("looper").start(parse=dict)
    .loop("rounds", lambda b: b.need_to("tick", parse=dict).step("work", lambda ctx: 1),
          until=lambda ctx: ctx.iteration >= 3, max_iterations=5)
    .choice("route", lambda ctx: "a|b", {"a|b": lambda b: b.step("s1", lambda ctx: 1),
                                         "plain": lambda b: b})
    .deadline(timedelta(hours=1), on_deadline=lambda p: p.step("late", lambda ctx: 1))
    .end()
)
"""


async def _loop_to_round_two(db: Path) -> None:
    import graph_loop_app  # type: ignore[import-not-found]  # written by the test

    async with SQLiteCommander(db, [graph_loop_app.looper]) as commander:
        await commander.start(graph_loop_app.looper, {}, id="l-1")
        await commander.signal("l-1", "tick", {})


def test_graph_colours_a_loop_body_by_its_latest_iteration_and_quotes_labels(
    tmp_path: Path, monkeypatch: Any, invoke: Any
) -> None:
    """A mission inside a loop's body colours the body's nodes (drawn once) by their latest
    iteration; a path named with an edge label's syntax (``|``) is quoted, and the deadline
    path leads to the end node."""
    (tmp_path / "graph_loop_app.py").write_text(LOOP_APP)
    monkeypatch.syspath_prepend(str(tmp_path))
    db = tmp_path / "loop.sqlite"
    trio.run(_loop_to_round_two, db)
    result = invoke("graph", "looper", "l-1", "--db", db, "--app", "graph_loop_app:looper")
    assert result.exit_code == 0, result.output
    edges, classes = parse(result.stdout)
    # The iteration under way: its tick waits, its work has not run (iteration 1's is gone).
    assert classes == {"start": "done", "rounds": "running", "tick": "waiting"}
    assert ("route", "a|b", "s1") in edges
    assert ("late", "", "end") in edges
