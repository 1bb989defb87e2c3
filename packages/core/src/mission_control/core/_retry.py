"""Retry policies and backoff schedules: pure functions of the attempt number, so retries are
deterministic under any clock."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import timedelta

import attrs

from ._errors import InvalidDefinitionError

Seconds = float | int | timedelta

MAX_DELAY = timedelta(days=3650)
"""The longest delay any backoff gives and the longest sleep or timeout a definition takes (ten
years), so that due times stay representable."""
_BACKOFF_RANGE = timedelta.max
"""Backoff settings may be longer than MAX_DELAY (the delays they give are capped at it)."""


def to_timedelta(value: Seconds, *, what: str, at_most: timedelta = MAX_DELAY) -> timedelta:
    """Read a duration given as seconds or a ``timedelta``: from zero to ``at_most`` (by default
    :data:`MAX_DELAY`, so that every due time computed from it is representable)."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidDefinitionError(f"{what} must be seconds or a timedelta, got {value!r}")
    else:
        seconds = value
    if math.isnan(seconds):
        raise InvalidDefinitionError(f"{what} must be a number of seconds, got {value!r}")
    if seconds < 0:
        raise InvalidDefinitionError(f"{what} must not be negative, got {value!r}")
    if seconds > at_most.total_seconds():
        limit = f"MAX_DELAY ({MAX_DELAY.days} days)" if at_most == MAX_DELAY else str(at_most)
        raise InvalidDefinitionError(f"{what} must be at most {limit}, got {value!r}")
    if isinstance(value, timedelta):
        return value
    try:
        return timedelta(seconds=value)
    except OverflowError:
        # The float comparison above rounds: a number of seconds at the very top of the range
        # passes it and still overflows timedelta.
        raise InvalidDefinitionError(f"{what} is too long for a timedelta, got {value!r}") from None


def _optional_cap(value: Seconds | None) -> timedelta | None:
    return (
        None if value is None else to_timedelta(value, what="backoff cap", at_most=_BACKOFF_RANGE)
    )


@attrs.frozen
class Backoff:
    """How long to wait before attempt ``n + 1`` after attempt ``n`` failed.

    Build one with :func:`fixed`, :func:`linear`, :func:`exponential` or :func:`custom_backoff`.
    """

    kind: str
    initial: timedelta
    step: timedelta = timedelta(0)
    factor: float = 1.0
    cap: timedelta | None = None
    function: Callable[[int], Seconds] | None = attrs.field(default=None, eq=False)

    def delay(self, failed_attempt: int) -> timedelta:
        """The delay after the ``failed_attempt``-th attempt (1-based) failed, never more than
        the cap, nor more than :data:`MAX_DELAY`."""
        n = max(failed_attempt, 1)
        limit = MAX_DELAY if self.cap is None else min(self.cap, MAX_DELAY)
        if self.kind == "custom":
            assert self.function is not None
            result = self.function(n)
            # Past MAX_DELAY (infinity included) is the cap's business, not an error.
            if isinstance(result, timedelta) and result > limit:
                return limit
            if (
                isinstance(result, int | float)
                and not isinstance(result, bool)
                and result > limit.total_seconds()
            ):
                return limit
            return min(
                to_timedelta(result, what="custom backoff result", at_most=_BACKOFF_RANGE), limit
            )
        # Computed in float seconds so that large attempt numbers reach the limit instead of
        # overflowing timedelta.
        initial = self.initial.total_seconds()
        if self.kind == "exponential":
            try:
                seconds = initial * self.factor ** (n - 1)
            except OverflowError:
                seconds = math.inf
        elif self.kind == "linear":
            seconds = initial + self.step.total_seconds() * (n - 1)
        else:
            seconds = initial
        return timedelta(seconds=min(seconds, limit.total_seconds()))


def fixed(delay: Seconds) -> Backoff:
    """The same delay before every retry."""
    return Backoff(
        kind="fixed",
        initial=to_timedelta(delay, what="fixed backoff delay", at_most=_BACKOFF_RANGE),
    )


