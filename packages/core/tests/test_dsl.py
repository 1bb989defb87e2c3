from datetime import datetime, timedelta
from typing import Any

import pytest

from mission_control.core import (
    InvalidDefinitionError,
    MissionDefinition,
    NodeDescription,
    RetryPolicy,
    m,
)

pytestmark = pytest.mark.anyio


def identity(value: Any) -> Any:
    return value


async def noop(ctx: Any) -> None:
    return None


def test_builder_makes_an_ordered_immutable_definition() -> None:
    """Each builder call returns a new builder, so a shared prefix can grow two definitions."""
    base = m.define("flow", version=2).start(parse=identity).step("a", noop)
    first = base.step("b", noop).end()
    second = base.need_to("c", parse=identity).end()
    assert isinstance(first, MissionDefinition)
    assert [n.name for n in first.nodes] == ["start", "a", "b", "end"]
    assert [n.name for n in second.nodes] == ["start", "a", "c", "end"]
    assert first.version == 2
    assert first.next_node("a") is first.node("b")
    assert first.next_node("end") is None


def test_every_node_kind_is_described_statically() -> None:
    """describe() lists every node with its kind, successor and policy."""
    flow = (
        m.define("flow")
        .start(parse=identity)
        .step("call", noop, retry=m.retry(4, m.fixed(1)), timeout=2.5)
        .need_to("approve", parse=identity)
        .sleep("pause", timedelta(minutes=1))
        .sleep_until("later", lambda ctx: ctx.now)
        .end()
    )
    described = flow.describe()
    assert described.name == "flow"
    assert described.nodes == (
        NodeDescription("start", "start", "call", path="start"),
        NodeDescription(
            "call", "step", "approve", max_attempts=4, timeout_seconds=2.5, path="call"
        ),
        NodeDescription("approve", "need_to", "pause", signal="approve", path="approve"),
        NodeDescription("pause", "sleep", "later", sleep_seconds=60.0, path="pause"),
        NodeDescription("later", "sleep", "end", path="later"),
        NodeDescription("end", "end", None, path="end"),
    )


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (
            lambda: m.define("x").start(parse=identity).step("a", noop).step("a", noop),
            "two nodes named 'a'",
        ),
        (lambda: m.define("x").end(), "has no start"),
        (lambda: m.define("x").step("a", noop), "has no start"),
        (lambda: m.define("x").start(parse=identity).need_to("approve"), "needs a parse function"),
        (lambda: m.define("x").start(parse=identity).step("", noop), "non-empty string"),
        (lambda: m.define("x").start(parse=identity).step("a/b", noop), "must not contain '/'"),
        (lambda: m.define("x").start(parse=identity).step("a", "not callable"), "must be callable"),
        (
            lambda: m.define("x").start(parse=identity).step("a", noop, timeout=0),
            "must be positive",
        ),
        (lambda: m.define("x").start(parse=identity).step("a", noop, retry="3"), "retry must be"),
        (lambda: m.define("x").start(parse=identity).sleep("p", -1), "must not be negative"),
        (lambda: m.define("x").start(parse=identity).sleep("p", "soon"), "seconds or a timedelta"),
        (
            lambda: m.define("x").start(parse=identity).sleep_until("p", datetime(2030, 1, 1)),
            "timezone-aware",
        ),
        (
            lambda: m.define("x").start(parse=identity).step("start", noop),
            "two nodes named 'start'",
        ),
        (lambda: m.define(""), "non-empty string"),
        (lambda: m.define("x", version=0), "version must be"),
        (lambda: m.retry(0), "max_attempts"),
        (lambda: m.retry(3, retry_on=(ValueError, "nope")), "exception classes"),
        (lambda: m.exponential(1, factor=0.5), "factor"),
    ],
)
def test_invalid_definitions_fail_at_build_time_with_a_clear_message(
    build: Any, message: str
) -> None:
    """Malformed definitions raise InvalidDefinitionError naming what is wrong."""
    with pytest.raises(InvalidDefinitionError, match=message):
        build()


