"""`make ui`: the Dagster UI (`dagster dev`: webserver, daemon, code server) and the MLflow UI, started
together and stopped together, with nothing left running after Ctrl-C or SIGTERM.

Each UI runs in its own session (so its own process group): a Ctrl-C in the terminal reaches only this
launcher, which then stops both in order. First each group gets its usual stop signal (SIGINT for
`dagster dev`, its Ctrl-C path that stops webserver, daemon and code servers; SIGTERM for MLflow's server),
then SIGTERM after `grace` seconds, then SIGKILL. On Linux the launcher is a child subreaper: a process
orphaned by its parent's exit (a code server whose webserver died first, or one in a session of its own) is
re-parented to the launcher instead of init, so the final sweep finds and stops it too.

Inherited signal state: the launcher's handlers replace a SIG_IGN it inherited for SIGINT, SIGTERM or SIGHUP
(and the UIs start with those at SIG_DFL, as exec resets caught signals), and it unblocks them, so a parent's
blocked mask neither silences the launcher nor the UIs. `make ui` itself is another matter: GNU make forwards
SIGTERM to the launcher only if SIGTERM was not ignored when make started, so a `make ui` started with SIGTERM
ignored (as a program inherits it from its parent) does not stop on SIGTERM to make; a terminal never does that.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

from climb_dagster.core.io.settings import Settings

# `dagster dev` takes more than 15 s to stop its webserver, daemon and code servers on a loaded machine.
DEFAULT_GRACE_S = 30.0
KILL_WAIT_S = 10.0
PR_SET_CHILD_SUBREAPER = 36
PR_GET_CHILD_SUBREAPER = 37
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@dataclass(frozen=True)
class Service:
    """One program to run in a process group of its own, and the signal that stops it gracefully."""

    name: str
    argv: tuple[str, ...]
    stop_signal: int = signal.SIGTERM


def _set_subreaper(on: bool) -> bool | None:
    """Whether this process adopts its orphaned descendants (Linux prctl), so none escapes the final sweep by
    losing its parent. Returns the previous setting, None where it cannot be set."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    previous = ctypes.c_int(0)
    if libc.prctl(PR_GET_CHILD_SUBREAPER, ctypes.byref(previous), 0, 0, 0) != 0:
        return None
    if libc.prctl(PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0) != 0:
        return None
    return bool(previous.value)


Foreign = frozenset[tuple[int, float]]


def _foreign_children() -> Foreign:
    """(pid, create time) of the children this process already had before `supervise`: in a bigger program (a
    test run) they and their descendants are not ours to stop."""
    import psutil

    found = set()
    try:
        children = psutil.Process().children()
    except psutil.Error:
        return frozenset()
    for child in children:
        try:
            found.add((child.pid, child.create_time()))
        except psutil.Error:
            pass
    return frozenset(found)


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _descendants(foreign: Foreign) -> list:
    """Every descendant of this process, except the subtrees of the `foreign` children."""
    import psutil

    try:
        children = psutil.Process().children()
    except psutil.Error:
        return []
    found = []
    for child in children:
        try:
            if (child.pid, child.create_time()) not in foreign:
                found.append(child)
                found.extend(child.children(recursive=True))
        except psutil.Error:
            pass
    return found


def _reap_adopted(own: set[int], foreign: Foreign) -> None:
    """Collect the exit status of adopted orphans (not of our own Popen children, which poll() reaps)."""
    import psutil

    for proc in _descendants(foreign):
        try:
            if proc.pid not in own and proc.ppid() == os.getpid() and proc.status() == psutil.STATUS_ZOMBIE:
                os.waitpid(proc.pid, os.WNOHANG)
        except (psutil.Error, ChildProcessError):
            pass


def _alive(procs: dict[str, subprocess.Popen], own: set[int], foreign: Foreign) -> list:
    """Our children still running, and every descendant that is not yet a reaped zombie."""
    import psutil

    _reap_adopted(own, foreign)
    for p in procs.values():
        p.poll()
    running = []
    for proc in _descendants(foreign):
        try:
            if proc.status() != psutil.STATUS_ZOMBIE:
                running.append(proc)
        except psutil.Error:
            pass
    return running


def _wait_gone(procs: dict[str, subprocess.Popen], own: set[int], foreign: Foreign, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while True:
        if not _alive(procs, own, foreign):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.2)


