"""For persistence adapter authors: the persistence protocol, the error a refused compare-and-set
raises, the records only adapters handle, and the storage codec (the JSON documents the library's
records are stored as).

Applications need none of this (their API is ``mission_control.core``; drivers such as the
runtime have ``mission_control.core.lowlevel``). An adapter implements
:class:`PersistenceAdapter` (the contract is in its docstring; ``mission_control.testing``'s
conformance suite checks it) and raises :class:`RevisionConflictError` when a commit's expected
revision is not the stored one. The records users also see (``MissionSnapshot``,
``TimelineEntry``, ``CancelRequest``, ``MissionStatus``, ``JsonValue``) are imported from
``mission_control.core``; :class:`BufferedSignal`, a signal stored before its ``need_to`` was
reached, is only ever handled by adapters, and so is :class:`NewSignal`, a signal stored with a
new mission (signal-with-start). An adapter whose store several processes share implements
:class:`SubmissionStore` too (one process owns the store and executes its missions; the others
hand it :class:`NewSubmission` records, marked applied by the write that applies them); one whose
missions are split between several owners implements :class:`MissionOwnership` as well. An
adapter that hears writes made elsewhere (another process) tells the commanders of this one
through the store's notices (``mission_control.core.lowlevel.notices_for``). An adapter that
implements :class:`DefinitionVersionStore` keeps one fingerprint per definition version and says
which versions unfinished missions use: commanders on it check their definitions when they start.
An adapter that implements :class:`ScheduleStore` keeps schedules (stored as
:func:`schedule_to_json` writes them): commanders on it create, change and fire them; one that
implements :class:`TriggerStore` records fired triggers (as :func:`trigger_to_json` writes them).

The codec is the library's own: its functions write and read the records (:class:`MissionSnapshot`,
:class:`TimelineEntry`, :class:`BufferedSignal`, :class:`CancelRequest`) the same way whatever
hooks a user registers on a converter. The user values inside them (inputs, outputs, payloads)
are plain JSON values by then, checked by the commander before they reach an adapter. A
snapshot's fields are declared once, by :class:`MissionFields`; the codec writes every one of them
(and ``"format": SNAPSHOT_FORMAT``), so an adapter that stores the document as the codec gives it
needs no change when fields or node kinds are added, and reads documents of earlier formats.
An adapter that stores a mission as a row, with its cancellation and pause requests in columns of
their own, writes and reads it with :func:`stored_snapshot_to_json` and
:func:`stored_snapshot_from_json` (which checks the document against its row), writes a pause
request with :func:`pause_to_json` and clears it on the commits :func:`clears_pause_request`
names, checks a commit's revision with
:func:`check_commit_revision` and reports an unreadable record with :func:`corrupt`; the columns
of its row, of a commit's compare-and-set and of its timeline entries are :func:`mission_row`,
:func:`mission_update` and :func:`timeline_rows`, a buffered signal's payload
:func:`signal_payload_json`, a refused compare-and-set :func:`revision_conflict`. One that
stores schedules and fired triggers as documents reads them back with :func:`records_from_json`
and checks a schedule commit's revision with :func:`check_schedule_revision`.

Tenants: a mission of a tenant is stored under the key :func:`tenant_key` makes (its tenant
and the caller's id), so that the keys an adapter sees stay unique; its ``snapshot.tenant``
never changes, and ``list_missions(tenant=...)`` selects by it (:data:`ANY_TENANT`, the
default: every mission), at the cost of what it returns (an index on tenant and id). A tool
that reads a store directly (the CLI) shows a tenant's mission with :func:`as_seen`: with the
ids its callers gave.
"""

from ._concurrency import (
    ConcurrencyStore,
    Gate,
    check_gate_revision,
    gate_from_json,
    gate_to_json,
)
from ._errors import RevisionConflictError
from ._persistence import PersistenceAdapter
from ._schedules import (
    SCHEDULE_FORMAT,
    ScheduleStore,
    check_schedule_revision,
    schedule_from_json,
    schedule_of_tenant,
    schedule_to_json,
    schedules_of_tenant,
)
from ._serialization import (
    SNAPSHOT_FORMAT,
    buffered_signal_from_json,
    buffered_signal_to_json,
    cancel_request_from_json,
    cancel_request_to_json,
    pause_from_json,
    pause_to_json,
    snapshot_from_dict,
    snapshot_from_json,
    snapshot_to_dict,
    snapshot_to_json,
    timeline_entry_from_json,
    timeline_entry_to_json,
    value_to_json,
)
from ._snapshot import BufferedSignal, MissionFields, NewSignal
from ._stored import (
    check_commit_revision,
    clears_pause_request,
    corrupt,
    mission_row,
    mission_update,
    records_from_json,
    revision_conflict,
    signal_payload_json,
    stored_snapshot_from_json,
    stored_snapshot_to_json,
    timeline_rows,
)
from ._submissions import (
    Marking,
    MissionOwnership,
    NewSubmission,
    SubmissionDecidedError,
    SubmissionStore,
    applying_submission,
    readable_submissions,
    refusal_from_json,
    refusal_to_json,
    submission_mark,
    submission_payload_json,
)
from ._tenants import (
    ANY_TENANT,
    AnyTenant,
    TenantFilter,
    as_seen,
    local_id,
    tenant_key,
)
from ._triggers import (
    TRIGGER_FORMAT,
    TriggerStore,
    fire_of_tenant,
    fires_of_tenant,
    trigger_from_json,
    trigger_to_json,
)
from ._values import detached
from ._versions import DefinitionVersionStore, VersionKey

__all__ = [
    "ANY_TENANT",
    "SCHEDULE_FORMAT",
    "SNAPSHOT_FORMAT",
    "TRIGGER_FORMAT",
    "AnyTenant",
    "BufferedSignal",
    "ConcurrencyStore",
    "DefinitionVersionStore",
    "Gate",
    "Marking",
    "MissionFields",
    "MissionOwnership",
    "NewSignal",
    "NewSubmission",
    "PersistenceAdapter",
    "RevisionConflictError",
    "ScheduleStore",
    "SubmissionDecidedError",
    "SubmissionStore",
    "TenantFilter",
    "TriggerStore",
    "VersionKey",
    "applying_submission",
    "as_seen",
    "buffered_signal_from_json",
    "buffered_signal_to_json",
    "cancel_request_from_json",
    "cancel_request_to_json",
    "check_commit_revision",
    "check_gate_revision",
    "check_schedule_revision",
    "clears_pause_request",
    "corrupt",
    "detached",
    "gate_from_json",
    "gate_to_json",
    "local_id",
    "fire_of_tenant",
    "fires_of_tenant",
    "pause_from_json",
    "pause_to_json",
    "readable_submissions",
    "refusal_from_json",
    "refusal_to_json",
    "mission_row",
    "mission_update",
    "records_from_json",
    "revision_conflict",
    "schedule_from_json",
    "schedule_of_tenant",
    "schedule_to_json",
    "schedules_of_tenant",
    "signal_payload_json",
    "snapshot_from_dict",
    "snapshot_from_json",
    "snapshot_to_dict",
    "snapshot_to_json",
    "stored_snapshot_from_json",
    "stored_snapshot_to_json",
    "submission_payload_json",
    "submission_mark",
    "tenant_key",
    "timeline_entry_from_json",
    "timeline_entry_to_json",
    "timeline_rows",
    "trigger_from_json",
    "trigger_to_json",
    "value_to_json",
]
