"""``m``: the short namespace missions are written with (``m.define(...)``, ``m.retry(...)``)."""

from __future__ import annotations

from ._definition import define
from ._keys import key
from ._retry import custom_backoff, exponential, fixed, linear, retry


class _MissionDSL:
    """The entry points of the mission DSL, gathered under one short name."""

    define = staticmethod(define)
    key = staticmethod(key)
    retry = staticmethod(retry)
    fixed = staticmethod(fixed)
    linear = staticmethod(linear)
    exponential = staticmethod(exponential)
    custom_backoff = staticmethod(custom_backoff)


m = _MissionDSL()
