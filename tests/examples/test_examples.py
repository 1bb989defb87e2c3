import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run(name: str) -> str:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_approval_example_shows_the_snapshot_after_the_signal() -> None:
    """The approval example ends with the completed snapshot, including the approval."""
    output = run("approval.py")
    assert "is waiting" in output
    after = output.split("--- snapshot after the signal", 1)[1]
    assert '"status": "completed"' in after
    assert '"approvedBy": "reviewer-1"' in after


@pytest.mark.parametrize("name", ["timer_and_retry.py", "restart_recovery.py"])
def test_runtime_and_recovery_examples_complete_their_missions(name: str) -> None:
    """The runtime and restart examples run to a completed mission."""
    assert "mission-completed" in run(name)


def test_order_example_runs_its_checks_takes_each_path_and_refunds_what_did_not_ship() -> None:
    """The order example ships the order signalled in time, rejects the one its parallel checks
    refused, and refunds the one whose shipment did not come within seven virtual days."""
    output = run("order.py")
    assert "order-1: shipped (TRK-1)" in output
    assert "order-2: rejected" in output
    assert "order-3: refunded" in output
    assert "checks/stock/reserve-stock" in output
    assert "signal-timed-out" in output


@pytest.mark.parametrize("adapter", ["memory", "sqlite"])
def test_order_approval_example_rolls_back_rejected_and_unanswered_orders(adapter: str) -> None:
    """On each adapter, the order-approval example completes the order approved automatically
    and the one a manager approved after a restart (its recorded route kept), and rolls back the
    rejected and the unanswered orders: the authorization voided (retried once), then the stock
    released."""
    output = run("order_approval.py")
    lines = [line for line in output.splitlines() if line.startswith(f"[{adapter}]")]
    assert lines[:4] == [
        f"[{adapter}] order-1: completed: approved automatically, captured 120",
        f"[{adapter}] order-2: completed: approved by dana, captured 2500",
        f"[{adapter}] order-3: compensated: CompensationRequested: rejected by dana: over budget",
        f"[{adapter}] order-4: compensated: SignalTimeoutError: need_to 'manager-decision' of "
        "mission 'order-4' got no signal within 172800 s",
    ]
    assert f"[{adapter}]     retry-scheduled          authorize-payment/compensate" in lines
    assert lines[-4:] == [
        f"[{adapter}]   undone order-3: voided auth-order-3 (attempt 2)",
        f"[{adapter}]   undone order-3: released stock-order-3",
        f"[{adapter}]   undone order-4: voided auth-order-4 (attempt 1)",
        f"[{adapter}]   undone order-4: released stock-order-4",
    ]
    assert "route/manager/manager-decision (need_to)" in output
    assert "reserve-stock (step) (compensable)" in output


def test_sync_script_refuses_a_bad_input_and_completes_its_background_start() -> None:
    """The blocking-client script's bad input is refused, and the mission it starts in the
    background completes once another thread has signalled it."""
    output = run("sync_script.py")
    assert "refused: mission 'monthly-report' rejected its input" in output
    assert "2030-01 is completed: {'figures': 42, 'reviewed_by': 'grace'}" in output
    assert "mission-scheduled" in output


def test_sync_script_run_twice_on_one_database_finds_its_mission_done(tmp_path: Path) -> None:
    """Run again on the same database, the blocking-client script reports the mission it
    completed the first time, with nothing on stderr."""
    database = str(tmp_path / "missions.sqlite")
    for _ in range(2):
        result = subprocess.run(
            [sys.executable, str(EXAMPLES / "sync_script.py"), database],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""
        assert "2030-01 is completed: {'figures': 42, 'reviewed_by': 'grace'}" in result.stdout


def test_pause_resume_example_buffers_events_while_paused_and_resumes_after_a_restart() -> None:
    """Seed 001's flow: the run paused while its draft stage runs stops at the boundary after it,
    the event sent meanwhile is buffered and nothing is due, and after a restart the resume
    takes the event and the run completes."""
    output = run("pause_resume.py")
    assert "run-1 is paused at 'review' (legal check); draft is completed" in output
    assert "two hours later, due: []" in output
    assert "after the restart run-1 is paused, due at None" in output
    assert "resumed: waiting at 'embargo', review took 'grace'" in output
    assert "run-1 is completed: published, approved by grace" in output
    timeline = [line.split()[0] for line in output.split("timeline:", 1)[1].splitlines() if line]
    assert timeline[timeline.index("mission-paused") :][:5] == [
        "mission-paused",
        "signal-buffered",
        "mission-unpaused",
        "signal-received",
        "wait-started",
    ]
