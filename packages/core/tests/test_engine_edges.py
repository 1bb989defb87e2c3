from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from mission_control.core import (
    MAX_DELAY,
    ConfigurationError,
    Context,
    InvalidInputError,
    InvalidSignalPayloadError,
    MissionStatus,
    NodeStatus,
    TimelineKind,
    create_commander,
    m,
)
from mission_control.in_memory_commander import (
    InMemoryPersistenceAdapter,
    ManualClock,
    create_in_memory_commander,
)

pytestmark = pytest.mark.anyio

T0 = datetime(2030, 1, 1, tzinfo=UTC)


def identity(value: Any) -> Any:
    return value


async def always_fails(ctx: Context[Any, Any]) -> None:
    raise RuntimeError(f"attempt {ctx.attempt}")


async def test_a_custom_backoff_that_raises_fails_the_mission_instead_of_sticking() -> None:
    """A backoff error ends the mission as failed, with both errors named in the record."""

    def broken(attempt: int) -> float:
        raise ZeroDivisionError("bad backoff")

    flow = (
        m.define("b")
        .start(parse=identity)
        .step("s", always_fails, retry=m.retry(3, m.custom_backoff(broken)))
        .end()
    )
    snapshot = await (await create_in_memory_commander([flow]).start(flow, {})).inspect()
    assert snapshot.status is MissionStatus.FAILED
    assert snapshot.error is not None
    assert snapshot.error.type == "ZeroDivisionError"
    assert "bad backoff" in snapshot.error.message
    assert "RuntimeError: attempt 1" in snapshot.error.message


async def test_an_uncapped_backoff_is_limited_so_due_times_stay_representable() -> None:
    """Attempt 60 of an uncapped exponential backoff waits MAX_DELAY, not an overflow."""
    assert m.exponential(1).delay(60) == MAX_DELAY
    assert m.linear(10**9).delay(10**6) == MAX_DELAY
    clock = ManualClock(T0)
    flow = (
        m.define("u")
        .start(parse=identity)
        .step("s", always_fails, retry=m.retry(100, m.exponential(1)))
        .end()
    )
    commander = create_in_memory_commander([flow], clock=clock)
    handle = await commander.start(flow, {})
    for _ in range(40):
        snapshot = await handle.inspect()
        assert snapshot.due_at is not None
        clock.set(snapshot.due_at)
        await commander.advance(handle.id)
    assert (await handle.inspect()).due_at == clock.now() + MAX_DELAY


async def test_a_need_to_parser_returning_non_json_rejects_the_payload() -> None:
    """A parsed payload JSON cannot hold is an invalid payload, and nothing is stored."""
    flow = m.define("p").start(parse=identity).need_to("go", parse=lambda v: object()).end()
    commander = create_in_memory_commander([flow])
    handle = await commander.start(flow, {})
    before = (await handle.inspect(), await handle.timeline())
    with pytest.raises(InvalidSignalPayloadError, match="JSON"):
        await handle.signal("go", {})
    assert (await handle.inspect(), await handle.timeline()) == before


async def test_a_buffered_signal_the_parser_now_refuses_is_used_up_and_recorded() -> None:
    """A buffered payload refused at use time is consumed with signal-rejected; the wait stays."""
    store = InMemoryPersistenceAdapter()
    clock = ManualClock(T0)
    lenient = m.define("f").start(parse=identity).sleep("pause", 10).need_to("go", identity).end()

    def strict(payload: Any) -> Any:
        if payload != {"ok": True}:
            raise ValueError("payload must be {'ok': True}")
        return payload

    strict_flow = m.define("f").start(parse=identity).sleep("pause", 10).need_to("go", strict).end()
    first = create_in_memory_commander([lenient], persistence=store, clock=clock)
    handle = await first.start(lenient, {})
    await handle.signal("go", {"ok": "maybe"})
    clock.advance(10)
    second = create_in_memory_commander([strict_flow], persistence=store, clock=clock)
    snapshot = await second.advance(handle.id)
    assert snapshot is not None
    assert snapshot.status is MissionStatus.WAITING
    assert snapshot.current_node == "go"
    assert await store.next_signal(handle.id, "go") is None
    rejected = [
        e for e in await second.timeline(handle.id) if e.kind is TimelineKind.SIGNAL_REJECTED
    ]
    assert len(rejected) == 1
    assert "must be" in rejected[0].detail["message"]
    done = await second.signal(handle.id, "go", {"ok": True})
    assert done.status is MissionStatus.COMPLETED


async def test_an_older_buffered_signal_is_consumed_before_a_new_one() -> None:
    """Signals of one name are used in the order they arrived, even after a crash."""
    store = InMemoryPersistenceAdapter()
    flow = (
        m.define("fifo")
        .start(parse=identity)
        .need_to("go", parse=identity)
        .need_to("again", parse=identity)
        .end()
    )
    commander = create_in_memory_commander([flow], persistence=store)
    handle = await commander.start(flow, {})
    # What a crash between buffering a signal and its holder's next look leaves behind.
    await store.append_signal(handle.id, "go", {"n": 1}, T0, [])
    snapshot = await handle.signal("go", {"n": 2})
    assert snapshot.nodes["go"].input == {"n": 1}
    assert (await store.next_signal(handle.id, "go")) is not None


