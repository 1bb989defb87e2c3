"""Release check for the Mission Control workspace.

Run it from the repository root::

    uv run python scripts/release_check.py                 # everything
    uv run python scripts/release_check.py --metadata-only # fast: pyproject files only
    uv run python scripts/release_check.py --dist-dir dist # check already-packed artifacts

What it verifies:

1. metadata (``check_metadata``): every workspace member has the same ``[project].version``;
   every internal ``mission-control-*`` dependency is pinned exactly ``==<that version>``;
   every member has ``requires-python``, a README, a LICENSE file, a package directory with
   ``py.typed``, and no ``src/mission_control/__init__.py`` (``mission_control`` is a PEP 420
   namespace shared by all distributions);
2. artifacts (``check_wheel``/``check_sdist``): ``uv build --all-packages --no-sources`` into a
   temporary directory (the wheels are built *from* the sdists, so the sdists are proven
   complete); no wheel or sdist ships ``mission_control/__init__.py``; each wheel ships
   ``py.typed``; wheel metadata carries the shared version and exact internal pins;
3. clean install: a fresh virtual environment outside the repository receives only the built
   wheels (plus third-party dependencies from the index); each installed ``mission-control-*``
   distribution is proven to come from our wheel (its METADATA is byte-identical); then
   ``scripts/release_smoke.py`` runs with ``python -I`` from an empty directory, so the
   repository cannot leak onto ``sys.path``;
4. isolation: each member's wheel alone, in its own fresh environment, pulls in exactly its
   declared internal dependencies (mission-control-core pulls in none) and all of its modules
   import.

Only the standard library is used; ``uv`` is invoked as a subprocess.
"""

from __future__ import annotations

import argparse
import email.parser
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

REPO_ROOT = Path(__file__).resolve().parent.parent
SMOKE_SCRIPT = Path(__file__).resolve().parent / "release_smoke.py"

NAMESPACE = "mission_control"
INTERNAL_PREFIX = "mission-control-"
CORE = "mission-control-core"

# Environment variables that could make a child process see the repository or its venv.
_LEAKY_ENV = (
    "VIRTUAL_ENV",
    "CONDA_PREFIX",
    "PYTHONPATH",
    "PYTHONHOME",
    "PYTHONSTARTUP",
    "PYTHONUSERBASE",
    "UV_PROJECT_ENVIRONMENT",
    "UV_PYTHON",
)

_REQUIREMENT_RE = re.compile(
    r"""^\s*
    (?P<name>[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)\s*
    (?P<extras>\[[^\]]*\])?\s*
    (?P<spec>[^;]*?)\s*
    (?:;(?P<marker>.*))?$""",
    re.VERBOSE,
)


# --------------------------------------------------------------------------- helpers


