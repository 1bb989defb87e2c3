"""How the command fails: a message saying what was wrong and what to do, and an exit code."""

from __future__ import annotations

import enum

import click

from mission_control.core import (
    InvalidSignalPayloadError,
    MissionControlError,
    MissionNotActiveError,
    MissionNotFoundError,
    ScheduleExistsError,
    ScheduleNotFoundError,
    TriggerNotFoundError,
    UnknownDefinitionError,
    UnknownSignalError,
)


class Exit(enum.IntEnum):
    """The command's exit codes (documented in the package README)."""

    OK = 0
    FAILED = 1
    """The command could not do what it was asked (a mission not found, a refusal)."""
    USAGE = 2
    """Bad arguments or options (click's own code for them)."""
    PENDING = 3
    """A submission is stored but the owner had not decided it when ``--timeout`` ran out, or
    when the wait was interrupted (Ctrl-C)."""


class CommandError(click.ClickException):
    """A failure the user can act on: what went wrong, then what to do."""

    exit_code = Exit.FAILED

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message if hint is None else f"{message}\n  hint: {hint}")


class BadInput(CommandError):
    """Input the command cannot use (not the library's verdict on it)."""

    exit_code = Exit.USAGE


class StillPending(CommandError):
    """The owner had not decided a submission within ``--timeout`` (or before Ctrl-C)."""

    exit_code = Exit.PENDING


def _hint(error: MissionControlError) -> str | None:
    match error:
        case MissionNotFoundError():
            return "`mission-control list` shows the missions this database holds"
        case UnknownSignalError() | InvalidSignalPayloadError():
            return "`mission-control show MISSION` shows what the mission waits for"
        case MissionNotActiveError():
            return "`mission-control show MISSION` shows how it ended"
        case UnknownDefinitionError():
            return (
                "--app module:attribute must name the application's definitions, the one the "
                "error names among them (`mission-control show MISSION` names a mission's "
                "definition and version)"
            )
        case ScheduleNotFoundError():
            return (
                "`mission-control schedule list` shows the schedules of no tenant this database "
                "holds, `schedule list --tenant NAME` a tenant's"
            )
        case ScheduleExistsError():
            return "`mission-control schedule show ID` shows the stored one"
        case TriggerNotFoundError():
            return "`mission-control trigger list` shows the fires this database records"
        case _:
            return None


def from_library(error: MissionControlError) -> CommandError:
    """The library's error as the command reports it (its class and message, and a hint)."""
    return CommandError(f"{type(error).__name__}: {error}", hint=_hint(error))


def bad_input(message: str, hint: str | None = None) -> BadInput:
    return BadInput(message, hint=hint)
