"""The crash sweep over the examples' flows: examples/approval.py, and the flows of #10 (a child
mission, parallel branches with compensation, a choice with compensation and its retry, a
parallel with a choice and a signal timeout) and loops. Every crash point, before and after
each commit, ends as the uninterrupted run, on the in-memory store; the sweeps on SQLite are in
packages/adapter-sqlite/tests/test_sweep.py.

The examples' steps checkpoint with trio's own call, so these sweeps run on trio.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from mission_control.core import Context, m
from mission_control.testing import (
    AdvanceClock,
    CancelMission,
    ScriptAction,
    SendSignal,
    SweepReport,
    sweep_crashes,
    virtual_time_backend,
)

pytestmark = pytest.mark.anyio

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return virtual_time_backend("trio")


def example(name: str) -> ModuleType:
    module_name = f"swept_example_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def statuses(report: SweepReport) -> dict[str, Any]:
    return {
        mission: outcome["status"]  # type: ignore[index]
        for mission, outcome in report.outcome.items()
    }


async def test_the_approval_example_ends_the_same_at_every_crash_point() -> None:
    """examples/approval.py, approved after a minute: every crash run completes it with the
    same outputs; its start and send-email run again when the crash comes before their
    commit."""
    approval = example("approval")
    report = await sweep_crashes(
        approval.approval,
        {"email": "ops@example.com"},
        script=[AdvanceClock(60), SendSignal("receive-approval", {"approvedBy": "reviewer-1"})],
    )
    report.assert_consistent()
    assert statuses(report) == {"swept": "completed"}
    assert list(report.repeated_nodes()) == ["swept:send-email", "swept:start"]


@pytest.fixture
def milestone() -> Iterator[ModuleType]:
    module = example("milestone")
    yield module
    module.DONE.clear()


MILESTONE = {"name": "m1", "features": ["search"]}


@pytest.mark.parametrize(
    ("script", "ends"),
    [
        (
            [
                SendSignal("sign-off", {"approved": True, "by": "the founder"}),
                AdvanceClock(timedelta(hours=2)),
            ],
            {"swept": "completed", "swept/ship": "completed"},
        ),
        (
            [SendSignal("sign-off", {"approved": False, "by": "the founder"})],
            {"swept": "compensated"},
        ),
        ([AdvanceClock(timedelta(days=4))], {"swept": "compensated"}),
    ],
    ids=["shipped-through-its-child", "refused-and-undone", "timed-out-and-undone"],
)
async def test_the_milestone_example_ends_the_same_at_every_crash_point(
    milestone: ModuleType, script: list[ScriptAction], ends: dict[str, str]
) -> None:
    """The milestone (parallel builds with compensations, a sign-off with a timeout, a child
    deployment that soaks an hour) signed off, refused, or never signed off: every crash run
    ends as the uninterrupted one, its child included."""
    report = await sweep_crashes(
        milestone.milestone, MILESTONE, script=script, reset=milestone.DONE.clear
    )
    report.assert_consistent()
    assert statuses(report) == ends
    assert all(run.reached for run in report.runs)


async def test_a_crash_in_the_milestones_child_reruns_only_the_childs_step(
    milestone: ModuleType,
) -> None:
    """Crashes in the child deployment's commits run its steps again, never the parent's
    builds: the report names the child's nodes by the child's id."""
    report = await sweep_crashes(
        milestone.milestone,
        MILESTONE,
        script=[
            SendSignal("sign-off", {"approved": True, "by": "the founder"}),
            AdvanceClock(timedelta(hours=2)),
        ],
        reset=milestone.DONE.clear,
    )
    in_child = [run for run in report.runs if run.point.mission == "swept/ship"]
    assert in_child
    for run in in_child:
        assert not any(key.startswith("swept:build") for key in run.repeated), run
    assert report.runs_repeating("production", mission="swept/ship")


@pytest.fixture
def order_approval() -> Iterator[ModuleType]:
    module = example("order_approval")
    yield module
    module.UNDONE.clear()
    module.FLAKY_GATEWAY.clear()


@pytest.mark.parametrize(
    ("amount", "script", "end"),
    [
        (50, [], "completed"),
        (
            500,
            [SendSignal("manager-decision", {"approved": True, "by": "ann", "note": "ok"})],
            "completed",
        ),
        (
            500,
            [
                SendSignal("manager-decision", {"approved": False, "by": "ann", "note": "no"}),
                AdvanceClock(120),
            ],
            "compensated",
        ),
        (500, [AdvanceClock(timedelta(days=3))], "compensated"),
    ],
    ids=["auto", "approved", "rejected-undone-with-a-retried-void", "timed-out-undone"],
)
async def test_the_order_approval_example_ends_the_same_at_every_crash_point(
    order_approval: ModuleType, amount: int, script: list[ScriptAction], end: str
) -> None:
    """The order approval (compensable steps, a choice made once, a manager's decision with a
    timeout, a compensation that fails once and is retried a minute later) ends the same at
    every crash point on each of its paths."""

    def reset() -> None:
        order_approval.UNDONE.clear()
        order_approval.FLAKY_GATEWAY.clear()
        order_approval.FLAKY_GATEWAY.add("swept")

    report = await sweep_crashes(
        order_approval.order_approval(100),
        {"customer": "ada", "amount": amount},
        script=script,
        reset=reset,
    )
    report.assert_consistent()
    assert statuses(report) == {"swept": end}


@pytest.mark.parametrize(
    ("order", "script", "end"),
    [
        ({"item": "lamp", "amount": 20}, [SendSignal("shipped", {"tracking": "T1"})], "completed"),
        ({"item": "lamp", "amount": 20}, [AdvanceClock(timedelta(days=8))], "completed"),
        ({"item": "sofa", "amount": 20}, [], "completed"),
    ],
    ids=["shipped", "refunded-after-the-timeout", "rejected"],
)
async def test_the_order_example_ends_the_same_at_every_crash_point(
    order: dict[str, Any], script: list[ScriptAction], end: str
) -> None:
    """The order (two checks in parallel, a choice on what they said, a shipment wait with a
    refund on its timeout) ends the same at every crash point on each of its paths."""
    report = await sweep_crashes(example("order").order, order, script=script)
    report.assert_consistent()
    assert statuses(report) == {"swept": end}


async def add(ctx: Context[Any, Any]) -> dict[str, int]:
    return {"n": ctx.events["more"].output["n"]}


async def double(ctx: Context[Any, Any]) -> int:
    return 2 * ctx.item


LOOPS = (
    m.define("loops")
    .start(parse=dict)
    .loop(
        "collect",
        lambda body: body.need_to("more", parse=dict).step("add", add),
        until=lambda ctx: ctx.events["add"].output["n"] == 0,
        max_iterations=10,
    )
    .for_each(
        "doubled",
        lambda ctx: [1, 2, 3],
        lambda item: item.step("double", double),
        max_iterations=5,
        concurrency=2,
    )
    .end(output=lambda ctx: ctx.events["doubled"].output)
)


async def test_a_loop_and_a_for_each_end_the_same_at_every_crash_point() -> None:
    """A loop driven by signals until one says stop, then a for_each two items at a time: every
    crash run ends with the same iterations and outputs."""
    report = await sweep_crashes(
        LOOPS,
        {},
        script=[
            SendSignal("more", {"n": 2}),
            SendSignal("more", {"n": 3}),
            SendSignal("more", {"n": 0}),
        ],
    )
    report.assert_consistent()
    assert statuses(report) == {"swept": "completed"}


async def test_a_cancellation_with_compensation_of_a_waiting_milestone(
    milestone: ModuleType,
) -> None:
    """A milestone cancelled with compensate=True while it waits for its sign-off undoes its
    work the same way at every crash point."""
    report = await sweep_crashes(
        milestone.milestone,
        MILESTONE,
        script=[AdvanceClock(60), CancelMission("dropped", compensate=True)],
        reset=milestone.DONE.clear,
    )
    report.assert_consistent()
    assert statuses(report) == {"swept": "compensated"}