def normalize_name(name: str) -> str:
    """PEP 503 normalization: ``Mission_Control.Core`` -> ``mission-control-core``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_requirement(requirement: str) -> tuple[str, str] | None:
    """Split a PEP 508 requirement into ``(normalized name, specifier)``; None if unparsable."""
    match = _REQUIREMENT_RE.match(requirement)
    if match is None:
        return None
    return normalize_name(match["name"]), re.sub(r"\s+", "", match["spec"])


def _table(value: object) -> dict[str, Any]:
    return cast("dict[str, Any]", value) if isinstance(value, dict) else {}


def _str_list(value: object) -> list[str]:
    if not isinstance(value, list):
        return []
    return [item for item in cast("list[object]", value) if isinstance(item, str)]


def _rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


@dataclass(frozen=True)
class Member:
    """One workspace member, as declared by its pyproject.toml."""

    directory: Path
    pyproject: Path
    data: dict[str, Any]

    @property
    def project(self) -> dict[str, Any]:
        return _table(self.data.get("project"))

    @property
    def name(self) -> str:
        name = self.project.get("name")
        return normalize_name(name) if isinstance(name, str) else self.directory.name

    @property
    def version(self) -> str | None:
        version = self.project.get("version")
        return version if isinstance(version, str) else None

    @property
    def module(self) -> str:
        """The importable module, e.g. ``mission_control.in_memory_commander``."""
        backend = _table(_table(self.data.get("tool")).get("uv")).get("build-backend")
        module_name = _table(backend).get("module-name")
        if isinstance(module_name, str):
            return module_name
        suffix = self.name.removeprefix(INTERNAL_PREFIX).replace("-", "_")
        return f"{NAMESPACE}.{suffix}"

    @property
    def requirements(self) -> list[tuple[str, str]]:
        """``(where, requirement)`` for every published dependency (incl. extras)."""
        found = [("dependencies", req) for req in _str_list(self.project.get("dependencies"))]
        optional = _table(self.project.get("optional-dependencies"))
        for extra, reqs in sorted(optional.items()):
            found.extend((f"optional-dependencies.{extra}", req) for req in _str_list(reqs))
        return found


def load_members(root: Path) -> tuple[list[Member], list[str]]:
    """Read the workspace members listed in ``root/pyproject.toml``; returns (members, problems)."""
    problems: list[str] = []
    root_pyproject = root / "pyproject.toml"
    try:
        root_data = tomllib.loads(root_pyproject.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        return [], [f"{root_pyproject}: cannot read workspace definition: {exc}"]
    workspace = _table(_table(_table(root_data.get("tool")).get("uv")).get("workspace"))
    patterns = _str_list(workspace.get("members"))
    if not patterns:
        return [], [f"{root_pyproject}: [tool.uv.workspace].members is empty or missing"]
    excluded = {
        path.resolve()
        for pattern in _str_list(workspace.get("exclude"))
        for path in root.glob(pattern)
    }
    directories = sorted(
        {
            path
            for pattern in patterns
            for path in root.glob(pattern)
            if path.is_dir() and path.resolve() not in excluded
        }
    )
    members: list[Member] = []
    for directory in directories:
        pyproject = directory / "pyproject.toml"
        if not pyproject.is_file():
            problems.append(f"{_rel(directory, root)}: workspace member has no pyproject.toml")
            continue
        try:
            data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            problems.append(f"{_rel(pyproject, root)}: cannot parse: {exc}")
            continue
        members.append(Member(directory, pyproject, data))
    if not members and not problems:
        problems.append(f"{root_pyproject}: no workspace members match {patterns}")
    return members, problems


def shared_version(members: Sequence[Member]) -> str | None:
    """The version most members agree on (ties: the first member in path order)."""
    versions = [m.version for m in members if m.version is not None]
    if not versions:
        return None
    counts = Counter(versions)
    best = max(counts.values())
    return next(v for v in versions if counts[v] == best)


# --------------------------------------------------------------------------- metadata


def check_metadata(root: Path) -> list[str]:
    """Check every member's pyproject.toml and source tree; returns a list of problems."""
    root = root.resolve()
    members, problems = load_members(root)
    if not members:
        return problems
    version = shared_version(members)
    names = {m.name for m in members}
    versions_seen = ", ".join(f"{m.name}={m.version}" for m in members)

    for member in members:
        where = _rel(member.pyproject, root)
        project = member.project
        if not project:
            problems.append(f"{where}: no [project] table")
            continue
        if not member.name.startswith(INTERNAL_PREFIX):
            problems.append(f"{where}: [project].name {member.name!r} lacks {INTERNAL_PREFIX!r}")
        if member.version is None:
            problems.append(f"{where}: [project].version is missing (a static version is required)")
        elif member.version != version:
            problems.append(
                f"{where}: [project].version is {member.version!r} but the workspace version "
                f"is {version!r} (members: {versions_seen})"
            )
        if "version" in _str_list(project.get("dynamic")):
            problems.append(f"{where}: [project].dynamic lists 'version'; use a static version")

        # Internal pins: exactly ==<shared version>.
        for section, requirement in member.requirements:
            parsed = parse_requirement(requirement)
            if parsed is None:
                problems.append(f"{where}: [project].{section}: cannot parse {requirement!r}")
                continue
            dep_name, spec = parsed
            if not dep_name.startswith(INTERNAL_PREFIX):
                continue
            if member.name == CORE:
                problems.append(
                    f"{where}: [project].{section}: {requirement!r}: {CORE} must not depend "
                    "on any other mission-control-* member"
                )
            if dep_name not in names:
                problems.append(
                    f"{where}: [project].{section}: {requirement!r} names no workspace member"
                )
            if spec != f"=={version}":
                problems.append(
                    f"{where}: [project].{section}: internal dependency {requirement!r} must be "
                    f"pinned exactly '{dep_name}=={version}'"
                )

        if not isinstance(project.get("requires-python"), str):
            problems.append(f"{where}: [project].requires-python is missing")

        problems.extend(_check_readme(member, root))
        problems.extend(_check_license(member, root))
        problems.extend(_check_source_tree(member, root))
    return problems