async def test_a_failing_end_output_fails_at_the_end_node() -> None:
    """An end output that raises fails the mission with the end node as its current node."""
    flow = m.define("e").start(parse=identity).end(output=lambda ctx: 1 / 0)
    snapshot = await (await create_in_memory_commander([flow]).start(flow, {})).inspect()
    assert snapshot.status is MissionStatus.FAILED
    assert snapshot.current_node == "end"
    assert snapshot.nodes["end"].kind == "end"
    assert snapshot.nodes["end"].status is NodeStatus.FAILED


async def test_changing_values_given_to_steps_changes_nothing_stored() -> None:
    """Steps get copies of inputs and outputs, so mutating them leaves the store intact."""

    async def vandal(ctx: Context[Any, Any]) -> None:
        ctx.input["email"] = "changed"
        ctx.events["first"].output.append("changed")

    flow = (
        m.define("v")
        .start(parse=identity)
        .step("first", lambda ctx: ["original"])
        .step("vandal", vandal)
        .end()
    )
    snapshot = await (
        await create_in_memory_commander([flow]).start(flow, {"email": "a@b"})
    ).inspect()
    assert snapshot.status is MissionStatus.COMPLETED
    assert snapshot.input == {"email": "a@b"}
    assert snapshot.nodes["first"].output == ["original"]
    assert snapshot.nodes["start"].input == {"email": "a@b"}


async def test_reading_a_missing_event_is_not_retried() -> None:
    """A step that reads a node that does not exist fails at once despite its retry policy."""
    flow = (
        m.define("r")
        .start(parse=identity)
        .step("s", lambda ctx: ctx.events["nope"].output, retry=5)
        .end()
    )
    snapshot = await (await create_in_memory_commander([flow]).start(flow, {})).inspect()
    assert snapshot.status is MissionStatus.FAILED
    assert snapshot.nodes["s"].attempts == 1


async def test_start_at_that_is_not_a_datetime_is_refused() -> None:
    """A start_at of the wrong type raises InvalidInputError naming it; nothing is stored."""
    flow = m.define("d").start(parse=identity).end()
    commander = create_in_memory_commander([flow])
    with pytest.raises(InvalidInputError, match="start_at must be a datetime"):
        await commander.start(flow, {}, start_at="tomorrow")  # type: ignore[arg-type]
    assert await commander.list() == []


async def test_sleep_until_in_another_zone_is_stored_in_utc() -> None:
    """A computed wake-up time in another time zone is kept as the same instant in UTC."""
    from datetime import timezone

    zone = timezone(timedelta(hours=2))
    flow = (
        m.define("z")
        .start(parse=identity)
        .sleep_until("wake", lambda ctx: datetime(2030, 1, 2, 2, tzinfo=zone))
        .end()
    )
    snapshot = await (await create_in_memory_commander([flow]).start(flow, {})).inspect()
    assert snapshot.due_at == datetime(2030, 1, 2, tzinfo=UTC)
    assert snapshot.due_at is not None
    assert snapshot.due_at.tzinfo is UTC


async def test_a_signal_followed_by_a_wait_is_one_write() -> None:
    """Taking a signal and entering the sleep after it are written in one transaction."""
    flow = (
        m.define("one-write")
        .start(parse=identity)
        .need_to("go", parse=identity)
        .sleep("pause", 60)
        .end()
    )
    commander = create_in_memory_commander([flow])
    handle = await commander.start(flow, {})
    before = (await handle.inspect()).revision
    after = await handle.signal("go", {})
    assert after.status is MissionStatus.WAITING
    assert after.current_node == "pause"
    assert after.revision == before + 1


class _NaiveClock:
    def now(self) -> datetime:
        return datetime(2030, 1, 1)


class _NoClock:
    def now(self) -> object:
        return "soon"


@pytest.mark.parametrize("clock", [_NaiveClock(), _NoClock()], ids=["naive", "not a datetime"])
def test_a_clock_without_aware_datetimes_is_refused_when_the_commander_is_made(
    clock: Any,
) -> None:
    """A clock whose now() is naive (or no datetime) raises ConfigurationError at once, not in
    the middle of a mission."""
    flow = m.define("c").start(parse=identity).end()
    with pytest.raises(ConfigurationError, match="timezone-aware"):
        create_commander([flow], clock=clock)
    with pytest.raises(ConfigurationError, match="timezone-aware"):
        create_in_memory_commander([flow], clock=clock)


class _NaiveLaterClock:
    """Naive, and unreadable until ``ready`` (like a trio-driven clock made before the loop)."""

    ready = False

    def now(self) -> datetime:
        if not self.ready:
            raise RuntimeError("must be called from async context")
        return datetime(2030, 1, 1)


async def test_a_clock_unreadable_when_the_commander_is_made_is_checked_at_its_first_reading() -> (
    None
):
    """A naive clock that cannot be read when the commander is made is refused with
    ConfigurationError at its first reading, and the mission being started is not stored."""
    flow = m.define("c").start(parse=identity).end()
    clock = _NaiveLaterClock()
    async with create_commander([flow], clock=clock) as commander:
        clock.ready = True
        with pytest.raises(ConfigurationError, match="timezone-aware"):
            await commander.start(flow, {}, id="never")
        assert await commander.list() == []
