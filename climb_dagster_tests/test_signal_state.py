"""The signal state that leaked from Dagster's in-process runs into `make ui` (climb_dagster_tests/signals.py)."""

from __future__ import annotations

import signal
import subprocess
import sys

import dagster as dg

from climb_dagster_tests import signals


@dg.asset
def one() -> int:
    return 1


def test_in_process_run_in_a_background_job_ignores_sigterm_until_restored():
    """A background job starts with SIGINT ignored; one in-process `materialize` then leaves SIGTERM ignored too
    (Dagster copies SIGINT's handler onto SIGTERM), and every child inherits it. `signals.restore`, which the
    autouse fixture runs after every test, puts SIGTERM back."""
    before = signals.snapshot()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    assert dg.materialize([one], instance=dg.DagsterInstance.ephemeral()).success
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN, "Dagster no longer copies SIGINT onto SIGTERM"
    probe = [sys.executable, "-c", "import signal; print(signal.getsignal(signal.SIGTERM) is signal.SIG_IGN)"]
    assert subprocess.run(probe, capture_output=True, text=True, timeout=60).stdout.strip() == "True"
    signals.restore(before)
    assert signals.snapshot() == before
    assert subprocess.run(probe, capture_output=True, text=True, timeout=60).stdout.strip() == "False"


def test_default_signals_gives_a_child_a_terminals_state():
    """What a test's child gets from `preexec_fn=signals.default_signals` whatever pytest's own state."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGINT, signal.SIGTERM])
    code = (
        "import signal; print(all(signal.getsignal(s) is not signal.SIG_IGN for s in"
        " (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)), signal.pthread_sigmask(signal.SIG_BLOCK, []) == set())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=signals.default_signals,
    )
    assert out.stdout.split() == ["True", "True"], out.stderr
