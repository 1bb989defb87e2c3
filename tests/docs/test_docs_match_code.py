"""Statements in the docs that can be checked against the code are."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _section(text: str, heading: str) -> str:
    start = text.index(f"\n{heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def test_the_testing_readme_lists_exactly_the_fixtures_its_plugin_registers(tmp_path: Path) -> None:
    """The testing README's fixture list names every fixture the installed plugin gives pytest,
    and no other."""
    # pytest's own listing, from an empty directory: what a user's test suite gets.
    listing = subprocess.run(
        [sys.executable, "-m", "pytest", "--fixtures", "-p", "no:cacheprovider"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    ).stdout
    registered = set(
        re.findall(r"^(\w+)(?: \[[^\]]*\])? -- \S*mission_control/testing/\S*$", listing, re.M)
    )
    assert registered, listing

    readme = (ROOT / "packages/testing/README.md").read_text()
    documented = set(re.findall(r"^- `(\w+)`:", _section(readme, "## Fixtures"), re.M))
    assert documented == registered
