"""Mission Control core: the mission DSL, the commander, the records it returns and the errors it
raises — everything an application uses.

Two submodules serve other audiences, as ``trio.abc`` and ``trio.lowlevel`` do for trio:
``mission_control.core.storage`` is for persistence adapter authors (the persistence protocol,
``RevisionConflictError``, ``BufferedSignal``, the storage codec) and
``mission_control.core.lowlevel`` for drivers of missions such as the tick runtime
(``MissionDriver``, the notices). The names that moved there in 0.2 still import from here, with a
``DeprecationWarning`` (see docs/migration-0.2.md).
"""

import importlib
import warnings
from typing import TYPE_CHECKING, Any

from ._clock import Clock, SystemClock
from ._commander import (
    SUBMISSION_ATTEMPTS,
    Commander,
    CommanderProtocol,
    ListFilters,
    MissionHandle,
    create_commander,
)
from ._concurrency import SLOT_RECHECK, ConcurrencyLimitError, WhenBusy
from ._context import Context, Events, NodeEvent, StartEvent
from ._definition import (
    Branch,
    ChainBuilder,
    DefinitionBuilder,
    DefinitionDescription,
    MissionBuilder,
    MissionDefinition,
    NodeDescription,
    define,
)
from ._dsl import m
from ._engine import DEFAULT_MAX_RECOVERY_ATTEMPTS
from ._errors import (
    ChildMissionFailedError,
    ChoiceError,
    CompensationFailedError,
    CompensationRequested,
    ConfigurationError,
    DeadlineExceededError,
    DefinitionVersionError,
    EventLoopError,
    InvalidDefinitionError,
    InvalidInputError,
    InvalidSignalPayloadError,
    LoopError,
    LoopLimitExceededError,
    MissionAlreadyExistsError,
    MissionCancelledError,
    MissionCompensatedError,
    MissionControlError,
    MissionEndedError,
    MissionFailedError,
    MissionNotActiveError,
    MissionNotFoundError,
    MissionNotRetryableError,
    OutputNotSerializableError,
    PersistenceError,
    RecoveryAttemptsExceededError,
    ScheduleExistsError,
    ScheduleNotFoundError,
    SignalTimeoutError,
    StepTimeoutError,
    StoreBusyError,
    SubmissionRefusedError,
    TriggerExistsError,
    TriggerNotFoundError,
    UnknownDefinitionError,
    UnknownEventError,
    UnknownSignalError,
)
from ._ids import SortableIds
from ._keys import EventKey, key
from ._nodes import ParallelMode
from ._persistence import LIST_LIMIT, MAX_LIST_LIMIT
from ._purge import PURGE_BATCH, PurgeBatch, PurgeOptions, PurgeReport
from ._retry import (
    MAX_DELAY,
    Backoff,
    RetryPolicy,
    custom_backoff,
    exponential,
    fixed,
    linear,
    retry,
)
from ._schedules import (
    DEFAULT_GRACE,
    DEFAULT_MAX_CATCH_UP,
    Cron,
    Every,
    MissedFires,
    Schedule,
    ScheduleChanges,
    ScheduleOptions,
    Trigger,
)
from ._snapshot import (
    CancelRequest,
    Compensation,
    Compensations,
    ErrorInfo,
    JsonValue,
    MissionSnapshot,
    MissionStatus,
    NodeRecord,
    NodeStatus,
    ParentLink,
    Pause,
    TimelineEntry,
    TimelineKind,
    Wait,
    WaitKind,
)
from ._submissions import Refusal, Submission, SubmissionKind, SubmissionState
from ._triggers import TriggerFire
from ._values import MAX_INT_DIGITS, MAX_NESTING, converter, from_json_value, to_json_value
from ._versions import (
    VersionCheck,
    VersionProblem,
    VersionReport,
    check_definitions,
    fingerprint,
    registered_versions,
)

