"""Issue 12, item 11: `make ui` (climb_dagster/ui.py) stops both UIs and every process they started on
Ctrl-C (SIGINT) or SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from climb_dagster.ui import Service, supervise
from climb_dagster_tests import signals
from climb_dagster_tests.paths import REPO_ROOT

# A child that ignores SIGINT and SIGTERM and starts a grandchild in a session of its own (out of its group),
# which also ignores them: only the escalation to SIGKILL and the subreaper's sweep can stop them.
STUBBORN = textwrap.dedent(
    """
    import os, signal, subprocess, sys, time
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if sys.argv[1] == "parent":
        subprocess.Popen([sys.executable, __file__, "grandchild", sys.argv[2]], start_new_session=True)
    open(sys.argv[2] + "." + sys.argv[1], "w").write(str(os.getpid()))
    while True:
        time.sleep(0.1)
    """
)


def _gone(pids: dict[int, float], timeout: float) -> list[str]:
    """The processes (pid -> create time, so a reused pid does not count) still alive after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        alive = []
        for pid, created in pids.items():
            try:
                proc = psutil.Process(pid)
                if proc.create_time() == created and proc.status() != psutil.STATUS_ZOMBIE:
                    alive.append(f"{pid}: {' '.join(proc.cmdline())[:120]}")
            except psutil.NoSuchProcess:
                pass
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.5)


def test_supervise_escalates_and_sweeps_orphans(tmp_path: Path):
    """Children deaf to SIGINT/SIGTERM, one outside the group, are killed; the launcher returns."""
    script = tmp_path / "stubborn.py"
    script.write_text(STUBBORN)
    mark = str(tmp_path / "pid")
    code = textwrap.dedent(
        f"""
        import sys
        from climb_dagster.ui import Service, supervise
        sys.exit(supervise([Service("a", (sys.executable, {str(script)!r}, "parent", {mark!r}))], grace=0.5))
        """
    )
    launcher = subprocess.Popen(
        [sys.executable, "-c", code], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True
    )
    files = [Path(f"{mark}.parent"), Path(f"{mark}.grandchild")]
    deadline = time.monotonic() + 60
    while not all(f.exists() and f.read_text() for f in files):
        assert time.monotonic() < deadline and launcher.poll() is None, "stubborn children did not start"
        time.sleep(0.1)
    pids = {int(f.read_text()): psutil.Process(int(f.read_text())).create_time() for f in files}
    launcher.send_signal(signal.SIGTERM)
    assert launcher.wait(timeout=60) == 0
    assert _gone(pids, 5) == []
    assert "killing" in launcher.stdout.read()


def _subreaper() -> int | None:
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    flag = ctypes.c_int(-1)
    ctypes.CDLL(None).prctl(37, ctypes.byref(flag), 0, 0, 0)  # PR_GET_CHILD_SUBREAPER
    return flag.value


