"""Tests of scripts/release_check.py on temporary copies of the workspace."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from types import ModuleType

import pytest

VERSION = "0.1.0"


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def current_version(workspace: Path) -> str:
    text = (workspace / "packages/core/pyproject.toml").read_text(encoding="utf-8")
    line = next(line for line in text.splitlines() if line.startswith("version = "))
    return line.split('"')[1]


def make_wheel(path: Path, files: dict[str, str]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return path


def good_wheel_files(version: str = VERSION) -> dict[str, str]:
    info = f"mission_control_client-{version}.dist-info"
    return {
        "mission_control/client/__init__.py": "__all__: list[str] = []\n",
        "mission_control/client/py.typed": "",
        f"{info}/METADATA": (
            "Metadata-Version: 2.4\n"
            "Name: mission-control-client\n"
            f"Version: {version}\n"
            f"Requires-Dist: mission-control-core=={version}\n"
            "Requires-Dist: trio>=0.27\n"
        ),
        f"{info}/WHEEL": "Wheel-Version: 1.0\n",
        f"{info}/RECORD": "",
    }


def test_check_metadata_passes_on_real_tree(release_check: ModuleType, repo_root: Path) -> None:
    """The real workspace satisfies every metadata rule."""
    assert release_check.check_metadata(repo_root) == []


def test_check_metadata_passes_on_copy(release_check: ModuleType, workspace: Path) -> None:
    """An unmodified copy passes, so the failures below are caused by the edits alone."""
    assert release_check.check_metadata(workspace) == []


def test_mismatched_version_is_reported(release_check: ModuleType, workspace: Path) -> None:
    """A member whose [project].version differs is reported with its file and value."""
    version = current_version(workspace)
    edit(
        workspace / "packages/runtime/pyproject.toml", f'version = "{version}"', 'version = "9.9.9"'
    )
    problems = release_check.check_metadata(workspace)
    assert len(problems) == 1, problems
    assert "packages/runtime/pyproject.toml" in problems[0]
    assert "'9.9.9'" in problems[0]
    assert f"'{version}'" in problems[0]


@pytest.mark.parametrize(
    "bad_pin",
    [">={v}", "~={v}", "=={v},<1", "==0.0.9", ""],
    ids=["greater-equal", "compatible", "extra-clause", "wrong-version", "unpinned"],
)
def test_non_exact_internal_pin_is_reported(
    release_check: ModuleType, workspace: Path, bad_pin: str
) -> None:
    """An internal dependency not pinned exactly ==<shared version> is reported."""
    version = current_version(workspace)
    pin = bad_pin.format(v=version)
    edit(
        workspace / "packages/client/pyproject.toml",
        f'"mission-control-runtime=={version}"',
        f'"mission-control-runtime{pin}"',
    )
    problems = release_check.check_metadata(workspace)
    assert len(problems) == 1, problems
    assert "packages/client/pyproject.toml" in problems[0]
    assert f"mission-control-runtime{pin}" in problems[0]
    assert f"mission-control-runtime=={version}" in problems[0]


def test_missing_py_typed_is_reported(release_check: ModuleType, workspace: Path) -> None:
    """A member without src/mission_control/<mod>/py.typed is reported with that path."""
    (workspace / "packages/adapter-sqlite/src/mission_control/adapter_sqlite/py.typed").unlink()
    problems = release_check.check_metadata(workspace)
    assert problems == [
        "packages/adapter-sqlite/src/mission_control/adapter_sqlite/py.typed: "
        "missing (PEP 561 marker)"
    ]


def test_namespace_init_in_src_is_reported(release_check: ModuleType, workspace: Path) -> None:
    """A mission_control/__init__.py in a member's src tree breaks the namespace and is reported."""
    (workspace / "packages/testing/src/mission_control/__init__.py").write_text("")
    problems = release_check.check_metadata(workspace)
    assert len(problems) == 1, problems
    assert "packages/testing/src/mission_control/__init__.py" in problems[0]
    assert "namespace" in problems[0]


@pytest.mark.parametrize(
    ("what", "expected"),
    [
        ("readme", "README.md"),
        ("license", "LICENSE"),
        ("requires-python", "requires-python"),
    ],
)
def test_missing_readme_license_requires_python_is_reported(
    release_check: ModuleType, workspace: Path, what: str, expected: str
) -> None:
    """A member without README, LICENSE or requires-python is reported, naming the member."""
    member = workspace / "packages/runtime"
    if what == "readme":
        (member / "README.md").unlink()
    elif what == "license":
        (member / "LICENSE").unlink()
    else:
        edit(member / "pyproject.toml", 'requires-python = ">=3.11"\n', "")
    problems = release_check.check_metadata(workspace)
    assert len(problems) == 1, problems
    assert "packages/runtime" in problems[0]
    assert expected in problems[0]


