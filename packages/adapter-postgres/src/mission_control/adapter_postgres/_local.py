"""A throwaway PostgreSQL server on this machine, for tests and smoke runs: ``pgserver``'s
bundled one when that package is installed, else the binaries of a local installation (Debian's
``/usr/lib/postgresql/<version>/bin``), run as the ``postgres`` user when the caller is root,
since initdb and pg_ctl refuse root."""

from __future__ import annotations

import glob
import importlib
import os
import shutil
import subprocess
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs


class NoLocalServerError(RuntimeError):
    """No PostgreSQL server could be started on this machine (the message says why)."""


@attrs.frozen
class LocalServer:
    """A server :func:`start_local_server` started: connect with :attr:`url`, end it with
    :meth:`stop` (which also removes its files)."""

    url: str
    stop: Callable[[], None]
    how: str
    """Which server: ``"pgserver"`` or the path of the binaries."""


def start_local_server() -> LocalServer:
    """Start a new PostgreSQL server (a fresh data directory, a Unix socket only, fsync off: for
    tests, never for data that matters). Raises :class:`NoLocalServerError` saying why when
    there is none to start."""
    return _pgserver() or _binaries()


def _directory() -> Path:
    # Readable by the server's own user (postgres, or pgserver's): not under a 0700 parent.
    base = Path(tempfile.mkdtemp(prefix="mission-control-pg-", dir="/tmp"))
    base.chmod(0o755)
    return base


def _pgserver() -> LocalServer | None:
    with warnings.catch_warnings():
        # platformdirs, which it imports, warns about XDG_RUNTIME_DIR: nothing of ours.
        warnings.simplefilter("ignore")
        try:
            pgserver: Any = importlib.import_module("pgserver")
        except ImportError:
            return None
        base = _directory()
        server: Any = pgserver.get_server(base / "data", cleanup_mode="stop")

    def stop() -> None:
        server.cleanup()
        shutil.rmtree(base, ignore_errors=True)

    return LocalServer(str(server.get_uri()), stop, "pgserver")


def _binaries() -> LocalServer:
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
        key=lambda path: int(Path(path).parent.parent.name),
    )
    if not found:
        raise NoLocalServerError(
            "pgserver is not installed (it has wheels for Python 3.11 and 3.12 only) and "
            "there is no /usr/lib/postgresql/*/bin/pg_ctl (apt-get install postgresql)"
        )
    bin_dir = Path(found[-1]).parent
    prefix: list[str] = []
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            raise NoLocalServerError("running as root without runuser to become postgres")
        prefix = ["runuser", "-u", "postgres", "--"]
    base = _directory()
    data, run = base / "data", base / "run"
    data.mkdir()
    run.mkdir()
    if prefix:
        shutil.chown(data, "postgres")
        shutil.chown(run, "postgres")
    pg_ctl = [*prefix, str(bin_dir / "pg_ctl"), "-D", str(data)]

    def stop() -> None:
        subprocess.run([*pg_ctl, "-m", "immediate", "stop"], check=False, capture_output=True)
        shutil.rmtree(base, ignore_errors=True)

    options = f"-c listen_addresses='' -c unix_socket_directories={run} -c fsync=off"
    initdb = [*prefix, str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"]
    try:
        subprocess.run([*initdb, "-E", "UTF8", "--no-sync"], check=True, capture_output=True)
        subprocess.run(
            [*pg_ctl, "-l", str(run / "log"), "-w", "-o", options, "start"],
            check=True,
            capture_output=True,
        )
    except (OSError, subprocess.CalledProcessError) as error:
        stop()
        detail = getattr(error, "stderr", b"") or b""
        raise NoLocalServerError(
            f"{bin_dir} could not start a server: {error} {detail.decode(errors='replace')}"
        ) from error
    return LocalServer(f"postgresql://postgres@/postgres?host={run}", stop, str(bin_dir))
