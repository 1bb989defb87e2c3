"""Testing helpers for Mission Control: the adapter conformance suite, pytest fixtures and
clocks that make timer tests instant."""

from ._conformance import AdapterConformance, approval_definition, drain_due

__all__ = [
    "AdapterConformance",
    "approval_definition",
    "drain_due",
]
