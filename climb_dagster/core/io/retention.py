"""Which intermediate run folders (`<storage>/<run_id>/`, the outputs of non-asset steps such as the mapped
proxy trainings) may be deleted: those of runs that finished more than `max_age_days` ago.

A folder is kept when its run is unknown to the instance (it may belong to another deployment sharing the
storage), not finished (queued, starting, running, canceling), finished too recently, or is the parent or
root of a run that is not finished (a re-execution from failure reads its parent's outputs).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from climb_dagster.core.common.errors import ClimbInputError

RUN_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
FINISHED = ("SUCCESS", "FAILURE", "CANCELED")


@dataclass(frozen=True)
class RunState:
    status: str  # a DagsterRunStatus name
    end_time: float | None  # seconds since the epoch, None while unfinished
    parent_run_id: str | None = None
    root_run_id: str | None = None


def folders_to_delete(
    folders: Iterable[str], runs: Mapping[str, RunState], now: float, max_age_days: float
) -> list[tuple[str, str]]:
    """(folder, reason) for each run folder that may be deleted; other names are never touched."""
    if not max_age_days >= 0:
        raise ClimbInputError(f"max_age_days must be >= 0, got {max_age_days!r}")
    busy = {
        rid
        for state in runs.values()
        if state.status not in FINISHED
        for rid in (state.parent_run_id, state.root_run_id)
        if rid
    }
    cutoff = now - max_age_days * 86400.0
    out = []
    for name in sorted(folders):
        state = runs.get(name)
        if not RUN_ID.match(name) or state is None or name in busy:
            continue
        if state.status in FINISHED and state.end_time is not None and state.end_time <= cutoff:
            days = (now - state.end_time) / 86400.0
            out.append((name, f"run {state.status.lower()} {days:.1f} days ago"))
    return out
