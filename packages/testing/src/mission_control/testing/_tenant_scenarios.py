"""Tenant scenarios: missions started for a tenant, their ids unique within it, and every
operation scoped by it, run by a commander on the adapter under test."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest

from mission_control.core import (
    Commander,
    Context,
    Every,
    InvalidInputError,
    MissionControlError,
    MissionNotFoundError,
    MissionSnapshot,
    MissionStatus,
    ScheduleExistsError,
    ScheduleNotFoundError,
    TimelineEntry,
    TimelineKind,
    TriggerExistsError,
    TriggerNotFoundError,
    m,
)
from mission_control.core.storage import (
    ANY_TENANT,
    PersistenceAdapter,
    ScheduleStore,
    TriggerStore,
)
from mission_control.in_memory_commander import ManualClock

from ._engine_scenarios import FatalError, ScenarioFixtures, drain_due


def _accept(value: Any) -> Any:
    return value


def _placed() -> Any:
    """A mission the trigger ``order.placed`` starts, waiting for ``pay``."""
    return (
        m.define("placed")
        .start(parse=_accept)
        .triggered_by("order.placed")
        .need_to("pay", parse=_accept)
        .end()
    )


def _flow() -> Any:
    return (
        m.define("order")
        .start(parse=_accept)
        .need_to("pay", parse=_accept)
        .end(output=lambda ctx: {"paid": ctx.events["pay"].output, "input": ctx.input})
    )


def _failing(fail: dict[str, bool]) -> Any:
    def charge(ctx: Context[Any, Any]) -> str:
        if fail["now"]:
            raise FatalError("card declined")
        return f"charged {ctx.input}"

    return (
        m.define("charge")
        .start(parse=_accept)
        .step("charge", charge)
        .need_to("ship", parse=_accept)
        .end()
    )


async def _state(
    commander: Commander, mission_id: str, tenant: str | None
) -> tuple[MissionSnapshot, list[TimelineEntry]]:
    return (
        await commander.inspect(mission_id, tenant=tenant),
        await commander.timeline(mission_id, tenant=tenant),
    )


def _per_mission_operations(
    commander: Commander,
) -> list[Callable[[str, str | None], Awaitable[object]]]:
    """Every per-mission call, given the caller's id and tenant."""
    return [
        lambda i, t: commander.get(i, tenant=t),
        lambda i, t: commander.inspect(i, tenant=t),
        lambda i, t: commander.timeline(i, tenant=t),
        lambda i, t: commander.signal(i, "pay", 5, tenant=t),
        lambda i, t: commander.cancel(i, "no", tenant=t),
        lambda i, t: commander.retry(i, tenant=t),
        lambda i, t: commander.fork(i, at_node="start", new_id="copy", tenant=t),
        lambda i, t: commander.result(i, tenant=t),
        lambda i, t: commander.wait_for_completion(i, tenant=t),
    ]


