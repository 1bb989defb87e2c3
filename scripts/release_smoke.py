"""Smoke test of the *installed* Mission Control distributions.

``scripts/release_check.py`` runs this file with the interpreter of a fresh virtual
environment that holds only the built wheels, as ``python -I release_smoke.py`` from an
empty temporary directory, so nothing from the repository can be imported by accident.
You can run it the same way by hand in any consumer environment::

    cd "$(mktemp -d)" && /path/to/venv/bin/python -I /path/to/release_smoke.py

It must only use the standard library and the installed ``mission_control.*`` packages.

The script can re-launch itself as a subprocess (see ``spawn_self``) with
``--sqlite-phase N PATH``; the SQLite smoke mission uses that to prove that a mission
started in one process is resumed from the database by another process.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

# distribution name -> import name
DISTRIBUTIONS: dict[str, str] = {
    "mission-control-core": "mission_control.core",
    "mission-control-in-memory-commander": "mission_control.in_memory_commander",
    "mission-control-adapter-sqlite": "mission_control.adapter_sqlite",
    "mission-control-adapter-postgres": "mission_control.adapter_postgres",
    "mission-control-runtime": "mission_control.runtime",
    "mission-control-client": "mission_control.client",
    "mission-control-testing": "mission_control.testing",
    "mission-control-cli": "mission_control.cli",
    "mission-control-opentelemetry": "mission_control.opentelemetry",
}


def _installed_roots() -> list[Path]:
    paths = sysconfig.get_paths()
    return [Path(paths[key]).resolve() for key in ("purelib", "platlib")]


def _is_installed_path(path: str | None) -> bool:
    if path is None:
        return False
    resolved = Path(path).resolve()
    return any(resolved.is_relative_to(root) for root in _installed_roots())


def check_packages() -> list[str]:
    """Import every package and check versions, ``__all__``, py.typed and the namespace."""
    problems: list[str] = []

    versions: dict[str, str] = {}
    for distribution in DISTRIBUTIONS:
        try:
            versions[distribution] = importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            problems.append(f"distribution {distribution} is not installed")
    if len(set(versions.values())) > 1:
        problems.append(f"distribution versions differ: {versions}")

    for distribution, module_name in DISTRIBUTIONS.items():
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:
            problems.append(f"import {module_name} failed: {type(exc).__name__}: {exc}")
            continue
        exported: object = getattr(module, "__all__", None)
        names: list[object] = []
        if not isinstance(exported, (list, tuple)):
            problems.append(f"{module_name} has no __all__ list")
        else:
            names = list(cast("Sequence[object]", exported))
            missing = [n for n in names if not isinstance(n, str) or not hasattr(module, n)]
            if missing:
                problems.append(f"{module_name}.__all__ names missing attributes: {missing}")
        module_file = getattr(module, "__file__", None)
        if not _is_installed_path(module_file):
            problems.append(
                f"{module_name} was imported from {module_file}, not from site-packages "
                f"{[str(p) for p in _installed_roots()]}"
            )
        elif not (Path(str(module_file)).parent / "py.typed").is_file():
            problems.append(f"{module_name}: py.typed is not installed")
        version = versions.get(distribution, "?")
        print(f"smoke: {module_name} {version} ({len(names)} exports)", flush=True)

    namespace = importlib.import_module("mission_control")
    if getattr(namespace, "__file__", None) is not None:
        problems.append(
            f"mission_control is a regular package ({namespace.__file__}); "
            "it must be a PEP 420 namespace package"
        )
    spec = namespace.__spec__
    if spec is not None and spec.origin not in (None, "namespace"):
        problems.append(f"mission_control has a module origin {spec.origin!r}")
    outside = [p for p in namespace.__path__ if not _is_installed_path(p)]
    if outside:
        problems.append(f"mission_control.__path__ reaches outside site-packages: {outside}")

    for entry_point in importlib.metadata.entry_points(group="pytest11"):
        dist = entry_point.dist
        if dist is None or not dist.metadata["Name"].startswith("mission-control-"):
            continue
        try:
            entry_point.load()
        except Exception as exc:
            problems.append(
                f"pytest11 entry point {entry_point.name} = {entry_point.value} "
                f"does not load: {type(exc).__name__}: {exc}"
            )
    return problems


T0 = datetime(2030, 1, 1, tzinfo=UTC)


def _smoke_output(ctx: Any) -> dict[str, Any]:
    return {"charge": ctx.events["charge"].output, "by": ctx.events["confirm"].output}


def _smoke_definition() -> Any:
    """A mission that touches every node kind: a retried step, a timer and a signal."""
    from mission_control.core import m

    def parse(value: Any) -> dict[str, Any]:
        order = cast("dict[str, object]", value).get("order") if isinstance(value, dict) else None
        if not isinstance(order, int):
            raise ValueError("smoke input needs an integer 'order'")
        return {"order": order}

    def charge(ctx: Any) -> dict[str, Any]:
        if ctx.attempt == 1:
            raise RuntimeError("first attempt fails on purpose")
        return {"charged": ctx.input["order"], "attempt": ctx.attempt}

    return (
        m.define("smoke")
        .start(parse=parse)
        .step("charge", charge, retry=m.retry(3, m.fixed(60)))
        .sleep("cool-down", timedelta(hours=1))
        .need_to("confirm", parse=lambda payload: payload)
        .end(output=_smoke_output)
    )


EXPECTED_OUTPUT = {"charge": {"charged": 7, "attempt": 2}, "by": {"who": "smoke"}}


async def _drive_due(commander: Any) -> None:
    for mission_id in await commander.due_missions(100):
        await commander.advance(mission_id)


async def _in_memory_smoke() -> None:
    from mission_control.core import MissionStatus
    from mission_control.in_memory_commander import ManualClock, create_in_memory_commander

    definition = _smoke_definition()
    clock = ManualClock(T0)
    commander = create_in_memory_commander([definition], clock=clock)
    mission = await commander.start(definition, {"order": 7})
    clock.advance(60)
    await _drive_due(commander)
    clock.advance(timedelta(hours=1))
    await _drive_due(commander)
    await mission.signal("confirm", {"who": "smoke"})
    done = await mission.wait_for_completion()
    if done.status is not MissionStatus.COMPLETED or done.output != EXPECTED_OUTPUT:
        raise SystemExit(f"smoke: in-memory mission ended as {done}")
    print("smoke: in-memory mission completed", flush=True)


async def _traced_smoke() -> None:
    """A mission traced through the OpenTelemetry API alone (no SDK is installed: every span
    is a no-op), with the runtime's hooks on it: it runs to its end and stores no context."""
    from mission_control.core import MissionStatus
    from mission_control.in_memory_commander import ManualClock, create_in_memory_commander
    from mission_control.opentelemetry import (
        MissionTracer,
        OpenTelemetryRuntimeMetrics,
        TracingRuntimeLogger,
    )
    from mission_control.runtime import create_commander_runtime

    definition = _smoke_definition()
    clock = ManualClock(T0)
    commander = create_in_memory_commander([definition], clock=clock, observer=MissionTracer())
    runtime = create_commander_runtime(
        commander, logger=TracingRuntimeLogger(), metrics=OpenTelemetryRuntimeMetrics()
    )
    async with runtime:
        mission = await commander.start(definition, {"order": 7})
        clock.advance(60)
        await runtime.tick()
        clock.advance(timedelta(hours=1))
        await runtime.tick()
        await mission.signal("confirm", {"who": "smoke"})
        done = await mission.inspect()
        if done.status is not MissionStatus.COMPLETED or done.trace_context is not None:
            raise SystemExit(f"smoke: traced mission ended as {done}")
    print("smoke: traced mission completed (OpenTelemetry API only)", flush=True)


