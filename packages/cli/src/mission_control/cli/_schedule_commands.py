"""schedule: list, show, create, pause, resume and delete the schedules of a database; trigger:
list, show and replay its recorded fires.

Reads go through the read-only adapter; writes are made by a submitter commander straight into
the store (a schedule is not a mission: nothing waits for the owner to apply it), which then
wakes the owner so that its runtime arms a tick for the schedule's next slot."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar, cast

import click
from rich.markup import escape
from rich.table import Table

from mission_control.adapter_sqlite import SQLiteCommander
from mission_control.core import (
    MAX_LIST_LIMIT,
    Cron,
    Every,
    MissedFires,
    Schedule,
    ScheduleChanges,
    ScheduleNotFoundError,
    ScheduleOptions,
    Trigger,
    TriggerFire,
)
from mission_control.core.storage import (
    fire_of_tenant,
    fires_of_tenant,
    schedule_of_tenant,
    schedule_to_json,
    schedules_of_tenant,
    trigger_to_json,
)

from ._app import Definitions
from ._commands import (
    app_option,
    db_option,
    definitions_of,
    json_option,
    now,
    stored_key,
    tenant_flag,
    tenant_option_of,
)
from ._errors import CommandError, bad_input
from ._render import console, echo_json, when
from ._repair import (
    cli as cli,  # re-exported: the group, with retry, fork, purge and the commands added here
)
from ._store import reading, run, submitting

_F = TypeVar("_F", bound=Callable[..., Any])


def schedule_json(schedule: Schedule) -> dict[str, Any]:
    """A schedule as stored (the storage codec's JSON form)."""
    value: dict[str, Any] = json.loads(schedule_to_json(schedule))
    return value


def _trigger_text(trigger: Trigger) -> str:
    match trigger:
        case Cron():
            return f"cron {trigger.expression!r} ({trigger.timezone})"
        case Every():
            return f"every {timedelta(seconds=trigger.seconds)}"


def _state(schedule: Schedule) -> str:
    if schedule.paused:
        return "[yellow]paused[/]"
    if schedule.last_error is not None:
        return "[red]last fire refused[/]"
    return "[green]active[/]"


def _table(schedules: list[Schedule], at: datetime) -> Table:
    table = Table(box=None, header_style="bold")
    for column in ("ID", "DEFINITION", "WHEN", "NEXT FIRE", "LAST FIRE", "FIRES", "STATE"):
        table.add_column(column, no_wrap=column in ("ID", "STATE"))
    for schedule in schedules:
        table.add_row(
            escape(schedule.id),
            escape(schedule.definition),
            escape(_trigger_text(schedule.trigger)),
            when(schedule.next_fire_at, at),
            when(schedule.last_fire_at, at),
            str(schedule.fires),
            _state(schedule),
        )
    return table


schedule_tenant = tenant_option_of("schedule")
fire_tenant = tenant_option_of("fire")


def _in(tenant: str | None) -> str:
    return "" if tenant is None else f" in tenant {tenant!r}"


def _not_found(schedule_id: str, tenant: str | None) -> CommandError:
    return CommandError(
        f"there is no schedule {schedule_id!r}{_in(tenant)} in this database",
        hint=f"`mission-control schedule list{tenant_flag(tenant)}` shows its schedules",
    )


def _print(schedule: Schedule, as_json: bool) -> None:
    if as_json:
        echo_json(schedule_json(schedule))
        return
    out = console()
    at = now()
    out.print(f"[bold]schedule {escape(schedule.id)}[/]  {_state(schedule)}")
    out.print(f"  starts     {escape(schedule.definition)}")
    out.print(f"  when       {escape(_trigger_text(schedule.trigger))}")
    out.print(f"  input      {escape(json.dumps(schedule.input, ensure_ascii=False))}")
    if schedule.fire_time_field is not None:
        out.print(f"  fire time  under {escape(schedule.fire_time_field)!r}")
    out.print(
        f"  missed     {schedule.missed} (grace {schedule.grace}, "
        f"catch up at most {schedule.max_catch_up})"
    )
    out.print(f"  next fire  {when(schedule.next_fire_at, at)}")
    out.print(f"  last fire  {when(schedule.last_fire_at, at)}")
    out.print(f"  mission    {escape(schedule.last_mission_id or '-')}")
    out.print(f"  fires      {schedule.fires}")
    if schedule.last_error is not None:
        out.print(f"  [red]refused[/]    {escape(schedule.last_error)}")


@cli.group("schedule")
def schedule_group() -> None:
    """List, show, create, pause, resume and delete schedules (missions started on a
    timetable; see docs/schedules.md)."""


@schedule_group.command("list")
@db_option
@click.option(
    "--limit",
    type=click.IntRange(1, MAX_LIST_LIMIT),
    default=100,
    show_default=True,
    help="At most this many schedules.",
)
@click.option("--after", metavar="ID", help="Start after this schedule id (the next page).")
@schedule_tenant
@json_option
def list_schedules(
    db: str, limit: int, after: str | None, tenant: str | None, as_json: bool
) -> None:
    """The schedules (of --tenant; without it, those of no tenant), by id."""
    stored_key("", tenant)  # a bad tenant name is a usage error, as elsewhere

    async def read() -> list[Schedule]:
        async with reading(db) as store:
            return await schedules_of_tenant(store, tenant, limit, after)

    schedules = run(read)
    if as_json:
        echo_json([schedule_json(schedule) for schedule in schedules])
    elif not schedules:
        click.echo("no schedules")
    else:
        console().print(_table(schedules, now()))


@schedule_group.command("show")
@db_option
@click.argument("schedule_id", metavar="ID")
@schedule_tenant
@json_option
def show_schedule(db: str, schedule_id: str, tenant: str | None, as_json: bool) -> None:
    """One schedule: its timetable, its input and the record of its last fire."""
    stored_key(schedule_id, tenant)  # a bad tenant name is a usage error, as elsewhere

    async def read() -> Schedule:
        async with reading(db) as store:
            schedule = await schedule_of_tenant(store, schedule_id, tenant)
        if schedule is None:
            raise _not_found(schedule_id, tenant)
        return schedule

    _print(run(read), as_json)


def _trigger(cron: str | None, timezone: str | None, every: float | None) -> Trigger:
    if (cron is None) == (every is None):
        raise bad_input("give the timetable as either --cron EXPRESSION or --every SECONDS")
    if every is not None:
        if timezone is not None:
            raise bad_input("--timezone goes with --cron (an interval is counted in UTC)")
        return Every(every)
    assert cron is not None
    return Cron(cron, timezone=timezone or "UTC")


def _input(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise bad_input(
            f"--input is not JSON ({error.msg} at character {error.pos})",
            hint="""quote it for the shell, e.g. '{"keep_days": 30}'""",
        ) from None


def _settings_options(function: _F) -> _F:
    """The options of a schedule's settings, shared by create and update (unset: ``None``)."""
    options = [
        click.option(
            "--cron", metavar="EXPRESSION", help="A cron expression ('30 2 * * *', @daily)."
        ),
        click.option(
            "--timezone",
            metavar="ZONE",
            help="The IANA time zone --cron is read in (Europe/Paris; default UTC).",
        ),
        click.option(
            "--every", type=click.FloatRange(min=1), metavar="SECONDS", help="An interval."
        ),
        click.option("--input", "input_text", metavar="JSON", help="Each mission's input."),
        click.option("--fire-time-field", metavar="KEY", help="Add the slot's time to the input."),
        click.option(
            "--missed",
            type=click.Choice([policy.value for policy in MissedFires]),
            help="What to do with slots missed while no runtime ran (default skip).",
        ),
        click.option(
            "--max-catch-up",
            type=click.IntRange(min=1),
            help="At most this many missed slots fire with --missed all (default 100).",
        ),
        click.option(
            "--grace",
            type=click.FloatRange(min=0),
            metavar="SECONDS",
            help="How late a slot may fire and count as on time (default 60).",
        ),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def _options(
    fire_time_field: str | None, missed: str | None, max_catch_up: int | None, grace: float | None
) -> ScheduleOptions:
    """The settings given on the command line (the others keep their default, or stay)."""
    options: ScheduleOptions = {}
    if fire_time_field is not None:
        options["fire_time_field"] = fire_time_field
    if missed is not None:
        options["missed"] = missed
    if max_catch_up is not None:
        options["max_catch_up"] = max_catch_up
    if grace is not None:
        options["grace"] = grace
    return options


def _needs_app(app: str | None, action: str) -> Definitions:
    if app is None:
        raise bad_input(
            f"schedule {action} needs --app MODULE:ATTRIBUTE, to check the input against the "
            "definition before the schedule is stored"
        )
    return definitions_of(app)


@schedule_group.command("create")
@db_option
@app_option
@click.argument("schedule_id", metavar="ID")
@click.argument("definition")
@_settings_options
@click.option("--paused", is_flag=True, help="Store it paused.")
@schedule_tenant
@json_option
def create_schedule(
    db: str,
    app: str | None,
    schedule_id: str,
    definition: str,
    cron: str | None,
    timezone: str | None,
    every: float | None,
    input_text: str | None,
    fire_time_field: str | None,
    missed: str | None,
    max_catch_up: int | None,
    grace: float | None,
    paused: bool,
    tenant: str | None,
    as_json: bool,
) -> None:
    """Store the schedule ID, which starts a mission of DEFINITION at each slot. Needs --app:
    the input is checked against the definition here, before anything is stored."""
    definitions = _needs_app(app, "create")
    value = _input(input_text)
    options = _options(fire_time_field, missed, max_catch_up, grace)
    if tenant is not None:
        options["tenant"] = tenant

    async def create() -> Schedule:
        trigger = _trigger(cron, timezone, every)
        async with submitting(db, definitions) as commander:
            return await commander.create_schedule(
                schedule_id, definition, trigger, value, paused=paused, **options
            )

    _print(run(create), as_json)


@schedule_group.command("update")
@db_option
@app_option
@click.argument("schedule_id", metavar="ID")
@click.option("--definition", metavar="NAME", help="Start missions of this definition instead.")
@_settings_options
@schedule_tenant
@json_option
def update_schedule(
    db: str,
    app: str | None,
    schedule_id: str,
    definition: str | None,
    cron: str | None,
    timezone: str | None,
    every: float | None,
    input_text: str | None,
    fire_time_field: str | None,
    missed: str | None,
    max_catch_up: int | None,
    grace: float | None,
    tenant: str | None,
    as_json: bool,
) -> None:
    """Change the settings given of the schedule ID and keep the others (a new timetable fires
    from its first slot after now). Needs --app: the input is checked here first."""
    definitions = _needs_app(app, "update")
    # The same settings as create's (a schedule's tenant is none of them here).
    changes = cast("ScheduleChanges", dict(_options(fire_time_field, missed, max_catch_up, grace)))
    if input_text is not None:
        changes["input"] = _input(input_text)
    if definition is not None:
        changes["definition"] = definition

    async def update() -> Schedule:
        if cron is not None or every is not None:
            changes["trigger"] = _trigger(cron, timezone, every)
        elif timezone is not None:
            raise bad_input("--timezone goes with --cron (the expression it is read in)")
        async with submitting(db, definitions) as commander:
            return await _found(
                commander.update_schedule(schedule_id, tenant=tenant, **changes),
                schedule_id,
                tenant,
            )

    _print(run(update), as_json)


async def _found(change: Awaitable[Schedule], schedule_id: str, tenant: str | None) -> Schedule:
    """What ``change`` returns; a schedule it does not find is reported as ``schedule show``
    reports it (the hint names the tenant's ``schedule list``)."""
    try:
        return await change
    except ScheduleNotFoundError as error:
        raise _not_found(schedule_id, tenant) from error


def _change(
    db: str,
    as_json: bool,
    schedule_id: str,
    tenant: str | None,
    change: Callable[[SQLiteCommander], Awaitable[Schedule]],
) -> None:
    async def changed() -> Schedule:
        async with submitting(db, []) as commander:
            return await _found(change(commander), schedule_id, tenant)

    _print(run(changed), as_json)


@schedule_group.command("pause")
@db_option
@click.argument("schedule_id", metavar="ID")
@schedule_tenant
@json_option
def pause_schedule(db: str, schedule_id: str, tenant: str | None, as_json: bool) -> None:
    """Stop firing the schedule ID until it is resumed (its slots meanwhile are not fired)."""
    _change(
        db,
        as_json,
        schedule_id,
        tenant,
        lambda commander: commander.pause_schedule(schedule_id, tenant=tenant),
    )


@schedule_group.command("resume")
@db_option
@click.argument("schedule_id", metavar="ID")
@schedule_tenant
@json_option
def resume_schedule(db: str, schedule_id: str, tenant: str | None, as_json: bool) -> None:
    """Fire the schedule ID again, from its first slot after now."""
    _change(
        db,
        as_json,
        schedule_id,
        tenant,
        lambda commander: commander.resume_schedule(schedule_id, tenant=tenant),
    )


@schedule_group.command("delete")
@db_option
@click.argument("schedule_id", metavar="ID")
@schedule_tenant
def delete_schedule(db: str, schedule_id: str, tenant: str | None) -> None:
    """Delete the schedule ID; the missions it started stay."""
    stored_key(schedule_id, tenant)  # a bad tenant name is a usage error, as elsewhere

    async def delete() -> bool:
        async with submitting(db, []) as commander:
            return await commander.delete_schedule(schedule_id, tenant=tenant)

    if not run(delete):
        raise _not_found(schedule_id, tenant)
    click.echo(f"schedule {schedule_id} deleted")


# -- triggers ----------------------------------------------------------------------------------


def trigger_json(fire: TriggerFire) -> dict[str, Any]:
    """A recorded fire as stored (the storage codec's JSON form)."""
    value: dict[str, Any] = json.loads(trigger_to_json(fire))
    return value


def _fires_table(fires: list[TriggerFire], at: datetime) -> Table:
    table = Table(box=None, header_style="bold")
    for column in ("ID", "TRIGGER", "FIRED", "MISSIONS", "REPLAY OF"):
        table.add_column(column, no_wrap=column == "ID")
    for fire in fires:
        table.add_row(
            escape(fire.id),
            escape(fire.name),
            when(fire.fired_at, at),
            escape(", ".join(fire.missions) or "-"),
            escape(fire.replay_of or "-"),
        )
    return table


def _print_fire(fire: TriggerFire, as_json: bool) -> None:
    if as_json:
        echo_json(trigger_json(fire))
        return
    out = console()
    out.print(f"[bold]fire {escape(fire.id)}[/] of trigger {escape(fire.name)}")
    out.print(f"  fired      {when(fire.fired_at, now())}")
    out.print(f"  payload    {escape(json.dumps(fire.payload, ensure_ascii=False))}")
    out.print(f"  missions   {escape(', '.join(fire.missions) or '-')}")
    if fire.replay_of is not None:
        out.print(f"  replays    {escape(fire.replay_of)}")


@cli.group("trigger")
def trigger_group() -> None:
    """List, show and replay fired triggers (see docs/schedules.md, triggers)."""


@trigger_group.command("list")
@db_option
@click.option("--name", metavar="TRIGGER", help="Only the fires of this trigger.")
@click.option(
    "--limit",
    type=click.IntRange(1, MAX_LIST_LIMIT),
    default=100,
    show_default=True,
    help="At most this many fires.",
)
@click.option("--after", metavar="ID", help="Start after this fire id (the next page).")
@fire_tenant
@json_option
def list_fires(
    db: str, name: str | None, limit: int, after: str | None, tenant: str | None, as_json: bool
) -> None:
    """The recorded fires (of --tenant; without it, those of no tenant), by id."""
    stored_key("", tenant)  # a bad tenant name is a usage error, as elsewhere

    async def read() -> list[TriggerFire]:
        async with reading(db) as store:
            return await fires_of_tenant(store, name, tenant, limit, after)

    fires = run(read)
    if as_json:
        echo_json([trigger_json(fire) for fire in fires])
    elif not fires:
        click.echo("no fired triggers")
    else:
        console().print(_fires_table(fires, now()))


def _no_fire(fire_id: str, tenant: str | None) -> CommandError:
    return CommandError(
        f"there is no fired trigger {fire_id!r}{_in(tenant)} in this database",
        hint=f"`mission-control trigger list{tenant_flag(tenant)}` shows the fires it records",
    )


@trigger_group.command("show")
@db_option
@click.argument("fire_id", metavar="ID")
@fire_tenant
@json_option
def show_fire(db: str, fire_id: str, tenant: str | None, as_json: bool) -> None:
    """One recorded fire: its trigger, payload and the missions it started."""
    stored_key(fire_id, tenant)  # a bad tenant name is a usage error, as elsewhere

    async def read() -> TriggerFire:
        async with reading(db) as store:
            fire = await fire_of_tenant(store, fire_id, tenant)
        if fire is None:
            raise _no_fire(fire_id, tenant)
        return fire

    _print_fire(run(read), as_json)


@trigger_group.command("replay")
@db_option
@app_option
@click.argument("fire_id", metavar="ID")
@click.option("--id", "new_id", metavar="ID", help="The replay's fire id (a retry is idempotent).")
@fire_tenant
@json_option
def replay_fire(
    db: str, app: str | None, fire_id: str, new_id: str | None, tenant: str | None, as_json: bool
) -> None:
    """Fire the recorded fire ID again, to the definitions of --app subscribed to its trigger:
    their missions are stored for the owner's runtime to run. Needs --app (the subscribers,
    and their check of the payload)."""
    if app is None:
        raise bad_input(
            "trigger replay needs --app MODULE:ATTRIBUTE: the definitions subscribed to the "
            "trigger, which check the payload before anything is stored"
        )
    definitions = definitions_of(app)

    async def replay() -> TriggerFire:
        async with submitting(db, definitions) as commander:
            return await commander.replay_trigger(
                fire_id, id=new_id, background=True, tenant=tenant
            )

    _print_fire(run(replay), as_json)
