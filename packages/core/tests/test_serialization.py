import enum
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
import pytest

from mission_control.core import (
    CancelRequest,
    Compensation,
    Compensations,
    ErrorInfo,
    MissionSnapshot,
    MissionStatus,
    NodeRecord,
    NodeStatus,
    OutputNotSerializableError,
    ParentLink,
    Pause,
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
        active=("call",),
        waits=(Wait(WaitKind.RETRY, "call", due_at=T0 + timedelta(hours=1)),),
        cancel_request=CancelRequest(T0, "why"),
        revision=7,
        recovery_attempts=2,
        deadline=T0 + timedelta(days=1),
        tenant="acme",
        parent=ParentLink("m-0", "child"),
        definition_fingerprint="sha256:0",
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
        active=("call",),
        waits=(Wait(WaitKind.RETRY, "call", due_at=T0 + timedelta(minutes=5)),),
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


def _every_field_set() -> MissionSnapshot:
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
    values: dict[str, Any] = {
        "id": "m",
        "definition": "flow",
        "definition_version": 2,
        "status": MissionStatus.WAITING,
        "current_node": "checks",
        "input": {"i": [1]},
        "created_at": T0,
        "updated_at": T0 + timedelta(seconds=1),
        "nodes": {"call": record, "checks/a/go": record},
        "active": ("checks/a/go", "checks/b/wait"),
        "waits": (
            Wait(WaitKind.SIGNAL, "checks/a/go", signal="go", due_at=T0),
            Wait(WaitKind.TIMER, "checks/b/wait", due_at=T0),
        ),
        "output": {"o": None},
        "error": ErrorInfo("Boom", "bad", 1),
        "cancel_request": CancelRequest(T0, None, compensate=True),
        "revision": 4,
        "recovery_attempts": 3,
        "deadline": T0 + timedelta(days=3),
        "tenant": "acme",
        "parent": ParentLink("p", "spawn"),
        "definition_fingerprint": "sha256:1",
        "progress": {"percent": 50, "stage": ["a", {"b": None}]},
        "compensations": Compensations(
            (Compensation("call", {"id": 7}), Compensation("checks/a/book", None)), T0
        ),
        "retries": 2,
        "forked_from": "source",
        "trace_context": {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
        "pause": Pause(T0, "audit"),
        "concurrency_key": "flow/acme",
        "pause_request": Pause(T0 + timedelta(seconds=2), "ops"),
    }
    # Every field of the declaration is set here, to a value that is not its default.
    assert set(values) == {field.name for field in attrs.fields(MissionSnapshot)}
    return MissionSnapshot(**values)


def test_the_fast_codec_writes_and_reads_every_field_as_the_generic_converter() -> None:
    """The snapshot document the codec writes field by field holds, for every field, what a
    plain cattrs converter makes of it, and reads back as that converter would."""
    from cattrs.preconf.json import make_converter

    generic = make_converter()
    snapshot = _every_field_set()
    expected = json.loads(json.dumps(generic.unstructure(snapshot)))
    written = json.loads(snapshot_to_json(snapshot))
    assert written.pop("format") == 2
    for field in attrs.fields(MissionSnapshot):
        assert written[field.name] == expected[field.name], field.name
    assert set(written) == set(expected)
    read = snapshot_from_json(snapshot_to_json(snapshot))
    for field in attrs.fields(MissionSnapshot):
        assert getattr(read, field.name) == getattr(snapshot, field.name), field.name
    assert read == generic.structure(expected, MissionSnapshot)


def test_hand_written_record_and_entry_forms_match_the_generic_converter() -> None:
    """The fast unstructure hooks give exactly what a plain cattrs converter would."""
    from cattrs.preconf.json import make_converter

    generic = make_converter()
    record = _every_field_set().nodes["call"]
    entry = TimelineEntry(T0, TimelineKind.STEP_FAILED, "call", 3, {"type": "Boom"})
    assert _codec.unstructure(record) == generic.unstructure(record)
    assert _codec.unstructure(entry) == generic.unstructure(entry)
    assert _codec.structure(generic.unstructure(record), NodeRecord) == record


def test_a_snapshot_written_by_0_1_reads_as_one_position() -> None:
    """A 0.1 document (format 1: ``current_node`` and one ``wait``) loads with that node as its
    one active position and that wait as its one wait; a finished one has none."""
    document = {
        "id": "m",
        "definition": "flow",
        "definition_version": 1,
        "status": "waiting",
        "current_node": "approve",
        "input": None,
        "created_at": T0.isoformat(),
        "updated_at": T0.isoformat(),
        "wait": {"kind": "signal", "node": "approve", "signal": "approve", "due_at": None},
        "output": None,
        "error": None,
        "cancel_request": None,
        "revision": 3,
        "nodes": {"approve": {"name": "approve", "kind": "need_to", "status": "waiting"}},
    }
    snapshot = snapshot_from_json(json.dumps(document))
    assert snapshot.active == ("approve",)
    assert snapshot.waits == (Wait(WaitKind.SIGNAL, "approve", signal="approve"),)
    assert snapshot.recovery_attempts == 0
    assert snapshot.tenant is None
    finished = {**document, "status": "completed", "current_node": None, "wait": None}
    assert snapshot_from_json(json.dumps(finished)).active == ()
    # Written again, it is a format-2 document.
    assert json.loads(snapshot_to_json(snapshot))["format"] == 2


@pytest.mark.parametrize(
    "damage",
    [
        lambda d: d.pop("id"),
        lambda d: d.update(status="sleeping"),
        lambda d: d.update(created_at="yesterday"),
        lambda d: d["nodes"]["start"].update(attempts="many"),
        lambda d: d.update(waits=[{"kind": "signal"}]),
        lambda d: d.update(format=3),
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


def test_snapshot_is_immutable() -> None:
    """A snapshot's fields cannot be assigned, though they are declared on a mutable base that
    the engine's working copy shares."""
    snapshot = _every_field_set()
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        snapshot.status = MissionStatus.FAILED  # pyright: ignore[reportAttributeAccessIssue]


def test_fields_at_a_none_default_are_left_out_and_read_back() -> None:
    """A snapshot's and a record's fields whose default is None are not written while None, and
    read back as None; every other field is always written."""
    snapshot = MissionSnapshot(
        id="m",
        definition="flow",
        definition_version=1,
        status=MissionStatus.RUNNING,
        current_node="start",
        input=None,
        created_at=T0,
        updated_at=T0,
        nodes={"start": NodeRecord("start", "start", NodeStatus.RUNNING)},
        active=("start",),
    )
    document = json.loads(snapshot_to_json(snapshot))
    left_out = {
        field.name
        for field in attrs.fields(MissionSnapshot)
        if field.default is None and field.name not in document
    }
    assert left_out == {
        "output",
        "error",
        "cancel_request",
        "deadline",
        "tenant",
        "parent",
        "definition_fingerprint",
        "progress",
        "compensations",
        "retries",
        "forked_from",
        "trace_context",
        "pause",
        "concurrency_key",
        "pause_request",
    }
    assert document["input"] is None  # no default: always written
    assert set(document["nodes"]["start"]) == {"name", "kind", "status", "attempts"}
    assert snapshot_from_json(snapshot_to_json(snapshot)) == snapshot
