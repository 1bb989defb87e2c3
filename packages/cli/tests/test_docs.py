"""The commands docs/operations.md and the CLI's README show are the command's own."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

from mission_control.cli import cli

ROOT = Path(__file__).resolve().parents[3]
PAGES = [ROOT / "docs/operations.md", ROOT / "packages/cli/README.md"]


def shown_commands() -> list[tuple[str, list[str]]]:
    found: list[tuple[str, list[str]]] = []
    for page in PAGES:
        for line in re.findall(r"^\$? ?mission-control (.+)$", page.read_text(), re.M):
            found.append((page.name, shlex.split(line.split("  #")[0])))
    return found


def _ident(value: object) -> str:
    return " ".join(value) if isinstance(value, list) else str(value)


@pytest.mark.parametrize(("page", "args"), shown_commands(), ids=_ident)
def test_each_command_shown_in_the_docs_parses(page: str, args: list[str]) -> None:
    """Every `mission-control ...` line of the docs names a command, and its arguments and
    options parse as that command's."""
    assert args[0] in cli.commands, (page, args)
    command = cli.commands[args[0]]
    rest = args[1:] if "--db" in args else [*args[1:], "--db", "x.sqlite"]
    with command.make_context(args[0], rest) as ctx:
        assert isinstance(ctx, click.Context)


def test_a_command_the_docs_got_wrong_would_not_parse() -> None:
    """The check above catches an option a command does not have."""
    with pytest.raises(click.NoSuchOption):
        cli.commands["list"].make_context("list", ["--db", "x", "--state", "waiting"])
