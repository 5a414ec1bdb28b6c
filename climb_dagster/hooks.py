"""Hooks every job of the code location runs on its steps."""

import resource
import sys

import dagster as dg

from climb_dagster.core.common.memory import proc_status_bytes

# The prefix of the log line `step_memory` writes (the scaling benchmark parses it from the event log).
PEAK_RSS_PREFIX = "peak RSS of this step:"


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, in MiB.

    On Linux the high-water mark of this process's own memory since it started (`VmHWM`): `ru_maxrss` keeps the
    parent's resident size at fork across exec, so a step spawned by a 700 MiB executor would report at least
    that. Elsewhere `ru_maxrss` (macOS reports bytes)."""
    hwm = proc_status_bytes("VmHWM")
    if hwm is not None:
        return round(hwm / 2**20, 1)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / 2**20 if sys.platform == "darwin" else peak / 2**10, 1)


@dg.success_hook(name="step_memory")
def step_memory(context: dg.HookContext) -> None:
    """Log the step's peak resident memory (a debug line): under the multiprocess or Kubernetes executor every
    step is its own process, so this is the step's own peak, for sizing pods and for the scaling benchmark."""
    context.log.debug(f"{PEAK_RSS_PREFIX} {peak_rss_mib()} MiB")
