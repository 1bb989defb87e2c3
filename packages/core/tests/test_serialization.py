import enum
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
import pytest

from mission_control.core import (
    CancelRequest,
    ErrorInfo,
    MissionSnapshot,
    MissionStatus,
    NodeRecord,
    NodeStatus,
    OutputNotSerializableError,
    TimelineEntry,
    TimelineKind,
    Wait,
    WaitKind,
    to_json_value,
)
from mission_control.core._serialization import _codec  # pyright: ignore[reportPrivateUsage]
from mission_control.core.storage import (
    snapshot_from_json,
    snapshot_to_dict,
    snapshot_to_json,
    timeline_entry_from_json,
    timeline_entry_to_json,
)

T0 = datetime(2030, 1, 1, tzinfo=UTC)


class Colour(enum.Enum):
    RED = "red"


@attrs.frozen
class Receipt:
    amount: int
    at: datetime
    colour: Colour


def test_to_json_value_converts_attrs_enums_datetimes_and_tuples() -> None:
    """Structured values become plain JSON values through the converter."""
    value = {"receipt": Receipt(5, T0, Colour.RED), "items": (1, 2.5, None, True)}
    assert to_json_value(value) == {
        "receipt": {"amount": 5, "at": "2030-01-01T00:00:00+00:00", "colour": "red"},
        "items": [1, 2.5, None, True],
    }


@pytest.mark.parametrize(
    ("value", "where"),
    [
        ({"a": [1, object()]}, r"output\['a'\]\[1\]"),
        ({1: "x"}, "JSON keys are strings"),
        (float("nan"), "JSON cannot hold"),
        ({"s": 1j}, r"output\['s'\]"),
    ],
)
def test_values_json_cannot_hold_are_rejected_naming_where(value: object, where: str) -> None:
    """A value with no JSON form raises OutputNotSerializableError pointing inside it."""
    with pytest.raises(OutputNotSerializableError, match=where):
        to_json_value(value, what="output")


def test_snapshot_round_trips_through_json() -> None:
    """Every field of a snapshot survives JSON and back, and the JSON is plain text."""
    snapshot = MissionSnapshot(
        id="m-1",
        definition="flow",
        definition_version=3,
        status=MissionStatus.WAITING,
        current_node="call",
        input={"email": "a@example.com"},
        created_at=T0,
        updated_at=T0 + timedelta(seconds=1),
        nodes={
            "start": NodeRecord("start", "start", NodeStatus.COMPLETED, 1, output=[1, "x"]),
            "call": NodeRecord(
                "call",
                "step",
                NodeStatus.WAITING,
                2,
                error=ErrorInfo("Boom", "bad", 2, "Traceback ...\nBoom: bad\n"),
                due_at=T0 + timedelta(hours=1),
            ),
        },
        wait=Wait(WaitKind.RETRY, "call", due_at=T0 + timedelta(hours=1)),
        cancel_request=CancelRequest(T0, "why"),
        revision=7,
        recovery_attempts=2,
    )
    text = snapshot_to_json(snapshot)
    assert '"status":"waiting"' in text
    assert snapshot_from_json(text) == snapshot
    assert json.loads(text) == snapshot_to_dict(snapshot)
    # Encoded again (from each record's kept text), the document is the same.
    assert snapshot_to_json(snapshot) == text
    entry = TimelineEntry(T0, TimelineKind.RETRY_SCHEDULED, "call", 2, {"due_at": "x"})
    assert timeline_entry_from_json(timeline_entry_to_json(entry)) == entry


def test_a_loaded_snapshot_encodes_to_the_text_it_was_read_from() -> None:
    """Records read from JSON are written back as the same text, and a record replaced after
    the load is written from its new value."""
    record = NodeRecord(
        "call",
        "step",
        NodeStatus.WAITING,
        2,
        input={"a": [1, 2.5]},
        error=ErrorInfo("Boom", "bad", 2),
        started_at=T0,
        due_at=T0 + timedelta(minutes=5),
    )
    original = MissionSnapshot(
        "m",
        "flow",
        1,
        MissionStatus.WAITING,
        "call",
        {"i": 1},
        T0,
        T0,
        {
            "start": NodeRecord("start", "start", NodeStatus.COMPLETED, 1, output="ok"),
            "call": record,
        },
        Wait(WaitKind.RETRY, "call", due_at=T0 + timedelta(minutes=5)),
    )
    text = snapshot_to_json(original)
    loaded = snapshot_from_json(text)
    assert snapshot_to_json(loaded) == text
    assert snapshot_to_json(snapshot_from_json(text)) == text
    done = attrs.evolve(
        loaded,
        nodes={**loaded.nodes, "call": attrs.evolve(record, status=NodeStatus.COMPLETED)},
        revision=1,
    )
    assert json.loads(snapshot_to_json(done)) == snapshot_to_dict(done)
    assert json.loads(snapshot_to_json(done))["nodes"]["call"]["status"] == "completed"


