"""``mission-control``: look at and act on the missions of a SQLite database from a shell.

The console script runs :func:`main`; ``python -m mission_control.cli`` does the same.
``cli`` is the click group, for embedding the commands in another click application."""

# The group with every command: _repair registers retry, fork and purge beside _commands' ones,
# _schedule_commands the schedule group.
from ._schedule_commands import cli


def main() -> None:
    """Run the command line (``sys.argv``) and exit with its code."""
    cli(prog_name="mission-control")


__all__ = ["cli", "main"]
