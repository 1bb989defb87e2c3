"""Failed attempts and failed missions are logged, and a stored error says where it was raised."""

import logging
import re
from typing import Any

import pytest

from mission_control.core import CompensationRequested, Context, ErrorInfo, MissionStatus, m
from mission_control.core._snapshot import TRACEBACK_CHARS, TRACEBACK_FRAMES
from mission_control.in_memory_commander import ManualClock, create_in_memory_commander

pytestmark = pytest.mark.anyio


def accept(value: Any) -> Any:
    return value


def connect(host: str) -> None:
    raise ConnectionError(f"{host} unreachable")


async def call(ctx: Context[Any, Any]) -> None:
    connect("mail.example.com")


flow = m.define("mail").start(parse=accept).step("call", call, retry=m.retry(2, m.fixed(5))).end()


def records(caplog: pytest.LogCaptureFixture, name: str) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == name]


async def test_each_failed_attempt_is_a_warning_with_its_traceback_and_what_follows(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A failed attempt logs a WARNING on mission_control.steps naming the step, the attempt,
    the retry to come (or none) and carrying the exception."""
    caplog.set_level(logging.DEBUG)
    clock = ManualClock()
    async with create_in_memory_commander([flow], clock=clock) as commander:
        mission = await commander.start(flow, {})
        clock.advance(5)
        await commander.advance(mission.id)

    first, second = records(caplog, "mission_control.steps")
    assert first.levelno == second.levelno == logging.WARNING
    assert first.getMessage() == (
        "step 'call' of mission 'mission-000001' failed on attempt 1 of 2: "
        "retry at 2030-01-01T00:00:05+00:00"
    )
    assert second.getMessage().endswith("failed on attempt 2 of 2: not retried")
    assert first.exc_info is not None
    assert isinstance(first.exc_info[1], ConnectionError)
    assert "in connect" in caplog.text


async def test_a_failed_mission_is_an_error_with_where_it_failed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A mission that fails logs one ERROR on mission_control.missions with its error and the
    stored traceback; inspect() shows the same traceback."""
    caplog.set_level(logging.DEBUG)
    once = m.define("once").start(parse=accept).step("call", call).end()
    async with create_in_memory_commander([once]) as commander:
        mission = await commander.start(once, {})
        snapshot = await mission.inspect()

    assert snapshot.status is MissionStatus.FAILED
    assert snapshot.error is not None
    traceback = snapshot.error.traceback
    assert traceback is not None
    assert "in call" in traceback
    assert "in connect" in traceback
    assert traceback.endswith("ConnectionError: mail.example.com unreachable\n")
    assert snapshot.nodes["call"].error == snapshot.error

    (failure,) = records(caplog, "mission_control.missions")
    assert failure.levelno == logging.ERROR
    assert failure.getMessage() == (
        "mission 'mission-000001' (once) failed at 'call': "
        f"ConnectionError: mail.example.com unreachable\n{traceback.rstrip()}"
    )


async def test_a_mission_that_does_not_fail_logs_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Steps that succeed leave no record on either logger."""
    caplog.set_level(logging.DEBUG)
    fine = m.define("fine").start(parse=accept).step("ok", lambda ctx: 1).end()
    async with create_in_memory_commander([fine]) as commander:
        await (await commander.start(fine, {})).wait_for_completion()
    assert records(caplog, "mission_control.steps") == []
    assert records(caplog, "mission_control.missions") == []


def test_the_stored_traceback_keeps_the_innermost_frames_within_its_bound() -> None:
    """A deep traceback keeps only its innermost TRACEBACK_FRAMES frames, a long one its last
    TRACEBACK_CHARS characters, and an exception never raised has none."""

    def dive(depth: int, message: str) -> None:
        if depth == 0:
            raise ValueError(message)
        dive(depth - 1, message)

    def raised(message: str) -> str:
        try:
            dive(50, message)
        except ValueError as error:
            traceback = ErrorInfo.from_exception(error, 1).traceback
            assert traceback is not None
            return traceback
        raise AssertionError("unreachable")

    deep = raised("short")
    # Recursion is printed as a few frames and "[Previous line repeated N more times]".
    repeated = sum(int(n) for n in re.findall(r"repeated (\d+) more time", deep))
    assert deep.count('File "') + repeated == TRACEBACK_FRAMES
    assert deep.endswith("in dive\n    raise ValueError(message)\nValueError: short\n")
    long = raised("x" * 2 * TRACEBACK_CHARS)
    assert len(long) == TRACEBACK_CHARS
    assert long.startswith("...")
    assert long.endswith("x" * 100 + "\n")
    assert ErrorInfo.from_exception(ValueError("never raised")).traceback is None


def test_a_lone_surrogate_in_a_traceback_is_escaped() -> None:
    """The stored traceback is always valid UTF-8, whatever the exception's message holds."""
    try:
        connect("bad \udce9")
    except ConnectionError as error:
        info = ErrorInfo.from_exception(error)
    assert info.traceback is not None
    info.traceback.encode("utf-8")
    assert "\\udce9" in info.traceback


async def test_a_requested_compensation_is_logged_as_information_without_a_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A function raising CompensationRequested logs one INFO line for the step and one for
    the mission, naming the reason, with no traceback and nothing at WARNING or above."""

    def undo(ctx: Context[Any, Any], output: Any) -> None:
        return None

    def confirm(ctx: Context[Any, Any]) -> None:
        raise CompensationRequested("the guest declined")

    booking = (
        m.define("booking")
        .start(parse=accept)
        .step("reserve", lambda ctx: "R-1", compensate=undo)
        .step("confirm", confirm)
        .end()
    )
    caplog.set_level(logging.DEBUG)
    async with create_in_memory_commander([booking]) as commander:
        mission = await commander.start(booking, {})
        assert (await mission.inspect()).status is MissionStatus.COMPENSATED

    (step,) = records(caplog, "mission_control.steps")
    (ended,) = records(caplog, "mission_control.missions")
    assert step.levelno == ended.levelno == logging.INFO
    assert step.getMessage() == (
        "step 'confirm' of mission 'mission-000001' asked for compensation: the guest declined"
    )
    assert ended.getMessage() == (
        "mission 'mission-000001' (booking) asked at 'confirm' for compensation and was "
        "compensated: the guest declined"
    )
    assert step.exc_info is None
    assert "Traceback" not in caplog.text
