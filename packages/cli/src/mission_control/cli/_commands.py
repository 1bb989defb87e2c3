"""The ``mission-control`` command and its subcommands."""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import attrs
import click
import trio
from rich.markup import escape

from mission_control.adapter_sqlite import SQLiteCommander, owner_process
from mission_control.core import (
    MAX_LIST_LIMIT,
    InvalidInputError,
    MissionNotFoundError,
    MissionSnapshot,
    MissionStatus,
    NodeStatus,
    Submission,
    TimelineKind,
    VersionReport,
    check_definitions,
)
from mission_control.core.storage import BufferedSignal, PersistenceAdapter, as_seen, tenant_key

from ._ages import Age, format_age
from ._app import Definitions, load_definitions
from ._doctor import Facts, diagnose, diagnosis_json
from ._errors import CommandError, Exit, StillPending, bad_input
from ._graph import mermaid
from ._render import (
    console,
    echo_json,
    iso,
    mission_table,
    print_mission,
    show_json,
    status_text,
    summary_json,
    wait_text,
)
from ._store import reading, reading_commander, run, submitting

_F = TypeVar("_F", bound=Callable[..., Any])


def now() -> datetime:
    return datetime.now(UTC)


if TYPE_CHECKING:
    _TextType = click.ParamType[str]
else:  # an older click has no type parameter at run time
    _TextType = click.ParamType


class Text(_TextType):
    """A string argument or option: refused when UTF-8 cannot encode it (a byte the shell
    passed on undecoded reaches Python as a surrogate), which nothing stored can hold."""

    name = "text"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> str:
        text = str(value)
        try:
            text.encode()
        except UnicodeEncodeError:
            shown = text.encode(errors="backslashreplace").decode()
            self.fail(
                f"'{shown}' is not text UTF-8 can encode (a byte the shell passed that is not "
                "UTF-8 arrives as a surrogate)",
                param,
                ctx,
            )
        return text


TEXT = Text()


def db_option(function: _F) -> _F:
    return click.option(
        "--db",
        "db",
        envvar="MISSION_CONTROL_DB",
        required=True,
        metavar="PATH",
        help="The SQLite database (or set MISSION_CONTROL_DB).",
    )(function)


def json_option(function: _F) -> _F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON.")(function)


def app_option(function: _F) -> _F:
    return click.option(
        "--app",
        "app",
        envvar="MISSION_CONTROL_APP",
        metavar="MODULE:ATTRIBUTE",
        help="Your mission definitions: a definition, a list of them, or a function returning "
        "either (or set MISSION_CONTROL_APP).",
    )(function)


def tenant_option_of(what: str) -> Callable[[_F], _F]:
    """The ``--tenant`` option of a command about one tenant's ``what`` (missions,
    schedules, fires)."""

    def option(function: _F) -> _F:
        return click.option(
            "--tenant",
            "tenant",
            type=TEXT,
            metavar="NAME",
            help=f"The tenant the {what} belongs to (default: none); another tenant's {what}s "
            "are not found.",
        )(function)

    return option


tenant_option = tenant_option_of("mission")


def tenant_flag(tenant: str | None) -> str:
    """The ``--tenant`` option that names ``tenant`` in a command line shown to the user."""
    return "" if tenant is None else f" --tenant {tenant}"


def stored_key(mission: str, tenant: str | None) -> str:
    """The key the store keeps MISSION of ``tenant`` under (a bad tenant name is a usage
    error)."""
    try:
        return tenant_key(tenant, mission)
    except InvalidInputError as error:
        raise bad_input(str(error)) from None


async def load_scoped(
    store: PersistenceAdapter, mission: str, tenant: str | None
) -> MissionSnapshot:
    """MISSION of ``tenant`` as stored (its ids the store's), or the not-found error: a mission
    of another tenant is not found, as the commander refuses it."""
    snapshot = await store.load(stored_key(mission, tenant))
    if snapshot is None or snapshot.tenant != tenant:
        raise _not_found(mission, tenant)
    return snapshot


def definitions_of(app: str | None) -> Definitions:
    return [] if app is None else load_definitions(app)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mission-control-cli", prog_name="mission-control")
def cli() -> None:
    """Look at and act on the missions of a Mission Control SQLite database, also while the
    application that owns it runs: reads never disturb it, writes are handed to it."""


