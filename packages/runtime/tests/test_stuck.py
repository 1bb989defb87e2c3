"""Missions that cannot move (their definition was removed in a deploy) never hold the others
back: not their due times, not the missions left mid-node after them. Their pause is armed like
a due time, grows with each failure in a row, and is never a reason to tick without pause."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import anyio
import attrs
import pytest

from mission_control.core import (
    ConfigurationError,
    Context,
    MissionSnapshot,
    MissionStatus,
    PersistenceError,
    m,
)
from mission_control.in_memory_commander import InMemoryPersistenceAdapter
from mission_control.runtime import RuntimeEvent, create_commander_runtime
from mission_control.testing import CommanderFactory, LoopClock, RecordingLogger, RuntimeFactory

pytestmark = pytest.mark.anyio


def parse_any(raw: Any) -> Any:
    return raw


def done(ctx: Context[Any, Any]) -> str:
    return "done"


RETIRED = m.define("retired").start(parse=parse_any).step("work", done).end()
"""A definition the next deploy no longer has."""

QUICK = m.define("quick").start(parse=parse_any).step("work", done).end()
"""Completes as soon as it starts."""


async def hang(ctx: Context[Any, Any]) -> str:
    await anyio.sleep_forever()
    raise AssertionError("unreachable")


HANGING = m.define("retired").start(parse=parse_any).step("work", hang).end()
"""The retired definition, in the old deploy whose process died mid-step."""


async def take_five(ctx: Context[Any, Any]) -> str:
    await anyio.sleep(5)
    return "done"


SLOW = m.define("slow").start(parse=parse_any).step("work", take_five).end()
"""Runs a 5-second step as soon as it starts."""


@pytest.mark.parametrize("stuck", [1, 3, 7])
async def test_a_due_mission_that_cannot_move_does_not_delay_a_later_due_time(
    make_commander: CommanderFactory,
    make_runtime: RuntimeFactory,
    mission_clock: LoopClock,
    stuck: int,
) -> None:
    """Delayed starts a deploy can no longer move, due at t+1 s, do not hold back another due
    at t+10 s: it starts at t+10 s when the tick at t+1 s tried them all or the one at t+10 s
    reaches it among those never tried; behind more, it starts at most one stalled_tick_delay
    later per max_missions_per_tick of them (those tried already are passed over)."""
    store = InMemoryPersistenceAdapter()
    old = make_commander([RETIRED], persistence=store)
    deployed = make_commander([QUICK], persistence=store, version_check="warn")
    await make_runtime(deployed, max_missions_per_tick=2, stalled_tick_delay=30)
    began = mission_clock.now()

    for n in range(stuck):
        await old.start(RETIRED, {}, id=f"retired-{n}", start_at=began + timedelta(seconds=1))
    await deployed.start(QUICK, {}, id="quick", start_at=began + timedelta(seconds=10))
    with anyio.fail_after(120):
        snapshot = await deployed.result("quick")

    assert snapshot.status is MissionStatus.COMPLETED
    # The tick at t+1 s tried 2 of them; the one at t+10 s tries 2, never tried, before it.
    untried_ahead = max(stuck - 2, 0)
    assert snapshot.updated_at - began <= timedelta(seconds=10 + 30 * (untried_ahead // 2))
    if untried_ahead < 2:
        assert snapshot.updated_at - began == timedelta(seconds=10)


async def test_missions_left_mid_node_are_resumed_past_those_whose_resume_keeps_failing(
    make_commander: CommanderFactory,
    make_runtime: RuntimeFactory,
    log: RecordingLogger,
) -> None:
    """max_missions_per_tick missions whose resume raises are passed over for
    stalled_tick_delay, so a mission left mid-node after them (by id) is resumed at once, and
    they are not retried (nor logged) on every tick meanwhile."""
    store = InMemoryPersistenceAdapter()
    old = make_commander([HANGING], persistence=store)
    for n in range(2):
        with anyio.move_on_after(1):
            await old.start(HANGING, {}, id=f"a-retired-{n}")
    deployed = make_commander([SLOW], persistence=store, version_check="warn")
    runtime = await make_runtime(
        deployed, max_missions_per_tick=2, stalled_tick_delay=3600, logger=log
    )
    assert len(log.of(RuntimeEvent.MISSION_RESUME_FAILED)) == 2

    with anyio.move_on_after(1):
        await deployed.start(SLOW, {}, id="z-web")
    with anyio.fail_after(60):
        snapshot = await deployed.result("z-web")
    await runtime.tick()
    await runtime.tick()

    assert snapshot.status is MissionStatus.COMPLETED
    assert len(log.of(RuntimeEvent.MISSION_RESUME_FAILED)) == 2
    for n in range(2):
        assert (await deployed.inspect(f"a-retired-{n}")).status is MissionStatus.RUNNING


class FailsOnce(InMemoryPersistenceAdapter):
    """Refuses the next commit of mission ``x`` once armed, as a locked database would."""

    armed = False

    async def commit(self, snapshot: MissionSnapshot, **kwargs: Any) -> Any:
        if self.armed and snapshot.id == "x":
            self.armed = False
            raise PersistenceError("database is locked (an inspector held the write lock)")
        return await super().commit(snapshot, **kwargs)


async def test_a_mission_whose_resume_raised_is_resumed_when_its_pause_is_over(
    make_commander: CommanderFactory,
    make_runtime: RuntimeFactory,
    mission_clock: LoopClock,
    log: RecordingLogger,
) -> None:
    """A mission left running whose resume raised once is resumed when its pause ends, also
    when a tick for another due time was pending earlier (that tick's re-arming covers the
    pause)."""
    runs: list[str] = []

    async def hangs_first(ctx: Context[Any, Any]) -> str:
        runs.append(ctx.mission_id)
        if len(runs) == 1:
            await anyio.sleep_forever()
        return "done"

    flaky = m.define("flaky").start(parse=parse_any).step("work", hangs_first).end()
    store = FailsOnce()
    commander = make_commander([flaky, QUICK], persistence=store)
    await make_runtime(commander, stalled_tick_delay=30, logger=log)
    began = mission_clock.now()
    await commander.start(QUICK, {}, id="later", start_at=began + timedelta(seconds=5))
    store.armed = True
    with anyio.move_on_after(1):
        await commander.start(flaky, {}, id="x")

    with anyio.fail_after(3600):
        snapshot = await commander.result("x")

    assert len(log.of(RuntimeEvent.MISSION_RESUME_FAILED)) == 1
    assert snapshot.status is MissionStatus.COMPLETED
    assert snapshot.updated_at - began == timedelta(seconds=1 + 30)
    assert (await commander.inspect("later")).status is MissionStatus.COMPLETED


class FailureTimes:
    """A runtime logger that notes when (on the loop's clock) each advance failed."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def log(
        self, event: RuntimeEvent, fields: Mapping[str, Any], error: BaseException | None = None
    ) -> None:
        if event is RuntimeEvent.MISSION_ADVANCE_FAILED:
            self.times.append(anyio.current_time())