def run_smoke_missions(workdir: Path) -> None:
    """Run real missions end to end on the installed packages: one in memory, one traced
    through the OpenTelemetry API, one on SQLite that is started in this process and finished
    by a second one, and one on PostgreSQL started by one adapter and finished by another."""
    import trio

    trio.run(_in_memory_smoke)
    trio.run(_traced_smoke)
    db_path = workdir / "smoke.sqlite"
    if run_sqlite_phase(1, db_path) != 0:
        raise SystemExit("smoke: sqlite phase 1 failed")
    result = spawn_self("--sqlite-phase", "2", str(db_path))
    print(result.stdout, end="", flush=True)
    run_command_line(db_path)
    run_postgres_smoke()


def run_command_line(db_path: Path) -> None:
    """The installed ``mission-control`` console script reads the finished smoke mission."""
    import json

    scripts = Path(sysconfig.get_paths()["scripts"])
    command = scripts / ("mission-control.exe" if sys.platform == "win32" else "mission-control")
    if not command.is_file():
        raise SystemExit(f"smoke: the console script {command} is not installed")
    result = subprocess.run(
        [str(command), "list", "--db", str(db_path), "--json"],
        check=False,
        text=True,
        capture_output=True,
        timeout=120,
    )
    if result.returncode != 0:
        raise SystemExit(f"smoke: {command.name} list exited {result.returncode}: {result.stderr}")
    listed = json.loads(result.stdout)["missions"]
    if [(m["id"], m["status"]) for m in listed] != [("smoke-1", "completed")]:
        raise SystemExit(f"smoke: {command.name} list printed {result.stdout}")
    print(f"smoke: {command.name} list --json shows smoke-1 completed", flush=True)


