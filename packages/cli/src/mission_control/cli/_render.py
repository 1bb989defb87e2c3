"""What the commands print: rich tables for people, JSON for programs."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from mission_control.core import MissionSnapshot, MissionStatus, NodeStatus, TimelineEntry, Wait
from mission_control.core.storage import snapshot_to_dict, timeline_entry_to_json

from ._ages import format_age

STATUS_STYLE: dict[str, str] = {
    MissionStatus.RUNNING: "bold yellow",
    MissionStatus.WAITING: "cyan",
    MissionStatus.PAUSED: "blue",
    MissionStatus.COMPLETED: "green",
    MissionStatus.FAILED: "bold red",
    MissionStatus.CANCELLED: "magenta",
    MissionStatus.COMPENSATED: "red",
    NodeStatus.TIMED_OUT: "red",
}


# Every user value (an id, a name, a message) printed through rich markup goes through
# `escape`: rich would read `[...]` in it as markup, `[/bold]` raising, `[red]` colouring.


def console() -> Console:
    # Lines are never wrapped (a shell's pipe or a log keeps each message on one line); tables
    # still fit the terminal's width.
    return Console(highlight=False, soft_wrap=True)


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


def when(at: datetime | None, now: datetime) -> str:
    """``at`` in UTC to the second, with how long ago (or in how long) it is."""
    if at is None:
        return "-"
    text = at.strftime("%Y-%m-%d %H:%M:%SZ")
    delta = now - at
    if delta.total_seconds() >= 0:
        return f"{text} ({format_age(delta)} ago)"
    return f"{text} (in {format_age(-delta)})"


def iso(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat()


def stamp(at: datetime | None) -> str:
    """``at`` in UTC to the second, for a table's column."""
    return "-" if at is None else at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def status_text(status: str) -> str:
    style = STATUS_STYLE.get(status)
    return status if style is None else f"[{style}]{status}[/]"


def wait_text(wait: Wait) -> str:
    if wait.signal is not None:
        text = f"signal {wait.signal!r}"
        return text if wait.due_at is None else f"{text} until {iso(wait.due_at)}"
    due = "" if wait.due_at is None else f" until {iso(wait.due_at)}"
    return f"{wait.kind.value}{due}"


def wait_json(wait: Wait) -> dict[str, Any]:
    return {
        "kind": wait.kind.value,
        "node": wait.node,
        "signal": wait.signal,
        "due_at": iso(wait.due_at),
    }


def summary_json(snapshot: MissionSnapshot) -> dict[str, Any]:
    """A mission in a listing: what says where it is, without its inputs and outputs."""
    error = snapshot.error
    pause = snapshot.pause
    return {
        "id": snapshot.id,
        "tenant": snapshot.tenant,
        "definition": snapshot.definition,
        "definition_version": snapshot.definition_version,
        "status": snapshot.status.value,
        "current_node": snapshot.current_node,
        "created_at": iso(snapshot.created_at),
        "updated_at": iso(snapshot.updated_at),
        "due_at": iso(snapshot.due_at),
        "waits": [wait_json(wait) for wait in snapshot.waits],
        "error": None if error is None else {"type": error.type, "message": error.message},
        "recovery_attempts": snapshot.recovery_attempts,
        "retries": snapshot.retries or 0,
        "forked_from": snapshot.forked_from,
        "pause": None
        if pause is None
        else {"since": iso(pause.requested_at), "reason": pause.reason},
    }


def mission_table(snapshots: Iterable[MissionSnapshot], now: datetime) -> Table:
    table = Table(box=None, header_style="bold")
    for column in ("ID", "DEFINITION", "STATUS", "NODE", "WAITING FOR", "UPDATED"):
        table.add_column(column, no_wrap=column in ("ID", "STATUS"))
    for snapshot in snapshots:
        table.add_row(
            escape(snapshot.id),
            escape(f"{snapshot.definition} v{snapshot.definition_version}"),
            status_text(snapshot.status),
            escape(snapshot.current_node or "-"),
            escape(", ".join(wait_text(wait) for wait in snapshot.waits) or "-"),
            format_age(now - snapshot.updated_at) + " ago",
        )
    return table


def show_json(
    snapshot: MissionSnapshot, timeline: list[TimelineEntry], earlier: int
) -> dict[str, Any]:
    """A mission as stored (the storage codec's JSON form) and the last entries of its
    timeline; ``earlier``: how many entries came before them."""
    return {
        "mission": snapshot_to_dict(snapshot),
        "timeline": [json.loads(timeline_entry_to_json(entry)) for entry in timeline],
        "earlier_entries": earlier,
    }