class TenantConformance(ScenarioFixtures):
    """Tenant scenarios every persistence adapter must pass: ids unique within a tenant, and
    every operation on another tenant's mission refused as not found. Subclass it and provide
    ``persistence``."""

    async def test_ids_are_unique_within_a_tenant_and_an_idempotent_start_stays_in_it(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """One id names a different mission in each tenant and in none, and starting it again
        in a tenant returns that tenant's mission, never another's."""
        flow = _flow()
        commander = self.commander(persistence, clock, flow)
        acme = await commander.start(flow, {"who": "acme"}, id="order-1", tenant="acme")
        beta = await commander.start(flow, {"who": "beta"}, id="order-1", tenant="beta")
        plain = await commander.start(flow, {"who": "none"}, id="order-1")

        assert (acme.id, acme.tenant, beta.tenant, plain.tenant) == (
            "order-1",
            "acme",
            "beta",
            None,
        )
        seen = {
            tenant: await commander.inspect("order-1", tenant=tenant)
            for tenant in ("acme", "beta", None)
        }
        assert {t: (s.id, s.tenant, s.input["who"]) for t, s in seen.items()} == {
            "acme": ("order-1", "acme", "acme"),
            "beta": ("order-1", "beta", "beta"),
            None: ("order-1", None, "none"),
        }
        again = await commander.start(flow, {"who": "other"}, id="order-1", tenant="beta")
        assert again == beta
        assert (await again.inspect()).input == {"who": "beta"}
        fresh = await commander.start(flow, {"who": "acme"}, tenant="acme")
        assert fresh.tenant == "acme"
        assert (await fresh.inspect()).id == fresh.id
        assert len(await commander.list(tenant="acme")) == 2

    async def test_every_operation_on_another_tenants_mission_is_refused_as_not_found(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """get, inspect, timeline, signal, cancel, retry, fork, result and wait_for_completion
        on a mission of another tenant (or of a tenant, from no tenant) raise
        MissionNotFoundError, and the mission is left exactly as it was."""
        flow = _flow()
        commander = self.commander(persistence, clock, flow)
        await commander.start(flow, {}, id="secret", tenant="acme")
        before = await _state(commander, "secret", "acme")
        stored_key = (await persistence.list_missions(limit=10))[0].id

        operations = _per_mission_operations(commander)
        for operation in operations:
            for mission_id, tenant in (
                ("secret", "beta"),
                ("secret", None),
                (stored_key, None),
                (stored_key, "acme"),
            ):
                with pytest.raises(MissionNotFoundError):
                    await operation(mission_id, tenant)
        assert await _state(commander, "secret", "acme") == before
        assert [s.id for s in await commander.list(tenant="beta")] == []
        assert [s.id for s in await commander.list()] == []
        assert len(await persistence.list_missions(limit=10)) == 1

    async def test_the_not_found_error_reads_the_same_whether_another_tenants_mission_exists(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """Every operation's MissionNotFoundError for an id of another tenant's form (or another
        tenant's id) reads the same before and after that tenant starts the mission, so the
        message tells nothing of another tenant's missions."""
        flow = _flow()
        commander = self.commander(persistence, clock, flow)
        operations = _per_mission_operations(commander)
        asked = [("acme::secret", None), ("secret", "beta"), ("secret", None)]

        async def messages() -> list[str]:
            seen: list[str] = []
            for operation in operations:
                for mission_id, tenant in asked:
                    with pytest.raises(MissionNotFoundError) as error:
                        await operation(mission_id, tenant)
                    seen.append(str(error.value))
            return seen

        before = await messages()
        await commander.start(flow, {}, id="secret", tenant="acme")
        assert await messages() == before

    async def test_signal_cancel_retry_and_fork_work_within_the_tenant(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """Within its tenant a mission is signalled, cancelled, retried and forked as any
        other, the fork in the same tenant, and the snapshots handed out carry the caller's
        ids."""
        fail = {"now": True}
        flow = _failing(fail)
        commander = self.commander(persistence, clock, flow)
        handle = await commander.start(flow, 7, id="c1", tenant="acme")
        failed = await handle.inspect()
        assert (failed.status, failed.id, failed.tenant) == (MissionStatus.FAILED, "c1", "acme")
        fail["now"] = False
        retried = await commander.retry("c1", tenant="acme")
        assert (retried.status, retried.id, retried.current_node) == (
            MissionStatus.WAITING,
            "c1",
            "ship",
        )
        fork = await commander.fork("c1", at_node="charge", new_id="c2", tenant="acme")
        assert (fork.id, fork.tenant) == ("c2", "acme")
        forked = await fork.inspect()
        assert (forked.forked_from, forked.tenant) == ("c1", "acme")
        with pytest.raises(MissionNotFoundError):
            await commander.inspect("c2")
        done = await commander.signal("c1", "ship", {"to": "home"}, tenant="acme")
        assert (done.status, done.id) == (MissionStatus.COMPLETED, "c1")
        assert (await handle.result()).status is MissionStatus.COMPLETED
        cancelled = await fork.cancel("changed mind")
        assert (cancelled.status, cancelled.id) == (MissionStatus.CANCELLED, "c2")
        with pytest.raises(Exception, match="cancelled"):
            await fork.wait_for_completion()
        entries = await handle.timeline()
        assert entries[-1].kind is TimelineKind.MISSION_COMPLETED
        started = await commander.signal_with_start(
            flow, 9, mission_id="c3", signal="ship", payload={}, tenant="beta"
        )
        assert (started.id, started.tenant, started.status) == (
            "c3",
            "beta",
            MissionStatus.COMPLETED,
        )
        with pytest.raises(MissionNotFoundError):
            await commander.inspect("c3", tenant="acme")

    async def test_listing_selects_one_tenant_and_pages_by_its_ids(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """list and iter_missions return the missions of the tenant asked for (of no tenant
        without one), filtered and paged by the caller's ids, and the adapter's listing selects
        by tenant."""
        flow = _flow()
        commander = self.commander(persistence, clock, flow)
        for number in range(5):
            await commander.start(flow, {}, id=f"a-{number}", tenant="acme")
        for number in range(3):
            await commander.start(flow, {}, id=f"b-{number}", tenant="beta")
        await commander.start(flow, {}, id="plain")
        await commander.signal("a-1", "pay", 1, tenant="acme")

        page = await commander.list(tenant="acme", limit=2)
        assert [(s.id, s.tenant) for s in page] == [("a-0", "acme"), ("a-1", "acme")]
        rest = await commander.list(tenant="acme", after=page[-1].id)
        assert [s.id for s in rest] == ["a-2", "a-3", "a-4"]
        assert [s.id async for s in commander.iter_missions(page_size=2, tenant="beta")] == [
            "b-0",
            "b-1",
            "b-2",
        ]
        assert [s.id for s in await commander.list()] == ["plain"]
        completed = await commander.list(tenant="acme", status=MissionStatus.COMPLETED)
        assert [s.id for s in completed] == ["a-1"]
        assert await commander.list(tenant="beta", status=MissionStatus.COMPLETED) == []
        assert await commander.list(tenant="gamma") == []

        stored = await persistence.list_missions(limit=100, tenant="beta")
        assert [(s.tenant, s.status) for s in stored] == [("beta", MissionStatus.WAITING)] * 3
        assert [s.id for s in await persistence.list_missions(limit=100, tenant=None)] == ["plain"]
        assert len(await persistence.list_missions(limit=100, tenant=ANY_TENANT)) == 9
        assert len(await persistence.list_missions(limit=100)) == 9

    async def test_children_inherit_their_parents_tenant(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """A child mission belongs to its parent's tenant: found there (and by its parent), not
        elsewhere, and signalling it there ends it and moves the parent on."""
        child = m.define("kid").start(parse=_accept).need_to("go", parse=_accept).end()
        parent = (
            m.define("parent")
            .start(parse=_accept)
            .child("kid", child, input=lambda ctx: {"from": "parent"})
            .end()
        )
        commander = self.commander(persistence, clock, parent, child)
        await commander.start(parent, {}, id="p", tenant="acme")
        await commander.start(parent, {}, id="p", tenant="beta")

        kids = await commander.list(parent="p", tenant="acme")
        assert [(k.tenant, k.parent.mission_id if k.parent else None) for k in kids] == [
            ("acme", "p")
        ]
        kid = kids[0]
        assert kid.id.startswith("p/")
        assert await commander.list(parent="p") == []
        with pytest.raises(MissionNotFoundError):
            await commander.signal(kid.id, "go", 1)
        await commander.signal(kid.id, "go", 1, tenant="acme")
        await drain_due(commander)
        assert (await commander.inspect("p", tenant="acme")).status is MissionStatus.COMPLETED
        assert (await commander.inspect("p", tenant="beta")).status is MissionStatus.WAITING

    async def test_purge_is_scoped_by_tenant(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """A purge naming a tenant deletes that tenant's finished missions only; without one it
        goes through every tenant."""
        flow = _flow()
        commander = self.commander(persistence, clock, flow)
        for tenant in ("acme", "beta", None):
            handle = await commander.start(flow, {}, id="done", tenant=tenant)
            await handle.signal("pay", 1)
        clock.advance(timedelta(days=1))

        report = await commander.purge(finished_before=clock.now(), tenant="acme")
        assert report.deleted == 1
        assert await commander.list(tenant="acme") == []
        assert [s.id for s in await commander.list(tenant="beta")] == ["done"]
        assert [s.id for s in await commander.list()] == ["done"]
        everything = await commander.purge(finished_before=clock.now())
        assert everything.deleted == 2
        assert await persistence.list_missions(limit=10) == []

    async def test_errors_about_a_tenants_mission_name_it_by_the_callers_id(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """A refused cancel, retry or start of a tenant's mission names it by the id its
        caller uses, never by the stored key."""
        flow = _flow()
        other = m.define("other").start(parse=_accept).end()
        commander = self.commander(persistence, clock, flow, other)
        await commander.start(flow, {}, id="p", tenant="acme")
        await commander.cancel("p", tenant="acme")
        refusals: list[Callable[[], Awaitable[object]]] = [
            lambda: commander.cancel("p", tenant="acme"),
            lambda: commander.pause("p", tenant="acme"),
            lambda: commander.start(other, {}, id="p", tenant="acme"),
            lambda: commander.retry("p", from_node="start/x", tenant="acme"),
        ]
        for refusal in refusals:
            with pytest.raises(MissionControlError) as error:
                await refusal()
            assert "'p'" in str(error.value)
            assert "acme::" not in str(error.value)

    async def test_a_misspelt_option_is_refused_before_anything_is_deleted_or_stored(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """purge, create_schedule and iter_missions given an option they do not take (a
        misspelt tenant), and list given an ``after`` that is no id, raise InvalidInputError
        naming it, and delete or store nothing."""
        flow = _flow()
        commander = self.commander(persistence, clock, flow)
        for tenant in ("acme", None):
            handle = await commander.start(flow, {}, id="done", tenant=tenant)
            await handle.signal("pay", 1)
        clock.advance(timedelta(days=1))
        options: dict[str, Any] = {"tenantt": "acme"}
        with pytest.raises(InvalidInputError, match="tenantt"):
            await commander.purge(finished_before=clock.now(), **options)
        assert len(await persistence.list_missions(limit=10)) == 2
        with pytest.raises(InvalidInputError, match="tenantt"):
            commander.iter_missions(**options)
        for tenant in ("acme", None):
            with pytest.raises(InvalidInputError, match="after"):
                await commander.list(after=5, tenant=tenant)  # type: ignore[arg-type]
        if isinstance(persistence, ScheduleStore):
            with pytest.raises(InvalidInputError, match="tenantt"):
                await commander.create_schedule("s", flow, Every(timedelta(hours=1)), {}, **options)
            assert await commander.list_schedules() == []

    async def test_a_bad_tenant_or_an_id_of_a_tenants_form_is_refused_storing_nothing(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """A tenant that is not a valid name, and an id of no tenant of the form
        '<tenant>::<id>', raise InvalidInputError and store nothing."""
        flow = _flow()
        commander = self.commander(persistence, clock, flow)
        for tenant in ("", "a::b", "a/b", " acme", "é", 7, "x" * 129):
            with pytest.raises(InvalidInputError, match="tenant must be"):
                await commander.start(flow, {}, id="m", tenant=tenant)  # type: ignore[arg-type]
            with pytest.raises(InvalidInputError, match="tenant must be"):
                await commander.list(tenant=tenant)  # type: ignore[arg-type]
        with pytest.raises(InvalidInputError, match="kept for tenants"):
            await commander.start(flow, {}, id="acme::m")
        with pytest.raises(InvalidInputError, match="kept for tenants"):
            await commander.signal_with_start(flow, {}, mission_id="acme::m", signal="pay")
        assert await persistence.list_missions(limit=10) == []
        plain = await commander.start(flow, {}, id="urn:x::y")
        assert (await plain.inspect()).tenant is None

    async def test_a_schedule_and_a_trigger_start_missions_in_the_tenant_they_name(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """A schedule created with a tenant starts its missions in that tenant (its record
        naming them by their ids there), a trigger fired with one too, a replay in the fire's
        tenant; ids of a tenant's form are refused for a schedule or a fire of no tenant."""
        if not isinstance(persistence, ScheduleStore) or not isinstance(persistence, TriggerStore):
            pytest.skip("the adapter keeps no schedules or fired triggers")
        flow = _placed()
        commander = self.commander(persistence, clock, flow)
        created = await commander.create_schedule(
            "hourly", flow, Every(timedelta(hours=1)), {"from": "schedule"}, tenant="acme"
        )
        assert (created.id, created.tenant) == ("hourly", "acme")
        again = await commander.create_schedule(
            "hourly", flow, Every(timedelta(hours=1)), {"from": "schedule"}, tenant="acme"
        )
        assert again == created
        with pytest.raises(ScheduleExistsError):
            await commander.create_schedule(
                "hourly", flow, Every(timedelta(hours=2)), {"from": "schedule"}, tenant="acme"
            )
        clock.advance(timedelta(hours=1))
        assert await commander.fire_schedules(10) == 1
        await drain_due(commander)
        fired = await commander.get_schedule("hourly", tenant="acme")
        assert fired.last_mission_id is not None
        started = await commander.inspect(fired.last_mission_id, tenant="acme")
        assert (started.tenant, started.input) == ("acme", {"from": "schedule"})
        assert await commander.list() == []

        fire = await commander.fire_trigger(
            "order.placed", {"from": "trigger"}, id="f-1", tenant="beta"
        )
        assert (fire.id, fire.tenant) == ("f-1", "beta")
        with pytest.raises(TriggerExistsError) as taken:
            await commander.fire_trigger("order.placed", {"other": 1}, id="f-1", tenant="beta")
        assert str(taken.value) == (
            "fire id 'f-1' in tenant 'beta' is taken by another fire (of another trigger, "
            "payload or replayed fire); nothing was started"
        )
        (mission_id,) = fire.missions
        assert (await commander.inspect(mission_id, tenant="beta")).input == {"from": "trigger"}
        replayed = await commander.replay_trigger("f-1", tenant="beta")
        assert (replayed.tenant, replayed.replay_of) == ("beta", "f-1")
        assert len(await commander.list(tenant="beta")) == 2
        assert await commander.list() == []
        with pytest.raises(InvalidInputError, match="kept for tenants"):
            await commander.create_schedule("acme::nightly", flow, Every(timedelta(hours=1)), {})
        with pytest.raises(InvalidInputError, match="kept for tenants"):
            await commander.fire_trigger("order.placed", {}, id="acme:")
        with pytest.raises(InvalidInputError, match="tenant must be"):
            await commander.fire_trigger("order.placed", {}, tenant="no way")

    async def test_schedule_and_fire_ids_are_a_tenants_own(
        self, persistence: PersistenceAdapter, clock: ManualClock
    ) -> None:
        """Schedule and fire ids are unique within a tenant: another tenant, or no tenant, has
        its own schedule or fire of the same id, and every call naming another tenant's (get,
        update, pause, resume, delete, replay) is refused as not found, with the message a
        missing id gets; listings show the caller's tenant's only."""
        if not isinstance(persistence, ScheduleStore) or not isinstance(persistence, TriggerStore):
            pytest.skip("the adapter keeps no schedules or fired triggers")
        flow = _placed()
        commander = self.commander(persistence, clock, flow)
        hourly = Every(timedelta(hours=1))
        for tenant in ("acme", None, "beta"):
            schedule = await commander.create_schedule(
                "nightly", flow, hourly, {"of": tenant}, tenant=tenant
            )
            assert (schedule.id, schedule.tenant) == ("nightly", tenant)
            fire = await commander.fire_trigger(
                "order.placed", {"of": tenant}, id="f", tenant=tenant
            )
            assert (fire.id, fire.tenant) == ("f", tenant)
        await commander.create_schedule("other", flow, hourly, {}, tenant="acme")
        for tenant in ("acme", None, "beta"):
            assert (await commander.get_schedule("nightly", tenant=tenant)).input == {"of": tenant}
            assert (await commander.get_trigger("f", tenant=tenant)).payload == {"of": tenant}
        updated = await commander.update_schedule("nightly", tenant="beta", input={"of": "b2"})
        assert (updated.id, updated.tenant, updated.input) == ("nightly", "beta", {"of": "b2"})
        assert (await commander.get_schedule("nightly", tenant="acme")).input == {"of": "acme"}

        async def refusals(schedule_id: str, fire_id: str) -> list[str]:
            calls: list[Callable[[], Awaitable[object]]] = [
                lambda: commander.get_schedule(schedule_id, tenant="gamma"),
                lambda: commander.update_schedule(schedule_id, tenant="gamma", input={}),
                lambda: commander.pause_schedule(schedule_id, tenant="gamma"),
                lambda: commander.resume_schedule(schedule_id, tenant="gamma"),
                lambda: commander.get_trigger(fire_id, tenant="gamma"),
                lambda: commander.replay_trigger(fire_id, tenant="gamma"),
            ]
            found: list[str] = []
            for call in calls:
                with pytest.raises((ScheduleNotFoundError, TriggerNotFoundError)) as refused:
                    await call()
                found.append(str(refused.value).replace(repr(schedule_id), "ID"))
            return found

        assert await refusals("nightly", "nightly") == await refusals("nope", "nope")
        assert not await commander.delete_schedule("nightly", tenant="gamma")
        assert await commander.delete_schedule("nightly", tenant="beta")
        acme = await commander.list_schedules(tenant="acme")
        assert [s.id for s in acme] == ["nightly", "other"]
        after = await commander.list_schedules(tenant="acme", after_id="nightly")
        assert [s.id for s in after] == ["other"]
        assert [s.id for s in await commander.list_schedules()] == ["nightly"]
        assert await commander.list_schedules(tenant="beta") == []
        listed = await commander.list_triggers(tenant="beta")
        assert [(f.id, f.tenant) for f in listed] == [("f", "beta")]
        assert [f.payload for f in await commander.list_triggers()] == [{"of": None}]