__all__ = [
    "SLOT_RECHECK",
    "ConcurrencyLimitError",
    "WhenBusy",
    "DEFAULT_GRACE",
    "DEFAULT_MAX_CATCH_UP",
    "DEFAULT_MAX_RECOVERY_ATTEMPTS",
    "Cron",
    "Every",
    "MissedFires",
    "Schedule",
    "ScheduleChanges",
    "ScheduleExistsError",
    "ScheduleNotFoundError",
    "ScheduleOptions",
    "Trigger",
    "SUBMISSION_ATTEMPTS",
    "LIST_LIMIT",
    "MAX_DELAY",
    "MAX_INT_DIGITS",
    "MAX_LIST_LIMIT",
    "MAX_NESTING",
    "ListFilters",
    "Backoff",
    "Branch",
    "ChainBuilder",
    "ChildMissionFailedError",
    "ChoiceError",
    "LoopError",
    "LoopLimitExceededError",
    "Compensation",
    "CompensationFailedError",
    "CompensationRequested",
    "Compensations",
    "DeadlineExceededError",
    "DefinitionVersionError",
    "ParallelMode",
    "ParentLink",
    "Pause",
    "PURGE_BATCH",
    "PurgeBatch",
    "PurgeOptions",
    "PurgeReport",
    "SignalTimeoutError",
    "CancelRequest",
    "Clock",
    "Commander",
    "CommanderProtocol",
    "ConfigurationError",
    "EventLoopError",
    "Context",
    "DefinitionBuilder",
    "DefinitionDescription",
    "ErrorInfo",
    "EventKey",
    "Events",
    "InvalidDefinitionError",
    "InvalidInputError",
    "InvalidSignalPayloadError",
    "JsonValue",
    "MissionAlreadyExistsError",
    "MissionBuilder",
    "MissionCancelledError",
    "MissionCompensatedError",
    "MissionControlError",
    "MissionDefinition",
    "MissionEndedError",
    "MissionFailedError",
    "MissionHandle",
    "MissionNotActiveError",
    "MissionNotRetryableError",
    "MissionNotFoundError",
    "MissionSnapshot",
    "MissionStatus",
    "NodeDescription",
    "NodeEvent",
    "NodeRecord",
    "NodeStatus",
    "OutputNotSerializableError",
    "PersistenceError",
    "RecoveryAttemptsExceededError",
    "Refusal",
    "RetryPolicy",
    "SortableIds",
    "StartEvent",
    "StepTimeoutError",
    "StoreBusyError",
    "Submission",
    "SubmissionKind",
    "SubmissionRefusedError",
    "SubmissionState",
    "SystemClock",
    "TimelineEntry",
    "TimelineKind",
    "TriggerExistsError",
    "TriggerFire",
    "TriggerNotFoundError",
    "UnknownDefinitionError",
    "UnknownEventError",
    "UnknownSignalError",
    "VersionCheck",
    "VersionProblem",
    "VersionReport",
    "Wait",
    "WaitKind",
    "check_definitions",
    "converter",
    "create_commander",
    "custom_backoff",
    "define",
    "exponential",
    "fingerprint",
    "fixed",
    "from_json_value",
    "key",
    "linear",
    "m",
    "registered_versions",
    "retry",
    "to_json_value",
]

# Names that moved in 0.2 to the modules of the audience that needs them, and where they went.
_MOVED = {
    "BufferedSignal": "mission_control.core.storage",
    "PersistenceAdapter": "mission_control.core.storage",
    "RevisionConflictError": "mission_control.core.storage",
    "buffered_signal_from_json": "mission_control.core.storage",
    "buffered_signal_to_json": "mission_control.core.storage",
    "snapshot_from_json": "mission_control.core.storage",
    "snapshot_to_dict": "mission_control.core.storage",
    "snapshot_to_json": "mission_control.core.storage",
    "timeline_entry_from_json": "mission_control.core.storage",
    "timeline_entry_to_json": "mission_control.core.storage",
    "NoticeListener": "mission_control.core.lowlevel",
    "Notices": "mission_control.core.lowlevel",
    "notices_for": "mission_control.core.lowlevel",
}

if TYPE_CHECKING:
    # Type checkers see the deprecated names with their real types; only the run time warns.
    from .lowlevel import NoticeListener as NoticeListener
    from .lowlevel import Notices as Notices
    from .lowlevel import notices_for as notices_for
    from .storage import BufferedSignal as BufferedSignal
    from .storage import PersistenceAdapter as PersistenceAdapter
    from .storage import RevisionConflictError as RevisionConflictError
    from .storage import buffered_signal_from_json as buffered_signal_from_json
    from .storage import buffered_signal_to_json as buffered_signal_to_json
    from .storage import snapshot_from_json as snapshot_from_json
    from .storage import snapshot_to_dict as snapshot_to_dict
    from .storage import snapshot_to_json as snapshot_to_json
    from .storage import timeline_entry_from_json as timeline_entry_from_json
    from .storage import timeline_entry_to_json as timeline_entry_to_json
else:

    def __getattr__(name: str) -> Any:
        module = _MOVED.get(name)
        if module is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        warnings.warn(
            f"mission_control.core.{name} is deprecated: import it from {module} "
            "(see docs/migration-0.2.md)",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(importlib.import_module(module), name)
