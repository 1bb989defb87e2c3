"""Missions from synchronous code (a script, a Flask or Django view, a Celery task), through the
blocking client.

Run it with ``uv run python examples/sync_script.py [DATABASE]`` (a temporary SQLite file by
default). ``start_blocking_client`` runs the commander and its runtime on an event loop in a
thread of their own; every call here blocks until that loop has done the work, and may come from
any thread. Nothing in this file is async.
"""

from __future__ import annotations

import re
import sys
import tempfile
import threading
from pathlib import Path
from typing import TypedDict, cast

from mission_control.adapter_sqlite import SQLiteCommander
from mission_control.client import BlockingMissionHandle, start_blocking_client
from mission_control.core import Context, InvalidInputError, MissionStatus, m


class Report(TypedDict):
    month: str


def parse_report(value: object) -> Report:
    month = cast("dict[str, object]", value).get("month") if isinstance(value, dict) else None
    if not isinstance(month, str) or re.fullmatch(r"\d{4}-\d{2}", month) is None:
        raise ValueError("a report needs a 'month' such as '2030-01'")
    return {"month": month}


def parse_review(value: object) -> str:
    reviewer = cast("dict[str, object]", value).get("by") if isinstance(value, dict) else None
    if not isinstance(reviewer, str):
        raise ValueError("a review needs 'by'")
    return reviewer


async def compile_figures(ctx: Context[Report, None]) -> int:
    # Steps stay async: they run on the client's event loop, not in the calling thread.
    print(f"  compiling the figures of {ctx.input['month']}")
    return 42


monthly_report = (
    m.define("monthly-report")
    .start(parse=parse_report)
    .step("compile-figures", compile_figures)
    .need_to("review", parse=parse_review)
    .end(
        lambda ctx: {
            "figures": ctx.events["compile-figures"].output,
            "reviewed_by": ctx.events["review"].output,
        }
    )
)


def reviewer(handle: BlockingMissionHandle) -> None:
    # Another thread (a web request, a queue consumer) signals the same mission.
    handle.signal("review", {"by": "grace"})


def main(database: Path) -> None:
    # The factory runs on the client's loop: a commander and its store serve the loop that first
    # uses them. backend="asyncio" would run them on asyncio instead of trio.
    with start_blocking_client(lambda: SQLiteCommander(database, [monthly_report])) as client:
        try:
            client.start(monthly_report, {"month": "January"})
        except InvalidInputError as error:
            print(f"refused: {error}")

        # background=True: stored now, run by the runtime; the call does not wait for the step.
        handle = client.start(monthly_report, {"month": "2030-01"}, id="2030-01", background=True)
        print(f"started {handle.id} in the background")

        # Run again on the same database, the start above returns the mission already reviewed.
        if handle.inspect().status is not MissionStatus.COMPLETED:
            thread = threading.Thread(target=reviewer, args=(handle,))
            thread.start()
            handle.wait_for_completion(timeout=60)
            thread.join()
        snapshot = handle.wait_for_completion(timeout=60)
        print(f"{handle.id} is {snapshot.status.value}: {snapshot.output}")
        for entry in handle.timeline():
            print(f"  {entry.kind.value:<18} {entry.node or ''}")
    # Leaving ``with`` stopped the runtime, closed the database and joined the loop's thread.


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as scratch:
        main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(scratch) / "missions.sqlite")