# -- reading -------------------------------------------------------------------------------


@cli.command("list")
@db_option
@click.option(
    "--status",
    type=click.Choice([status.value for status in MissionStatus]),
    help="Only missions in this status.",
)
@click.option("--definition", type=TEXT, metavar="NAME", help="Only missions of this definition.")
@click.option("--older-than", type=Age(), help="Only missions created longer ago (2h, 3d).")
@click.option("--newer-than", type=Age(), help="Only missions created more recently (15m).")
@click.option(
    "--limit",
    type=click.IntRange(1, MAX_LIST_LIMIT),
    default=50,
    show_default=True,
    help="At most this many missions.",
)
@click.option(
    "--after", type=TEXT, metavar="ID", help="Start after this mission id (the next page)."
)
@tenant_option
@json_option
def list_command(
    db: str,
    status: str | None,
    definition: str | None,
    older_than: timedelta | None,
    newer_than: timedelta | None,
    limit: int,
    after: str | None,
    tenant: str | None,
    as_json: bool,
) -> None:
    """List missions (of --tenant; without it, those of no tenant), ordered by id, a page at a
    time."""
    stored_key("", tenant)  # a bad tenant name is a usage error, as elsewhere
    at = now()

    def wanted(snapshot: MissionSnapshot) -> bool:
        age = at - snapshot.created_at
        return (older_than is None or age > older_than) and (newer_than is None or age < newer_than)

    async def page() -> tuple[list[MissionSnapshot], str | None]:
        found: list[MissionSnapshot] = []
        cursor = None if after is None else stored_key(after, tenant)
        async with reading(db) as store:
            while True:
                batch = await store.list_missions(
                    status=MissionStatus(status) if status else None,
                    definition=definition,
                    limit=MAX_LIST_LIMIT if older_than or newer_than else limit + 1,
                    after_id=cursor,
                    tenant=tenant,
                )
                for snapshot in batch:
                    if wanted(snapshot):
                        if len(found) == limit:
                            return found, found[-1].id  # one more exists: a next page
                        found.append(as_seen(snapshot))
                if len(batch) < (MAX_LIST_LIMIT if older_than or newer_than else limit + 1):
                    return found, None
                cursor = batch[-1].id

    found, next_after = run(page)
    if as_json:
        echo_json({"missions": [summary_json(s) for s in found], "next_after": next_after})
        return
    out = console()
    if not found:
        out.print("no missions match")
        return
    out.print(mission_table(found, at))
    if next_after is not None:
        out.print(f"[dim]more: --after {escape(next_after)}[/]")


def _entries(ctx: click.Context, param: click.Parameter, value: str) -> int | None:
    if value.strip().lower() == "all":
        return None
    try:
        count = int(value)
    except ValueError:
        count = -1
    if count < 0:
        raise click.BadParameter(f"{value!r} is not a number of entries (0, 1, …) or 'all'")
    return count


@cli.command("show")
@db_option
@click.argument("mission", type=TEXT)
@click.option(
    "--timeline",
    "last",
    default="50",
    show_default=True,
    metavar="N|all",
    callback=_entries,
    help="Show the last N entries of the timeline (a loop's mission may have thousands), "
    "or all of them.",
)
@tenant_option
@json_option
def show_command(
    db: str, mission: str, last: int | None, tenant: str | None, as_json: bool
) -> None:
    """Show a mission (of --tenant): where it is, its nodes and (the last entries of) its
    timeline."""

    async def read() -> tuple[MissionSnapshot, list[Any]]:
        async with reading(db) as store:
            snapshot = await load_scoped(store, mission, tenant)
            return as_seen(snapshot), await store.timeline(snapshot.id)

    snapshot, timeline = run(read)
    earlier = 0 if last is None else max(0, len(timeline) - last)
    shown = timeline[earlier:]
    if as_json:
        echo_json(show_json(snapshot, shown, earlier))
    else:
        print_mission(console(), snapshot, shown, now(), earlier=earlier)


def _not_found(mission: str, tenant: str | None = None) -> CommandError:
    where = "" if tenant is None else f" of tenant {tenant!r}"
    return CommandError(
        f"there is no mission {mission!r}{where} in this database",
        hint=f"`mission-control list{tenant_flag(tenant)}` shows the missions it holds",
    )


