"""Tests of scripts/bump_version.py on temporary copies of the workspace."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest


def snapshot(workspace: Path) -> dict[Path, bytes]:
    return {path: path.read_bytes() for path in sorted(workspace.rglob("*")) if path.is_file()}


def member_projects(workspace: Path) -> list[dict[str, Any]]:
    return [
        tomllib.loads(path.read_text(encoding="utf-8"))["project"]
        for path in sorted(workspace.glob("packages/*/pyproject.toml"))
    ]


def test_bump_sets_all_versions_and_pins(
    bump_version: ModuleType, release_check: ModuleType, workspace: Path
) -> None:
    """Bumping rewrites every member version and every internal == pin, and nothing else."""
    before = snapshot(workspace)
    assert bump_version.main(["7.3.0rc1", "--root", str(workspace)]) == 0

    projects = member_projects(workspace)
    assert len(projects) == len(member_projects(Path(__file__).resolve().parents[2]))
    assert len(projects) >= 8
    assert {p["version"] for p in projects} == {"7.3.0rc1"}
    internal = [
        dep
        for p in projects
        for dep in p.get("dependencies", [])
        if dep.startswith("mission-control-")
    ]
    assert internal
    assert all(dep.endswith("==7.3.0rc1") for dep in internal), internal
    assert release_check.check_metadata(workspace) == []

    # Text-level edit: only version/pin lines change; everything else is byte-identical.
    after = snapshot(workspace)
    assert after.keys() == before.keys()
    for path, old in before.items():
        old_lines = old.decode().splitlines()
        new_lines = after[path].decode().splitlines()
        assert len(old_lines) == len(new_lines), path
        for old_line, new_line in zip(old_lines, new_lines, strict=True):
            if old_line != new_line:
                assert old_line.strip().startswith(("version =", '"mission-control-')), old_line
                assert "7.3.0rc1" in new_line


def test_bump_reports_changes_and_is_idempotent(
    bump_version: ModuleType, workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The script prints each changed line, and a second identical bump changes nothing."""
    assert bump_version.main(["0.9.0", "--root", str(workspace)]) == 0
    out = capsys.readouterr().out
    assert "packages/core/pyproject.toml:" in out
    assert 'version = "0.9.0"' in out
    assert '"mission-control-core==0.9.0"' in out
    before = snapshot(workspace)
    assert bump_version.main(["0.9.0", "--root", str(workspace)]) == 0
    assert "nothing to change" in capsys.readouterr().out
    assert snapshot(workspace) == before


def test_dry_run_writes_nothing(bump_version: ModuleType, workspace: Path) -> None:
    """--dry-run lists the edits without touching any file."""
    before = snapshot(workspace)
    assert bump_version.main(["0.9.0", "--dry-run", "--root", str(workspace)]) == 0
    assert snapshot(workspace) == before


@pytest.mark.parametrize(
    "version",
    ["v1.0.0", "1.0-beta", "1.0.0+local", "1!1.0.0", "1", "01.2.3", "1.0.0 ", "", "latest"],
)
def test_invalid_version_is_refused_and_changes_nothing(
    bump_version: ModuleType, workspace: Path, capsys: pytest.CaptureFixture[str], version: str
) -> None:
    """An invalid version exits with status 2, a clear error, and no file modified."""
    before = snapshot(workspace)
    assert bump_version.main([version, "--root", str(workspace)]) == 2
    err = capsys.readouterr().err
    assert "invalid version" in err
    assert "nothing was changed" in err
    assert snapshot(workspace) == before


def test_non_exact_pin_aborts_without_writing(
    bump_version: ModuleType, workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A member with a loose internal pin makes the bump refuse before any file is written."""
    client = workspace / "packages/client/pyproject.toml"
    text = client.read_text(encoding="utf-8")
    pin = next(line for line in text.splitlines() if '"mission-control-runtime==' in line)
    client.write_text(text.replace(pin, '    "mission-control-runtime>=0.1",'), encoding="utf-8")
    before = snapshot(workspace)
    assert bump_version.main(["0.9.0", "--root", str(workspace)]) == 2
    assert "packages/client/pyproject.toml" in capsys.readouterr().err
    assert snapshot(workspace) == before


def test_cli_rejects_invalid_version(workspace: Path, repo_root: Path) -> None:
    """Run as a command, an invalid version exits non-zero with the error on stderr."""
    result = subprocess.run(
        [
            sys.executable,
            str(repo_root / "scripts/bump_version.py"),
            "2.0.0.final",
            "--root",
            str(workspace),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "invalid version '2.0.0.final'" in result.stderr
