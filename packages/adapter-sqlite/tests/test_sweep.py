"""The crash sweep on SQLite: each run in a file of its own, each simulated process opening it
anew (the one that crashes closes it where it died), through the ``sweep_store`` fixture."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from mission_control.adapter_sqlite import create_sqlite_persistence_adapter
from mission_control.core import CompensationRequested, Context, m
from mission_control.testing import (
    AdvanceClock,
    CrashSweep,
    FileSweepStore,
    SendSignal,
    SweepStore,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
def sweep_store(tmp_path: Path) -> SweepStore:
    return FileSweepStore(tmp_path / "sweep", create_sqlite_persistence_adapter)


CHARGES: list[str] = []


def charge_anew(ctx: Context[Any, Any]) -> str:
    CHARGES.append(f"ch_{len(CHARGES) + 1}")
    return CHARGES[-1]


PAYMENT = (
    m.define("payment")
    .start(parse=dict)
    .step("charge-card", charge_anew)
    .need_to("ship", parse=dict)
    .end()
)


async def test_a_planted_non_idempotent_step_is_found_on_sqlite(
    crash_sweep: CrashSweep, sweep_store: SweepStore
) -> None:
    """On a SQLite file, a crash before the commit of a step that charges anew on every run
    ends with another charge, and the sweep says where; the files are the store."""
    report = await crash_sweep(PAYMENT, {}, script=[SendSignal("ship", {})], reset=CHARGES.clear)
    [failure] = report.failures
    assert (failure.side, failure.point.what) == (
        "before",
        "step-completed charge-card, wait-started ship",
    )
    assert failure.differences == (
        "swept nodes charge-card output: 'ch_2' (uninterrupted: 'ch_1')",
    )
    assert isinstance(sweep_store, FileSweepStore)
    assert sweep_store.path is not None
    assert sorted(path.name for path in sweep_store.path.parent.glob("*.sqlite")) == sorted(
        ["uninterrupted.sqlite"]
        + [
            f"{point.number}-{side}.sqlite"
            for point in report.points
            for side in ("before", "after")
        ]
    )


def deploy(ctx: Context[Any, Any]) -> str:
    return f"{ctx.input['version']} deployed"


DEPLOYMENT = (
    m.define("deployment")
    .start(parse=dict)
    .sleep("soak", timedelta(minutes=30))
    .step("deploy", deploy, retry=2)
    .end(output=lambda ctx: ctx.events["deploy"].output)
)


async def build(ctx: Context[Any, Any]) -> str:
    return f"{ctx.node} built"


def check(ctx: Context[Any, Any]) -> str:
    if not ctx.events["approve"].output["ok"]:
        raise CompensationRequested("not approved")
    return "approved"


RELEASE = (
    m.define("release")
    .start(parse=dict)
    .parallel(
        "builds",
        {
            "api": lambda b: b.step("api", build, compensate=lambda ctx, built: None),
            "ui": lambda b: b.step("ui", build, compensate=lambda ctx, built: None),
        },
    )
    .need_to("approve", parse=dict)
    .step("check", check)
    .child("ship", DEPLOYMENT, lambda ctx: {"version": "1.0"})
    .for_each(
        "notify", lambda ctx: ["a", "b"], lambda item: item.step("send", build), max_iterations=2
    )
    .end(output=lambda ctx: ctx.events["ship"].output)
)


@pytest.mark.slow
@pytest.mark.parametrize(("ok", "end"), [(True, "completed"), (False, "compensated")])
async def test_a_release_with_a_child_branches_and_compensation_survives_every_crash_on_sqlite(
    crash_sweep: CrashSweep, ok: bool, end: str
) -> None:
    """A release (parallel builds with compensations, an approval, a child deployment that
    soaks half an hour, a for_each) approved or refused ends the same on a SQLite file at
    every crash point."""
    report = await crash_sweep(
        RELEASE, {}, script=[SendSignal("approve", {"ok": ok}), AdvanceClock(timedelta(hours=1))]
    )
    report.assert_consistent()
    assert report.outcome["swept"]["status"] == end  # type: ignore[index]
    assert all(run.reached for run in report.runs)
