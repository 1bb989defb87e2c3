"""Submissions in one process: an owner adapter and submitter adapters on one SQLite file.

The same process stands in for several here (two adapters on one file behave as two processes
do: the second one finds the owner's locks taken); test_several_processes.py runs real ones.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
import apsw
import pytest

from mission_control.adapter_sqlite import (
    TAKEOVER_INTERVAL,
    SQLiteCommander,
    create_sqlite_persistence_adapter,
)
from mission_control.core import (
    SUBMISSION_ATTEMPTS,
    ConcurrencyLimitError,
    ConfigurationError,
    Context,
    DefinitionVersionError,
    InvalidInputError,
    InvalidSignalPayloadError,
    MissionNotActiveError,
    MissionNotFoundError,
    MissionNotRetryableError,
    MissionSnapshot,
    MissionStatus,
    PersistenceError,
    Refusal,
    SubmissionKind,
    SubmissionState,
    TimelineKind,
    UnknownDefinitionError,
    UnknownSignalError,
    m,
)
from mission_control.core.storage import NewSubmission, SubmissionDecidedError
from mission_control.runtime import create_commander_runtime
from mission_control.testing import LoopClock

pytestmark = pytest.mark.anyio


def parse_order(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict) or "item" not in raw:
        raise ValueError("an order needs an item")
    return dict(raw)  # pyright: ignore[reportUnknownArgumentType]


def parse_approval(raw: Any) -> str:
    if not isinstance(raw, str):
        raise ValueError("an approval is the approver's name")
    return raw


def packed(ctx: Context[Any, Any]) -> str:
    return f"packed {ctx.input['item']}"


ORDER = (
    m.define("order")
    .start(parse=parse_order)
    .step("pack", packed)
    .need_to("approve", parse=parse_approval)
    .end(lambda ctx: ctx.events["approve"].output)
)


@pytest.fixture
def clock() -> LoopClock:
    return LoopClock()


@pytest.fixture
async def owner(db_path: Path, clock: LoopClock) -> AsyncIterator[SQLiteCommander]:
    """The owner of the database, with its runtime running."""
    async with (
        SQLiteCommander(db_path, [ORDER], clock=clock, role="owner") as commander,
        create_commander_runtime(commander),
    ):
        yield commander


@pytest.fixture
async def submitter(
    db_path: Path, clock: LoopClock, owner: SQLiteCommander
) -> AsyncIterator[SQLiteCommander]:
    """A submitter with the definitions, opened after the owner."""
    async with SQLiteCommander(db_path, [ORDER], clock=clock) as commander:
        yield commander


@pytest.fixture
async def raw(
    db_path: Path, clock: LoopClock, owner: SQLiteCommander
) -> AsyncIterator[SQLiteCommander]:
    """A submitter without definitions (a script, the CLI)."""
    async with SQLiteCommander(db_path, [], clock=clock, role="submitter") as commander:
        yield commander


def raw_submission(
    kind: SubmissionKind, mission_id: str, name: str | None, payload: Any
) -> NewSubmission:
    """A submission as a process without definitions stores it, checked by nobody."""
    return NewSubmission(
        kind=kind,
        mission_id=mission_id,
        name=name,
        payload=payload,
        submitted_at=datetime.now().astimezone(),
        submitted_by="test",
    )


def rows(db_path: Path, sql: str) -> list[tuple[Any, ...]]:
    with apsw.Connection(str(db_path), flags=apsw.SQLITE_OPEN_READONLY) as connection:
        return [tuple(row) for row in connection.execute(sql)]


async def test_an_auto_commander_opened_second_submits_to_the_first(
    db_path: Path, submitter: SQLiteCommander, owner: SQLiteCommander
) -> None:
    """An "auto" commander opened while another owns the file is a submitter: its start is
    stored at once and the owner's runtime runs it, its signal returns once the owner applied
    it, with the mission as the owner left it."""
    assert owner.is_owner
    assert not submitter.is_owner
    handle = await submitter.start(ORDER, {"item": "tea"}, id="o1")
    assert (await handle.inspect()).current_node == "start"
    await submitter.signal("o1", "approve", "ada")
    with anyio.fail_after(10):
        assert (await handle.result()).output == "ada"
    await owner.start(ORDER, {"item": "jam"}, id="o2")

    after = await submitter.signal("o2", "approve", "bob")

    assert after.status is MissionStatus.COMPLETED
    assert after.output == "bob"
    assert (await owner.inspect("o1")).nodes["pack"].output == "packed tea"
    assert rows(db_path, "SELECT kind, state FROM submissions") == [
        ("signal", "applied"),
        ("signal", "applied"),
    ]


async def test_a_submitter_with_the_definitions_refuses_what_the_owner_would(
    db_path: Path, submitter: SQLiteCommander, owner: SQLiteCommander
) -> None:
    """A submitter that has the mission's definition raises the owner's errors for a bad input,
    an unknown signal, a bad payload and a finished mission, storing nothing."""
    with pytest.raises(InvalidInputError, match="needs an item"):
        await submitter.start(ORDER, {"colour": "red"}, id="bad")
    await owner.start(ORDER, {"item": "tea"}, id="o1")
    with pytest.raises(UnknownSignalError, match="no need_to 'ship'"):
        await submitter.signal("o1", "ship", {})
    with pytest.raises(InvalidSignalPayloadError, match="approver's name"):
        await submitter.submit_signal("o1", "approve", 42)
    with pytest.raises(MissionNotFoundError):
        await submitter.signal("nobody", "approve", "ada")
    await owner.signal("o1", "approve", "ada")
    with pytest.raises(MissionNotActiveError, match="completed"):
        await submitter.signal("o1", "approve", "bob")
    with pytest.raises(MissionNotActiveError, match="completed"):
        await submitter.cancel("o1", "too late")

    assert rows(db_path, "SELECT count(*) FROM submissions") == [(0,)]
    assert rows(db_path, "SELECT id FROM missions") == [("o1",)]


async def test_a_raw_signal_the_owner_refuses_is_recorded_and_changes_nothing(
    raw: SQLiteCommander, owner: SQLiteCommander
) -> None:
    """A definition-less submitter's signal with a bad payload is refused by the owner: recorded
    with who sent it and the owner's error, raised by the submitter's verdict as that error,
    and the mission is exactly as it was."""
    await owner.start(ORDER, {"item": "tea"}, id="o1")
    before = await owner.inspect("o1")
    timeline_before = await owner.timeline("o1")

    submission = await raw.submit_signal("o1", "approve", {"not": "a name"})
    assert submission.state is SubmissionState.PENDING
    with pytest.raises(InvalidSignalPayloadError, match="approver's name") as raised:
        await raw.verdict(submission)

    decided = await raw.submission(submission.seq)
    assert decided.state is SubmissionState.REFUSED
    assert decided.refusal is not None
    assert decided.refusal.type == "InvalidSignalPayloadError"
    assert decided.refusal.message == str(raised.value)
    assert decided.submitted_by.startswith("pid ")
    assert decided.decided_at is not None
    assert await owner.inspect("o1") == before
    assert await owner.timeline("o1") == timeline_before


async def test_raw_submissions_are_checked_by_the_owner(
    raw: SQLiteCommander, owner: SQLiteCommander
) -> None:
    """Raw starts, signals and cancellations are applied or refused by the owner as its own
    calls would be: an unknown definition or signal is refused, a good start runs."""
    with pytest.raises(UnknownDefinitionError, match="'invoice'"):
        await raw.verdict(await raw.submit_start("invoice", {}, id="i1"))
    started = await raw.verdict(await raw.submit_start("order", {"item": "jam"}, id="o2"))
    assert started.current_node == "approve"
    with pytest.raises(UnknownSignalError):
        await raw.signal("o2", "ship", None)
    with pytest.raises(InvalidInputError, match="needs an item"):
        await raw.verdict(await raw.submit_start("order", {}, id="o3"))

    cancelled = await raw.cancel("o2", "changed my mind")

    assert cancelled.status is MissionStatus.CANCELLED
    with pytest.raises(MissionNotFoundError):
        await owner.inspect("o3")


async def test_a_retry_from_a_submitter_is_applied_by_the_owner(
    db_path: Path, raw: SQLiteCommander, submitter: SQLiteCommander, owner: SQLiteCommander
) -> None:
    """A submitter's retry is a submission the owner applies (the mission runs again in the
    owner and the submitter gets it at rest); one from an unknown node stored unchecked is
    refused by the owner, raising its error and changing nothing; a retry of a completed
    mission is refused by the submitter itself, with or without the definitions, storing
    nothing."""
    await owner.start(ORDER, {"item": "tea"}, id="o1")
    await owner.cancel("o1", "by mistake")

    retried = await submitter.retry("o1")

    assert (retried.status, retried.current_node, retried.retries) == (
        MissionStatus.WAITING,
        "approve",
        1,
    )
    assert retried.cancel_request is None
    await owner.signal("o1", "approve", "ada")
    with pytest.raises(MissionNotRetryableError, match="completed"):
        await submitter.submit_retry("o1")
    before = await owner.inspect("o1")
    with pytest.raises(MissionNotRetryableError, match="completed"):
        await raw.retry("o1")
    await owner.start(ORDER, {"item": "jam"}, id="o2")
    await owner.cancel("o2")
    # Stored unchecked (as an older submitter stored it): the owner refuses it.
    unchecked = raw_submission(SubmissionKind.RETRY, "o2", None, {"from_node": "ship"})
    with pytest.raises(InvalidInputError, match="no such node"):
        await raw.verdict(await raw.persistence.submit(unchecked))
    assert await owner.inspect("o1") == before
    assert rows(db_path, "SELECT kind, state FROM submissions ORDER BY seq") == [
        ("retry", "applied"),
        ("retry", "refused"),
    ]


async def test_a_pause_and_a_resume_from_submitters_are_applied_by_the_owner(
    db_path: Path, raw: SQLiteCommander, submitter: SQLiteCommander, owner: SQLiteCommander
) -> None:
    """A submitter's pause is applied by the owner (the mission paused, with its reason); a
    signal submitted while it is paused is buffered, and a raw submitter's resume has the owner
    take it and run the mission to its end; a pause of a finished mission is refused by the
    submitter itself, and a raw pause with a reason that is not text by the owner, storing
    nothing."""
    await owner.start(ORDER, {"item": "tea"}, id="o1")

    paused = await submitter.pause("o1", "stock count")

    assert paused.status is MissionStatus.PAUSED
    assert paused.pause is not None
    assert paused.pause.reason == "stock count"
    buffered = await submitter.signal("o1", "approve", "ada")
    assert buffered.status is MissionStatus.PAUSED
    assert buffered.nodes["approve"].output is None
    resumed = await raw.resume("o1")
    assert (resumed.status, resumed.output) == (MissionStatus.COMPLETED, "ada")
    kinds = [entry.kind for entry in await owner.timeline("o1")]
    assert kinds[-5:] == [
        TimelineKind.MISSION_PAUSED,
        TimelineKind.SIGNAL_BUFFERED,
        TimelineKind.MISSION_UNPAUSED,
        TimelineKind.SIGNAL_RECEIVED,
        TimelineKind.MISSION_COMPLETED,
    ]
    with pytest.raises(MissionNotActiveError, match="cannot pause"):
        await submitter.submit_pause("o1")
    with pytest.raises(InvalidInputError, match="pause reason"):
        await raw.submit_pause("o1", 7)  # type: ignore[arg-type]
    await owner.start(ORDER, {"item": "jam"}, id="o2")
    before = await owner.inspect("o2")
    unchecked = raw_submission(SubmissionKind.PAUSE, "o2", None, {"reason": 7})
    with pytest.raises(InvalidInputError, match="pause reason"):
        await raw.verdict(await raw.persistence.submit(unchecked))
    assert await owner.inspect("o2") == before
    assert rows(db_path, "SELECT kind, state FROM submissions ORDER BY seq") == [
        ("pause", "applied"),
        ("signal", "applied"),
        ("resume", "applied"),
        ("pause", "refused"),
    ]


async def test_a_fork_from_a_submitter_is_started_by_the_owner_at_its_node(
    submitter: SQLiteCommander, owner: SQLiteCommander
) -> None:
    """A submitter's fork is stored waiting for its start at the node it was forked at, and
    the owner's runtime runs it from there: the nodes before it are not run again."""
    await owner.start(ORDER, {"item": "tea"}, id="o1")
    await owner.signal("o1", "approve", "ada")

    fork = await submitter.fork("o1", at_node="approve", new_id="o1-again")

    stored = await owner.inspect(fork.id)
    assert stored.forked_from == "o1"
    assert stored.nodes["pack"] == (await owner.inspect("o1")).nodes["pack"]
    await submitter.signal(fork.id, "approve", "bob")
    with anyio.fail_after(10):
        after = await fork.result()
    assert (after.status, after.output) == (MissionStatus.COMPLETED, "bob")
    kinds = [entry.kind for entry in await owner.timeline(fork.id)]
    assert kinds[0] is TimelineKind.MISSION_FORKED
    assert TimelineKind.STEP_STARTED not in kinds


