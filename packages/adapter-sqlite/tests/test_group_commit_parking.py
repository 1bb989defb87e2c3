"""Each loop's own parking ends a cancelled group commit's callers exactly as the plain (AnyIO)
parking, the reference, does: a leader and a joined writer commit together on a SQLite file, and a
third task cancels the joined writer (or the leader) after 0 to 5 trips through the scheduler, so
that the cancellation arrives before the group commits, in the loop iteration in which it commits
and wakes the writer, and after; on a busy database it arrives while the group retries. Every
caller leaves, its write stored, and each ends the same way with either parking. (A writer never
woken would hang its caller, for its wait cannot be cancelled: the tests wake it after 10 virtual
seconds and fail.)

An AnyIO scope's cancellation on trio and asyncio; on asyncio a ``Task.cancel()`` too, with tasks
made by asyncio itself (what ``asyncio.timeout`` and a server shutting down cancel)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import anyio.lowlevel
import apsw
import pytest
import sniffio

from mission_control.adapter_sqlite import _group, create_sqlite_persistence_adapter
from mission_control.adapter_sqlite._parking import Parking, PlainParking, Spot
from mission_control.core import MissionSnapshot

pytestmark = pytest.mark.anyio

Make = Callable[..., MissionSnapshot]
Outcomes = dict[str, str]


class _WatchedSpot:
    """A spot that says whether its writer has left."""

    def __init__(self, spot: Spot) -> None:
        self.spot = spot
        self.left = False

    async def wait(self) -> None:
        try:
            await self.spot.wait()
        finally:
            self.left = True

    def wake(self) -> None:
        self.spot.wake()


class _WatchedParking:
    """``parking``, keeping the spots it hands out, so that a writer never woken can be woken by
    the test (its wait cannot be cancelled) and reported, instead of hanging the test."""

    def __init__(self, parking: Parking) -> None:
        self._parking = parking
        self.spots: list[_WatchedSpot] = []

    def spot(self) -> Spot:
        spot = _WatchedSpot(self._parking.spot())
        self.spots.append(spot)
        return spot

    async def yield_shielded(self) -> BaseException | None:
        return await self._parking.yield_shielded()

    async def sleep_shielded(self, seconds: float) -> BaseException | None:
        return await self._parking.sleep_shielded(seconds)

    def itself(self) -> Parking:
        """Stands for ``parking_for_this_loop``."""
        return self

    def release_stuck(self) -> None:
        """Wake every writer still waiting, then fail the test."""
        stuck = [spot for spot in self.spots if not spot.left]
        for spot in stuck:
            spot.wake()
        if stuck:
            pytest.fail(f"{len(stuck)} joined writer(s) never woken")


async def _both_parkings(
    run: Callable[[str, _WatchedParking], Awaitable[Outcomes]],
) -> tuple[Outcomes, Outcomes]:
    """``run(label, parking)`` with the loop's own parking, then with the plain one."""
    outcomes: list[Outcomes] = []
    for label, parking in (("own", _group.parking_for_this_loop()), ("plain", PlainParking())):
        watched = _WatchedParking(parking)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(_group, "parking_for_this_loop", watched.itself)
            outcomes.append(await run(label, watched))
    return outcomes[0], outcomes[1]


async def _scope_cancelled_writes(
    path: Path, make_snapshot: Make, target: str, trips: int, parking: _WatchedParking
) -> Outcomes:
    """A leader and a joined writer commit together; after ``trips`` checkpoints a third task
    cancels ``target``'s scope. How each call ended, and whether each write was stored."""
    outcomes: Outcomes = {}
    scopes = {name: anyio.CancelScope() for name in ("leader", "joined")}
    async with create_sqlite_persistence_adapter(path) as adapter:
        for name in scopes:
            await adapter.insert(make_snapshot(name), [])

        async def write(name: str) -> None:
            with scopes[name]:
                await adapter.commit(
                    make_snapshot(name, revision=2), expected_revision=1, timeline=[]
                )
                outcomes[name] = "returned"
                await anyio.lowlevel.checkpoint()
                outcomes[name] += ", not cancelled at its next checkpoint"

        async def cancel() -> None:
            for _ in range(trips):
                await anyio.lowlevel.checkpoint()
            scopes[target].cancel()

        async def watchdog() -> None:
            await anyio.sleep(10)  # virtual time
            parking.release_stuck()

        async with anyio.create_task_group() as watching:
            watching.start_soon(watchdog)
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(write, "leader")
                tasks.start_soon(write, "joined")
                tasks.start_soon(cancel)
            watching.cancel_scope.cancel()
        for name in scopes:
            stored = await adapter.load(name)
            assert stored is not None
            outcomes[f"{name} stored"] = str(stored.revision == 2)
    return outcomes