async def test_a_stuck_mission_is_retried_less_and_less_often(
    make_commander: CommanderFactory,
    make_runtime: RuntimeFactory,
    mission_clock: LoopClock,
) -> None:
    """The pause of a mission whose advance keeps raising doubles with each failure, from
    stalled_tick_delay up to 64 times it."""
    store = InMemoryPersistenceAdapter()
    old = make_commander([RETIRED], persistence=store)
    await old.start(RETIRED, {}, id="stuck", start_at=mission_clock.now() + timedelta(seconds=1))
    failures = FailureTimes()
    began = anyio.current_time()
    deployed = make_commander([QUICK], persistence=store, version_check="warn")
    await make_runtime(deployed, stalled_tick_delay=1, logger=failures)

    await anyio.sleep(1 + 127 + 64 * 3 + 0.5)

    assert [time - began for time in failures.times] == [1, 2, 4, 8, 16, 32, 64, 128, 192, 256, 320]


async def test_many_stuck_missions_are_retried_and_read_in_bounded_amounts(
    make_commander: CommanderFactory,
    make_runtime: RuntimeFactory,
    mission_clock: LoopClock,
    log: RecordingLogger,
) -> None:
    """2,000 due missions that cannot move, with max_missions_per_tick=100: each tick tries at
    most 100 of them and reads each due id at most once, and ticks come stalled_tick_delay apart,
    not at once (no loop that retries and re-reads every paused mission)."""
    store = InMemoryPersistenceAdapter()
    old = make_commander([RETIRED], persistence=store)
    for n in range(2000):
        await old.start(
            RETIRED, {}, id=f"r-{n:05}", start_at=mission_clock.now() + timedelta(seconds=1)
        )
    read: list[int] = []
    due_missions = store.due_missions

    async def counting(now: Any, limit: int) -> list[str]:
        ids = await due_missions(now, limit)
        read.append(len(ids))
        return ids

    store.due_missions = counting  # type: ignore[method-assign]
    deployed = make_commander([QUICK], persistence=store, version_check="warn")
    await make_runtime(deployed, stalled_tick_delay=10, max_missions_per_tick=100, logger=log)

    await anyio.sleep(61)

    ticks = log.of(RuntimeEvent.TICK_COMPLETED)
    assert len(ticks) <= 8
    assert all(tick.fields["errored"] <= 100 for tick in ticks)
    assert len(log.of(RuntimeEvent.MISSION_ADVANCE_FAILED)) <= 700
    assert sum(read) <= 8 * 100 + sum(range(0, 800, 100))


@pytest.mark.parametrize("delay", [0, -1, 0.0])
async def test_a_stalled_tick_delay_that_is_not_positive_is_refused(
    make_commander: CommanderFactory, delay: float
) -> None:
    """stalled_tick_delay <= 0 is refused: it would make the runtime tick without pause while
    a mission cannot move."""
    with pytest.raises(ConfigurationError, match=r"stalled_tick_delay must be .* > 0"):
        create_commander_runtime(make_commander([QUICK]), stalled_tick_delay=delay)


async def ten_seconds(ctx: Context[Any, Any]) -> str:
    await anyio.sleep(10)
    return "done"


SLOW = m.define("slow").start(parse=parse_any).step("work", ten_seconds).end()


async def test_missions_recovered_once_before_resume_together_at_startup(
    make_commander: CommanderFactory,
    make_runtime: RuntimeFactory,
) -> None:
    """Missions a crash interrupted right after their first recovery (recovery_attempts 1) are
    resumed max_concurrency at a time by the startup tick, not one by one."""
    store = InMemoryPersistenceAdapter()
    old = make_commander([SLOW], persistence=store)
    for n in range(20):
        with anyio.move_on_after(1):
            await old.start(SLOW, {}, id=f"s-{n:02}")
        snapshot = await store.load(f"s-{n:02}")
        assert snapshot is not None
        # As a previous recovery left it: counted once, then interrupted again.
        await store.commit(
            attrs.evolve(snapshot, recovery_attempts=1, revision=snapshot.revision + 1),
            expected_revision=snapshot.revision,
            timeline=[],
        )
    began = anyio.current_time()

    await make_runtime(make_commander([SLOW], persistence=store), max_concurrency=10)

    assert anyio.current_time() - began == 20
    for n in range(20):
        assert (await store.load(f"s-{n:02}")).status is MissionStatus.COMPLETED  # type: ignore[union-attr]