async def test_submitting_on_the_owner_applies_at_once(owner: SQLiteCommander) -> None:
    """The owner's own submissions are decided before submit_* returns."""
    await owner.start(ORDER, {"item": "tea"}, id="o1")
    applied = await owner.submit_signal("o1", "approve", "ada")
    assert applied.state is SubmissionState.APPLIED
    assert applied.kind is SubmissionKind.SIGNAL
    assert (await owner.verdict(applied)).output == "ada"
    refused = await owner.submit_start("nothing", {}, id="x")
    assert refused.state is SubmissionState.REFUSED
    assert refused.refusal == Refusal(
        "UnknownDefinitionError",
        "no definition 'nothing' to start mission 'x' with (known: order)",
    )


async def test_the_write_applying_a_submission_marks_it_in_its_own_transaction(
    db_path: Path, clock: LoopClock
) -> None:
    """Inside applying(seq), the first write marks the submission applied with it; a write that
    fails leaves it pending."""
    async with create_sqlite_persistence_adapter(db_path, role="owner") as adapter:
        submission = await adapter.submit(raw_submission(SubmissionKind.SIGNAL, "m", "go", None))
        with adapter.applying(submission.seq, clock.now()) as marking:
            with pytest.raises(PersistenceError):
                await adapter.append_signal("missing", "go", None, clock.now(), [])
            assert marking.used
        assert (await adapter.pending_submissions(10)) == [submission]


