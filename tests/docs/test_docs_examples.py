"""Every fenced ```python block in the user docs runs, so that an example cannot rot silently.

The default is "runs". A comment on the line just before a fence changes that:

- ``<!-- docs-test: skip: why -->``: not run (a fragment or an illustration); the reason is
  required.
- ``<!-- docs-test: continue -->``: runs in the namespace the previous block of the same page
  left, as the page reads (the two form one test).
- ``<!-- docs-test: pytest -->``: a pytest test module; it runs under pytest in a child
  process, with pytest-trio's ``trio_mode = true`` as the docs tell trio users to set, unless
  the module marks its tests for AnyIO's pytest plugin (``pytest.mark.anyio``), which
  ``trio_mode`` would take over (it runs every async test on trio).

A block runs in a fresh namespace in an empty working directory. A block with top-level
``await`` / ``async with`` runs inside ``trio.run``; a block that calls ``trio.run`` itself
gets the same treatment: trio's ``MockClock(autojump_threshold=0)``, under a
``trio.fail_after`` of ``BLOCK_BOUND`` virtual seconds, so that a block that waits for
something nobody will do fails at once instead of hanging the suite. A loop the block starts in
a thread of its own (the blocking client's) runs as it would in the user's program.
"""

from __future__ import annotations

import ast
import inspect
import re
import subprocess
import sys
import textwrap
import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted(
    [ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "packages").glob("*/README.md")]
)
# Virtual seconds a block may take: far beyond any example's timers (30 virtual days fit).
BLOCK_BOUND = 10 * 365 * 24 * 3600.0
# Real seconds a pytest child process may take before it counts as hung.
PYTEST_BOUND = 120

_MARKER = re.compile(
    r"^\s*<!--\s*docs-test:\s*(?P<mode>skip|continue|pytest)\s*(?::\s*(?P<why>.*?))?\s*-->\s*$"
)
_OPEN = re.compile(r"^(?P<indent>\s*)```python\s*$")


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    code: str
    mode: str  # "run", "skip", "continue" or "pytest"

    @property
    def name(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def parse_blocks(page: Path, text: str) -> list[Block]:
    """The ```python blocks of a Markdown page, each with the mode its marker gives it."""
    lines = text.splitlines()
    blocks: list[Block] = []
    index = 0
    while index < len(lines):
        opening = _OPEN.match(lines[index])
        if opening is None:
            index += 1
            continue
        indent = opening["indent"]
        end = index + 1
        while end < len(lines) and lines[end].strip() != "```":
            end += 1
        if end == len(lines):
            raise ValueError(f"{page}:{index + 1}: a ```python fence is never closed")
        body = "\n".join(line.removeprefix(indent) for line in lines[index + 1 : end])
        previous = next((lines[n] for n in range(index - 1, -1, -1) if lines[n].strip()), "")
        marker = _MARKER.match(previous)
        mode = "run"
        if marker is not None:
            mode = marker["mode"]
            if mode == "skip" and not marker["why"]:
                raise ValueError(f"{page}:{index + 1}: a skipped block needs a reason")
        blocks.append(Block(page, index + 1, textwrap.dedent(body) + "\n", mode))
        index = end + 1
    return blocks


def chains(blocks: list[Block]) -> Iterator[list[Block]]:
    """Runnable blocks grouped with the blocks that continue them."""
    chain: list[Block] = []
    for block in blocks:
        if block.mode == "continue":
            if not chain:
                raise ValueError(f"{block.name}: 'continue' follows no block that runs")
            chain.append(block)
            continue
        if chain:
            yield chain
        chain = [block] if block.mode in ("run", "pytest") else []
    if chain:
        yield chain


def _bounded_run(original: Callable[..., Any]) -> Callable[..., Any]:
    """``trio.run`` on an autojumping MockClock, the async function bounded in virtual time."""

    def run(async_fn: Callable[..., Awaitable[Any]], *args: Any, **options: Any) -> Any:
        if threading.current_thread() is not threading.main_thread():
            # A loop the block starts in a thread of its own (the blocking client's) waits for
            # calls from the block: bounded in virtual time, it would jump to its bound at once.
            return original(async_fn, *args, **options)

        async def bounded() -> Any:
            with trio.fail_after(BLOCK_BOUND):
                return await async_fn(*args)

        return original(bounded, clock=trio.testing.MockClock(autojump_threshold=0))

    return run


def run_block(block: Block, namespace: dict[str, Any]) -> None:
    """Run one block in ``namespace`` (see the module's docstring for how)."""
    # dont_inherit: a block runs as the user's own module would, not under this file's
    # ``from __future__ import annotations`` (which turns its annotations into strings).
    code = compile(
        block.code, block.name, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True
    )
    run = _bounded_run(trio.run)
    original = trio.run
    trio.run = run  # the block's own ``trio.run(main)`` gets the bound and the virtual clock
    try:
        if code.co_flags & inspect.CO_COROUTINE:

            async def top_level() -> None:
                await eval(code, namespace)

            run(top_level)
        else:
            exec(code, namespace)
    finally:
        trio.run = original


_BOUND_TESTS = f"""
import functools
import inspect

import anyio


def pytest_collection_modifyitems(items):
    for item in items:
        test = item.obj
        if inspect.iscoroutinefunction(test):

            @functools.wraps(test)
            async def bounded(*args, __test=test, **kwargs):
                with anyio.fail_after({BLOCK_BOUND!r}):
                    return await __test(*args, **kwargs)

            item.obj = bounded
"""


def run_pytest_block(block: Block, directory: Path) -> None:
    """Run a pytest-module block (with ``trio_mode = true`` unless its tests are anyio-marked),
    its tests bounded in virtual time."""
    trio_mode = "" if "pytest.mark.anyio" in block.code else "trio_mode = true\n"
    (directory / "pytest.ini").write_text(f"[pytest]\n{trio_mode}")
    (directory / "conftest.py").write_text(_BOUND_TESTS)
    (directory / "test_block.py").write_text(block.code)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_block.py"],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=PYTEST_BOUND,
        check=False,
    )
    assert result.returncode == 0, f"{block.name} failed under pytest:\n{result.stdout}"


