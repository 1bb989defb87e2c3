from datetime import timedelta

import pytest

from mission_control.core import InvalidDefinitionError, m


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