async def test_a_submitter_does_not_execute_missions(
    db_path: Path, clock: LoopClock, owner: SQLiteCommander
) -> None:
    """A submitter's adapter refuses the writes only the owner makes (commits, buffered
    signals, cancellation requests), and a runtime on a role="submitter" commander is refused
    at start."""
    await owner.start(ORDER, {"item": "tea"}, id="o1")
    async with SQLiteCommander(db_path, [ORDER], clock=clock, role="submitter") as submitter:
        adapter = submitter.persistence
        snapshot = await submitter.inspect("o1")
        with pytest.raises(PersistenceError, match="another process owns"):
            await adapter.append_signal("o1", "approve", "x", clock.now(), [])
        with pytest.raises(PersistenceError, match="another process owns"):
            await adapter.commit(snapshot, expected_revision=snapshot.revision - 1, timeline=[])
        with pytest.raises(ConfigurationError, match="never owns"):
            async with create_commander_runtime(submitter):
                pass


async def test_with_no_owner_submissions_wait_for_the_next_one(
    db_path: Path, clock: LoopClock
) -> None:
    """Work submitted while no process owns the database is taken by the next owner's runtime
    at its start-up."""
    async with SQLiteCommander(db_path, [ORDER], clock=clock, role="owner") as first:
        await first.start(ORDER, {"item": "tea"}, id="o1")
    async with SQLiteCommander(db_path, [ORDER], clock=clock, role="submitter") as submitter:
        await submitter.start(ORDER, {"item": "jam"}, id="o2")
        pending = await submitter.submit_signal("o1", "approve", "ada")
    assert pending.state is SubmissionState.PENDING

    async with (
        SQLiteCommander(db_path, [ORDER], clock=clock, role="owner") as owner,
        create_commander_runtime(owner) as runtime,
    ):
        assert runtime.last_report is not None
        assert runtime.last_report.submissions == 1
        assert (await owner.inspect("o1")).status is MissionStatus.COMPLETED
        assert (await owner.inspect("o2")).current_node == "approve"


