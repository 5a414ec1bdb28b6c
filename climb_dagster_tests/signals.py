"""The signal state of the pytest process, and a clean one for the programs the tests start.

Signal dispositions set to SIG_IGN and blocked signals survive fork and exec, so a program a test starts inherits
them from the pytest process. Two things change that state:

- A background job of a non-interactive shell (`bash .ci/run > log &`, a CI runner's script) starts with SIGINT
  (and SIGQUIT) ignored, and Python then keeps SIGINT at SIG_IGN instead of installing KeyboardInterrupt.
- Dagster's in-process execution copies SIGINT's disposition onto SIGTERM
  (`dagster._utils.interrupts.setup_interrupt_handlers`, run on the way out of every `capture_interrupts` block)
  and never puts SIGTERM back. After one `materialize` in such a run, SIGTERM is SIG_IGN in the pytest process.

GNU make installs its SIGTERM handler, the one that forwards SIGTERM to the running recipe, only when SIGTERM was not
ignored when make started: a `make ui` started from that pytest process ignores SIGTERM and its UIs never stop.
Hence `restore` after every test (conftest.py) and `default_signals` for children that are stopped by a signal.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass

# The signals whose dispositions tests and in-process libraries (Dagster, uvicorn) change and that stop programs.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)


@dataclass(frozen=True)
class SignalState:
    handlers: dict[int, object]
    blocked: frozenset[int]


def snapshot() -> SignalState:
    """This thread's blocked signals and the process's handlers of STOP_SIGNALS (None: not set from Python)."""
    return SignalState(
        handlers={sig: signal.getsignal(sig) for sig in STOP_SIGNALS},
        blocked=frozenset(signal.pthread_sigmask(signal.SIG_BLOCK, [])),
    )


def restore(state: SignalState) -> None:
    for sig, handler in state.handlers.items():
        if handler is not None and signal.getsignal(sig) is not handler:
            signal.signal(sig, handler)
    signal.pthread_sigmask(signal.SIG_SETMASK, state.blocked)


def default_signals() -> None:
    """`preexec_fn` for a child started as from a user's terminal: STOP_SIGNALS at SIG_DFL, no signal blocked.

    Only signal calls (no imports, logging or locks), so it is safe in the forked child of a threaded pytest."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
