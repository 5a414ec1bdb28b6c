"""The Dagster instance of a demo run, set up safely when several demos start at once on a fresh home.

Dagster's sqlite storages create their tables on first use; two processes doing so at once fail with
"table already exists" (seen with two `make demo` runs started together). The first use of each storage
therefore happens under an exclusive file lock in DAGSTER_HOME; afterwards sqlite serializes writes itself.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg

LOCK_FILE = ".climb-instance-setup.lock"


@contextmanager
def home_lock(folder: Path) -> Iterator[None]:
    """An exclusive lock on `folder` across processes (released when the process exits, even by kill)."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LOCK_FILE, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def open_instance() -> dg.DagsterInstance:
    """DagsterInstance.get() with every storage initialised under the home's lock; without DAGSTER_HOME a
    throwaway instance in a temporary folder (on disk, because the demo's proxy steps run in processes)."""
    home = os.environ.get("DAGSTER_HOME")
    if not home:
        return dg.DagsterInstance.local_temp()
    with home_lock(Path(home)):
        instance = dg.DagsterInstance.get()
        # Touch each storage so that its tables exist before the lock is released.
        instance.get_runs(limit=1)
        instance.get_dynamic_partitions("crawl_drops")
        instance.fetch_materializations(dg.AssetKey("climb_setup_probe"), limit=1)
        instance.all_instigator_state()
    return instance