def test_hand_written_record_and_entry_forms_match_the_generic_converter() -> None:
    """The fast unstructure hooks give exactly what a plain cattrs converter would."""
    from cattrs.preconf.json import make_converter

    converter = _codec
    generic = make_converter()
    record = NodeRecord(
        "call",
        "step",
        NodeStatus.FAILED,
        3,
        input={"a": 1},
        output=[1],
        error=ErrorInfo("Boom", "bad", 3, "Traceback ...\nBoom: bad\n"),
        started_at=T0,
        finished_at=T0,
        due_at=T0,
    )
    entry = TimelineEntry(T0, TimelineKind.STEP_FAILED, "call", 3, {"type": "Boom"})
    assert converter.unstructure(record) == generic.unstructure(record)
    assert converter.unstructure(entry) == generic.unstructure(entry)
    assert converter.structure(generic.unstructure(record), NodeRecord) == record
    snapshot = MissionSnapshot(
        "m",
        "flow",
        2,
        MissionStatus.WAITING,
        "call",
        {"i": [1]},
        T0,
        T0,
        {"call": record},
        Wait(WaitKind.SIGNAL, "call", signal="go"),
        None,
        ErrorInfo("Boom", "bad", 1),
        CancelRequest(T0, None),
        4,
        3,
    )
    data = generic.unstructure(snapshot)
    assert data["recovery_attempts"] == 3
    assert data["nodes"]["call"]["error"]["traceback"] == "Traceback ...\nBoom: bad\n"
    assert converter.structure(data, MissionSnapshot) == generic.structure(data, MissionSnapshot)
    assert json.loads(snapshot_to_json(snapshot)) == data


@pytest.mark.parametrize(
    "damage",
    [
        lambda d: d.pop("id"),
        lambda d: d.update(status="sleeping"),
        lambda d: d.update(created_at="yesterday"),
        lambda d: d["nodes"]["start"].update(attempts="many"),
        lambda d: d.update(wait={"kind": "signal"}),
    ],
)
def test_damaged_snapshot_documents_are_refused(damage: Any) -> None:
    """A stored snapshot with a missing or mistyped field raises instead of loading."""
    data = snapshot_to_dict(
        MissionSnapshot(
            "m",
            "flow",
            1,
            MissionStatus.RUNNING,
            "start",
            None,
            T0,
            T0,
            {"start": NodeRecord("start", "start", NodeStatus.RUNNING)},
        )
    )
    damage(data)
    with pytest.raises((KeyError, ValueError, TypeError)):
        snapshot_from_json(json.dumps(data))


@pytest.mark.parametrize(
    "entry",
    [
        TimelineEntry(T0, TimelineKind.STEP_STARTED, 'send "mail" ✓', 2),
        TimelineEntry(T0, TimelineKind.MISSION_COMPLETED, None, None),
        TimelineEntry(T0, TimelineKind.STEP_FAILED, "call", 1, {"type": "Boom"}),
    ],
)
def test_timeline_entry_text_is_the_generic_encoding(entry: TimelineEntry) -> None:
    """The written-out entry text is exactly the JSON of the entry's unstructured form."""
    text = timeline_entry_to_json(entry)
    assert json.loads(text) == _codec.unstructure(entry)
    assert timeline_entry_from_json(text) == entry


def test_an_error_stored_before_tracebacks_were_kept_loads_without_one() -> None:
    """A stored error without the traceback field (written by 0.1.0) loads, with traceback None,
    and is written back with the field."""
    text = (
        '{"id":"m","definition":"flow","definition_version":1,"status":"failed",'
        '"current_node":"call","input":null,"created_at":"2030-01-01T00:00:00+00:00",'
        '"updated_at":"2030-01-01T00:00:00+00:00","wait":null,"output":null,'
        '"error":{"type":"Boom","message":"bad","attempt":1},"cancel_request":null,'
        '"revision":2,"nodes":{"call":{"name":"call","kind":"step","status":"failed",'
        '"attempts":1,"input":null,"output":null,'
        '"error":{"type":"Boom","message":"bad","attempt":1},'
        '"started_at":"2030-01-01T00:00:00+00:00","finished_at":"2030-01-01T00:00:00+00:00",'
        '"due_at":null}}}'
    )
    snapshot = snapshot_from_json(text)
    assert snapshot.error == ErrorInfo("Boom", "bad", 1)
    assert snapshot.error.traceback is None
    assert snapshot.nodes["call"].error == ErrorInfo("Boom", "bad", 1)
    from cattrs.preconf.json import make_converter

    assert make_converter().structure(json.loads(text), MissionSnapshot) == snapshot
    assert json.loads(snapshot_to_json(snapshot))["error"]["traceback"] is None