@cli.command("stats")
@db_option
@json_option
def stats_command(db: str, as_json: bool) -> None:
    """Count missions by status and definition, and those due or running now.

    It reads every mission, a page at a time."""
    at = now()

    async def count() -> dict[str, Any]:
        by_status: Counter[str] = Counter()
        by_definition: defaultdict[str, Counter[str]] = defaultdict(Counter)
        due = 0
        oldest_due: datetime | None = None
        cursor: str | None = None
        async with reading(db) as store:
            while True:
                batch = await store.list_missions(limit=MAX_LIST_LIMIT, after_id=cursor)
                for snapshot in batch:
                    by_status[snapshot.status.value] += 1
                    by_definition[snapshot.definition][snapshot.status.value] += 1
                    due_at = snapshot.due_at
                    if due_at is not None and due_at <= at:
                        due += 1
                        oldest_due = due_at if oldest_due is None else min(oldest_due, due_at)
                if len(batch) < MAX_LIST_LIMIT:
                    break
                cursor = batch[-1].id
        return {
            "total": sum(by_status.values()),
            "by_status": {s.value: by_status[s.value] for s in MissionStatus},
            "by_definition": {
                name: dict(sorted(counts.items())) for name, counts in sorted(by_definition.items())
            },
            "running": by_status[MissionStatus.RUNNING.value],
            "due": due,
            "oldest_due_at": iso(oldest_due),
        }

    stats = run(count)
    if as_json:
        echo_json(stats)
        return
    out = console()
    from rich.table import Table

    table = Table(box=None, header_style="bold")
    table.add_column("DEFINITION")
    for status in MissionStatus:
        table.add_column(status_text(status.value), justify="right")
    table.add_column("TOTAL", justify="right")
    for name, counts in stats["by_definition"].items():
        row = [str(counts.get(status.value, 0)) for status in MissionStatus]
        table.add_row(escape(name), *row, str(sum(counts.values())))
    table.add_row(
        "[bold]all[/]",
        *(str(stats["by_status"][status.value]) for status in MissionStatus),
        str(stats["total"]),
    )
    out.print(table)
    due_line = f"due now: {stats['due']}"
    if stats["oldest_due_at"] is not None:
        oldest = datetime.fromisoformat(stats["oldest_due_at"])
        due_line += f" (the oldest due for {format_age(at - oldest)})"
    out.print(f"running: {stats['running']}   {due_line}")


# -- writing through the owner ---------------------------------------------------------------


def _seconds(ctx: click.Context, param: click.Parameter, value: float) -> float:
    if math.isnan(value):
        raise click.BadParameter("nan is not a number of seconds", ctx, param)
    return value


def wait_option(function: _F) -> _F:
    function = click.option(
        "--timeout",
        type=click.FloatRange(min=0),
        callback=_seconds,
        default=30.0,
        show_default=True,
        metavar="SECONDS",
        help="How long to wait for the owner's verdict.",
    )(function)
    return click.option(
        "--no-wait",
        is_flag=True,
        help="Return once the submission is stored, without waiting for the owner.",
    )(function)


def submission_json(submission: Submission) -> dict[str, Any]:
    refusal = submission.refusal
    return {
        "seq": submission.seq,
        "kind": submission.kind.value,
        "mission_id": submission.mission_id,
        "tenant": submission.tenant,
        "name": submission.name,
        "payload": submission.payload,
        "state": submission.state.value,
        "submitted_at": iso(submission.submitted_at),
        "submitted_by": submission.submitted_by,
        "decided_at": iso(submission.decided_at),
        "refusal": None if refusal is None else {"type": refusal.type, "message": refusal.message},
        "joined": submission.joined,
    }


