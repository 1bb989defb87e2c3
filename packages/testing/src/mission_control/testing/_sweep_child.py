"""The child process of a sweep in child processes (``ChildProcesses``): it plays the script on
the store's file and SIGKILLs itself at the crash point, reporting on its standard output, one
JSON object a line, every script action it begins, every write it stores, every node it runs and
the loop time at which it dies.

    python -m mission_control.testing._sweep_child SPEC
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import anyio

from ._fixtures import virtual_time_backend
from ._sweep import (
    CHILD_REPORT,
    CrashTarget,
    FileSweepStore,
    SweepRun,
    action_from_json,
    load_reference,
    write_to_json,
)


def _say(report: object) -> None:
    sys.stdout.write(f"{CHILD_REPORT}{json.dumps(report)}\n")
    sys.stdout.flush()


async def _main(spec: dict[str, Any]) -> None:
    path = Path(spec["path"])
    store = FileSweepStore(path.parent, load_reference(spec["open"]), suffix=path.suffix)
    await store.create(path.stem)
    run = SweepRun(
        load_reference(spec["definition"]),
        spec["input"],
        [action_from_json(action) for action in spec["script"]],
        store,
        spec["mission_id"],
        spec["max_recovery_attempts"],
    )
    run.on_write = lambda write: _say({"write": write_to_json(write)})
    run.on_run = lambda mission, node, attempt: _say({"run": [mission, node, attempt]})
    run.on_action = lambda index, writes: _say({"action": index, "writes": writes})
    run.begin()

    def die() -> None:
        _say({"dying": anyio.current_time() - run.origin})
        os.kill(os.getpid(), signal.SIGKILL)

    await run.process(CrashTarget(**spec["target"]), crash=die)


def main() -> None:
    spec = json.loads(sys.argv[1])
    backend, options = virtual_time_backend(spec["backend"])
    anyio.run(_main, spec, backend=backend, backend_options=options)


if __name__ == "__main__":
    main()