def test_supervise_stops_the_other_when_one_exits(tmp_path: Path):
    """In this process, as a test runs it: it stops only what it started. A child this process already had (like
    the session's `mlflow server`, which an earlier version stopped and left a zombie of) keeps running."""
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)  # bystander"])
    before = {(p.pid, p.create_time()) for p in psutil.Process().children(recursive=True)}
    subreaper = _subreaper()
    try:
        sleeper = Service("sleeper", (sys.executable, "-c", "import time; time.sleep(600)"))
        quitter = Service("quitter", (sys.executable, "-c", "import sys; sys.exit(3)"))
        lines: list[str] = []
        started = time.monotonic()
        assert supervise([sleeper, quitter], grace=5, log=lines.append) == 1
        assert time.monotonic() - started < 30
        assert any("quitter exited with status 3" in line for line in lines)
        assert not any("still running" in line for line in lines), lines  # nothing waited for the bystander
        assert bystander.poll() is None
        left = [
            p for p in psutil.Process().children(recursive=True) if (p.pid, p.create_time()) not in before
        ]
        assert left == []
        assert _subreaper() == subreaper
    finally:
        bystander.kill()
        bystander.wait()


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads signal masks from /proc (Linux)")
def test_supervise_unblocks_the_stop_signals(tmp_path: Path):
    """A launcher whose parent left SIGINT, SIGTERM and SIGHUP blocked (a mask survives exec) still stops on
    SIGTERM, and its UIs start with them unblocked."""
    code = textwrap.dedent(
        """
        import sys
        from climb_dagster.ui import Service, supervise
        sleep = (sys.executable, "-c", "import time; time.sleep(600)  # sleeper")
        sys.exit(supervise([Service("sleeper", sleep)], grace=5))
        """
    )
    stop = [signal.SIGINT, signal.SIGTERM, signal.SIGHUP]
    launcher = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        preexec_fn=lambda: signal.pthread_sigmask(signal.SIG_BLOCK, stop),
    )
    sleepers: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 60
        while not sleepers:
            assert launcher.poll() is None and time.monotonic() < deadline, "the sleeper did not start"
            time.sleep(0.1)
            sleepers = [p for p in psutil.Process(launcher.pid).children() if "sleeper" in _cmdline(p)]
        assert not set(stop) & _signal_sets(sleepers[0].pid)["SigBlk"]
        pids = {p.pid: p.create_time() for p in sleepers}
        launcher.send_signal(signal.SIGTERM)
        assert launcher.wait(timeout=30) == 0
        assert _gone(pids, 5) == []
    finally:
        _kill_all(launcher, sleepers)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


def _start_make_ui(tmp_path: Path, log: Path, **make_vars: str) -> subprocess.Popen:
    """`make ui` as a user starts it from a terminal, with the venv marked installed (`make` skips `install`)."""
    stamp = tmp_path / "installed"
    stamp.touch()
    make_vars = {
        "VENV": str(Path(sys.executable).parent.parent),
        "PY": sys.executable,
        "STAMP": str(stamp),
        **make_vars,
    }
    return subprocess.Popen(
        ["make", "--no-print-directory", "ui", *(f"{k}={v}" for k, v in make_vars.items())],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, like a shell's foreground job
        # A terminal's signal state, not pytest's: in a background run pytest ignores SIGINT, Dagster's in-process
        # runs copy that onto SIGTERM, and a make started with SIGTERM ignored never forwards it (signals.py).
        preexec_fn=signals.default_signals,
    )


def _stop_make(make: subprocess.Popen, how: str) -> None:
    """Ctrl-C = SIGINT to the terminal's process group; SIGTERM = to make alone."""
    if how == "ctrl-c":
        os.killpg(make.pid, signal.SIGINT)
    else:
        make.send_signal(signal.SIGTERM)


def _signal_sets(pid: int | str) -> dict[str, set[int]]:
    """SigIgn, SigBlk and SigCgt of /proc/<pid>/status as sets of signal numbers."""
    sets = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("SigIgn", "SigBlk", "SigCgt"):
            bits = int(value.strip(), 16)
            sets[key] = {n for n in range(1, 65) if bits >> (n - 1) & 1}
    return sets


def _cmdline(proc: psutil.Process) -> str:
    try:
        return " ".join(proc.cmdline())
    except psutil.Error:
        return ""