async def _sqlite_phase(phase: int, db_path: Path) -> int:
    from mission_control.adapter_sqlite import create_sqlite_persistence_adapter
    from mission_control.core import MissionStatus, create_commander
    from mission_control.in_memory_commander import ManualClock
    from mission_control.runtime import create_commander_runtime

    definition = _smoke_definition()
    clock = ManualClock(T0 if phase == 1 else T0 + timedelta(minutes=1))
    adapter = create_sqlite_persistence_adapter(db_path)
    async with create_commander([definition], persistence=adapter, clock=clock) as commander:
        if phase == 1:
            mission = await commander.start(definition, {"order": 7}, id="smoke-1")
            snapshot = await mission.inspect()
            ok = snapshot.status is MissionStatus.WAITING and snapshot.current_node == "charge"
            print(f"smoke: sqlite phase 1 left the mission {snapshot.status.value}", flush=True)
            return 0 if ok else 1
        # The runtime's startup tick runs the retry that came due while no process ran.
        async with create_commander_runtime(commander) as runtime:
            clock.advance(timedelta(hours=1))
            await runtime.tick()
        await commander.signal("smoke-1", "confirm", {"who": "smoke"})
        done = await commander.inspect("smoke-1")
        ok = done.status is MissionStatus.COMPLETED and done.output == EXPECTED_OUTPUT
        print(f"smoke: sqlite phase 2 finished the mission: {done.status.value}", flush=True)
        return 0 if ok else 1


async def _postgres_smoke(url: str) -> None:
    """The smoke mission on PostgreSQL, on a sharded adapter (it owns every shard): started on
    one adapter, finished by the runtime of a second one after the first let its shards go."""
    from mission_control.adapter_postgres import open_postgres_persistence_adapter
    from mission_control.core import MissionStatus, create_commander
    from mission_control.in_memory_commander import ManualClock
    from mission_control.runtime import create_commander_runtime

    definition = _smoke_definition()
    clock = ManualClock(T0)
    first = await open_postgres_persistence_adapter(url, schema="smoke", sharded=True)
    async with first, create_commander([definition], persistence=first, clock=clock) as commander:
        mission = await commander.start(definition, {"order": 7}, id="smoke-1")
        if (await mission.inspect()).status is not MissionStatus.WAITING:
            raise SystemExit("smoke: the PostgreSQL mission did not wait for its retry")
    clock.advance(timedelta(minutes=1))
    second = await open_postgres_persistence_adapter(url, schema="smoke", sharded=True)
    async with (
        second,
        create_commander([definition], persistence=second, clock=clock) as commander,
        create_commander_runtime(commander) as runtime,
    ):
        clock.advance(timedelta(hours=1))
        await runtime.tick()
        await commander.signal("smoke-1", "confirm", {"who": "smoke"})
        done = await commander.inspect("smoke-1")
        if done.status is not MissionStatus.COMPLETED or done.output != EXPECTED_OUTPUT:
            raise SystemExit(f"smoke: the PostgreSQL mission ended as {done}")
    print("smoke: PostgreSQL mission completed (started by one adapter, finished by another)")


def run_postgres_smoke() -> None:
    """The PostgreSQL smoke mission on a throwaway local server (``start_local_server``), or on
    ``MISSION_CONTROL_POSTGRES_URL``; skipped, saying why, when there is none, unless
    ``MISSION_CONTROL_REQUIRE_POSTGRES=1`` (CI), where that fails."""
    import os

    import trio

    from mission_control.adapter_postgres import NoLocalServerError, start_local_server

    url = os.environ.get("MISSION_CONTROL_POSTGRES_URL")
    if url:
        trio.run(_postgres_smoke, url)
        return
    try:
        server = start_local_server()
    except NoLocalServerError as error:
        if os.environ.get("MISSION_CONTROL_REQUIRE_POSTGRES") == "1":
            raise SystemExit(f"smoke: no PostgreSQL server: {error}") from error
        print(f"smoke: PostgreSQL mission skipped: {error}", flush=True)
        return
    try:
        trio.run(_postgres_smoke, server.url)
    finally:
        server.stop()


def run_sqlite_phase(phase: int, db_path: Path) -> int:
    """One process's part of the SQLite smoke mission (``--sqlite-phase N PATH``)."""
    import trio

    return trio.run(_sqlite_phase, phase, db_path)


def spawn_self(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run this script again in a new process with the same isolated interpreter."""
    return subprocess.run(
        [sys.executable, "-I", str(Path(__file__).resolve()), *args],
        cwd=cwd,
        check=True,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Smoke test of installed Mission Control.")
    parser.add_argument(
        "--sqlite-phase",
        nargs=2,
        metavar=("PHASE", "DB_PATH"),
        help="internal: run one phase of the cross-process SQLite smoke mission",
    )
    args = parser.parse_args(argv)
    if args.sqlite_phase is not None:
        phase, db_path = args.sqlite_phase
        return run_sqlite_phase(int(phase), Path(db_path))

    problems = check_packages()
    if problems:
        for problem in problems:
            print(f"smoke: FAIL {problem}", flush=True)
        return 1
    with tempfile.TemporaryDirectory(prefix="mission-control-smoke-") as workdir:
        run_smoke_missions(Path(workdir))
    print("smoke: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