async def test_a_standby_runtime_takes_over_when_the_owner_closes(
    db_path: Path, clock: LoopClock
) -> None:
    """A runtime on an "auto" commander whose database another adapter owns waits in standby,
    moves nothing, and takes over within TAKEOVER_INTERVAL once the owner closes: its startup
    tick resumes what the owner left and applies what was submitted meanwhile."""
    first = SQLiteCommander(db_path, [ORDER], clock=clock)
    assert first.is_owner
    await first.start(ORDER, {"item": "tea"}, id="o1")
    async with (
        SQLiteCommander(db_path, [ORDER], clock=clock) as second,
        create_commander_runtime(second) as runtime,
    ):
        assert runtime.is_standby
        assert runtime.last_report is None or runtime.last_report.standby
        await second.submit_signal("o1", "approve", "ada")
        assert (await runtime.tick()).standby
        closed_at = anyio.current_time()
        await first.aclose()
        with anyio.fail_after(60):
            snapshot = await second.result("o1")
        assert not runtime.is_standby
        assert second.is_owner
        assert anyio.current_time() - closed_at <= TAKEOVER_INTERVAL + 1
    assert snapshot.output == "ada"


async def test_a_submission_never_fails_its_mission(
    raw: SQLiteCommander, owner: SQLiteCommander
) -> None:
    """A cancellation with a reason the owner cannot take is refused; the mission runs on."""
    await owner.start(ORDER, {"item": "tea"}, id="o1")
    store = raw.persistence
    bad = await store.submit(raw_submission(SubmissionKind.CANCEL, "o1", None, {"reason": 7}))
    with pytest.raises(InvalidInputError, match="cancel reason"):
        await raw.verdict(bad)
    assert (await owner.signal("o1", "approve", "ada")).status is MissionStatus.COMPLETED


def write(db_path: Path, sql: str, *params: Any) -> None:
    with apsw.Connection(str(db_path)) as connection:
        connection.execute(sql, params)


async def test_a_submission_is_applied_once_however_many_tasks_apply_it(
    db_path: Path, submitter: SQLiteCommander, owner: SQLiteCommander
) -> None:
    """Concurrent applications of the pending submissions store each signal once, and the
    submission stays applied."""
    await owner.start(ORDER, {"item": "tea"}, id="o1")
    submission = await submitter.persistence.submit(
        raw_submission(SubmissionKind.SIGNAL, "o1", "approve", "ada")
    )
    async with anyio.create_task_group() as group:
        for _ in range(3):
            group.start_soon(owner.apply_submissions, 10)

    assert (await owner.inspect("o1")).output == "ada"
    assert (await owner.submission(submission.seq)).state is SubmissionState.APPLIED
    assert rows(db_path, "SELECT count(*) FROM timeline WHERE entry LIKE '%signal-%'")[0][0] <= 2