def test_core_depending_on_a_member_is_reported(release_check: ModuleType, workspace: Path) -> None:
    """mission-control-core declaring any other member as a dependency is reported."""
    version = current_version(workspace)
    edit(
        workspace / "packages/core/pyproject.toml",
        "dependencies = [\n",
        f'dependencies = [\n    "mission-control-runtime=={version}",\n',
    )
    problems = release_check.check_metadata(workspace)
    assert len(problems) == 1, problems
    assert "packages/core/pyproject.toml" in problems[0]
    assert "must not depend" in problems[0]


def test_check_wheel_accepts_a_well_formed_wheel(release_check: ModuleType, tmp_path: Path) -> None:
    """A wheel with py.typed, no namespace __init__ and exact pins has no problems."""
    wheel = make_wheel(
        tmp_path / f"mission_control_client-{VERSION}-py3-none-any.whl", good_wheel_files()
    )
    assert release_check.check_wheel(wheel, VERSION) == []


def test_check_wheel_rejects_top_level_namespace_init(
    release_check: ModuleType, tmp_path: Path
) -> None:
    """A wheel shipping a top-level mission_control/__init__.py is reported by name."""
    files = good_wheel_files() | {"mission_control/__init__.py": ""}
    wheel = make_wheel(tmp_path / f"mission_control_client-{VERSION}-py3-none-any.whl", files)
    problems = release_check.check_wheel(wheel, VERSION)
    assert len(problems) == 1, problems
    assert wheel.name in problems[0]
    assert "mission_control/__init__.py" in problems[0]


def test_check_wheel_rejects_missing_py_typed_and_loose_pin(
    release_check: ModuleType, tmp_path: Path
) -> None:
    """A wheel without py.typed or with a non-exact internal Requires-Dist is reported."""
    files = good_wheel_files()
    del files["mission_control/client/py.typed"]
    info = f"mission_control_client-{VERSION}.dist-info/METADATA"
    files[info] = files[info].replace(f"core=={VERSION}", f"core>={VERSION}")
    wheel = make_wheel(tmp_path / f"mission_control_client-{VERSION}-py3-none-any.whl", files)
    problems = release_check.check_wheel(wheel, VERSION)
    assert any("mission_control/client/py.typed" in p for p in problems), problems
    assert any(f"mission-control-core>={VERSION}" in p for p in problems), problems
    assert len(problems) == 2, problems


def test_cli_metadata_only_fails_on_broken_copy(workspace: Path, repo_root: Path) -> None:
    """`release_check.py --metadata-only --root <copy>` exits non-zero and names the problem."""
    version = current_version(workspace)
    edit(
        workspace / "packages/client/pyproject.toml", f'version = "{version}"', 'version = "0.0.1"'
    )
    result = subprocess.run(
        [
            sys.executable,
            str(repo_root / "scripts/release_check.py"),
            "--metadata-only",
            "--root",
            str(workspace),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert "packages/client/pyproject.toml" in result.stdout
    assert "'0.0.1'" in result.stdout
    assert "FAILED" in result.stdout


def test_cli_metadata_only_passes_on_clean_copy(workspace: Path, repo_root: Path) -> None:
    """`release_check.py --metadata-only --root <copy>` exits 0 on an unmodified copy."""
    result = subprocess.run(
        [
            sys.executable,
            str(repo_root / "scripts/release_check.py"),
            "--metadata-only",
            "--root",
            str(workspace),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_built_core_wheel_passes_check_wheel(release_check: ModuleType, workspace: Path) -> None:
    """The wheel uv actually builds for mission-control-core passes check_wheel."""
    uv = os.environ.get("UV") or shutil.which("uv")
    if uv is None:
        pytest.skip("uv is not installed")
    out = workspace / "out"
    subprocess.run(
        [
            uv,
            "build",
            "--package",
            "mission-control-core",
            "--wheel",
            "--no-sources",
            "--no-create-gitignore",
            "--out-dir",
            str(out),
        ],
        cwd=workspace,
        capture_output=True,
        check=True,
    )
    (wheel,) = out.glob("*.whl")
    assert release_check.check_wheel(wheel, current_version(workspace)) == []