def linear(initial: Seconds, step: Seconds | None = None, *, cap: Seconds | None = None) -> Backoff:
    """``initial``, then ``initial + step``, ``initial + 2*step``, … (``step`` defaults to
    ``initial``), never more than ``cap``."""
    first = to_timedelta(initial, what="linear backoff initial delay", at_most=_BACKOFF_RANGE)
    increment = (
        first
        if step is None
        else to_timedelta(step, what="linear backoff step", at_most=_BACKOFF_RANGE)
    )
    return Backoff(kind="linear", initial=first, step=increment, cap=_optional_cap(cap))


def exponential(
    initial: Seconds = 1.0, *, factor: float = 2.0, cap: Seconds | None = None
) -> Backoff:
    """``initial``, then multiplied by ``factor`` after each failure, never more than ``cap``."""
    number = math.nan
    if isinstance(factor, int | float) and not isinstance(factor, bool):
        try:
            number = float(factor)
        except OverflowError:
            number = math.inf
    if not (math.isfinite(number) and number >= 1):
        raise InvalidDefinitionError(
            f"exponential backoff factor must be a finite number >= 1, got {factor!r}"
        )
    return Backoff(
        kind="exponential",
        initial=to_timedelta(
            initial, what="exponential backoff initial delay", at_most=_BACKOFF_RANGE
        ),
        factor=number,
        cap=_optional_cap(cap),
    )


def custom_backoff(function: Callable[[int], Seconds], *, cap: Seconds | None = None) -> Backoff:
    """Delays computed by ``function(failed_attempt)`` (1-based), never more than ``cap``.

    The function must be deterministic: it is called again when a mission is resumed.
    """
    if not callable(function):
        raise InvalidDefinitionError(f"custom backoff needs a callable, got {function!r}")
    return Backoff(kind="custom", initial=timedelta(0), cap=_optional_cap(cap), function=function)


def _exception_types(
    value: type[BaseException] | tuple[type[BaseException], ...], *, what: str
) -> tuple[type[BaseException], ...]:
    types = value if isinstance(value, tuple) else (value,)
    for item in types:
        if not (isinstance(item, type) and issubclass(item, BaseException)):
            raise InvalidDefinitionError(f"{what} must hold exception classes, got {item!r}")
    return types


@attrs.frozen
class RetryPolicy:
    """How a failing step is retried.

    ``max_attempts`` counts the first attempt, so ``max_attempts=1`` means no retry. An error
    that is an instance of ``fail_on`` fails the mission at once; otherwise it is retried when it
    is an instance of ``retry_on`` and attempts remain.
    """

    max_attempts: int = 3
    backoff: Backoff = attrs.field(factory=lambda: exponential(1.0, cap=300.0))
    retry_on: tuple[type[BaseException], ...] = (Exception,)
    fail_on: tuple[type[BaseException], ...] = ()

    def __attrs_post_init__(self) -> None:
        attempts = self.max_attempts
        if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
            raise InvalidDefinitionError(
                f"retry max_attempts must be a whole number >= 1, got {attempts!r}"
            )
        if not isinstance(self.backoff, Backoff):
            raise InvalidDefinitionError(f"retry backoff must be a Backoff, got {self.backoff!r}")

    def should_retry(self, error: BaseException, attempt: int) -> bool:
        """Whether the ``attempt``-th attempt (1-based), which raised ``error``, is retried."""
        if attempt >= self.max_attempts or isinstance(error, self.fail_on):
            return False
        return isinstance(error, self.retry_on)


NO_RETRY = RetryPolicy(max_attempts=1)


def retry(
    max_attempts: int = 3,
    backoff: Backoff | None = None,
    *,
    retry_on: type[BaseException] | tuple[type[BaseException], ...] = Exception,
    fail_on: type[BaseException] | tuple[type[BaseException], ...] = (),
) -> RetryPolicy:
    """Build a :class:`RetryPolicy`; see its documentation for the meaning of each argument."""
    return RetryPolicy(
        max_attempts=max_attempts,
        backoff=backoff if backoff is not None else exponential(1.0, cap=300.0),
        retry_on=_exception_types(retry_on, what="retry_on"),
        fail_on=_exception_types(fail_on, what="fail_on"),
    )
