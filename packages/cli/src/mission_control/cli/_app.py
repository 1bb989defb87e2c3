"""``--app module:attribute``: the application's mission definitions.

The attribute is a definition, a list or tuple of definitions, or a function taking no
argument that returns either. It is not a commander (or a factory of one): the command opens
the database itself, read-only or as a submitter, whatever role the application's own
commander would take, so that it never owns a database an application runs on.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Callable
from typing import Any, cast

from mission_control.core import InvalidDefinitionError, MissionDefinition, registered_versions

from ._errors import bad_input

Definitions = list[MissionDefinition[Any, Any, Any]]

_FORM = "module:attribute, e.g. myapp.missions:DEFINITIONS"


def load_definitions(spec: str) -> Definitions:
    """The definitions ``spec`` names, and those their child nodes start; raises a command
    error saying what is wrong with it."""
    module_name, colon, attribute = spec.partition(":")
    if not colon or not module_name or not attribute:
        raise bad_input(f"--app {spec!r} is not of the form {_FORM}")
    # As `python -m` does: the current directory's modules are importable.
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise bad_input(
            f"--app {spec!r}: cannot import {module_name!r}: {error}",
            hint="run the command where your application's modules import (its virtual "
            "environment, its directory) or set PYTHONPATH",
        ) from error
    except Exception as error:  # the module's own code failed (SyntaxError included)
        raise bad_input(
            f"--app {spec!r}: importing {module_name!r} raised {type(error).__name__}: {error}"
        ) from error
    value: object = module
    for part in attribute.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            raise bad_input(
                f"--app {spec!r}: {module_name} has no attribute {attribute!r}"
            ) from None
    if callable(value) and not isinstance(value, MissionDefinition):
        value = _called(spec, cast("Callable[[], object]", value))
    given = _definitions(spec, cast("object", value))
    # With the definitions their child nodes start, as the application's commander registers
    # them: a child mission's definition is the application's too.
    try:
        registered = registered_versions(given)
    except InvalidDefinitionError as error:
        # What the application's commander would refuse to start with.
        raise bad_input(f"--app {spec!r}: {error}") from error
    started = [
        found
        for found in registered.values()
        if not any(found is definition for definition in given)
    ]
    return given + started


def _called(spec: str, factory: Callable[[], object]) -> object:
    try:
        inspect.signature(factory).bind()
    except TypeError:
        raise bad_input(
            f"--app {spec!r} is a function that needs arguments: name a definition, a list "
            "of them, or a function taking no argument that returns either"
        ) from None
    except ValueError:
        pass  # no signature to check (a builtin): calling it tells
    try:
        return factory()
    except Exception as error:
        raise bad_input(
            f"--app {spec!r}: calling it raised {type(error).__name__}: {error}"
        ) from error


def _definitions(spec: str, value: object) -> Definitions:
    if isinstance(value, MissionDefinition):
        return [cast("MissionDefinition[Any, Any, Any]", value)]
    if isinstance(value, list | tuple):
        items = list(cast("list[object] | tuple[object, ...]", value))
        wrong = [item for item in items if not isinstance(item, MissionDefinition)]
        if not wrong:
            return cast("Definitions", items)
        raise bad_input(
            f"--app {spec!r}: the list holds {type(wrong[0]).__name__} {wrong[0]!r}, "
            "not a mission definition"
        )
    raise bad_input(
        f"--app {spec!r} is a {type(value).__name__}: it must be a mission definition, a list "
        "of them, or a function returning one of these"
    )
