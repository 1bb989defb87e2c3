"""Build the wheel and sdist of every workspace member into ``dist/``.

    uv run python scripts/release_pack.py            # -> dist/*.whl, dist/*.tar.gz, dist/SHA256SUMS

``dist/`` is emptied first, so it holds exactly one release. Every file is listed with its
size in bytes and its sha256; the same checksums are written to ``dist/SHA256SUMS``
(``sha256sum -c SHA256SUMS`` format). Afterwards, verify these exact files with::

    uv run python scripts/release_check.py --dist-dir dist
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
CHECKSUMS = "SHA256SUMS"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 16), b""):
            digest.update(block)
    return digest.hexdigest()


def find_uv() -> str:
    candidate = os.environ.get("UV") or shutil.which("uv")
    if not candidate:
        raise SystemExit("release_pack: cannot find the `uv` executable (install uv first)")
    return candidate


def pack(root: Path, dist: Path) -> list[Path]:
    """Empty ``dist`` and build every member's sdist and wheel (wheel built from the sdist)."""
    if dist.exists():
        shutil.rmtree(dist)
    command = [
        find_uv(),
        "build",
        "--all-packages",
        "--no-sources",
        "--no-create-gitignore",
        "--out-dir",
        str(dist),
    ]
    print("$ " + " ".join(command), flush=True)
    subprocess.run(command, cwd=root, check=True)
    artifacts = sorted([*dist.glob("*.whl"), *dist.glob("*.tar.gz")])
    if not artifacts:
        raise SystemExit(f"release_pack: uv build produced nothing in {dist}")
    return artifacts


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build all wheels and sdists into dist/.")
    parser.add_argument("--root", type=Path, default=REPO_ROOT, help="workspace root")
    parser.add_argument("--dist", type=Path, help="output directory (default: <root>/dist)")
    args = parser.parse_args(argv)
    root: Path = args.root.resolve()
    dist: Path = (args.dist or root / "dist").resolve()
    try:
        artifacts = pack(root, dist)
    except subprocess.CalledProcessError as exc:
        print(f"release_pack: uv build failed with exit code {exc.returncode}", file=sys.stderr)
        return 1

    lines: list[str] = []
    width = max(len(path.name) for path in artifacts)
    print(f"\n{len(artifacts)} file(s) in {dist}:")
    for path in artifacts:
        digest = sha256(path)
        print(f"  {path.name:<{width}}  {path.stat().st_size:>9} bytes  sha256:{digest}")
        lines.append(f"{digest}  {path.name}\n")
    (dist / CHECKSUMS).write_text("".join(lines), encoding="utf-8")
    print(f"\nchecksums written to {dist / CHECKSUMS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