async def test_a_decided_submission_is_never_applied_again(
    db_path: Path, clock: LoopClock, make_snapshot: Callable[..., MissionSnapshot]
) -> None:
    """A write carrying the mark of a submission that is no longer pending stores nothing and
    raises SubmissionDecidedError; a refusal never overrides an application."""
    async with create_sqlite_persistence_adapter(db_path, role="owner") as adapter:
        submission = await adapter.submit(raw_submission(SubmissionKind.SIGNAL, "m", "go", None))
        await adapter.decide_submission(submission.seq, SubmissionState.APPLIED, None, clock.now())
        with (
            adapter.applying(submission.seq, clock.now()),
            pytest.raises(SubmissionDecidedError),
        ):
            await adapter.insert(make_snapshot("late"), [])
        assert await adapter.load("late") is None
        await adapter.decide_submission(
            submission.seq, SubmissionState.REFUSED, Refusal("X", "no"), clock.now()
        )
        stored = await adapter.load_submission(submission.seq)
        assert stored is not None
        assert stored.state is SubmissionState.APPLIED


async def test_a_submission_the_owner_cannot_read_or_apply_never_holds_the_others_up(
    db_path: Path, submitter: SQLiteCommander, owner: SQLiteCommander, clock: LoopClock
) -> None:
    """A pending submission of a kind this version does not know is refused saying so; one
    whose application keeps raising a storage error (its mission's row is damaged) is tried at
    later ticks and refused after SUBMISSION_ATTEMPTS; the ticks go on, and the other missions
    move."""
    await owner.start(ORDER, {"item": "tea"}, id="damaged")
    await owner.start(ORDER, {"item": "jam"}, id="fine")
    write(
        db_path,
        "INSERT INTO submissions (kind, mission_id, name, payload, submitted_at, submitted_by)"
        " VALUES ('rewind', 'fine', NULL, 'null', '2030-01-01T00:00:00+00:00', 'newer')",
    )
    damaged = await submitter.submit_signal("damaged", "approve", "ada")
    write(db_path, "UPDATE missions SET snapshot = '{' WHERE id = 'damaged'")
    fine = await submitter.submit_signal("fine", "approve", "bob")

    assert (await submitter.verdict(fine)).output == "bob"
    with anyio.fail_after(600):
        with pytest.raises(PersistenceError, match="corrupt"):
            await submitter.verdict(damaged)
    [newer] = rows(db_path, "SELECT state, refusal FROM submissions WHERE kind = 'rewind'")
    assert newer[0] == "refused"
    assert "'rewind' is not a valid SubmissionKind" in newer[1]
    [tries] = rows(db_path, f"SELECT failures FROM submissions WHERE seq = {damaged.seq}")
    assert tries == (SUBMISSION_ATTEMPTS,)


async def test_a_submitted_singleton_start_is_refused_or_gives_the_mission_it_joins(
    db_path: Path, clock: LoopClock
) -> None:
    """While a mission holds its key, a submitted start of a refusing singleton is refused with
    ConcurrencyLimitError and a joining one is applied with no mission of its own: its verdict
    is the mission it joined (of the caller's tenant); neither stored a mission."""

    def single(name: str, when_busy: Any) -> Any:
        return (
            m.define(name)
            .start(parse=dict)
            .concurrency(lambda value: str(value["c"]), when_busy=when_busy)
            .need_to("go", parse=dict)
            .end()
        )

    refusing, joining = single("refusing", "refuse"), single("joining", "join")
    flows = [refusing, joining]
    async with (
        SQLiteCommander(db_path, flows, clock=clock, role="owner") as owner,
        create_commander_runtime(owner),
        SQLiteCommander(db_path, flows, clock=clock, role="submitter") as submitter,
    ):
        await owner.start(refusing, {"c": "k"}, id="r-1")
        await owner.start(joining, {"c": "k"}, id="j-1", tenant="acme")
        refused = await submitter.submit_start("refusing", {"c": "k"}, id="r-2")
        with pytest.raises(ConcurrencyLimitError, match=r"has 1 of 1 running \(r-1\)"):
            await submitter.verdict(refused)
        joined = await submitter.submit_start("joining", {"c": "k"}, id="j-2", tenant="acme")
        with anyio.fail_after(10):
            found = await submitter.verdict(joined)
        assert (found.id, found.tenant) == ("j-1", "acme")
        assert (await submitter.submission(joined.seq, tenant="acme")).state is (
            SubmissionState.APPLIED
        )
        assert sorted(s.id for s in await owner.list()) == ["r-1"]
        assert [s.id for s in await owner.list(tenant="acme")] == ["j-1"]


JOINING = (
    m.define("joining")
    .start(parse=dict)
    .concurrency(lambda value: str(value["c"]), when_busy="join")
    .need_to("go", parse=dict)
    .end()
)
"""A joining singleton: at most one mission per input's ``c`` runs; a start while one does
joins it."""


