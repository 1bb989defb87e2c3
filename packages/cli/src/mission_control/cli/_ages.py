"""Ages on the command line: ``90s``, ``15m``, ``2h``, ``3d``, ``1w``."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import TYPE_CHECKING

import click

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_AGE = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
MAX_AGE = timedelta(days=365_000)
"""The largest age taken (about 1,000 years): counted back from now, it stays a date."""


def parse_age(text: str) -> timedelta:
    """``text`` as a duration; raises ``ValueError`` saying what an age looks like."""
    match = _AGE.fullmatch(text.strip().lower())
    if match is None:
        raise ValueError(
            f"{text!r} is not an age: write a number and a unit, s (seconds), m (minutes), "
            "h (hours), d (days) or w (weeks), e.g. 90s, 2h, 3d"
        )
    seconds = float(match[1]) * _UNITS[match[2]]
    if seconds > MAX_AGE.total_seconds():
        raise ValueError(
            f"{text!r} is too large an age: at most {MAX_AGE.days}d (about 1,000 years)"
        )
    return timedelta(seconds=seconds)


if TYPE_CHECKING:
    _ParamType = click.ParamType[timedelta]
else:  # an older click has no type parameter at run time
    _ParamType = click.ParamType


class Age(_ParamType):
    """A click parameter holding an age (a ``timedelta``)."""

    name = "age"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> timedelta:
        if isinstance(value, timedelta):
            return value
        try:
            return parse_age(str(value))
        except ValueError as error:
            self.fail(str(error), param, ctx)


def format_age(age: timedelta) -> str:
    """``age`` the way a person reads it: its two largest units (``3d 4h``, ``12m 5s``)."""
    seconds = int(age.total_seconds())
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size or (unit == "s" and not parts):
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
        if len(parts) == 2:
            break
    return sign + " ".join(parts)