def _check_readme(member: Member, root: Path) -> list[str]:
    where = _rel(member.pyproject, root)
    readme = member.project.get("readme")
    if isinstance(readme, dict):
        readme = cast("dict[str, Any]", readme).get("file")
    if not isinstance(readme, str):
        return [f"{where}: [project].readme is missing (expected a README file)"]
    if not (member.directory / readme).is_file():
        return [f"{where}: README file {readme!r} does not exist"]
    return []


def _check_license(member: Member, root: Path) -> list[str]:
    where = _rel(member.pyproject, root)
    patterns = _str_list(member.project.get("license-files"))
    problems = [
        f"{where}: license-files pattern {pattern!r} matches no file"
        for pattern in patterns
        if not any(p.is_file() for p in member.directory.glob(pattern))
    ]
    candidates = [p for p in member.directory.glob("LICEN[CS]E*") if p.is_file()]
    if not candidates and not problems:
        problems.append(f"{_rel(member.directory, root)}: no LICENSE file")
    return problems


def _check_source_tree(member: Member, root: Path) -> list[str]:
    problems: list[str] = []
    src = member.directory / "src"
    for init in (src / NAMESPACE / "__init__.py", src / NAMESPACE / "__init__.pyi"):
        if init.exists():
            problems.append(
                f"{_rel(init, root)}: must not exist ({NAMESPACE} is a PEP 420 namespace package)"
            )
    package_dir = src.joinpath(*member.module.split("."))
    if not (package_dir / "__init__.py").is_file():
        problems.append(f"{_rel(package_dir, root)}: package {member.module} has no __init__.py")
    if not (package_dir / "py.typed").is_file():
        problems.append(f"{_rel(package_dir / 'py.typed', root)}: missing (PEP 561 marker)")
    return problems


# --------------------------------------------------------------------------- artifacts


def _wheel_version(path: Path) -> str | None:
    parts = path.name.split("-")
    return parts[1] if len(parts) >= 5 else None


def check_wheel(path: Path, expected_version: str | None = None) -> list[str]:
    """Inspect one wheel's file list and metadata; returns a list of problems."""
    name = path.name
    try:
        with zipfile.ZipFile(path) as archive:
            files = archive.namelist()
            metadata_files = [f for f in files if re.fullmatch(r"[^/]+\.dist-info/METADATA", f)]
            metadata_text = (
                archive.read(metadata_files[0]).decode("utf-8") if metadata_files else None
            )
    except (OSError, zipfile.BadZipFile) as exc:
        return [f"{name}: cannot open wheel: {exc}"]

    problems: list[str] = []
    for file in files:
        if re.fullmatch(rf"{NAMESPACE}/__init__\.[^/]+", file):
            problems.append(
                f"{name}: contains {file} ({NAMESPACE} must stay a PEP 420 namespace package)"
            )
        top = file.split("/", 1)[0]
        if top != NAMESPACE and not top.endswith((".dist-info", ".data")):
            problems.append(f"{name}: unexpected top-level entry {file!r}")
    subpackages = sorted(
        {
            parts[1]
            for parts in (f.split("/") for f in files)
            if len(parts) >= 3 and parts[0] == NAMESPACE and parts[1]
        }
    )
    if not subpackages:
        problems.append(f"{name}: contains no {NAMESPACE}.* package")
    problems.extend(
        f"{name}: missing {NAMESPACE}/{sub}/py.typed"
        for sub in subpackages
        if f"{NAMESPACE}/{sub}/py.typed" not in files
    )

    if metadata_text is None:
        problems.append(f"{name}: no *.dist-info/METADATA")
        return problems
    metadata = email.parser.Parser().parsestr(metadata_text, headersonly=True)
    version = metadata.get("Version")
    wanted = expected_version or _wheel_version(path)
    if version != wanted:
        problems.append(f"{name}: METADATA Version is {version!r}, expected {wanted!r}")
    for requirement in metadata.get_all("Requires-Dist") or []:
        parsed = parse_requirement(str(requirement))
        if parsed and parsed[0].startswith(INTERNAL_PREFIX) and parsed[1] != f"=={version}":
            problems.append(
                f"{name}: Requires-Dist {requirement!r} must be pinned exactly =={version}"
            )
    return problems


