"""Fixtures for the release-tooling tests: the scripts loaded by path, a workspace copy."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = REPO_ROOT / "scripts"


def load_script(name: str) -> ModuleType:
    """Import ``scripts/<name>.py`` by path (the scripts directory is not a package)."""
    module_name = f"_release_script_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, SCRIPTS / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def release_check() -> ModuleType:
    return load_script("release_check")


@pytest.fixture(scope="session")
def bump_version() -> ModuleType:
    return load_script("bump_version")


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A copy of the workspace definition and of packages/ (without tests and caches)."""
    root = tmp_path / "workspace"
    root.mkdir()
    shutil.copy2(REPO_ROOT / "pyproject.toml", root / "pyproject.toml")
    shutil.copytree(
        REPO_ROOT / "packages",
        root / "packages",
        ignore=shutil.ignore_patterns(
            "tests", "__pycache__", "*.pyc", ".venv", "dist", "build", "*.sqlite*"
        ),
    )
    return root


@pytest.fixture
def repo_root() -> Path:
    return REPO_ROOT