def _took(started: datetime | None, finished: datetime | None) -> str:
    if started is None or finished is None:
        return "-"
    took = finished - started
    if took.total_seconds() < 1:
        return f"{took.total_seconds() * 1000:.0f}ms"
    return format_age(took)


def _short(value: Any, width: int = 120) -> str:
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return text if len(text) <= width else text[: width - 1] + "…"


def print_mission(
    out: Console,
    snapshot: MissionSnapshot,
    timeline: list[TimelineEntry],
    now: datetime,
    *,
    earlier: int = 0,
) -> None:
    """A mission for a terminal: where it is, its nodes, then the last entries of its timeline
    (``earlier``: how many came before them)."""
    rows: list[tuple[str, str]] = [
        ("mission", escape(snapshot.id)),
        ("definition", escape(f"{snapshot.definition} (version {snapshot.definition_version})")),
        ("status", status_text(snapshot.status)),
        ("node", escape(snapshot.current_node or "-")),
        ("created", when(snapshot.created_at, now)),
        ("updated", when(snapshot.updated_at, now)),
    ]
    rows.extend(("waiting for", escape(wait_text(wait))) for wait in snapshot.waits)
    if snapshot.due_at is not None:
        rows.append(("due", when(snapshot.due_at, now)))
    if snapshot.deadline is not None:
        rows.append(("deadline", when(snapshot.deadline, now)))
    if snapshot.parent is not None:
        rows.append(("parent", escape(f"{snapshot.parent.mission_id} ({snapshot.parent.node})")))
    if snapshot.forked_from is not None:
        rows.append(("forked from", escape(snapshot.forked_from)))
    if snapshot.retries:
        rows.append(("retries", str(snapshot.retries)))
    if snapshot.error is not None:
        error = f"{snapshot.error.type}: {snapshot.error.message}"
        rows.append(("error", f"[red]{escape(error)}[/]"))
    if snapshot.cancel_request is not None:
        request = snapshot.cancel_request
        reason = f" ({request.reason})" if request.reason else ""
        rows.append(("cancel requested", when(request.requested_at, now) + escape(reason)))
    if snapshot.pause is not None:
        pause = snapshot.pause
        reason = f" ({pause.reason})" if pause.reason else ""
        rows.append(("paused", when(pause.requested_at, now) + escape(reason)))
    if snapshot.pause_request is not None:
        request = snapshot.pause_request
        reason = f" ({request.reason})" if request.reason else ""
        rows.append(("pause requested", when(request.requested_at, now) + escape(reason)))
    if snapshot.recovery_attempts:
        rows.append(("recovery attempts", str(snapshot.recovery_attempts)))
    if snapshot.output is not None:
        rows.append(("output", escape(_short(snapshot.output, 100))))
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    for name, value in rows:
        head.add_row(name, value)
    out.print(head)

    nodes = Table(title="nodes", title_justify="left", box=None, header_style="bold")
    for column in ("NODE", "KIND", "STATUS", "ATTEMPTS", "STARTED", "TOOK", "ERROR"):
        nodes.add_column(
            column,
            min_width=19 if column == "STARTED" else None,
            overflow="fold" if column in ("NODE", "ERROR") else "ellipsis",
        )
    for path, record in snapshot.nodes.items():
        error = record.error
        nodes.add_row(
            escape(path),
            record.kind,
            status_text(record.status),
            str(record.attempts),
            stamp(record.started_at),
            _took(record.started_at, record.finished_at),
            "-" if error is None else escape(f"{error.type}: {error.message}"),
        )
    out.print()
    out.print(nodes)

    title = "timeline" if not earlier else f"timeline (the last {len(timeline)} entries)"
    events = Table(title=title, title_justify="left", box=None, header_style="bold")
    for column in ("AT", "EVENT", "NODE", "ATTEMPT", "DETAIL"):
        events.add_column(
            column,
            min_width=19 if column == "AT" else None,
            overflow="fold" if column in ("NODE", "DETAIL") else "ellipsis",
        )
    for entry in timeline:
        events.add_row(
            stamp(entry.at),
            entry.kind.value,
            escape(entry.node or "-"),
            "-" if entry.attempt is None else str(entry.attempt),
            "-" if entry.detail is None else escape(_short(entry.detail)),
        )
    out.print()
    if earlier:
        out.print(f"[dim]… {earlier} earlier entries: --timeline all shows them[/]")
    out.print(events)
