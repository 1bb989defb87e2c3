"""Schedule scenarios: missions started on a timetable by the runtime, over months of virtual
time (daylight saving changes in a named time zone included), across restarts, pauses and the
three missed-fire policies; the store's schedule methods alone; and purge keeping the record of
a schedule's last fire. Run by commanders and runtimes on the adapter under test (a later
commander on the same adapter is a restart)."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, Unpack, cast
from zoneinfo import ZoneInfo

import anyio
import attrs
import pytest

from mission_control.core import (
    Commander,
    Context,
    Cron,
    Every,
    InvalidInputError,
    MissedFires,
    MissionDefinition,
    MissionSnapshot,
    MissionStatus,
    Schedule,
    ScheduleExistsError,
    ScheduleNotFoundError,
    ScheduleOptions,
    UnknownDefinitionError,
    create_commander,
    m,
)
from mission_control.core.storage import (
    PersistenceAdapter,
    RevisionConflictError,
    ScheduleStore,
    schedule_from_json,
    schedule_to_json,
)
from mission_control.in_memory_commander import SequentialIds
from mission_control.runtime import CommanderRuntime, create_commander_runtime

from ._clocks import LoopClock
from ._engine_scenarios import ScenarioFixtures

PARIS = ZoneInfo("Europe/Paris")

# 2030 in Paris: summer time from 31 March 02:00 (clocks go to 03:00) to 27 October 03:00
# (clocks go back to 02:00).
SPRING_FORWARD = datetime(2030, 3, 31).date()
FALL_BACK = datetime(2030, 10, 27).date()


def _parse_cleanup(value: Any) -> dict[str, Any]:
    fields = cast("dict[str, Any]", value) if isinstance(value, dict) else {}
    if not isinstance(fields.get("keep_days"), int):
        raise ValueError("cleanup needs {'keep_days': int}")
    return fields


def cleanup_definition() -> MissionDefinition[Any, Any, Any]:
    """A nightly cleanup: its input has ``keep_days`` (and the fire time, when the schedule adds
    it); it completes at once."""

    def run(ctx: Context[Any, None]) -> str:
        return f"kept {ctx.input['keep_days']} days"

    return m.define("cleanup").start(parse=_parse_cleanup, run=run).end()


def _commander(persistence: PersistenceAdapter, clock: LoopClock) -> Commander:
    return create_commander(
        [cleanup_definition()], persistence=persistence, clock=clock, ids=SequentialIds()
    )


async def _hourly(
    persistence: PersistenceAdapter, **options: Unpack[ScheduleOptions]
) -> tuple[Commander, LoopClock]:
    """A commander from 1 January 2030 00:30 UTC with an hourly schedule "hourly" (each
    mission's input has its slot's time under "fired_at")."""
    clock = LoopClock(datetime(2030, 1, 1, 0, 30, tzinfo=UTC))
    commander = _commander(persistence, clock)
    await commander.create_schedule(
        "hourly",
        "cleanup",
        Cron("0 * * * *"),
        {"keep_days": 7},
        **{"fire_time_field": "fired_at", **options},
    )
    return commander, clock


@asynccontextmanager
async def _running(commander: Commander) -> AsyncGenerator[CommanderRuntime]:
    async with create_commander_runtime(commander) as runtime:
        yield runtime


async def _missions(commander: Commander) -> list[MissionSnapshot]:
    return [mission async for mission in commander.iter_missions(definition="cleanup")]


def _fire_time(mission: MissionSnapshot) -> datetime:
    return datetime.fromisoformat(mission.input["fired_at"])


class ScheduleConformance(ScenarioFixtures):
    """Schedule scenarios every persistence adapter that keeps schedules must pass (skipped on
    one that keeps none). Subclass it and provide ``persistence``."""

    def _schedule_store(self, persistence: PersistenceAdapter) -> ScheduleStore:
        if not isinstance(persistence, ScheduleStore):
            pytest.skip("the adapter keeps no schedules (no ScheduleStore)")
        return persistence

    # -- the runtime fires schedules in virtual time -------------------------------------------

    async def test_a_nightly_cron_fires_once_a_night_for_months_across_daylight_saving_changes(
        self, persistence: PersistenceAdapter
    ) -> None:
        """A '30 2 * * *' schedule in Europe/Paris fires once every night from March to
        October at 02:30 local time (03:00 on the night 02:30 does not exist, once on the night
        it comes twice): run by a runtime over the change to summer time, caught up by another
        after a restart months later ('all' missed slots), and run on over the change back."""
        self._schedule_store(persistence)
        clock = LoopClock(datetime(2030, 3, 27, 12, tzinfo=UTC))
        commander = _commander(persistence, clock)
        await commander.create_schedule(
            "nightly",
            "cleanup",
            Cron("30 2 * * *", timezone="Europe/Paris"),
            {"keep_days": 30},
            fire_time_field="fired_at",
            missed=MissedFires.ALL,
            max_catch_up=366,
        )
        async with _running(commander):
            await anyio.sleep(timedelta(days=5).total_seconds())  # 28 March to 1 April
        # No runtime from 1 April 12:00 to 24 October 12:00 UTC (a long outage, and no cost to
        # the test: nothing wakes up meanwhile).
        await anyio.sleep((datetime(2030, 10, 24, 12, tzinfo=UTC) - clock.now()).total_seconds())
        restarted = _commander(persistence, clock)
        async with _running(restarted):
            await anyio.sleep(timedelta(days=5).total_seconds())  # to 29 October
        missions = await _missions(restarted)
        nights = [_fire_time(mission) for mission in missions]
        first = datetime(2030, 3, 28).date()
        assert [night.date() for night in nights] == [first + timedelta(days=n) for n in range(216)]
        assert nights[-1].date() == datetime(2030, 10, 29).date()
        assert all(mission.status is MissionStatus.COMPLETED for mission in missions)
        assert all(mission.input["keep_days"] == 30 for mission in missions)
        for night in nights:
            expected = (3, 0) if night.date() == SPRING_FORWARD else (2, 30)
            assert (night.hour, night.minute) == expected, night
            # The wall clock's offset: winter time, then summer time (02:30 on the night clocks
            # go back comes first in summer time), then winter time again.
            summer = SPRING_FORWARD <= night.date() <= FALL_BACK
            assert night.utcoffset() == timedelta(hours=2 if summer else 1), night
            assert night.astimezone(PARIS).utcoffset() == night.utcoffset(), night
        # Each mission's id is the schedule's and its slot's, in UTC.
        assert [mission.id for mission in missions] == [
            f"nightly@{night.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}" for night in nights
        ]
        schedule = await restarted.get_schedule("nightly")
        assert schedule.fires == 216
        assert schedule.last_fire_at == nights[-1]
        assert schedule.last_mission_id == missions[-1].id

    @pytest.mark.parametrize(
        ("start", "day", "hours"),
        [
            (datetime(2030, 3, 30, 12, tzinfo=UTC), SPRING_FORWARD, 23),
            (datetime(2030, 10, 26, 12, tzinfo=UTC), FALL_BACK, 25),
        ],
    )
    async def test_an_hourly_cron_fires_once_for_each_hour_that_happens(
        self, persistence: PersistenceAdapter, start: datetime, day: Any, hours: int
    ) -> None:
        """An hourly schedule in Europe/Paris fires 23 times on the day clocks go forward and
        25 times on the day they go back (02:00 summer time, then 02:00 winter time): every
        hour that happens, once."""
        self._schedule_store(persistence)
        clock = LoopClock(start)
        commander = _commander(persistence, clock)
        await commander.create_schedule(
            "hourly",
            "cleanup",
            Cron("0 * * * *", timezone="Europe/Paris"),
            {"keep_days": 1},
            fire_time_field="fired_at",
        )
        async with _running(commander):
            await anyio.sleep(timedelta(days=2).total_seconds())
        fires = [_fire_time(mission) for mission in await _missions(commander)]
        assert len(fires) == len({fire.astimezone(UTC) for fire in fires})
        on_day = [fire for fire in fires if fire.date() == day]
        assert len(on_day) == hours
        at_two = [fire.utcoffset() for fire in on_day if fire.hour == 2]
        if day == FALL_BACK:
            assert at_two == [timedelta(hours=2), timedelta(hours=1)]
        else:
            assert at_two == []

    async def test_a_restart_in_the_middle_neither_repeats_nor_loses_a_slot(
        self, persistence: PersistenceAdapter
    ) -> None:
        """An interval schedule fired by one runtime, then by another commander and runtime on
        the same store (a restart, with no time lost), starts every slot exactly once."""
        self._schedule_store(persistence)
        start = datetime(2030, 1, 1, tzinfo=UTC)
        clock = LoopClock(start)
        first = _commander(persistence, clock)
        await first.create_schedule(
            "every-10-min", "cleanup", Every(timedelta(minutes=10)), {"keep_days": 7}
        )
        async with _running(first):
            await anyio.sleep(timedelta(hours=5, minutes=5).total_seconds())
        second = _commander(persistence, clock)
        async with _running(second):
            await anyio.sleep(timedelta(hours=5).total_seconds())
        missions = await _missions(second)
        expected = [start + timedelta(minutes=10 * n) for n in range(1, 61)]
        assert [mission.id for mission in missions] == [
            f"every-10-min@{slot:%Y-%m-%dT%H:%M:%SZ}" for slot in expected
        ]
        assert all(mission.status is MissionStatus.COMPLETED for mission in missions)
        assert (await second.get_schedule("every-10-min")).fires == 60

    async def test_a_paused_schedule_fires_nothing_and_resumes_at_its_next_slot(
        self, persistence: PersistenceAdapter
    ) -> None:
        """Paused for two hours, an hourly schedule starts no mission then (whatever its missed
        policy) and, resumed, fires at its next slot after the resume."""
        self._schedule_store(persistence)
        commander, _ = await _hourly(persistence, missed=MissedFires.ALL)
        async with _running(commander):
            await anyio.sleep(timedelta(hours=2).total_seconds())  # 01:00 and 02:00
            paused = await commander.pause_schedule("hourly")
            assert paused.paused
            assert paused.next_fire_at is None
            assert await commander.pause_schedule("hourly") == paused
            await anyio.sleep(timedelta(hours=2).total_seconds())  # to 04:30
            resumed = await commander.resume_schedule("hourly")
            assert resumed.next_fire_at == datetime(2030, 1, 1, 5, tzinfo=UTC)
            await anyio.sleep(timedelta(hours=2).total_seconds())  # to 06:30
        hours = [_fire_time(mission).hour for mission in await _missions(commander)]
        assert hours == [1, 2, 5, 6]

    @pytest.mark.parametrize(
        ("missed", "max_catch_up", "expected_hours"),
        [
            (MissedFires.SKIP, 100, [1, 2, 8, 9]),
            (MissedFires.ONCE, 100, [1, 2, 7, 8, 9]),
            (MissedFires.ALL, 100, [1, 2, 3, 4, 5, 6, 7, 8, 9]),
            (MissedFires.ALL, 2, [1, 2, 6, 7, 8, 9]),
        ],
    )
    async def test_slots_missed_while_no_runtime_ran_fire_by_the_schedule_policy(
        self,
        persistence: PersistenceAdapter,
        missed: MissedFires,
        max_catch_up: int,
        expected_hours: list[int],
    ) -> None:
        """An hourly schedule whose runtime stopped for five hours: 'skip' fires none of the
        missed hours, 'once' the latest, 'all' every one (its latest max_catch_up), and each
        goes on with the following hours."""
        self._schedule_store(persistence)
        commander, clock = await _hourly(persistence, missed=missed, max_catch_up=max_catch_up)
        async with _running(commander):
            await anyio.sleep(timedelta(hours=2).total_seconds())  # fires 01:00 and 02:00
        await anyio.sleep(timedelta(hours=5).total_seconds())  # down until 07:30
        restarted = _commander(persistence, clock)
        async with _running(restarted):
            await anyio.sleep(timedelta(hours=2).total_seconds())  # 08:00 and 09:00
        fires = [_fire_time(mission) for mission in await _missions(restarted)]
        assert [fire.hour for fire in fires] == expected_hours
        assert all(fire.minute == 0 for fire in fires)

    async def test_a_slot_late_by_less_than_its_grace_fires_as_on_time(
        self, persistence: PersistenceAdapter
    ) -> None:
        """With 'skip', a slot the runtime reaches within the schedule's grace (a restart a
        few seconds after it) still fires; one reached later does not."""
        self._schedule_store(persistence)
        clock = LoopClock(datetime(2030, 1, 1, 5, 59, tzinfo=UTC))
        commander = _commander(persistence, clock)
        await commander.create_schedule(
            "daily",
            "cleanup",
            Cron("0 6 * * *"),
            {"keep_days": 7},
            grace=timedelta(minutes=5),
            fire_time_field="fired_at",
        )
        await anyio.sleep(timedelta(minutes=4).total_seconds())  # 06:03, no runtime
        async with _running(_commander(persistence, clock)):
            await anyio.sleep(1)
        await anyio.sleep(timedelta(days=1, minutes=10).total_seconds())  # 7:04 next day
        async with _running(_commander(persistence, clock)):
            await anyio.sleep(1)
        fires = [_fire_time(mission) for mission in await _missions(commander)]
        assert [fire.day for fire in fires] == [1]

    async def test_a_schedule_input_changed_by_update_is_used_from_the_next_fire(
        self, persistence: PersistenceAdapter
    ) -> None:
        """update_schedule changes the input of the following fires and keeps the record of
        the last fire; a new trigger fires from its first slot after the update."""
        self._schedule_store(persistence)
        clock = LoopClock(datetime(2030, 1, 1, 0, 10, tzinfo=UTC))
        commander = _commander(persistence, clock)
        await commander.create_schedule("s", "cleanup", Cron("0 * * * *"), {"keep_days": 7})
        async with _running(commander):
            await anyio.sleep(timedelta(hours=1).total_seconds())
            before = await commander.get_schedule("s")
            updated = await commander.update_schedule(
                "s", input={"keep_days": 9}, trigger=Cron("30 * * * *")
            )
            assert updated.last_mission_id == before.last_mission_id == "s@2030-01-01T01:00:00Z"
            assert updated.next_fire_at == datetime(2030, 1, 1, 1, 30, tzinfo=UTC)
            assert updated.revision == before.revision + 1
            await anyio.sleep(timedelta(hours=1).total_seconds())
        missions = await _missions(commander)
        assert [(m.id, m.input["keep_days"]) for m in missions] == [
            ("s@2030-01-01T01:00:00Z", 7),
            ("s@2030-01-01T01:30:00Z", 9),
        ]

    # -- creating and changing schedules ----------------------------------------------------------

    async def test_creating_a_schedule_is_idempotent_for_the_same_settings(
        self, persistence: PersistenceAdapter
    ) -> None:
        """create_schedule with the settings of the stored schedule returns it unchanged (an
        interval without an anchor included, created again later); with other settings it
        raises ScheduleExistsError and changes nothing."""
        self._schedule_store(persistence)
        clock = LoopClock(datetime(2030, 1, 1, tzinfo=UTC))
        commander = _commander(persistence, clock)
        first = await commander.create_schedule(
            "s", "cleanup", Every(timedelta(minutes=10)), {"keep_days": 1}
        )
        await anyio.sleep(125)
        again = await _commander(persistence, clock).create_schedule(
            "s", "cleanup", Every(timedelta(minutes=10)), {"keep_days": 1}
        )
        assert again == first
        with pytest.raises(ScheduleExistsError, match="update_schedule"):
            await commander.create_schedule(
                "s", "cleanup", Every(timedelta(minutes=10)), {"keep_days": 2}
            )
        assert await commander.get_schedule("s") == first

    async def test_bad_schedule_settings_are_refused_and_nothing_is_stored(
        self, persistence: PersistenceAdapter
    ) -> None:
        """An input the definition refuses, an unknown definition, a bad cron expression or
        time zone, a sub-second interval, a fire_time_field on a non-object input and an id
        with '@' each raise a clear error and store no schedule."""
        store = self._schedule_store(persistence)
        clock = LoopClock(datetime(2030, 1, 1, tzinfo=UTC))
        commander = _commander(persistence, clock)
        with pytest.raises(InvalidInputError, match="rejected its input"):
            await commander.create_schedule("s", "cleanup", Cron("@daily"), {"keep": 1})
        with pytest.raises(UnknownDefinitionError, match="no definition named 'nope'"):
            await commander.create_schedule("s", "nope", Cron("@daily"), {"keep_days": 1})
        with pytest.raises(InvalidInputError, match="invalid cron expression"):
            Cron("61 * * * *")
        with pytest.raises(InvalidInputError, match="unknown time zone 'Mars/Olympus'"):
            Cron("@daily", timezone="Mars/Olympus")
        with pytest.raises(InvalidInputError, match="whole number of seconds"):
            Every(0.5)
        with pytest.raises(InvalidInputError, match="needs an object"):
            await commander.create_schedule(
                "s", "cleanup", Cron("@daily"), [1], fire_time_field="at"
            )
        with pytest.raises(InvalidInputError, match="without '@'"):
            await commander.create_schedule("a@b", "cleanup", Cron("@daily"), {"keep_days": 1})
        with pytest.raises(InvalidInputError, match="missed must be one of"):
            await commander.create_schedule(
                "s", "cleanup", Cron("@daily"), {"keep_days": 1}, missed="sometimes"
            )
        assert await store.list_schedules(limit=10) == []
        with pytest.raises(ScheduleNotFoundError):
            await commander.get_schedule("s")
        with pytest.raises(ScheduleNotFoundError):
            await commander.pause_schedule("s")
        await commander.create_schedule("s", "cleanup", Cron("@daily"), {"keep_days": 1})
        stored = await commander.get_schedule("s")
        with pytest.raises(InvalidInputError, match="rejected its input"):
            await commander.update_schedule("s", input={"keep_days": "all"})
        assert await commander.get_schedule("s") == stored

    async def test_deleting_a_schedule_stops_its_fires_and_keeps_its_missions(
        self, persistence: PersistenceAdapter
    ) -> None:
        """delete_schedule removes the schedule (True once, False after); the missions it
        started stay, and no more start."""
        self._schedule_store(persistence)
        clock = LoopClock(datetime(2030, 1, 1, tzinfo=UTC))
        commander = _commander(persistence, clock)
        await commander.create_schedule("s", "cleanup", Cron("0 * * * *"), {"keep_days": 1})
        async with _running(commander):
            await anyio.sleep(timedelta(hours=2, minutes=30).total_seconds())
            assert await commander.delete_schedule("s")
            assert not await commander.delete_schedule("s")
            await anyio.sleep(timedelta(hours=5).total_seconds())
        assert len(await _missions(commander)) == 2
        assert await commander.list_schedules() == []

    async def test_purging_missions_keeps_the_record_of_a_schedules_last_fire(
        self, persistence: PersistenceAdapter
    ) -> None:
        """Purging the missions a schedule started leaves the schedule's last fire (time,
        mission id, count) as it was, and the purged slot is not fired again."""
        self._schedule_store(persistence)
        clock = LoopClock(datetime(2030, 1, 1, 0, 30, tzinfo=UTC))
        commander = _commander(persistence, clock)
        await commander.create_schedule("s", "cleanup", Cron("0 * * * *"), {"keep_days": 1})
        async with _running(commander) as runtime:
            await anyio.sleep(timedelta(hours=1).total_seconds())
            before = await commander.get_schedule("s")
            report = await commander.purge(finished_before=clock.now())
            assert report.deleted == 1
            assert await _missions(commander) == []
            assert await commander.get_schedule("s") == before
            assert before.last_mission_id == "s@2030-01-01T01:00:00Z"
            assert (await runtime.tick()).fired == 0
        assert await _missions(commander) == []

    # -- the store's schedule methods ---------------------------------------------------------

    async def test_the_store_keeps_schedules_with_compare_and_set_and_due_queries(
        self, persistence: PersistenceAdapter
    ) -> None:
        """insert_schedule returns the stored one for a taken id; commit_schedule is a
        compare-and-set on revision; due_schedules lists unpaused due ones earliest first;
        next_schedule_at looks past a time; list_schedules pages by id; the codec round-trips."""
        store = self._schedule_store(persistence)
        at = datetime(2030, 1, 1, tzinfo=UTC)

        def schedule(schedule_id: str, next_fire_at: datetime | None) -> Schedule:
            return Schedule(
                id=schedule_id,
                definition="cleanup",
                trigger=Every(60, anchor=at),
                input={"keep_days": 1, "note": "é"},
                fire_time_field=None,
                missed=MissedFires.ONCE,
                max_catch_up=5,
                grace=timedelta(seconds=30),
                paused=next_fire_at is None,
                next_fire_at=next_fire_at,
                last_fire_at=None,
                last_mission_id=None,
                fires=0,
                last_error=None,
                created_at=at,
                updated_at=at,
                revision=1,
            )

        b = schedule("b", at + timedelta(minutes=2))
        a = schedule("a", at + timedelta(minutes=3))
        c = schedule("c", None)
        for each in (b, a, c):
            assert await store.insert_schedule(each) is None
        assert await store.insert_schedule(attrs.evolve(a, fires=9)) == a
        assert schedule_from_json(schedule_to_json(a)) == a
        assert await store.load_schedule("a") == a
        assert await store.load_schedule("z") is None
        assert await store.list_schedules(limit=2) == [a, b]
        assert await store.list_schedules(limit=5, after_id="a") == [b, c]
        assert await store.due_schedules(at + timedelta(minutes=3), 10) == [b, a]
        assert await store.due_schedules(at + timedelta(minutes=2), 10) == [b]
        assert await store.due_schedules(at + timedelta(minutes=3), 1) == [b]
        assert await store.next_schedule_at() == at + timedelta(minutes=2)
        assert await store.next_schedule_at(at + timedelta(minutes=2)) == at + timedelta(minutes=3)
        assert await store.next_schedule_at(at + timedelta(minutes=3)) is None

        fired = attrs.evolve(b, next_fire_at=at + timedelta(minutes=9), fires=1, revision=2)
        await store.commit_schedule(fired, expected_revision=1)
        assert await store.load_schedule("b") == fired
        with pytest.raises(RevisionConflictError):
            await store.commit_schedule(attrs.evolve(b, revision=2), expected_revision=1)
        with pytest.raises(RevisionConflictError):
            await store.commit_schedule(attrs.evolve(fired, revision=4), expected_revision=2)
        with pytest.raises(RevisionConflictError):
            await store.commit_schedule(attrs.evolve(a, id="gone", revision=2), expected_revision=1)
        assert await store.load_schedule("b") == fired
        assert await store.due_schedules(at + timedelta(minutes=3), 10) == [a]

        assert await store.delete_schedule("a")
        assert not await store.delete_schedule("a")
        assert await store.list_schedules(limit=10) == [fired, c]