async def test_a_joined_submitted_starts_verdict_is_the_mission_it_joined_for_good(
    db_path: Path, clock: LoopClock
) -> None:
    """A submitted start of a joining singleton applied while a mission holds its key records
    that mission on the submission (``joined``, the caller's id in a tenant), and its verdict
    stays that mission after it ended and once another mission holds the key."""
    async with (
        SQLiteCommander(db_path, [JOINING], clock=clock, role="owner") as owner,
        SQLiteCommander(db_path, [JOINING], clock=clock, role="submitter") as submitter,
    ):
        for tenant in (None, "acme"):
            await owner.start(JOINING, {"c": "k"}, id="first", tenant=tenant)
            mine = await submitter.submit_start(JOINING, {"c": "k"}, id="mine", tenant=tenant)
            await owner.apply_submissions(10)
            read = await submitter.submission(mine.seq, tenant=tenant)
            assert (read.state, read.mission_id, read.joined) == (
                SubmissionState.APPLIED,
                "mine",
                "first",
            )
            assert (await submitter.verdict(mine)).id == "first"
            await owner.signal("first", "go", {}, tenant=tenant)
            ended = await submitter.verdict(mine)
            assert (ended.id, ended.status) == ("first", MissionStatus.COMPLETED)
            await owner.start(JOINING, {"c": "k"}, id="second", tenant=tenant)
            assert (await submitter.verdict(mine)).id == "first"
            own = await submitter.submit_start(JOINING, {"c": "other"}, id="own", tenant=tenant)
            await owner.apply_submissions(10)
            assert (await submitter.submission(own.seq, tenant=tenant)).joined is None
            assert (await submitter.verdict(own)).id == "own"


async def test_submitted_starts_run_in_the_ticks_within_max_concurrency(
    db_path: Path, clock: LoopClock
) -> None:
    """Starts submitted raw are stored as background starts and run by the owner's ticks, at
    most max_concurrency at a time."""
    running: list[int] = [0]
    most: list[int] = [0]

    async def slow(ctx: Context[Any, Any]) -> str:
        running[0] += 1
        most[0] = max(most[0], running[0])
        await anyio.sleep(3)
        running[0] -= 1
        return "done"

    slow_flow = m.define("slow").start(parse=dict).step("work", slow).end()
    async with (
        SQLiteCommander(db_path, [slow_flow], clock=clock, role="owner") as owner,
        create_commander_runtime(owner, max_concurrency=2),
        SQLiteCommander(db_path, [], clock=clock, role="submitter") as raw,
    ):
        submitted = [await raw.submit_start("slow", {}, id=f"s{n}") for n in range(6)]
        for submission in submitted:
            await raw.verdict(submission)
        with anyio.fail_after(60):
            for n in range(6):
                assert (await raw.result(f"s{n}")).status is MissionStatus.COMPLETED
    assert most[0] == 2


