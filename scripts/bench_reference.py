"""The fixed reference loop: ``lean_loop.py`` of ``../shared/reference`` (beside the repository),
trio calling apsw inline in WAL mode, 5 write transactions per 3-step mission, minimal rows, no
engine. It does not change when the project's rows do, so a ratio to it moves only when the
engine does (issue 20). It is run as its README says: its ``seq`` mode in a process of its own,
in the same session as the benchmark and interleaved with its runs; its JSON line's
``wf_per_s`` is missions per second. Never edited here: it is the ceiling, not the project."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

_SCRIPTS = Path(__file__).resolve().parent


def _candidates() -> list[Path]:
    """``../shared/reference/lean_loop.py`` beside this checkout, and beside the main checkout
    when this one is a git worktree (its common git directory is the main checkout's)."""
    roots = [_SCRIPTS.parent]
    try:
        common = subprocess.run(
            ["git", "rev-parse", "--path-format=absolute", "--git-common-dir"],
            capture_output=True,
            text=True,
            check=False,
            cwd=_SCRIPTS,
        ).stdout.strip()
    except OSError:
        common = ""
    if common:
        roots.append(Path(common).parent)
    return [root.parent / "shared" / "reference" / "lean_loop.py" for root in roots]


def find_reference(given: str | None) -> tuple[Path | None, str]:
    """The reference loop to run (``given``, else the first candidate found), and where it was
    looked for: a row names that place when it is absent instead of failing the run."""
    candidates = [Path(given)] if given else _candidates()
    for candidate in candidates:
        if candidate.is_file():
            return candidate, str(candidate)
    return None, " or ".join(str(candidate) for candidate in candidates)


class ReferenceLoop:
    """Runs of the fixed reference loop's ``seq`` mode, each on a fresh database."""

    def __init__(self, script: Path, directory: str) -> None:
        self.script = script
        self.db = os.path.join(directory, "lean.db")

    def seq(self, missions: int, synchronous: str) -> float:
        """Missions per second of ``missions`` 3-step missions one after another."""
        command = [sys.executable, str(self.script), "seq", "--n", str(missions)]
        command += ["--sync", synchronous, "--db", self.db]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"the reference loop failed ({command}):\n{done.stderr}")
        figures = json.loads(done.stdout.strip().splitlines()[-1])
        return float(figures["wf_per_s"])
