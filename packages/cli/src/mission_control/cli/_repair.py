"""retry, fork and purge: moving failed missions again, copying one from a node, and deleting
finished ones."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import attrs
import click
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from mission_control.adapter_sqlite import SQLiteCommander
from mission_control.core import (
    MAX_LIST_LIMIT,
    PURGE_BATCH,
    MissionStatus,
    PurgeBatch,
    PurgeReport,
    Submission,
)

from ._ages import Age
from ._app import load_definitions
from ._commands import (
    TEXT,
    app_option,
    db_option,
    definitions_of,
    json_option,
    now,
    submit_and_wait,
    tenant_option,
    unchecked_note,
    wait_option,
)
from ._commands import (
    cli as cli,  # re-exported: the group, with the commands this module adds
)
from ._errors import bad_input
from ._render import console, echo_json, status_text, summary_json
from ._store import run, submitting

_FINISHED = [s.value for s in MissionStatus if s.is_terminal]


@cli.command("retry")
@db_option
@app_option
@click.argument("mission", type=TEXT)
@click.option(
    "--from",
    "from_node",
    type=TEXT,
    metavar="NODE",
    help="Run again from this top-level node (one at or before where it stopped).",
)
@tenant_option
@wait_option
@json_option
def retry_command(
    db: str,
    app: str | None,
    mission: str,
    from_node: str | None,
    tenant: str | None,
    no_wait: bool,
    timeout: float,
    as_json: bool,
) -> None:
    """Run a failed or cancelled MISSION again, through the database's owner, from the node
    where it stopped (or --from an earlier one); its history stays.

    --from is checked here first against the mission's records (a node inside a parallel or a
    loop, or one it never reached, is refused), and with --app against its definition."""

    async def submit(commander: SQLiteCommander) -> Submission:
        if from_node is not None:
            await unchecked_note(commander, app, mission, "the node of --from", tenant)
        return await commander.submit_retry(mission, from_node=from_node, tenant=tenant)

    submit_and_wait(
        db,
        definitions_of(app),
        submit,
        no_wait=no_wait,
        timeout=timeout,
        as_json=as_json,
        what=f"retry of {mission}" + (f" from {from_node!r}" if from_node else ""),
    )


@cli.command("fork")
@db_option
@app_option
@click.argument("mission", type=TEXT)
@click.option(
    "--at",
    "at_node",
    type=TEXT,
    required=True,
    metavar="NODE",
    help="The top-level node to start at.",
)
@click.option(
    "--id",
    "new_id",
    type=TEXT,
    metavar="ID",
    help="The new mission's id (one is made without it). Give one to make running the command "
    "again safe: a fork to the same id returns the fork made before.",
)
@tenant_option
@json_option
def fork_command(
    db: str,
    app: str | None,
    mission: str,
    at_node: str,
    new_id: str | None,
    tenant: str | None,
    as_json: bool,
) -> None:
    """Copy MISSION into a new mission that starts at the node --at, reusing the outputs of the
    nodes before it; the owner's runtime runs it. Needs --app (the definition's nodes).

    MISSION is left as it is, whatever its status. Forking again to the same --id returns the
    fork made before."""
    if app is None:
        raise bad_input(
            "fork needs the definitions: pass --app module:attribute (or set MISSION_CONTROL_APP)"
        )
    definitions = load_definitions(app)

    async def go() -> Any:
        async with submitting(db, definitions) as commander:
            handle = await commander.fork(mission, at_node=at_node, new_id=new_id, tenant=tenant)
            return await handle.inspect()

    fork = run(go)
    if as_json:
        echo_json(summary_json(fork))
        return
    console().print(
        f"forked {escape(mission)} at {escape(repr(at_node))} into {escape(fork.id)} "
        f"({status_text(fork.status.value)}: the owner's runtime runs it); "
        f"`mission-control show {escape(fork.id)}` follows it"
    )


@cli.command("purge")
@db_option
@click.option(
    "--older-than",
    type=Age(),
    required=True,
    help="Missions that finished (last changed) longer ago than this (30d, 12h).",
)
@click.option(
    "--status",
    "statuses",
    type=click.Choice(_FINISHED),
    multiple=True,
    help="Only missions that ended so (repeat it for several; default: every finished status).",
)
@click.option("--definition", type=TEXT, metavar="NAME", help="Only missions of this definition.")
@click.option(
    "--tenant",
    type=TEXT,
    metavar="NAME",
    help="Only the missions of this tenant (default: every tenant's and those of none).",
)
@click.option("--dry-run", is_flag=True, help="Count what would be deleted, delete nothing.")
@click.option(
    "--batch-size",
    type=click.IntRange(1, MAX_LIST_LIMIT),
    default=PURGE_BATCH,
    show_default=True,
    help="Missions read at a time, and deleted per transaction at most (fewer when their "
    "timelines are long: each transaction is kept to about 0.1 s, which the owner may wait).",
)
@json_option
def purge_command(
    db: str,
    older_than: timedelta,
    statuses: tuple[str, ...],
    definition: str | None,
    tenant: str | None,
    dry_run: bool,
    batch_size: int,
    as_json: bool,
) -> None:
    """Delete finished missions older than --older-than (of every tenant, or of --tenant), with
    their timelines and buffered signals, in short transactions, then (without --status,
    --definition or --tenant) the submissions decided before then; a child whose parent still
    runs is kept, and so is a mission with a pending submission.

    The file does not shrink by itself: see docs/sqlite.md for getting the space back."""
    cutoff = now() - older_than
    options: dict[str, Any] = {
        "status": [MissionStatus(s) for s in statuses] or None,
        "definition": definition,
        "batch_size": batch_size,
    }
    if tenant is not None:
        options["tenant"] = tenant
    show = not as_json
    progress = Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
        disable=not show,
    )

    async def go() -> PurgeReport:
        async with submitting(db, []) as commander:
            counted = await commander.purge(finished_before=cutoff, dry_run=True, **options)
            if dry_run or counted.matched == 0:
                return counted
            with progress:
                task = progress.add_task("purging", total=counted.matched)

                def advance(batch: PurgeBatch) -> None:
                    progress.advance(task, batch.matched)

                return await commander.purge(finished_before=cutoff, on_batch=advance, **options)

    report = run(go)
    if as_json:
        echo_json({"cutoff": cutoff.isoformat(), **attrs.asdict(report)})
        return
    kept = (
        f"; {report.kept_for_parent} kept: children of missions still running"
        if report.kept_for_parent
        else ""
    ) + (
        f"; {report.kept_for_submissions} kept: work submitted for them is pending"
        if report.kept_for_submissions
        else ""
    )
    if report.dry_run:
        line = f"would delete {report.matched} missions finished before {cutoff:%Y-%m-%d %H:%M:%SZ}"
    else:
        line = f"deleted {report.deleted} missions finished before {cutoff:%Y-%m-%d %H:%M:%SZ}"
    console().print(
        f"{line} (and {report.submissions_deleted} decided submissions){kept}", markup=False
    )