async def test_a_runtime_outlives_its_store_closing_under_it(
    db_path: Path, clock: LoopClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Closing the commander under its running runtime fails the ticks and the submission
    watcher, which log it, but never the application's task group."""
    commander = SQLiteCommander(db_path, [ORDER], clock=clock)
    async with create_commander_runtime(commander, stalled_tick_delay=1) as runtime:
        await commander.aclose()
        await anyio.sleep(5)
        assert runtime.is_running
    assert "watching for submissions failed, again in 1 s" in caplog.text


async def test_a_verdict_nobody_gives_is_logged_and_waits(
    db_path: Path, clock: LoopClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A submitter whose owner runs no runtime waits for the verdict, and says so in the log
    after ten seconds."""
    async with (
        SQLiteCommander(db_path, [ORDER], clock=clock) as owner,
        SQLiteCommander(db_path, [ORDER], clock=clock) as submitter,
    ):
        await owner.start(ORDER, {"item": "tea"}, id="o1")
        with anyio.move_on_after(30):
            await submitter.signal("o1", "approve", "ada")
        assert "is still pending after 10 s" in caplog.text
        assert "no owner of" in caplog.text
        assert (await owner.inspect("o1")).current_node == "approve"


async def test_a_submitter_neither_advances_nor_migrates(db_path: Path, clock: LoopClock) -> None:
    """advance() on a non-owner is refused before anything runs, and a submitter leaves an
    older schema to the owner to migrate."""
    calls: list[str] = []

    def record(ctx: Context[Any, Any]) -> str:
        calls.append(ctx.mission_id)
        return "ran"

    flow = m.define("flow").start(parse=dict).step("work", record).end()
    async with SQLiteCommander(db_path, [flow], clock=clock, role="owner") as owner:
        await owner.start(flow, {}, id="f1", background=True)
        async with SQLiteCommander(db_path, [flow], clock=clock) as submitter:
            with pytest.raises(PersistenceError, match="another process owns the store"):
                await submitter.advance("f1")
    assert calls == []
    write(db_path, "PRAGMA user_version = 1")
    with pytest.raises(PersistenceError, match="only the process that owns the database"):
        create_sqlite_persistence_adapter(db_path, role="submitter")


async def test_two_commanders_on_one_adapter_apply_each_submission_once(
    db_path: Path, clock: LoopClock
) -> None:
    """Two commanders sharing the owner's adapter, applying the pending submissions at the
    same time, apply each signal once: every mission moves on, no signal is left behind."""
    from mission_control.core import create_commander

    adapter = create_sqlite_persistence_adapter(db_path, role="owner")
    first = create_commander([ORDER], persistence=adapter, clock=clock)
    second = create_commander([ORDER], persistence=adapter, clock=clock)
    async with SQLiteCommander(db_path, [ORDER], clock=clock) as submitter:
        for n in range(5):
            await first.start(ORDER, {"item": "tea"}, id=f"o{n}")
            await submitter.submit_signal(f"o{n}", "approve", "ada")
        async with anyio.create_task_group() as group:
            group.start_soon(first.apply_submissions, 10)
            group.start_soon(second.apply_submissions, 10)
    for n in range(5):
        assert (await first.inspect(f"o{n}")).status is MissionStatus.COMPLETED
    assert rows(db_path, "SELECT count(*) FROM inbox") == [(0,)]
    await adapter.aclose()


async def test_a_submission_is_applied_while_a_tick_runs_a_slow_step(
    db_path: Path, clock: LoopClock
) -> None:
    """A signal submitted while the owner's tick runs a 60-second step is applied at once,
    beside the tick, not after it."""

    entered = anyio.Event()

    async def slow(ctx: Context[Any, Any]) -> str:
        entered.set()
        await anyio.sleep(60)
        return "slow"

    slow_flow = m.define("slow").start(parse=dict).step("work", slow).end()
    async with (
        SQLiteCommander(db_path, [ORDER, slow_flow], clock=clock, role="owner") as owner,
        create_commander_runtime(owner),
        SQLiteCommander(db_path, [ORDER, slow_flow], clock=clock) as submitter,
    ):
        await owner.start(ORDER, {"item": "tea"}, id="o1")
        await submitter.start(slow_flow, {}, id="s1")
        with anyio.fail_after(10):
            await entered.wait()
        began = anyio.current_time()
        assert (await submitter.signal("o1", "approve", "ada")).output == "ada"
        assert anyio.current_time() - began < 5
        assert (await owner.inspect("s1")).status is MissionStatus.RUNNING


async def test_a_store_busy_past_its_timeout_never_refuses_a_good_submission(
    db_path: Path, clock: LoopClock
) -> None:
    """Busy errors while applying a submission are not counted as its failures: once the
    store is free again the submission is applied."""
    async with (
        SQLiteCommander(db_path, [ORDER], clock=clock, role="owner", busy_timeout=0.05) as owner,
        SQLiteCommander(db_path, [ORDER], clock=clock) as submitter,
    ):
        await owner.start(ORDER, {"item": "tea"}, id="o1")
        submission = await submitter.submit_signal("o1", "approve", "ada")
        blocker = apsw.Connection(str(db_path))
        blocker.execute("BEGIN IMMEDIATE")
        for _ in range(SUBMISSION_ATTEMPTS + 2):
            assert await owner.apply_submissions(10) == 1
        blocker.execute("ROLLBACK")
        blocker.close()
        assert (await owner.submission(submission.seq)).state is SubmissionState.PENDING
        await owner.apply_submissions(10)
        assert (await owner.inspect("o1")).output == "ada"


async def test_an_owner_refuses_a_start_whose_id_another_definition_took_first(
    db_path: Path, clock: LoopClock, make_snapshot: Callable[..., MissionSnapshot]
) -> None:
    """A start that loses the race for its id to a mission of another definition raises
    MissionAlreadyExistsError, not the other mission."""
    from mission_control.core import MissionAlreadyExistsError

    async with SQLiteCommander(db_path, [ORDER], clock=clock, role="owner") as owner:
        store = owner.persistence
        real_load = store.load
        loads = 0

        async def load_then_lose(mission_id: str) -> MissionSnapshot | None:
            nonlocal loads
            loads += 1
            found = await real_load(mission_id)
            if loads == 1:  # another process inserts right after the first look
                await store.insert(make_snapshot(mission_id, definition="other"), [])
            return found

        store.load = load_then_lose  # type: ignore[method-assign]
        with pytest.raises(MissionAlreadyExistsError, match="'other'"):
            await owner.start(ORDER, {"item": "tea"}, id="taken")


async def test_a_standby_does_not_take_over_a_database_newer_code_migrated(
    db_path: Path, clock: LoopClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A standby runtime whose code is older than the database's schema (a newer owner
    migrated it) does not take it over when that owner goes away: it logs why and stands by."""
    from mission_control.adapter_sqlite import SCHEMA_VERSION

    first = SQLiteCommander(db_path, [ORDER], clock=clock)
    async with (
        SQLiteCommander(db_path, [ORDER], clock=clock) as second,
        create_commander_runtime(second) as runtime,
    ):
        write(db_path, f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
        await first.aclose()
        await anyio.sleep(30)
        assert runtime.is_standby
        assert f"has schema version {SCHEMA_VERSION + 1}, written by a newer" in caplog.text


TWO_SIGNALS = (
    m.define("two-signals")
    .start(parse=dict)
    .need_to("approve", parse=parse_approval)
    .need_to("pickup", parse=parse_approval)
    .end(lambda ctx: f"{ctx.events['approve'].output} then {ctx.events['pickup'].output}")
)


async def test_a_submitted_signal_returns_the_mission_once_its_buffered_signal_is_taken(
    db_path: Path, clock: LoopClock
) -> None:
    """A submitted signal after which the mission reaches a need_to whose signal is buffered
    returns the mission as the owner's own signal() does, past that need_to, even when the
    submitter reads the store between the owner's write of the wait and its taking of the
    buffered signal."""
    async with (
        SQLiteCommander(db_path, [TWO_SIGNALS], clock=clock, role="owner") as owner,
        create_commander_runtime(owner),
        SQLiteCommander(db_path, [TWO_SIGNALS], clock=clock, role="submitter") as submitter,
    ):
        await owner.start(TWO_SIGNALS, {}, id="t1")
        await owner.signal("t1", "pickup", "bob")  # buffered: the mission waits for approve
        reads_in_between = 0
        in_between = anyio.Event()
        read_twice = anyio.Event()
        owner_store, submitter_store = owner.persistence, submitter.persistence
        real_commit, real_load = owner_store.commit, submitter_store.load

        async def commit_then_pause(snapshot: MissionSnapshot, **kwargs: Any) -> None:
            await real_commit(snapshot, **kwargs)
            if snapshot.status is MissionStatus.WAITING and snapshot.current_node == "pickup":
                in_between.set()
                # Bounded, so that a submitter that stops reading cannot hang the test.
                with anyio.move_on_after(10):
                    await read_twice.wait()

        async def load_counting(mission_id: str) -> MissionSnapshot | None:
            nonlocal reads_in_between
            found = await real_load(mission_id)
            if in_between.is_set():
                reads_in_between += 1
                if reads_in_between == 2:
                    read_twice.set()
            return found

        owner_store.commit = commit_then_pause  # type: ignore[method-assign]
        submitter_store.load = load_counting  # type: ignore[method-assign]
        with anyio.fail_after(20):
            result = await submitter.signal("t1", "approve", "ada")

    assert reads_in_between >= 2
    assert (result.status, result.output) == (MissionStatus.COMPLETED, "ada then bob")


BRANCHED = (
    m.define("branched")
    .start(parse=dict)
    .parallel("both", {"left": lambda b: b.step("weigh", lambda ctx: 1), "right": lambda b: b})
    .need_to("approve", parse=parse_approval)
    .step("ship", lambda ctx: "shipped")
    .end()
)


async def test_a_submitter_without_the_definition_refuses_a_retry_point_the_records_rule_out(
    db_path: Path, clock: LoopClock
) -> None:
    """A submitter without the mission's definition refuses, storing nothing, a from_node its
    records show a retry cannot run from: a node inside a parallel, a name with a '/', a node
    never reached past one that did not complete; a node it may run from is submitted."""
    async with (
        SQLiteCommander(db_path, [BRANCHED], clock=clock, role="owner") as owner,
        create_commander_runtime(owner),
        SQLiteCommander(db_path, [], clock=clock, role="submitter") as raw,
    ):
        await owner.start(BRANCHED, {}, id="b1")
        await owner.cancel("b1", "wrong address")
        for node, message in (
            ("weigh", "the top-level node it is in is 'both'"),
            ("both/left/weigh", "the top-level node it is in is 'both'"),
            ("no/such", "a node's name has no '/'"),
            ("ship", "never reached a node of that name, and its node 'approve' did not complete"),
        ):
            with pytest.raises(InvalidInputError, match=message):
                await raw.submit_retry("b1", from_node=node)
        assert rows(db_path, "SELECT count(*) FROM submissions") == [(0,)]
        with anyio.fail_after(10):
            retried = await raw.retry("b1", from_node="approve")
        assert (retried.status, retried.current_node) == (MissionStatus.WAITING, "approve")


SKEWED_ORDER = (
    m.define("order")
    .start(parse=parse_order)
    .step("pack", packed)
    .step("audit", packed)
    .need_to("approval", parse=parse_approval)
    .end()
)


async def test_a_submitter_whose_definition_has_another_shape_leaves_the_checks_to_the_owner(
    db_path: Path, clock: LoopClock, owner: SQLiteCommander
) -> None:
    """A submitter holding another shape under the version the store's missions run on (a
    checkout that differs from the owner's) refuses to fork from it (DefinitionVersionError,
    nothing stored) and does not check signals or retries with it: the owner decides them."""
    await owner.start(ORDER, {"item": "tea"}, id="o1")
    async with SQLiteCommander(db_path, [SKEWED_ORDER], clock=clock, role="submitter") as skewed:
        with pytest.raises(DefinitionVersionError, match="another shape"):
            await skewed.fork("o1", at_node="audit", new_id="o1-fork")
        assert [s.id for s in await owner.list()] == ["o1"]
        with anyio.fail_after(10):
            done = await skewed.signal("o1", "approve", "ada")
        assert (done.status, done.output) == (MissionStatus.COMPLETED, "ada")
