"""The crash sweep (``sweep_crashes`` and the ``crash_sweep`` fixture) on the in-memory store:
it finds a planted non-idempotent step, passes an idempotent one, re-sends only what a crash
lost, and refuses what it cannot run."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from mission_control.core import Context, MissionDefinition, m
from mission_control.testing import (
    AdvanceClock,
    CancelMission,
    ChildProcesses,
    CrashSweep,
    SendSignal,
    sweep_crashes,
)

pytestmark = pytest.mark.anyio


class Provider:
    """A fake payment provider: a new charge per call, or one per idempotency key."""

    def __init__(self) -> None:
        self.charges: list[str] = []
        self.by_key: dict[str, str] = {}

    def charge(self, amount: int, key: str | None = None) -> str:
        if key is not None and key in self.by_key:
            return self.by_key[key]
        charge = f"ch_{len(self.charges) + 1}:{amount}"
        self.charges.append(charge)
        if key is not None:
            self.by_key[key] = charge
        return charge


PROVIDER = Provider()


def reset() -> None:
    global PROVIDER
    PROVIDER = Provider()


def charge_twice_on_a_rerun(ctx: Context[dict[str, int], Any]) -> str:
    return PROVIDER.charge(ctx.input["amount"])


def charge_once(ctx: Context[dict[str, int], Any]) -> str:
    return PROVIDER.charge(ctx.input["amount"], key=ctx.idempotency_key)


def payment(charge: Any) -> MissionDefinition[Any, Any, Any]:
    return (
        m.define("payment")
        .start(parse=dict)
        .step("charge-card", charge)
        .need_to("ship", parse=dict)
        .end(output=lambda ctx: ctx.events["charge-card"].output)
    )


SCRIPT = [AdvanceClock(60), SendSignal("ship", {"carrier": "post"})]


async def test_a_planted_non_idempotent_step_is_found(crash_sweep: CrashSweep) -> None:
    """A step that charges anew when it runs again ends with another charge after a crash
    before the commit of its result, and the sweep names that crash point and the difference."""
    report = await crash_sweep(
        payment(charge_twice_on_a_rerun),
        {"amount": 30},
        script=SCRIPT,
        reset=reset,
        outside=lambda: PROVIDER.charges,
    )
    with pytest.raises(AssertionError) as failed:
        report.assert_consistent()
    [failure] = report.failures
    assert (failure.side, failure.point.kind, failure.point.revision) == ("before", "commit", 2)
    assert "step-completed charge-card" in failure.point.what
    assert failure.repeated == {"swept:charge-card": 1}
    assert failure.differences == (
        "outside world: ['ch_1:30', 'ch_2:30'] (uninterrupted: ['ch_1:30'])",
        "swept nodes charge-card output: 'ch_2:30' (uninterrupted: 'ch_1:30')",
        "swept nodes end output: 'ch_2:30' (uninterrupted: 'ch_1:30')",
        "swept output: 'ch_2:30' (uninterrupted: 'ch_1:30')",
    )
    assert "crash before #2 commit of 'swept'" in str(failed.value)


async def test_an_idempotent_step_passes_though_it_runs_again(crash_sweep: CrashSweep) -> None:
    """The same step passing ctx.idempotency_key to the provider runs again at the same crash
    point, but charges once: every crash run ends as the uninterrupted one."""
    report = await crash_sweep(
        payment(charge_once),
        {"amount": 30},
        script=SCRIPT,
        reset=reset,
        outside=lambda: PROVIDER.charges,
    )
    report.assert_consistent()
    assert [(point.kind, point.what, point.action) for point in report.points] == [
        ("insert", "mission-started start, step-completed start, step-started charge-card", 0),
        ("commit", "step-completed charge-card, wait-started ship", 0),
        ("commit", "signal-received ship", 2),
        ("commit", "mission-completed end", 2),
    ]
    assert len(report.runs) == 8
    assert all(run.reached for run in report.runs)
    assert [str(run) for run in report.runs_repeating("charge-card")] == [
        "crash before #2 commit of 'swept' (step-completed charge-card, wait-started ship)"
    ]
    assert {key: len(runs) for key, runs in report.repeated_nodes().items()} == {
        "swept:charge-card": 1,
        "swept:end": 1,  # its output function, before the commit that completes the mission
    }
    with pytest.raises(AssertionError, match="'charge-card' ran 1 more time"):
        report.assert_never_repeated("charge-card")
    report.assert_never_repeated("ship", "start")
    assert report.outcome["outside world"] == ["ch_1:30"]


async def test_a_signal_lost_in_a_crash_is_sent_again_and_a_stored_one_is_not() -> None:
    """A signal sent while the mission sleeps is buffered: a crash before that write has it
    sent again, a crash after it does not (it would be left buffered twice), and both end as
    the uninterrupted run."""
    flow = (
        m.define("buffered")
        .start(parse=dict)
        .sleep("nap", timedelta(hours=1))
        .need_to("go", parse=dict)
        .end()
    )
    report = await sweep_crashes(
        flow, {}, script=[SendSignal("go", {"n": 1}), AdvanceClock(timedelta(hours=2))]
    )
    report.assert_consistent()
    buffered = [point for point in report.points if point.kind == "append_signal"]
    assert [(point.action, point.what) for point in buffered] == [(1, "signal-buffered go")]
    assert report.outcome["swept"]["buffered signals"] == {}  # type: ignore[index]


async def test_a_retry_a_timer_and_a_cancellation_with_compensation_survive_every_crash(
    crash_sweep: CrashSweep,
) -> None:
    """A step that fails once and is retried after a back-off, a sleep, and a cancellation that
    runs a compensation end the same at every crash point."""
    failures: list[int] = []

    def flaky(ctx: Context[Any, Any]) -> str:
        if ctx.attempt == 1:
            failures.append(1)
            raise RuntimeError("try again")
        return "booked"

    flow = (
        m.define("booking")
        .start(parse=dict)
        .step(
            "book",
            flaky,
            retry=m.retry(3, m.fixed(30)),
            compensate=lambda ctx, booked: None,
        )
        .sleep("cool-off", timedelta(minutes=5))
        .need_to("confirm", parse=dict)
        .end()
    )
    report = await crash_sweep(
        flow,
        {},
        script=[
            AdvanceClock(timedelta(minutes=10)),
            CancelMission("changed my mind", compensate=True),
        ],
    )
    report.assert_consistent()
    assert report.outcome["swept"]["status"] == "compensated"  # type: ignore[index]
    repeated = {str(run): dict(run.repeated) for run in report.runs if run.repeated}
    assert repeated == {
        # The failed first attempt was not stored: it runs (and fails) again.
        "crash before #2 commit of 'swept' (step-failed book, retry-scheduled book)": {
            "swept:book": 1
        },
        "crash before #3 commit of 'swept' (step-started book, step-completed book, "
        "wait-started cool-off)": {"swept:book": 1},
        "crash before #6 commit of 'swept' (compensation-completed book/compensate, "
        "mission-compensated confirm)": {"swept:book/compensate": 1},
    }
    cancel = report.points[4]
    assert (cancel.action, cancel.what.split(", ")[0]) == (2, "cancel-requested confirm")


@pytest.mark.real_time
async def test_a_sweep_needs_virtual_time() -> None:
    """On a loop without virtual time the sweep refuses to run, naming what it needs."""
    flow = m.define("plain").start(parse=dict).end()
    with pytest.raises(RuntimeError, match="sweep_crashes runs in virtual time"):
        await sweep_crashes(flow, {})


async def test_a_script_of_something_else_is_refused() -> None:
    """A script holding anything but the three actions is refused before anything runs."""
    flow = m.define("plain").start(parse=dict).end()
    with pytest.raises(TypeError, match="SendSignal, AdvanceClock and CancelMission"):
        await sweep_crashes(flow, {}, script=[("go", {})])  # type: ignore[list-item]


def test_a_clock_move_must_be_finite_and_not_negative() -> None:
    """AdvanceClock refuses a negative or infinite number of seconds."""
    for seconds in (-1, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="finite number of seconds"):
            AdvanceClock(seconds)
    assert AdvanceClock(timedelta(minutes=2)).seconds == 120


async def test_child_processes_need_a_store_in_files() -> None:
    """A sweep in child processes on the in-memory store is refused: a killed child's memory
    is gone, and the store with it."""
    flow = m.define("plain").start(parse=dict).end()
    with pytest.raises(TypeError, match="needs its store in files"):
        await sweep_crashes(flow, {}, processes=ChildProcesses("flows:plain"))


def keyed_release() -> MissionDefinition[Any, Any, Any]:
    """A singleton (``when_busy="refuse"``) whose two children share a key of limit 1: the
    second waits for the first's slot, which passes to it when the first ends."""
    kid = (
        m.define("keyed-kid")
        .start(parse=dict)
        .concurrency(lambda value: value["key"], limit=1)
        .need_to("done", parse=dict)
        .end(output=lambda ctx: ctx.input["n"])
    )
    return (
        m.define("keyed-release")
        .start(parse=dict)
        .concurrency(lambda value: value["key"], when_busy="refuse")
        .parallel(
            "both",
            {
                "x": lambda b: b.child("kx", kid, lambda ctx: {"key": "same", "n": 1}),
                "y": lambda b: b.child("ky", kid, lambda ctx: {"key": "same", "n": 2}),
            },
        )
        .end()
    )


