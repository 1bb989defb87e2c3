"""A process forked while an adapter is open (gunicorn's --preload, Celery's prefork) never
lets a second writer in beside its parent."""

from __future__ import annotations

import gc
import os
import sys
import textwrap
from pathlib import Path

import anyio
import anyio.to_thread
import pytest

from mission_control.adapter_sqlite import SQLiteCommander
from mission_control.core import PersistenceError, m

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork"),
]

flow = m.define("flow").start(parse=dict).need_to("go", parse=dict).end()

SECOND_WRITER = """
import anyio
from mission_control.adapter_sqlite import SQLiteCommander
from mission_control.core import m
flow = m.define("flow").start(parse=dict).need_to("go", parse=dict).end()
async def main():
    try:
        async with SQLiteCommander({path!r}, [flow], role="owner") as commander:
            await commander.start(flow, {{}}, id="second")
            print("opened")
    except Exception as error:
        print("refused:", error)
anyio.run(main)
"""


async def test_a_forked_child_dropping_its_copy_keeps_the_parents_lock(tmp_path: Path) -> None:
    """A child that drops its copy of the parent's commander leaves the parent's lock on the
    file in place: a second writer reaching the file under another name is still refused."""
    database = tmp_path / "missions.sqlite"
    commander = SQLiteCommander(database, [flow])
    await commander.start(flow, {}, id="first")
    child = os.fork()
    if child == 0:  # pragma: no cover - the child's copy of the test
        del commander
        gc.collect()
        os._exit(0)
    _, status = await anyio.to_thread.run_sync(os.waitpid, child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    renamed = tmp_path / "renamed.sqlite"
    os.rename(database, renamed)  # a new name: a new sidecar, so only the file's lock guards it
    second = await anyio.run_process(
        [sys.executable, "-c", textwrap.dedent(SECOND_WRITER.format(path=str(renamed)))]
    )
    said = second.stdout.decode()
    assert said.startswith("refused:"), said + second.stderr.decode()
    assert "already open for writing by another process" in said
    await commander.aclose()


FORKED_OWNER = """
import os, sys
import anyio
from mission_control.adapter_sqlite import SQLiteCommander
from mission_control.core import m
flow = m.define("flow").start(parse=dict).need_to("go", parse=dict).end()
commander = SQLiteCommander(sys.argv[1], [flow])
child = os.fork()
if child == 0:
    async def in_child():
        owner = commander.is_owner
        try:
            await commander.start(flow, {}, id="child")
        except Exception as error:
            print("child", owner, type(error).__name__, error, flush=True)
        else:
            print("child", owner, "started", flush=True)
    anyio.run(in_child)
    os._exit(0)
os.waitpid(child, 0)
async def in_parent():
    print("parent", commander.is_owner, len(await commander.list()), flush=True)
    await commander.aclose()
anyio.run(in_parent)
"""


async def test_a_forked_child_of_an_owner_neither_owns_nor_uses_the_parents_connection(
    tmp_path: Path,
) -> None:
    """In a process forked from an owner (gunicorn --preload), the commander made before the
    fork says it is not the owner and refuses every call, naming the fork, instead of running
    missions beside its parent through a connection that must not cross a fork."""
    database = tmp_path / "missions.sqlite"
    ran = await anyio.run_process(
        [sys.executable, "-c", textwrap.dedent(FORKED_OWNER), str(database)], check=False
    )
    said = ran.stdout.decode().splitlines()
    assert ran.returncode == 0, ran.stderr.decode()
    assert said[0].startswith("child False PersistenceError the SQLite adapter for ")
    assert "before this process was forked from it" in said[0]
    assert said[1] == "parent True 0"


OWNER_WITH_A_HELPER = """
import os, sys, time
from mission_control.adapter_sqlite import SQLiteCommander
from mission_control.core import m
flow = m.define("flow").start(parse=dict).need_to("go", parse=dict).end()
commander = SQLiteCommander(sys.argv[1], [flow], role="owner")
helper = os.fork()
if helper == 0:
    time.sleep(60)  # a worker pool's process, forked without exec, outliving its parent
    os._exit(0)
print(helper, flush=True)
time.sleep(60)
"""


async def test_a_process_the_owner_forked_does_not_keep_the_database_owned(
    tmp_path: Path,
) -> None:
    """Once the owner is killed, a process it forked (a worker pool's, still running) does not
    hold the ownership: another process owns the database at once."""
    database = tmp_path / "missions.sqlite"
    async with await anyio.open_process(
        [sys.executable, "-c", textwrap.dedent(OWNER_WITH_A_HELPER), str(database)]
    ) as owner:
        assert owner.stdout is not None
        helper = int((await owner.stdout.receive()).decode().strip())
        try:
            owner.kill()
            await owner.wait()
            with anyio.fail_after(10):
                while True:  # the owner's exit is the kernel's to finish
                    try:
                        async with SQLiteCommander(database, [flow], role="owner") as taken:
                            assert taken.is_owner
                            break
                    except PersistenceError as error:
                        if "already open for writing" not in str(error):
                            raise
                        await anyio.sleep(0.05)
        finally:
            os.kill(helper, 9)