def run_chain(chain: list[Block], directory: Path) -> None:
    if chain[0].mode == "pytest":
        assert len(chain) == 1, f"{chain[1].name}: a pytest block cannot be continued"
        run_pytest_block(chain[0], directory)
        return
    namespace: dict[str, Any] = {"__name__": "__main__"}
    for block in chain:
        run_block(block, namespace)


CHAINS = [chain for page in PAGES for chain in chains(parse_blocks(page, page.read_text()))]


@pytest.mark.parametrize("chain", CHAINS, ids=[chain[0].name for chain in CHAINS])
def test_docs_example_runs(
    chain: list[Block], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The docs' python block (with the blocks that continue it) runs to the end."""
    monkeypatch.chdir(tmp_path)
    run_chain(chain, tmp_path)


# -- the harness itself ---------------------------------------------------------------------


def _page(text: str) -> list[list[Block]]:
    return list(chains(parse_blocks(ROOT / "README.md", textwrap.dedent(text))))


def test_blocks_run_by_default_and_markers_skip_or_continue_them() -> None:
    """An unmarked block runs; 'skip' leaves a block out and 'continue' joins its predecessor."""
    found = _page(
        """
        ```python
        x = 1
        ```
        <!-- docs-test: continue -->
        ```python
        assert x == 1
        ```
        <!-- docs-test: skip: an illustration -->
        ```python
        undefined_name
        ```
        - a list item
          ```python
          y = 2
          ```
        """
    )
    assert [[block.code for block in chain] for chain in found] == [
        ["x = 1\n", "assert x == 1\n"],
        ["y = 2\n"],
    ]
    run_chain(found[0], ROOT)


def test_a_skip_without_reason_is_refused() -> None:
    """Skipping a block requires saying why, so that a broken example is not just silenced."""
    with pytest.raises(ValueError, match="needs a reason"):
        _page("<!-- docs-test: skip -->\n```python\nx = 1\n```\n")


@pytest.mark.parametrize(
    "code",
    [
        "await trio.sleep_forever()\n",
        "async def main():\n    await trio.Event().wait()\n\ntrio.run(main)\n",
    ],
    ids=["top-level-await", "trio-run"],
)
def test_a_hanging_block_fails_in_virtual_time(code: str) -> None:
    """A block that waits for ever fails with TooSlowError at once instead of hanging."""
    (chain,) = _page(f"```python\nimport trio\n{code}```\n")
    with pytest.raises(trio.TooSlowError):
        run_chain(chain, ROOT)


HANGING_TESTS = {
    "pytest-trio": """
        import trio

        async def test_waits(autojump_clock):
            await trio.Event().wait()
    """,
    "anyio": """
        import anyio
        import pytest

        from mission_control.testing import VIRTUAL_TIME_BACKENDS, virtual_time_backend

        pytestmark = pytest.mark.anyio


        @pytest.fixture(params=VIRTUAL_TIME_BACKENDS)
        def anyio_backend(request):
            return virtual_time_backend(request.param)


        async def test_waits():
            await anyio.Event().wait()
    """,
}


@pytest.mark.parametrize("code", HANGING_TESTS.values(), ids=HANGING_TESTS.keys())
def test_a_hanging_pytest_block_fails_in_virtual_time(code: str, tmp_path: Path) -> None:
    """A docs test whose mission waits for a tick nobody schedules fails instead of hanging,
    under pytest-trio and under AnyIO's plugin (on both of its backends)."""
    indented = textwrap.indent(textwrap.dedent(code), "        ")
    (chain,) = _page(f"""
        <!-- docs-test: pytest -->
        ```python
{indented}
        ```
        """)
    with pytest.raises(AssertionError, match="TimeoutError") as failed:
        run_chain(chain, tmp_path)
    if "anyio" in code:
        assert "2 failed" in str(failed.value)