KEYED_SCRIPT = [
    SendSignal("done", {}, mission="swept/both/x/kx"),
    SendSignal("done", {}, mission="swept/both/y/ky"),
    AdvanceClock(timedelta(minutes=2)),
]


async def test_concurrency_gates_and_a_singletons_insert_are_swept(
    crash_sweep: CrashSweep,
) -> None:
    """A singleton's insert that takes its slot and every write of a key's gate (a slot taken,
    queued, handed to the next mission, given back) are crash points, and the missions end
    the same at each: a singleton stored by a process that stopped at once begins at the next
    tick, and a slot handed over just before a crash is taken by the mission it went to."""
    report = await crash_sweep(keyed_release(), {"key": "one"}, script=KEYED_SCRIPT)
    report.assert_consistent()
    kinds = [(point.kind, point.mission) for point in report.points]
    assert kinds[0] == ("insert_holding", "swept")
    assert kinds.count(("save_gate", "keyed-kid/same")) == 4
    assert kinds[-1] == ("save_gate", "keyed-release/one")
    ended = [(point.mission, point.what) for point in report.points].index(
        ("swept/both/x/kx", "mission-completed end")
    )
    # The slot passes to the queued child as the first ends: the gate names it.
    assert kinds[ended + 1] == ("save_gate", "keyed-kid/same")
    assert {mission: end["status"] for mission, end in report.outcome.items()} == {  # type: ignore[index]
        "swept": "completed",
        "swept/both/x/kx": "completed",
        "swept/both/y/ky": "completed",
    }