def submit_and_wait(
    db: str,
    definitions: Definitions,
    submit: Callable[[Any], Any],
    *,
    no_wait: bool,
    timeout: float,
    as_json: bool,
    what: str,
) -> None:
    """Store a submission, then (unless ``no_wait``) wait for the owner's verdict on it."""

    stored: list[Submission] = []

    async def go() -> tuple[Submission, MissionSnapshot | None]:
        async with submitting(db, definitions) as commander:
            submission: Submission = await submit(commander)
            stored.append(submission)
            if no_wait:
                return submission, None
            decided: Submission | None = None
            snapshot: MissionSnapshot | None = None
            with trio.move_on_after(timeout):
                snapshot = await commander.verdict(submission)
                decided = await commander.submission(submission.seq, tenant=submission.tenant)
                # The owner runs the mission on to its next wait after applying the work: show
                # it there, as the owner's own call would return it (or as applied, at the
                # timeout).
                snapshot = await commander.verdict(submission, at_rest=True)
            if decided is not None:
                return decided, snapshot
            raise StillPending(
                f"{what} is stored as submission {submission.seq}, but no owner had applied "
                f"it after {timeout:g} s; it stays in the database for the owner",
                hint="is the application that owns the database running, with its runtime? "
                f"`mission-control submission {submission.seq} --db {db}"
                f"{tenant_flag(submission.tenant)}` shows its state",
            )

    try:
        submission, snapshot = run(go)
    except KeyboardInterrupt:
        if not stored:
            raise
        # Stored all the same: told so, lest the operator sends it again.
        seq = stored[0].seq
        raise StillPending(
            f"interrupted: {what} is stored as submission {seq} (pending); the owner applies "
            "it at its next tick",
            hint=f"`mission-control submission {seq} --db {db}` shows its state",
        ) from None
    if as_json:
        echo_json(
            {
                "submission": submission_json(submission),
                "mission": None if snapshot is None else summary_json(snapshot),
            }
        )
        return
    out = console()
    if snapshot is None:
        out.print(
            f"{escape(what)} stored as submission {submission.seq} (pending): the owner applies "
            f"it at its next tick; `mission-control submission {submission.seq}` shows its state"
        )
        return
    waits = escape(", ".join(wait_text(wait) for wait in snapshot.waits))
    where = f" at {escape(snapshot.current_node)}" if snapshot.current_node else ""
    out.print(
        f"{escape(what)} applied (submission {submission.seq}); mission {escape(snapshot.id)} is "
        f"{status_text(snapshot.status.value)}{where}" + (f", waiting for {waits}" if waits else "")
    )


async def unchecked_note(
    commander: SQLiteCommander, app: str | None, mission: str, checked: str, tenant: str | None
) -> None:
    """With --app, say on stderr when it lacks the mission's version: then the checks made here
    first are skipped, and the owner alone checks ``checked``."""
    if app is None:
        return
    try:
        snapshot = await commander.inspect(mission, tenant=tenant)
    except MissionNotFoundError:
        return  # the submission refuses it, saying so
    key = (snapshot.definition, snapshot.definition_version)
    if key not in commander.definition_versions:
        click.echo(
            f"note: --app {app} has no version {key[1]} of {key[0]!r} (mission {mission}'s), "
            f"so the owner alone checks {checked}",
            err=True,
        )