@pytest.mark.parametrize("trips", range(6))
@pytest.mark.parametrize("target", ["joined", "leader"])
async def test_a_scope_cancelled_around_a_group_commit_ends_its_caller_as_the_plain_parking(
    tmp_path: Path, make_snapshot: Make, target: str, trips: int
) -> None:
    """A cancel scope cancelled before, while or after its caller's group commits leaves the
    commit to return with the write stored (and on asyncio the call ends exactly as with the plain
    parking)."""
    own, plain = await _both_parkings(
        lambda label, parking: _scope_cancelled_writes(
            tmp_path / f"{label}.sqlite", make_snapshot, target, trips, parking
        )
    )
    if sniffio.current_async_library() == "asyncio":
        # trio runs each batch of ready tasks in a random order, so whether the cancellation
        # lands before a caller's next checkpoint varies there from run to run.
        assert own == plain
    assert own["leader stored"] == own["joined stored"] == "True"
    assert own["leader"].startswith("returned")
    assert own["joined"].startswith("returned")


async def _task_cancelled_writes(
    path: Path,
    make_snapshot: Make,
    target: str,
    trips: int,
    parking: _WatchedParking,
    *,
    busy: bool,
) -> Outcomes:
    """As :func:`_scope_cancelled_writes`, with asyncio tasks and ``Task.cancel()``; with
    ``busy``, another connection holds the lock until after the cancellation."""
    outcomes: Outcomes = {}
    async with create_sqlite_persistence_adapter(path) as adapter:
        for name in ("leader", "joined"):
            await adapter.insert(make_snapshot(name), [])
        intruder = apsw.Connection(str(path))
        if busy:
            intruder.execute("BEGIN IMMEDIATE")

        async def write(name: str) -> None:
            try:
                await adapter.commit(
                    make_snapshot(name, revision=2), expected_revision=1, timeline=[]
                )
            except asyncio.CancelledError:
                outcomes[name] = "CancelledError"
                raise
            outcomes[name] = "returned"

        writers = {name: asyncio.ensure_future(write(name)) for name in ("leader", "joined")}
        for _ in range(trips):
            await asyncio.sleep(0)
        writers[target].cancel()
        if busy:
            await asyncio.sleep(0.02)  # virtual time: the group retries meanwhile
            intruder.execute("ROLLBACK")
        intruder.close()
        _, waiting = await asyncio.wait(writers.values(), timeout=10)
        if waiting:
            try:
                parking.release_stuck()
            finally:
                await asyncio.wait(waiting)
        for name in writers:
            stored = await adapter.load(name)
            assert stored is not None
            outcomes[f"{name} stored"] = str(stored.revision == 2)
    return outcomes


def _only_on_asyncio() -> None:
    if sniffio.current_async_library() != "asyncio":
        pytest.skip("Task.cancel() is asyncio's")


@pytest.mark.parametrize("trips", range(6))
@pytest.mark.parametrize("target", ["joined", "leader"])
async def test_a_task_cancel_around_a_group_commit_ends_its_caller_as_the_plain_parking(
    tmp_path: Path, make_snapshot: Make, target: str, trips: int
) -> None:
    """On asyncio a ``Task.cancel()`` before, while or after its task's group commits ends the
    call as with the plain parking: CancelledError after the write is stored, or a return."""
    _only_on_asyncio()
    own, plain = await _both_parkings(
        lambda label, parking: _task_cancelled_writes(
            tmp_path / f"{label}.sqlite", make_snapshot, target, trips, parking, busy=False
        )
    )
    assert own == plain
    for name in ("leader", "joined"):
        # Cancelled before its task first ran (no trip), a caller never wrote; any that called
        # left with its write stored.
        assert (name in own) == (own[f"{name} stored"] == "True") == (trips > 0 or name != target)


@pytest.mark.parametrize("target", ["joined", "leader"])
async def test_a_task_cancel_while_a_group_waits_for_a_busy_database_is_raised_once_stored(
    tmp_path: Path, make_snapshot: Make, target: str
) -> None:
    """On asyncio a ``Task.cancel()`` of a caller whose group retries on a busy database is
    raised once the group is stored, as with the plain parking."""
    _only_on_asyncio()
    own, plain = await _both_parkings(
        lambda label, parking: _task_cancelled_writes(
            tmp_path / f"{label}.sqlite", make_snapshot, target, 2, parking, busy=True
        )
    )
    assert own == plain
    other = "leader" if target == "joined" else "joined"
    assert own == {
        target: "CancelledError",
        other: "returned",
        "leader stored": "True",
        "joined stored": "True",
    }