def test_retry_given_as_a_number_is_that_many_attempts() -> None:
    """retry=3 means three attempts with the default backoff; no retry means one attempt."""
    flow = m.define("x").start(parse=identity).step("a", noop, retry=3).step("b", noop).end()
    a, b = flow.node("a"), flow.node("b")
    assert isinstance(a.retry, RetryPolicy)  # type: ignore[union-attr]
    assert a.retry.max_attempts == 3  # type: ignore[union-attr]
    assert b.retry.max_attempts == 1  # type: ignore[union-attr]


def test_control_flow_nodes_are_described_with_their_branches_and_paths() -> None:
    """describe() lists a parallel's branches, a choice's paths, a need_to's timeout path and
    the deadline path, each node with its path."""
    flow = (
        m.define("shape")
        .start(parse=identity)
        .parallel(
            "checks",
            {"a": lambda b: b.step("check-a", noop), "b": lambda b: b.sleep("nap", 5)},
            mode="first",
        )
        .choice("route", lambda ctx: "x", {"x": lambda p: p.step("go-x", noop), "y": lambda p: p})
        .need_to("reply", parse=identity, timeout=60, on_timeout=lambda p: p.step("nudge", noop))
        .deadline(timedelta(days=1), on_deadline=lambda p: p.step("expire", noop))
        .end()
    )
    described = flow.describe()
    checks, route, reply = described.nodes[1:4]
    assert checks == NodeDescription(
        "checks",
        "parallel",
        "route",
        path="checks",
        mode="first",
        branches=(
            (
                "a",
                (
                    NodeDescription(
                        "check-a", "step", None, max_attempts=1, path="checks/a/check-a"
                    ),
                ),
            ),
            ("b", (NodeDescription("nap", "sleep", None, sleep_seconds=5.0, path="checks/b/nap"),)),
        ),
    )
    assert [name for name, _ in route.branches] == ["x", "y"]
    assert route.branches[0][1][0].path == "route/x/go-x"
    assert route.branches[1][1] == ()
    assert reply.timeout_seconds == 60.0
    assert reply.branches[0][1][0].path == "reply/timeout/nudge"
    assert described.deadline_seconds == 86400.0
    assert [n.path for n in described.on_deadline] == ["end/deadline/expire"]


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (
            lambda: (
                m.define("f")
                .start(parse=identity)
                .step("same", noop)
                .parallel("p", {"a": lambda b: b.step("same", noop)})
                .end()
            ),
            "two nodes named 'same'",
        ),
        (
            lambda: m.define("f").start(parse=identity).parallel("p", {}).end(),
            "parallel 'p' needs a mapping",
        ),
        (
            lambda: (
                m.define("f")
                .start(parse=identity)
                .parallel("p", {"a": lambda b: b}, mode="some")
                .end()
            ),
            "mode must be 'all' or 'first'",
        ),
        (
            lambda: m.define("f").start(parse=identity).parallel("p", {"a/b": lambda b: b}).end(),
            "must not contain '/'",
        ),
        (
            lambda: m.define("f").start(parse=identity).parallel("p", {"a": lambda b: None}).end(),
            "must return the builder it was given",
        ),
        (
            lambda: (
                m.define("f")
                .start(parse=identity)
                .need_to("n", parse=identity, on_timeout=lambda p: p)
                .end()
            ),
            "on_timeout but no timeout",
        ),
        (
            lambda: (
                m.define("f").start(parse=identity).need_to("n", parse=identity, timeout=0).end()
            ),
            "timeout must be positive",
        ),
        (
            lambda: m.define("f").start(parse=identity).choice("c", "x", {"x": lambda p: p}).end(),
            "choose must be callable",
        ),
        (
            lambda: m.define("f").start(parse=identity).deadline(0).end(),
            "deadline must be positive",
        ),
    ],
)
def test_malformed_control_flow_is_refused_when_built(build: Any, message: str) -> None:
    """A control-flow node built wrong raises InvalidDefinitionError saying what is wrong."""
    with pytest.raises(InvalidDefinitionError, match=message):
        build()