def check_sdist(path: Path) -> list[str]:
    """Inspect one sdist's file list; returns a list of problems."""
    name = path.name
    try:
        with tarfile.open(path) as archive:
            files = archive.getnames()
    except (OSError, tarfile.TarError) as exc:
        return [f"{name}: cannot open sdist: {exc}"]
    problems = [
        f"{name}: contains {file} ({NAMESPACE} must stay a PEP 420 namespace package)"
        for file in files
        if re.fullmatch(rf"[^/]+/src/{NAMESPACE}/__init__\.[^/]+", file)
    ]
    if not any(re.fullmatch(rf"[^/]+/src/{NAMESPACE}/[^/]+/py\.typed", f) for f in files):
        problems.append(f"{name}: no src/{NAMESPACE}/*/py.typed")
    if not any(re.fullmatch(r"[^/]+/PKG-INFO", f) for f in files):
        problems.append(f"{name}: no PKG-INFO")
    return problems


def wheel_metadata(path: Path) -> tuple[str, str, list[str], str]:
    """``(normalized name, version, internal requirement names, METADATA sha256)``."""
    with zipfile.ZipFile(path) as archive:
        member = next(f for f in archive.namelist() if f.endswith(".dist-info/METADATA"))
        text = archive.read(member).decode("utf-8")
    metadata = email.parser.Parser().parsestr(text, headersonly=True)
    internal: list[str] = []
    for requirement in metadata.get_all("Requires-Dist") or []:
        parsed = parse_requirement(str(requirement).split(";", 1)[0])
        if parsed and parsed[0].startswith(INTERNAL_PREFIX):
            internal.append(parsed[0])
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return normalize_name(metadata["Name"]), metadata["Version"], internal, digest


def _dist_name_from_filename(filename: str) -> str:
    if filename.endswith(".tar.gz"):
        return normalize_name(filename.removesuffix(".tar.gz").rsplit("-", 1)[0])
    return normalize_name(filename.split("-", 1)[0])


def check_inventory(dist_dir: Path, members: Sequence[Member], version: str) -> list[str]:
    """Exactly one wheel and one sdist of the shared version per member, nothing else."""
    problems: list[str] = []
    wheels = sorted(dist_dir.glob("*.whl"))
    sdists = sorted(dist_dir.glob("*.tar.gz"))
    for kind, files in (("wheel", wheels), ("sdist", sdists)):
        by_name: dict[str, list[Path]] = {}
        for file in files:
            by_name.setdefault(_dist_name_from_filename(file.name), []).append(file)
        for member in members:
            found = by_name.pop(member.name, [])
            if len(found) != 1:
                problems.append(
                    f"{dist_dir}: expected one {kind} of {member.name}, found "
                    f"{[f.name for f in found]}"
                )
            elif f"-{version}" not in found[0].name:
                problems.append(f"{found[0].name}: {kind} is not version {version}")
        problems.extend(
            f"{dist_dir}: unexpected {kind} {f.name}" for extra in by_name.values() for f in extra
        )
    return problems


# --------------------------------------------------------------------------- processes


def find_uv() -> str:
    """The uv executable: ``$UV`` (set by ``uv run``) or ``uv`` on PATH."""
    candidate = os.environ.get("UV") or shutil.which("uv")
    if not candidate:
        raise SystemExit("release_check: cannot find the `uv` executable (install uv first)")
    return candidate


def clean_env() -> dict[str, str]:
    """The current environment minus anything pointing at the repository's interpreter."""
    env = {k: v for k, v in os.environ.items() if k not in _LEAKY_ENV}
    env["PYTHONNOUSERSITE"] = "1"
    return env


