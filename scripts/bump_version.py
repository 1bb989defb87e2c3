"""Set one new version on every workspace member and on every internal pin.

    uv run python scripts/bump_version.py 0.2.0
    uv run python scripts/bump_version.py 0.2.0 --dry-run

Edits are text-level (comments, ordering and formatting are kept): the ``version = "..."``
line of each member's ``[project]`` table, and every ``"mission-control-<member>==X"`` pin in
the member pyproject files. All edits are computed and verified first; if anything is wrong
(an invalid version, a file without a ``[project].version``) nothing is written.

Accepted versions are canonical, publishable PEP 440 release versions: at least
``MAJOR.MINOR``, optionally followed by ``aN``/``bN``/``rcN``, ``.postN`` and ``.devN``
(e.g. ``0.2.0``, ``1.0.0rc1``, ``1.0.0.post1``, ``0.3.0.dev2``). Epochs, local versions
(``+abc``), leading ``v`` and non-canonical spellings (``1.0-beta``) are refused.
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

REPO_ROOT = Path(__file__).resolve().parent.parent
INTERNAL_PREFIX = "mission-control-"

VERSION_RE = re.compile(
    r"""^
    (?:0|[1-9][0-9]*)(?:\.(?:0|[1-9][0-9]*))+   # release: MAJOR.MINOR[.PATCH...]
    (?:(?:a|b|rc)(?:0|[1-9][0-9]*))?            # pre-release
    (?:\.post(?:0|[1-9][0-9]*))?                # post-release
    (?:\.dev(?:0|[1-9][0-9]*))?                 # development release
    $""",
    re.VERBOSE,
)
# A table header such as [project] or [[tool.x]], written at column 0 (as pyproject files are).
_TABLE_HEADER_RE = re.compile(r"^\[\[?\s*([^\],]+?)\s*\]\]?\s*(?:#.*)?$")
_VERSION_LINE_RE = re.compile(r"""^(?P<head>\s*version\s*=\s*)(?P<q>["'])(?P<value>[^"']*)(?P=q)""")
_PIN_RE = re.compile(
    r"""(?P<head>(?P<q>["'])\s*(?P<name>mission-control-[A-Za-z0-9._-]*[A-Za-z0-9])
    \s*(?:\[[^\]]*\])?\s*==\s*)(?P<value>[^"',;\s]+)""",
    re.VERBOSE,
)


class BumpError(Exception):
    """The bump cannot be applied; nothing has been written."""


def validate_version(version: str) -> None:
    """Raise BumpError unless ``version`` is a canonical PEP 440 release version."""
    if VERSION_RE.match(version):
        return
    hints: list[str] = []
    if version[:1] in "vV":
        hints.append("drop the leading 'v'")
    if "+" in version:
        hints.append("local versions (+...) cannot be published")
    if "!" in version:
        hints.append("epochs are not used")
    hint = f" ({'; '.join(hints)})" if hints else ""
    raise BumpError(
        f"invalid version {version!r}{hint}: expected a canonical PEP 440 version such as "
        "0.2.0, 1.0.0rc1, 1.0.0.post1 or 0.3.0.dev1"
    )


def normalize_name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def member_pyprojects(root: Path) -> list[Path]:
    """The pyproject.toml of every member listed in ``[tool.uv.workspace].members``."""
    data = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    tool = cast("dict[str, Any]", data.get("tool", {}))
    workspace = cast(
        "dict[str, Any]", cast("dict[str, Any]", tool.get("uv", {})).get("workspace", {})
    )
    patterns = cast("list[str]", workspace.get("members", []))
    found = sorted(
        {path / "pyproject.toml" for p in patterns for path in root.glob(p) if path.is_dir()}
    )
    files = [path for path in found if path.is_file()]
    if not files:
        raise BumpError(f"{root / 'pyproject.toml'}: no workspace members found")
    return files


@dataclass(frozen=True)
class Change:
    path: Path
    line: int
    old: str
    new: str


def _project_name(text: str) -> str:
    data = tomllib.loads(text)
    name = cast("dict[str, Any]", data.get("project", {})).get("name")
    return normalize_name(name) if isinstance(name, str) else ""


def bump_text(
    text: str, path: Path, new_version: str, members: set[str]
) -> tuple[str, list[Change]]:
    """Return the edited text and the changed lines; raises BumpError if no version line."""
    lines = text.splitlines(keepends=True)
    changes: list[Change] = []
    table: str | None = None
    version_seen = False
    for index, line in enumerate(lines):
        header = _TABLE_HEADER_RE.match(line)
        if header:
            table = header.group(1)
            continue
        new_line = line
        if table == "project" and not version_seen:
            match = _VERSION_LINE_RE.match(line)
            if match:
                version_seen = True
                new_line = line[: match.start("value")] + new_version + line[match.end("value") :]

        def repin(match: re.Match[str]) -> str:
            if normalize_name(match["name"]) not in members:
                return match.group(0)
            return match["head"] + new_version

        new_line = _PIN_RE.sub(repin, new_line)
        if new_line != line:
            changes.append(Change(path, index + 1, line.rstrip("\r\n"), new_line.rstrip("\r\n")))
            lines[index] = new_line
    if not version_seen:
        raise BumpError(f'{path}: no `version = "..."` line in the [project] table')
    return "".join(lines), changes


def _verify(path: Path, text: str, new_version: str, members: set[str]) -> None:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:  # pragma: no cover - defensive
        raise BumpError(f"{path}: the edit would produce invalid TOML: {exc}") from exc
    project = cast("dict[str, Any]", data.get("project", {}))
    if project.get("version") != new_version:
        raise BumpError(f"{path}: [project].version did not become {new_version!r}")
    for requirement in cast("list[str]", project.get("dependencies", [])):
        name = normalize_name(re.split(r"[\s\[<>=!~;@]", requirement, maxsplit=1)[0])
        if name in members and f"=={new_version}" not in requirement.replace(" ", ""):
            raise BumpError(
                f"{path}: internal dependency {requirement!r} is not an exact `==` pin; "
                f"fix it to '{name}=={new_version}' by hand (release_check reports it too)"
            )


def bump(root: Path, new_version: str, *, dry_run: bool = False) -> list[Change]:
    """Validate, compute and verify every edit, then write them (unless ``dry_run``)."""
    validate_version(new_version)
    paths = member_pyprojects(root)
    texts = {path: path.read_text(encoding="utf-8") for path in paths}
    members = {_project_name(text) for text in texts.values()} - {""}
    members = {m for m in members if m.startswith(INTERNAL_PREFIX)}
    edited: dict[Path, str] = {}
    changes: list[Change] = []
    for path, text in texts.items():
        new_text, file_changes = bump_text(text, path, new_version, members)
        _verify(path, new_text, new_version, members)
        edited[path] = new_text
        changes.extend(file_changes)
    if not dry_run:
        for path, new_text in edited.items():
            if new_text != texts[path]:
                with path.open("w", encoding="utf-8", newline="") as stream:
                    stream.write(new_text)
    return changes


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Set NEW_VERSION on every member and every internal == pin."
    )
    parser.add_argument("new_version", metavar="NEW_VERSION")
    parser.add_argument("--root", type=Path, default=REPO_ROOT, help="workspace root")
    parser.add_argument("--dry-run", action="store_true", help="show the edits, write nothing")
    args = parser.parse_args(argv)
    root: Path = args.root.resolve()
    try:
        changes = bump(root, args.new_version, dry_run=args.dry_run)
    except BumpError as exc:
        print(f"bump_version: error: {exc}", file=sys.stderr)
        print("bump_version: nothing was changed", file=sys.stderr)
        return 2
    if not changes:
        print(f"bump_version: every member is already at {args.new_version}; nothing to change")
        return 0
    verb = "would change" if args.dry_run else "changed"
    for change in changes:
        where = change.path.relative_to(root).as_posix()
        print(f"{where}:{change.line}: {change.old.strip()}  ->  {change.new.strip()}")
    files = len({c.path for c in changes})
    print(f"bump_version: {verb} {len(changes)} line(s) in {files} file(s) to {args.new_version}")
    if not args.dry_run:
        print("next: `uv lock` to refresh uv.lock, then add a CHANGELOG.md entry")
    return 0


if __name__ == "__main__":
    sys.exit(main())
