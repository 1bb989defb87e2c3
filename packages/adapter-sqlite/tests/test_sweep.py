"""The crash sweep on SQLite: each run in a file of its own, each simulated process opening it
anew (the one that crashes closes it where it died), through the ``sweep_store`` fixture."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from mission_control.adapter_sqlite import create_sqlite_persistence_adapter
from mission_control.core import CompensationRequested, Context, MissionDefinition, m
from mission_control.testing import (
    AdvanceClock,
    ChildProcesses,
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


def payment(charge: Callable[[Context[Any, Any]], str]) -> MissionDefinition[Any, Any, Any]:
    return (
        m.define("payment")
        .start(parse=dict)
        .step("charge-card", charge)
        .need_to("ship", parse=dict)
        .end()
    )


PAYMENT = payment(charge_anew)


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


def charge_in_a_file(ctx: Context[Any, Any]) -> str:
    """Charges anew on every run, keeping its charges in a file: they outlive the process."""
    print("charging")  # the child's standard output carries its reports too
    ledger = Path(os.environ["SWEEP_LEDGER"])
    charges = ledger.read_text().split()
    charges.append(f"ch_{len(charges) + 1}")
    ledger.write_text(" ".join(charges))
    return charges[-1]


FILED_PAYMENT = payment(charge_in_a_file)


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="needs SIGKILL")
async def test_a_sweep_in_child_processes_killed_with_sigkill(
    crash_sweep: CrashSweep, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ChildProcesses, each crash run's first process is a real child SIGKILLed before or
    after the write on the SQLite file, and the recovery runs here: a step whose effect outlives
    the process (a file) is found charging twice at the crash before its commit, its run in the
    killed child counted."""
    ledger = tmp_path / "ledger"
    monkeypatch.setenv("SWEEP_LEDGER", str(ledger))  # the children inherit it
    report = await crash_sweep(
        FILED_PAYMENT,
        {},
        script=[SendSignal("ship", {})],
        reset=lambda: ledger.write_text(""),
        outside=ledger.read_text,
        processes=ChildProcesses(f"{__file__}:FILED_PAYMENT"),
    )
    assert all(run.reached for run in report.runs)
    [failure] = report.failures
    assert (failure.side, failure.point.what) == (
        "before",
        "step-completed charge-card, wait-started ship",
    )
    assert failure.differences == (
        "outside world: 'ch_1 ch_2' (uninterrupted: 'ch_1')",
        "swept nodes charge-card output: 'ch_2' (uninterrupted: 'ch_1')",
    )
    assert failure.repeated == {"swept:charge-card": 1}