def stop_all(
    services: Sequence[Service],
    procs: dict[str, subprocess.Popen],
    grace: float,
    log=print,
    foreign: Foreign = frozenset(),
) -> list[str]:
    """Stop every service's group and every descendant (but the `foreign` children's subtrees); return the names
    of processes that needed SIGKILL."""
    own = {p.pid for p in procs.values()}
    for service in services:
        proc = procs.get(service.name)
        if proc is not None and proc.poll() is None:
            _signal_group(proc.pid, service.stop_signal)
    if _wait_gone(procs, own, foreign, grace):
        return []
    log(f"[ui] still running after {grace:.0f}s: {_names(_alive(procs, own, foreign))}; sending SIGTERM")
    for proc in procs.values():
        _signal_group(proc.pid, signal.SIGTERM)
    for leftover in _alive(procs, own, foreign):
        _send(leftover, signal.SIGTERM)
    if _wait_gone(procs, own, foreign, KILL_WAIT_S):
        return []
    killed = _alive(procs, own, foreign)
    names = _names(killed)
    log(f"[ui] killing {names}")
    for proc in procs.values():
        _signal_group(proc.pid, signal.SIGKILL)
    for leftover in killed:
        _send(leftover, signal.SIGKILL)
    _wait_gone(procs, own, foreign, KILL_WAIT_S)
    return names


def _send(proc, sig: int) -> None:
    import psutil

    try:
        proc.send_signal(sig)
    except psutil.Error:
        pass


def _names(procs: list) -> list[str]:
    import psutil

    names = []
    for proc in procs:
        try:
            names.append(f"{proc.pid}:{' '.join(proc.cmdline()[:4])[:80]}")
        except psutil.Error:
            pass
    return names


def supervise(
    services: Sequence[Service], grace: float = DEFAULT_GRACE_S, env=None, cwd=None, log=print
) -> int:
    """Run the services until a signal (SIGINT, SIGTERM, SIGHUP) arrives or one of them exits, then stop all.

    Returns 0 after a signal, 1 when a service exited on its own (the other is stopped as well). Called inside a
    bigger program (a test), it leaves that program's other children alone and its signal handlers, signal mask
    and subreaper setting as they were.
    """
    received: list[int] = []

    def on_signal(signum, frame) -> None:
        received.append(signum)

    previous = {sig: signal.signal(sig, on_signal) for sig in STOP_SIGNALS}
    # Blocked signals are inherited across exec: a blocked SIGTERM would never reach on_signal, nor the UIs.
    blocked = signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    foreign = _foreign_children()
    was_subreaper = _set_subreaper(True)
    procs: dict[str, subprocess.Popen] = {}
    exited: str | None = None
    try:
        for service in services:
            procs[service.name] = subprocess.Popen(service.argv, start_new_session=True, env=env, cwd=cwd)
        while not received and exited is None:
            for name, proc in procs.items():
                if proc.poll() is not None:
                    exited = name
                    log(f"[ui] {name} exited with status {proc.returncode}; stopping the others")
                    break
            time.sleep(0.2)
    finally:
        # Also on an exception while starting: whatever started is stopped.
        stop_all(services, procs, grace, log, foreign)
        if was_subreaper is False:
            _set_subreaper(False)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    return 1 if exited is not None and not received else 0


def services(args: argparse.Namespace) -> list[Service]:
    py = sys.executable
    dagster = Service(
        "dagster",
        (py, "-m", "dagster", "dev", "-w", args.workspace, "-h", args.host, "-p", str(args.dagster_port)),
        stop_signal=signal.SIGINT,
    )
    mlflow = Service(
        "mlflow",
        (
            py,
            "-m",
            "mlflow",
            "ui",
            "--host",
            args.host,
            "--port",
            str(args.mlflow_port),
            "--backend-store-uri",
            args.mlflow_backend_store_uri,
            *args.mlflow_arg,
        ),
    )
    return [mlflow, dagster]


def main(argv: list[str] | None = None) -> int:

    parser = argparse.ArgumentParser(prog="python -m climb_dagster.ui", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--dagster-port", type=int, default=3000)
    parser.add_argument("--mlflow-port", type=int, default=5000)
    parser.add_argument("--workspace", default="workspace.yaml")
    parser.add_argument(
        "--mlflow-backend-store-uri",
        default=None,
        help="default: MLFLOW_TRACKING_URI, else sqlite:///$CLIMB_HOME/mlflow.db (what the pipeline logs to)",
    )
    parser.add_argument(
        "--mlflow-arg", action="append", default=[], help="one more argument for `mlflow ui` (repeatable)"
    )
    parser.add_argument("--grace", type=float, default=DEFAULT_GRACE_S, help="seconds to stop before SIGTERM")
    args = parser.parse_args(argv)
    if args.mlflow_backend_store_uri is None:
        args.mlflow_backend_store_uri = Settings.from_env().local_mlflow()
    print(
        f"[ui] Dagster UI: http://{args.host}:{args.dagster_port}   MLflow UI: http://{args.host}:{args.mlflow_port}"
        "   (Ctrl-C stops both)",
        flush=True,
    )
    return supervise(services(args), grace=args.grace)


if __name__ == "__main__":
    sys.exit(main())