@dataclass
class CommandError(Exception):
    command: list[str]
    returncode: int
    output: str

    def __str__(self) -> str:
        tail = "\n".join(self.output.strip().splitlines()[-25:])
        cmd = " ".join(self.command)
        return f"command failed (exit {self.returncode}): {cmd}\n{_indent(tail, '  | ')}"


def _indent(text: str, prefix: str) -> str:
    return "\n".join(prefix + line for line in text.splitlines())


def run(command: Sequence[str | Path], cwd: Path, timeout: float = 900) -> str:
    """Run a command (no shell), return combined output; raise CommandError on failure."""
    args = [str(part) for part in command]
    try:
        completed = subprocess.run(
            args,
            cwd=cwd,
            env=clean_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        raise CommandError(args, -1, f"timed out after {timeout}s") from exc
    if completed.returncode != 0:
        raise CommandError(args, completed.returncode, completed.stdout)
    return completed.stdout


def build_distributions(root: Path, out_dir: Path, uv: str) -> None:
    """``uv build`` every member (sdist, then wheel from the sdist) into ``out_dir``."""
    run(
        [
            uv,
            "build",
            "--all-packages",
            "--no-sources",
            "--no-create-gitignore",
            "--out-dir",
            out_dir,
        ],
        cwd=root,
    )


def venv_python(venv: Path) -> Path:
    if os.name == "nt":
        return venv / "Scripts" / "python.exe"
    return venv / "bin" / "python"


def create_venv(venv: Path, python: str, uv: str) -> Path:
    """A fresh virtual environment at ``venv`` (outside the repo); returns its interpreter."""
    run(
        [uv, "venv", "--no-project", "--no-python-downloads", "--python", python, venv],
        cwd=venv.parent,
    )
    return venv_python(venv)


def install_wheels(python: Path, wheels: Iterable[Path], find_links: Path, uv: str) -> None:
    """Install wheel files (third-party dependencies come from the index) into ``python``."""
    run(
        [
            uv,
            "pip",
            "install",
            "--python",
            python,
            "--no-sources",
            "--find-links",
            find_links,
            *wheels,
        ],
        cwd=python.parent,
    )


# Runs inside a clean venv (python -I -c): report installed distributions, import a package.
_PROBE = r"""
import hashlib, importlib, importlib.metadata as md, json, pkgutil, re, sys
out = {"distributions": {}, "import_errors": []}
for dist in md.distributions():
    name = re.sub(r"[-_.]+", "-", dist.metadata["Name"]).lower()
    text = dist.read_text("METADATA") or ""
    out["distributions"][name] = {
        "version": dist.version,
        "metadata_sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
    }
def fail(name):
    kind, exc, _ = sys.exc_info()
    out["import_errors"].append(f"{name}: {kind.__name__}: {exc}")
for target in sys.argv[1:]:
    try:
        package = importlib.import_module(target)
    except BaseException:
        fail(target)
        continue
    for info in pkgutil.walk_packages(package.__path__, target + ".", onerror=fail):
        if info.name.rsplit(".", 1)[-1] == "__main__":
            continue
        try:
            importlib.import_module(info.name)
        except BaseException:
            fail(info.name)
print("@@PROBE@@" + json.dumps(out))
"""


def probe(python: Path, cwd: Path, modules: Sequence[str] = ()) -> dict[str, Any]:
    output = run([python, "-I", "-c", _PROBE, *modules], cwd=cwd, timeout=300)
    marker = output.rfind("@@PROBE@@")
    if marker < 0:
        raise CommandError([str(python), "-I", "-c", "<probe>"], 0, output)
    return cast("dict[str, Any]", json.loads(output[marker + len("@@PROBE@@") :].splitlines()[0]))


def check_provenance(
    installed: dict[str, Any], wheels: dict[str, tuple[str, str, list[str], str]], label: str
) -> list[str]:
    """Every installed mission-control-* distribution must be byte-identical to our wheel."""
    problems: list[str] = []
    for name, info in sorted(_table(installed).items()):
        if not name.startswith(INTERNAL_PREFIX):
            continue
        record = _table(info)
        if name not in wheels:
            problems.append(
                f"{label}: {name} {record.get('version')} is not one of the built wheels"
            )
        elif record.get("metadata_sha256") != wheels[name][3]:
            problems.append(
                f"{label}: installed {name} {record.get('version')} is not the built wheel "
                "(METADATA differs; was it resolved from an index?)"
            )
    return problems


def internal_closure(name: str, wheels: dict[str, tuple[str, str, list[str], str]]) -> set[str]:
    seen: set[str] = set()
    todo = [name]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        todo.extend(wheels[current][2] if current in wheels else [])
    return seen


# --------------------------------------------------------------------------- steps


@dataclass
class Step:
    name: str
    problems: list[str] = field(default_factory=list[str])
    seconds: float = 0.0
    detail: str = ""


class Report:
    def __init__(self) -> None:
        self.steps: list[Step] = []
        self.started = time.monotonic()

    def run(self, name: str, action: Callable[[], list[str] | tuple[list[str], str]]) -> bool:
        started = time.monotonic()
        try:
            result = action()
            problems, detail = result if isinstance(result, tuple) else (result, "")
        except CommandError as exc:
            problems, detail = [str(exc)], ""
        step = Step(name, problems, time.monotonic() - started, detail)
        self.steps.append(step)
        status = "PASS" if not problems else "FAIL"
        suffix = f" - {detail}" if detail else ""
        print(f"[{status}] {name} ({step.seconds:.1f}s){suffix}", flush=True)
        for problem in problems:
            first, *rest = problem.splitlines() or [""]
            print(f"    - {first}", flush=True)
            for line in rest:
                print(f"      {line}", flush=True)
        return not problems

    @property
    def problems(self) -> list[str]:
        return [p for step in self.steps for p in step.problems]

    def summary(self) -> str:
        elapsed = time.monotonic() - self.started
        failed = [s.name for s in self.steps if s.problems]
        if failed:
            return (
                f"release check FAILED: {len(self.problems)} problem(s) in "
                f"{', '.join(failed)} ({elapsed:.1f}s)"
            )
        return f"release check passed: {len(self.steps)} step(s) ({elapsed:.1f}s)"


def check_artifacts(
    report: Report, dist_dir: Path, members: Sequence[Member], version: str
) -> dict[str, tuple[str, str, list[str], str]]:
    def inspect() -> tuple[list[str], str]:
        problems = check_inventory(dist_dir, members, version)
        wheels = sorted(dist_dir.glob("*.whl"))
        sdists = sorted(dist_dir.glob("*.tar.gz"))
        for wheel in wheels:
            problems.extend(check_wheel(wheel, version))
        for sdist in sdists:
            problems.extend(check_sdist(sdist))
        return problems, f"{len(wheels)} wheel(s), {len(sdists)} sdist(s) in {dist_dir}"

    report.run("inspect wheels and sdists", inspect)
    metadata: dict[str, tuple[str, str, list[str], str]] = {}
    for wheel in sorted(dist_dir.glob("*.whl")):
        try:
            info = wheel_metadata(wheel)
        except (OSError, zipfile.BadZipFile, StopIteration, KeyError):
            continue
        metadata[info[0]] = (str(wheel), *info[1:])
    return metadata


def check_clean_install(
    report: Report,
    work: Path,
    dist_dir: Path,
    python: str,
    uv: str,
    wheels: dict[str, tuple[str, str, list[str], str]],
) -> None:
    """All wheels into one fresh venv, then the smoke script from an empty directory."""
    venv_py: list[Path] = []

    def install() -> tuple[list[str], str]:
        py = create_venv(work / "venv-all", python, uv)
        venv_py.append(py)
        install_wheels(py, [Path(w[0]) for w in wheels.values()], dist_dir, uv)
        empty = work / "empty-probe"
        empty.mkdir()
        installed = _table(probe(py, empty).get("distributions"))
        problems = check_provenance(installed, wheels, "clean venv")
        missing = sorted(set(wheels) - set(installed))
        problems.extend(f"clean venv: {name} was not installed" for name in missing)
        third_party = sorted(n for n in installed if not n.startswith(INTERNAL_PREFIX))
        return problems, f"{len(installed)} distributions ({', '.join(third_party)})"

    if not report.run("install built wheels into a fresh venv", install):
        return

    def smoke() -> tuple[list[str], str]:
        smoke_dir = work / "smoke-script"
        smoke_dir.mkdir()
        script = smoke_dir / SMOKE_SCRIPT.name
        shutil.copy2(SMOKE_SCRIPT, script)
        empty = work / "empty-cwd"
        empty.mkdir()
        output = run([venv_py[0], "-I", script], cwd=empty, timeout=900)
        lines = [line for line in output.splitlines() if line.strip()]
        for line in lines:
            print(f"      | {line}", flush=True)
        return [], f"{venv_py[0].parent.parent.name}: python -I {script.name} (cwd: empty dir)"

    report.run("smoke test from an empty directory", smoke)


def check_isolated_installs(
    report: Report,
    work: Path,
    dist_dir: Path,
    python: str,
    uv: str,
    wheels: dict[str, tuple[str, str, list[str], str]],
    members: Sequence[Member],
) -> None:
    """Each member's wheel alone pulls in only its declared internal closure, and imports."""
    modules = {m.name: m.module for m in members}

    def one(name: str) -> list[str]:
        venv = work / f"venv-only-{name}"
        py = create_venv(venv, python, uv)
        install_wheels(py, [Path(wheels[name][0])], dist_dir, uv)
        empty = work / f"empty-{name}"
        empty.mkdir()
        result = probe(py, empty, [modules[name]])
        installed = _table(result.get("distributions"))
        internal = {n for n in installed if n.startswith(INTERNAL_PREFIX)}
        expected = {CORE} if name == CORE else internal_closure(name, wheels)
        why = "core must not depend on any other member" if name == CORE else "undeclared"
        problems = [
            f"{name} alone: installing it pulled in {extra} ({why})"
            for extra in sorted(internal - expected)
        ]
        problems.extend(f"{name} alone: {m} was not installed" for m in sorted(expected - internal))
        problems.extend(check_provenance(installed, wheels, f"{name} alone"))
        problems.extend(
            f"{name} alone: import failed: {error}"
            for error in _str_list(result.get("import_errors"))
        )
        return problems

    def all_members() -> tuple[list[str], str]:
        names = sorted(wheels, key=lambda n: (n != CORE, n))
        with ThreadPoolExecutor(max_workers=min(4, len(names) or 1)) as pool:
            results = list(pool.map(_catching(one), names))
        return [p for r in results for p in r], f"{len(names)} single-member venvs"

    report.run("each wheel alone pulls in only its declared members", all_members)


def _catching(function: Callable[[str], list[str]]) -> Callable[[str], list[str]]:
    def wrapper(name: str) -> list[str]:
        try:
            return function(name)
        except CommandError as exc:
            return [f"{name} alone: {exc}"]

    return wrapper


# --------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--root", type=Path, default=REPO_ROOT, help="workspace root")
    parser.add_argument(
        "--metadata-only", action="store_true", help="check pyproject files and source trees only"
    )
    parser.add_argument(
        "--dist-dir",
        type=Path,
        help="check already-built artifacts (e.g. dist/ from release_pack.py) instead of building",
    )
    parser.add_argument(
        "--python",
        default=sys.executable,
        help="interpreter for the clean venvs (default: the one running this script)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    root: Path = args.root.resolve()

    report = Report()
    print(f"release check of {root}", flush=True)
    report.run(
        "metadata: versions, exact pins, py.typed, README, LICENSE, namespace",
        lambda: check_metadata(root),
    )
    members, _ = load_members(root)
    version = shared_version(members)
    if report.problems or args.metadata_only or version is None:
        print(report.summary())
        return 1 if report.problems else 0

    uv = find_uv()
    work = Path(tempfile.mkdtemp(prefix="mission-control-release-"))
    try:
        if args.dist_dir is not None:
            dist_dir = args.dist_dir.resolve()
        else:
            dist_dir = work / "dist"

            def build() -> tuple[list[str], str]:
                build_distributions(root, dist_dir, uv)
                return [], f"into {dist_dir}"

            report.run("uv build --all-packages --no-sources", build)
        if not report.problems:
            wheels = check_artifacts(report, dist_dir, members, version)
            if not report.problems:
                check_clean_install(report, work, dist_dir, args.python, uv, wheels)
                check_isolated_installs(report, work, dist_dir, args.python, uv, wheels, members)
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(report.summary() + f" - version {version}")
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
