"""Who imports what from where: ``mission_control.core`` for applications, ``.storage`` for
adapter authors, ``.lowlevel`` for drivers, and the 0.1 names that moved as deprecated aliases."""

from __future__ import annotations

import importlib
import warnings
from typing import Any

import pytest

import mission_control.core
from mission_control.core import CommanderProtocol, create_commander, m
from mission_control.core.lowlevel import MissionDriver
from mission_control.in_memory_commander import InMemoryPersistenceAdapter

pytestmark = pytest.mark.anyio

# Where each 0.1 name that moved went: core's own table, which its __getattr__ reads.
MOVED: dict[str, str] = mission_control.core._MOVED  # type: ignore[attr-defined]

DRIVER_ONLY = ("notices", "max_recovery_attempts", "advance", "due_missions", "running_missions")


def test_the_adapter_and_driver_names_moved() -> None:
    """The persistence protocol, its record and error, the codec and the notices left core's
    namespace; 0.1's codec names are among them."""
    assert set(MOVED) == {
        "BufferedSignal",
        "PersistenceAdapter",
        "RevisionConflictError",
        "NoticeListener",
        "Notices",
        "notices_for",
        *(
            f"{record}_{way}_json"
            for record in ("snapshot", "timeline_entry", "buffered_signal")
            for way in ("to", "from")
        ),
        "snapshot_to_dict",
    }


@pytest.mark.parametrize(("name", "module"), MOVED.items())
def test_a_moved_name_still_imports_from_core_with_a_deprecation_warning(
    name: str, module: str
) -> None:
    """A 0.1 name that moved is the same object through core, with a warning naming its home."""
    new_home = importlib.import_module(module)

    with pytest.warns(DeprecationWarning, match=f"import it from {module}"):
        value = getattr(mission_control.core, name)

    assert value is getattr(new_home, name)
    assert name in new_home.__all__
    assert name not in mission_control.core.__all__


def test_from_import_of_a_moved_name_warns_at_the_importing_line() -> None:
    """``from mission_control.core import Notices`` warns, attributed to the importing code."""
    with pytest.warns(DeprecationWarning, match="Notices") as caught:
        from mission_control.core import Notices  # noqa: F401  # pyright: ignore[reportUnusedImport]

    assert caught[0].filename == __file__


def test_an_unknown_name_is_still_an_attribute_error() -> None:
    """Names that never existed in core raise AttributeError, without a warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(AttributeError, match="no_such_name"):
            _ = mission_control.core.no_such_name  # type: ignore[attr-defined]


def test_core_names_import_without_warnings() -> None:
    """Every name in core's, storage's and lowlevel's ``__all__`` imports without a warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for module in ("mission_control.core", *sorted(set(MOVED.values()))):
            namespace = importlib.import_module(module)
            for name in namespace.__all__:
                getattr(namespace, name)


def test_the_application_protocol_has_none_of_the_drivers_members() -> None:
    """CommanderProtocol is what applications call; moving missions is MissionDriver's."""
    for name in DRIVER_ONLY:
        assert not hasattr(CommanderProtocol, name), name
        assert hasattr(MissionDriver, name), name


async def test_the_commander_satisfies_both_protocols() -> None:
    """The commander from create_commander is both a CommanderProtocol and a MissionDriver."""
    async with create_commander(
        [m.define("d").start(parse=lambda raw: raw).end()],
        persistence=InMemoryPersistenceAdapter(),
    ) as commander:
        assert isinstance(commander, CommanderProtocol)
        assert isinstance(commander, MissionDriver)


def _implemented(*args: object) -> None:
    """Stands for any member (``None`` would mean "not implemented" to ``isinstance``)."""


def test_an_object_with_only_the_application_api_is_a_commander_protocol() -> None:
    """Code written against CommanderProtocol accepts an object that cannot drive missions."""
    members: dict[str, Any] = {
        name: _implemented for name in vars(CommanderProtocol) if not name.startswith("_")
    }
    application_only = type("ApplicationOnly", (), members)()

    assert isinstance(application_only, CommanderProtocol)
    assert not isinstance(application_only, MissionDriver)
