"""Runtime hooks that remember what they were given, for assertions in tests."""

from __future__ import annotations

from collections.abc import Mapping

import attrs


@attrs.frozen
class LoggedEvent:
    """One event a runtime logged."""

    event: str
    fields: Mapping[str, object]
    error: BaseException | None = None


@attrs.frozen
class Measurement:
    """One value a runtime recorded."""

    kind: str
    """``count`` or ``observe``."""
    name: str
    value: float
    attributes: Mapping[str, str]


class RecordingLogger:
    """A runtime logger hook that keeps every event, in order."""

    def __init__(self) -> None:
        self.records: list[LoggedEvent] = []

    def log(
        self, event: str, fields: Mapping[str, object], *, error: BaseException | None = None
    ) -> None:
        self.records.append(LoggedEvent(event, dict(fields), error))

    @property
    def events(self) -> list[str]:
        """The event names, in the order they were logged."""
        return [record.event for record in self.records]

    def of(self, event: str) -> list[LoggedEvent]:
        """The records of one event."""
        return [record for record in self.records if record.event == event]

    def clear(self) -> None:
        self.records.clear()


class RecordingMetrics:
    """A runtime metrics hook that keeps every measurement, in order."""

    def __init__(self) -> None:
        self.measurements: list[Measurement] = []

    def count(self, name: str, value: int, attributes: Mapping[str, str]) -> None:
        self.measurements.append(Measurement("count", name, value, dict(attributes)))

    def observe(self, name: str, value: float, attributes: Mapping[str, str]) -> None:
        self.measurements.append(Measurement("observe", name, value, dict(attributes)))

    def total(self, name: str, **attributes: str) -> float:
        """The sum of the counts recorded as ``name`` whose attributes include ``attributes``."""
        return sum(
            m.value
            for m in self.measurements
            if m.kind == "count"
            and m.name == name
            and all(m.attributes.get(k) == v for k, v in attributes.items())
        )

    def observations(self, name: str, **attributes: str) -> list[float]:
        """The values observed as ``name`` whose attributes include ``attributes``."""
        return [
            m.value
            for m in self.measurements
            if m.kind == "observe"
            and m.name == name
            and all(m.attributes.get(k) == v for k, v in attributes.items())
        ]

    def clear(self) -> None:
        self.measurements.clear()
