from datetime import timedelta

import pytest

from mission_control.core import MAX_DELAY, InvalidDefinitionError, m


def seconds(values: list[timedelta]) -> list[float]:
    return [v.total_seconds() for v in values]


def test_exponential_backoff_multiplies_and_caps() -> None:
    """Exponential delays grow by the factor after each failure and never pass the cap."""
    backoff = m.exponential(1, factor=3, cap=20)
    assert seconds([backoff.delay(n) for n in range(1, 6)]) == [1, 3, 9, 20, 20]


def test_exponential_backoff_survives_huge_attempt_numbers() -> None:
    """A very large attempt number gives the cap instead of overflowing."""
    assert m.exponential(1, cap=60).delay(10_000) == timedelta(seconds=60)


def test_linear_and_fixed_backoff() -> None:
    """Linear delays add the step each time up to the cap; fixed delays never change."""
    assert seconds([m.linear(2, 3, cap=9).delay(n) for n in range(1, 5)]) == [2, 5, 8, 9]
    assert seconds([m.linear(2).delay(n) for n in range(1, 4)]) == [2, 4, 6]
    assert seconds([m.fixed(timedelta(minutes=1)).delay(n) for n in (1, 7)]) == [60, 60]


def test_custom_backoff_is_called_with_the_failed_attempt_and_capped() -> None:
    """A custom backoff function decides each delay; the cap still applies."""
    backoff = m.custom_backoff(lambda attempt: attempt * 10, cap=25)
    assert seconds([backoff.delay(n) for n in (1, 2, 3)]) == [10, 20, 25]
    with pytest.raises(InvalidDefinitionError, match="custom backoff result"):
        m.custom_backoff(lambda attempt: -1).delay(1)


def test_retry_on_and_fail_on_decide_which_errors_retry() -> None:
    """fail_on errors never retry; only retry_on errors retry, while attempts remain."""
    policy = m.retry(3, retry_on=(TimeoutError, ConnectionError), fail_on=ConnectionRefusedError)
    assert policy.should_retry(TimeoutError(), 1)
    assert policy.should_retry(ConnectionResetError(), 2)
    assert not policy.should_retry(TimeoutError(), 3)
    assert not policy.should_retry(ConnectionRefusedError(), 1)
    assert not policy.should_retry(ValueError(), 1)


_BAD_SECONDS = [
    pytest.param(float("nan"), id="nan"),
    pytest.param(float("inf"), id="inf"),
    pytest.param(-1, id="negative"),
    pytest.param(10**20, id="beyond timedelta"),
    # Equal to timedelta.max in a float comparison, yet past what timedelta can hold.
    pytest.param(timedelta.max.total_seconds(), id="timedelta.max in seconds"),
]


@pytest.mark.parametrize("value", _BAD_SECONDS)
def test_definitions_refuse_durations_and_backoffs_out_of_range(value: float) -> None:
    """NaN, infinite, negative and unrepresentable durations raise InvalidDefinitionError
    wherever a definition takes one, as do backoff factors that are not finite numbers >= 1."""
    start = m.define("d").start(parse=dict)
    makers = [
        lambda: start.sleep("s", value),
        lambda: start.step("s", lambda ctx: None, timeout=value),
        lambda: m.fixed(value),
        lambda: m.linear(value),
        lambda: m.linear(1, value),
        lambda: m.exponential(value),
        lambda: m.exponential(1, cap=value),
        lambda: m.custom_backoff(lambda n: 1, cap=value),
    ]
    for make in makers:
        with pytest.raises(InvalidDefinitionError):
            make()
    for factor in (float("nan"), float("inf"), 10**400, 0.5):
        with pytest.raises(InvalidDefinitionError, match="factor"):
            m.exponential(1, factor=factor)


def test_sleeps_and_timeouts_longer_than_max_delay_are_refused() -> None:
    """A sleep or step timeout longer than MAX_DELAY is refused (a due time past it may not be
    representable); MAX_DELAY itself is accepted."""
    start = m.define("d").start(parse=dict)
    start.sleep("ok", MAX_DELAY)
    with pytest.raises(InvalidDefinitionError, match="MAX_DELAY"):
        start.sleep("s", MAX_DELAY + timedelta(seconds=1))
    with pytest.raises(InvalidDefinitionError, match="MAX_DELAY"):
        start.step("s", lambda ctx: None, timeout=MAX_DELAY.total_seconds() + 1)


@pytest.mark.parametrize(
    "result", [1e20, float("inf"), 10**30, timedelta.max], ids=["1e20", "inf", "10**30", "max"]
)
def test_a_custom_backoff_delay_is_capped_at_max_delay(result: float | timedelta) -> None:
    """A custom backoff returning more than MAX_DELAY (however large) waits MAX_DELAY."""
    assert m.custom_backoff(lambda n: result).delay(1) == MAX_DELAY
    assert m.custom_backoff(lambda n: result, cap=60).delay(1) == timedelta(seconds=60)