def _payload(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise bad_input(
            f"the payload is not JSON ({error.msg} at character {error.pos}): {text!r}",
            hint="""quote it for the shell, e.g. '{"approved": true}'; a string is '"text"'""",
        ) from None


@cli.command("signal")
@db_option
@app_option
@click.argument("mission", type=TEXT)
@click.argument("name", type=TEXT)
@click.argument("payload", type=TEXT, required=False, metavar="[PAYLOAD-JSON]")
@tenant_option
@wait_option
@json_option
def signal_command(
    db: str,
    app: str | None,
    mission: str,
    name: str,
    payload: str | None,
    tenant: str | None,
    no_wait: bool,
    timeout: float,
    as_json: bool,
) -> None:
    """Send the signal NAME, with a JSON payload, to MISSION through the database's owner.

    With --app the name and payload are checked here first, as the owner would; without it
    the owner checks them."""
    value = _payload(payload)

    async def submit(commander: SQLiteCommander) -> Submission:
        await unchecked_note(commander, app, mission, "the signal's name and payload", tenant)
        return await commander.submit_signal(mission, name, value, tenant=tenant)

    submit_and_wait(
        db,
        definitions_of(app),
        submit,
        no_wait=no_wait,
        timeout=timeout,
        as_json=as_json,
        what=f"signal {name!r} to {mission}",
    )


@cli.command("cancel")
@db_option
@click.argument("mission", type=TEXT)
@click.option("--reason", type=TEXT, help="Why (kept with the cancellation request).")
@click.option("--compensate", is_flag=True, help="Run the compensations it owes first.")
@tenant_option
@wait_option
@json_option
def cancel_command(
    db: str,
    mission: str,
    reason: str | None,
    compensate: bool,
    tenant: str | None,
    no_wait: bool,
    timeout: float,
    as_json: bool,
) -> None:
    """Cancel MISSION through the database's owner."""
    submit_and_wait(
        db,
        [],
        lambda commander: commander.submit_cancel(
            mission, reason, compensate=compensate, tenant=tenant
        ),
        no_wait=no_wait,
        timeout=timeout,
        as_json=as_json,
        what=f"cancellation of {mission}",
    )


@cli.command("pause")
@db_option
@click.argument("mission", type=TEXT)
@click.option("--reason", type=TEXT, help="Why (kept with the pause, in the snapshot).")
@tenant_option
@wait_option
@json_option
def pause_command(
    db: str,
    mission: str,
    reason: str | None,
    tenant: str | None,
    no_wait: bool,
    timeout: float,
    as_json: bool,
) -> None:
    """Pause MISSION through the database's owner: at once if it waits, at its next node
    boundary if a step runs. Signals sent meanwhile are kept; timers fire after `resume`."""
    submit_and_wait(
        db,
        [],
        lambda commander: commander.submit_pause(mission, reason, tenant=tenant),
        no_wait=no_wait,
        timeout=timeout,
        as_json=as_json,
        what=f"pause of {mission}",
    )


@cli.command("resume")
@db_option
@click.argument("mission", type=TEXT)
@tenant_option
@wait_option
@json_option
def resume_command(
    db: str, mission: str, tenant: str | None, no_wait: bool, timeout: float, as_json: bool
) -> None:
    """Resume the paused MISSION through the database's owner: it goes on from where it
    stopped, taking the signals buffered and firing the timers that came due meanwhile."""
    submit_and_wait(
        db,
        [],
        lambda commander: commander.submit_resume(mission, tenant=tenant),
        no_wait=no_wait,
        timeout=timeout,
        as_json=as_json,
        what=f"resume of {mission}",
    )


@cli.command("submission")
@db_option
@click.argument("seq", type=int)
@tenant_option
@json_option
def submission_command(db: str, seq: int, tenant: str | None, as_json: bool) -> None:
    """Show the submission numbered SEQ (about a mission of --tenant; without it, of no
    tenant): pending, applied, or refused and why."""

    async def read() -> Submission:
        async with reading_commander(db) as commander:
            return await commander.submission(seq, tenant=tenant)

    submission = run(read)
    if as_json:
        echo_json(submission_json(submission))
        return
    target = f" {submission.name!r}" if submission.name else ""
    line = f"submission {seq}: {submission.kind.value}{target} for {submission.mission_id}, "
    line += f"{submission.state.value}"
    if submission.refusal is not None:
        line += f": {submission.refusal.type}: {submission.refusal.message}"
    if submission.joined is not None:
        line += f", joined {submission.joined}"
    console().print(line, markup=False)


# -- diagnosing ------------------------------------------------------------------------------


@cli.command("doctor")
@db_option
@app_option
@click.argument("mission", type=TEXT)
@click.option(
    "--margin",
    type=Age(),
    default="1m",
    show_default=True,
    help="How long past its due time a mission counts as not moved.",
)
@tenant_option
@json_option
def doctor_command(
    db: str, app: str | None, mission: str, margin: timedelta, tenant: str | None, as_json: bool
) -> None:
    """Say why MISSION is not moving, in one line, and what would move it.

    With --app it also checks that the application still has the mission's definition, its
    version and the node the mission is at."""
    definitions = None if app is None else load_definitions(app)

    async def read() -> Facts:
        async with reading(db) as store:
            snapshot = await load_scoped(store, mission, tenant)
            key = snapshot.id
            timeline = await store.timeline(key)
            buffered: dict[str, BufferedSignal] = {}
            for name in {e.node for e in timeline if e.kind is TimelineKind.SIGNAL_BUFFERED}:
                oldest = await store.next_signal(key, name) if name else None
                if oldest is not None:
                    buffered[oldest.name] = oldest
            pending = [
                s for s in await store.pending_submissions(MAX_LIST_LIMIT) if s.mission_id == key
            ]
            recorded = await store.fingerprints()
            parent = (
                None if snapshot.parent is None else await store.load(snapshot.parent.mission_id)
            )
        return Facts(
            snapshot=as_seen(snapshot),
            timeline=timeline,
            buffered=buffered,
            pending=pending,
            owner=owner_process(db),
            parent_status=None if parent is None else parent.status,
            recorded=recorded,
            definitions=definitions,
            now=now(),
            margin=margin,
            db=db,
        )

    facts = run(read)
    diagnosis = diagnose(facts)
    if as_json:
        echo_json(diagnosis_json(facts, diagnosis))
        return
    out = console()
    out.print(f"{mission}: {diagnosis.line}", markup=False)
    if diagnosis.command is not None:
        out.print(f"  fix: {diagnosis.command}", markup=False)


@cli.command("graph")
@app_option
@click.option(
    "--db",
    "db",
    envvar="MISSION_CONTROL_DB",
    metavar="PATH",
    help="The SQLite database holding MISSION (or set MISSION_CONTROL_DB).",
)
@click.option(
    "--version",
    "version",
    type=int,
    help="The version to draw (default: MISSION's, else the latest --app has).",
)
@click.argument("definition", type=TEXT)
@click.argument("mission", type=TEXT, required=False)
@tenant_option
def graph_command(
    db: str | None,
    app: str | None,
    version: int | None,
    definition: str,
    mission: str | None,
    tenant: str | None,
) -> None:
    """Print DEFINITION as a Mermaid flowchart; with MISSION, its nodes coloured by where that
    mission is (done, running, waiting, failed). Needs --app."""
    if app is None:
        raise bad_input(
            "graph needs the definitions: pass --app module:attribute (or set MISSION_CONTROL_APP)"
        )
    loaded = load_definitions(app)
    versions = {d.version: d for d in loaded if d.name == definition}
    if not versions:
        raise bad_input(
            f"--app has no definition {definition!r}",
            hint=f"it has: {', '.join(sorted({d.name for d in loaded})) or 'none'}",
        )
    states: dict[str, NodeStatus] | None = None
    on_version: int | None = None
    if mission is not None:
        if db is None:
            raise bad_input("a MISSION's states are read from the database: pass --db PATH")

        async def read() -> MissionSnapshot:
            async with reading(db) as store:
                return await load_scoped(store, mission, tenant)

        snapshot = run(read)
        if snapshot.definition != definition:
            raise bad_input(
                f"mission {mission!r} is a mission of {snapshot.definition!r}, not of "
                f"{definition!r}",
                hint=f"mission-control graph {snapshot.definition} {mission}",
            )
        on_version = snapshot.definition_version
        version = on_version if version is None else version
        states = {path: record.status for path, record in snapshot.nodes.items()}
    found = versions.get(max(versions) if version is None else version)
    if found is None:
        raise bad_input(
            f"--app has no version {version} of {definition!r}",
            hint=f"it has version {', '.join(str(v) for v in sorted(versions))}",
        )
    note = None
    if on_version is not None and found.version != on_version:
        note = f"mission {mission} runs on version {on_version}, drawn on {found.version}"
    click.echo(mermaid(found.describe(), states, note=note), nl=False)


@cli.command("check")
@db_option
@app_option
@json_option
def check_command(db: str, app: str | None, as_json: bool) -> None:
    """Check, before a deploy, that the definitions --app gives can run every unfinished
    mission of the database: each version they use registered, with the shape its missions
    started on. Exits 1 naming the versions and missions when not."""
    if app is None:
        raise bad_input(
            "check needs the definitions to check: pass --app module:attribute (or set "
            "MISSION_CONTROL_APP)"
        )
    definitions = load_definitions(app)

    async def go() -> VersionReport:
        async with reading(db) as store:
            return await check_definitions(store, definitions)

    report = run(go)
    if as_json:
        echo_json(
            {
                "ok": report.ok,
                "problems": [attrs.asdict(problem) for problem in report.problems],
                "in_use": [list(key) for key in report.in_use],
                "unrecorded": [list(key) for key in report.unrecorded],
            }
        )
    else:
        console().print(str(report), markup=False)
    if not report.ok:
        raise click.exceptions.Exit(Exit.FAILED)