def _kill_all(make: subprocess.Popen, tree: list[psutil.Process]) -> None:
    if make.poll() is None:
        make.kill()
    for proc in tree:
        try:
            proc.kill()
        except psutil.Error:
            pass


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_make_ui_stops_both_uis(climb_home, tmp_path: Path, how: str):
    """`make ui` as a user runs it; Ctrl-C = SIGINT to the terminal's process group, SIGTERM = to make alone."""
    dagster_port, mlflow_port = _free_port(), _free_port()
    log = tmp_path / "ui.log"
    make = _start_make_ui(tmp_path, log, DAGSTER_PORT=str(dagster_port), MLFLOW_PORT=str(mlflow_port))
    tree: list[psutil.Process] = []
    try:
        urls = [f"http://127.0.0.1:{dagster_port}/server_info", f"http://127.0.0.1:{mlflow_port}/health"]
        deadline = time.monotonic() + 240
        while not all(_answers(u) for u in urls):
            assert make.poll() is None, f"make exited with {make.returncode}: {log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, "the UIs did not answer within 240 s"
            time.sleep(1)
        tree = psutil.Process(make.pid).children(recursive=True)
        running = " ".join(" ".join(p.cmdline()[:4]) for p in tree)
        # Every process that used to be left behind: webserver, daemon, code server, MLflow's server.
        for part in ("dagster_webserver", "dagster._daemon", "dagster code-server", "mlflow ui", "uvicorn"):
            assert part in running, f"{part!r} not among {running}"
        pids = {p.pid: p.create_time() for p in tree}
        _stop_make(make, how)
        make.wait(timeout=120)
        assert _gone(pids, 10) == [], log.read_text()[-3000:]
    finally:
        # Never leave UIs behind from a failed run of this test.
        _kill_all(make, tree)


# `make ui`'s recipe with this as $(PY): the real launcher (main, supervise) with two sleepers for the two UIs.
STUB_UI = textwrap.dedent(
    """
    import signal, sys
    import climb_dagster.ui as ui
    assert sys.argv[1:3] == ["-m", "climb_dagster.ui"], sys.argv
    sleep = (sys.executable, "-c", "import time; time.sleep(600)  # stub UI")
    ui.services = lambda args: [ui.Service("mlflow", sleep), ui.Service("dagster", sleep, signal.SIGINT)]
    sys.exit(ui.main(sys.argv[3:]))
    """
)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads signal masks from /proc (Linux)")
@pytest.mark.timeout(120)
@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_make_ui_stops_when_pytest_ignores_and_blocks_sigterm(climb_home, tmp_path: Path, how: str):
    """Regression: in a background CI run (`bash .ci/run > log &`: SIGINT ignored) a Dagster in-process run had set
    pytest's SIGTERM to SIG_IGN; `make ui` inherited it, so make installed no SIGTERM handler, never forwarded the
    test's SIGTERM to the launcher, and the UIs ran on until the 120 s wait failed."""
    # That pytest state, and blocked stop signals as well (the autouse fixture restores both after the test).
    stop = [signal.SIGINT, signal.SIGTERM, signal.SIGHUP]
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_BLOCK, stop)
    plain = subprocess.Popen(["sleep", "60"])
    try:
        # Without a clean start a child inherits both: the state that made `make ui` deaf to SIGTERM.
        assert {signal.SIGINT, signal.SIGTERM} <= _signal_sets(plain.pid)["SigIgn"]
        assert set(stop) <= _signal_sets(plain.pid)["SigBlk"]
    finally:
        plain.kill()
        plain.wait()

    stub = tmp_path / "stub_ui.py"
    stub.write_text(STUB_UI)
    log = tmp_path / "ui.log"
    make = _start_make_ui(tmp_path, log, PY=f"{sys.executable} {stub}")
    tree: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 60
        while sum("stub UI" in _cmdline(p) for p in tree) < 2:
            assert make.poll() is None, f"make exited with {make.returncode}: {log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, (
                f"the stub UIs did not start within 60 s: {log.read_text()[-3000:]}"
            )
            time.sleep(0.2)
            try:
                tree = psutil.Process(make.pid).children(recursive=True)
            except psutil.Error:
                tree = []
        # make starts as from a terminal, so it catches SIGTERM (its handler forwards it to the recipe).
        state = _signal_sets(make.pid)
        assert not set(stop) & state["SigIgn"], state
        assert signal.SIGTERM in state["SigCgt"], state
        pids = {p.pid: p.create_time() for p in tree}
        _stop_make(make, how)
        make.wait(timeout=60)
        assert _gone(pids, 10) == [], log.read_text()[-3000:]
    finally:
        _kill_all(make, tree)
