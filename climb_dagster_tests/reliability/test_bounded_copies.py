"""Issue 28, item 2: a copy killed outright (SIGKILL: no `finally` runs) leaves its temporary folder behind,
unlocked; the next copy into the same place removes it, and so does the retention job. While the writer is
alive its temporary is locked and left alone. (A copy that fails with an exception removes its temporary at
once: unit/io/test_storage.py.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg

from climb_dagster.core.io import storage
from climb_dagster.jobs import storage_retention_job
from climb_dagster.resources.storage import ClimbStorage
from climb_dagster_tests.paths import REPO_ROOT

# Copies a folder with upload_dir, each file slowed down so the parent can kill it mid-copy.
SLOW_COPY = """
import shutil, sys, time
from pathlib import Path
from climb_dagster.core.io import storage
real = shutil.copyfile
def slow(a, b, **kw):
    out = real(a, b, **kw)
    print("copied", flush=True)
    time.sleep(600)
    return out
shutil.copyfile = slow
storage.upload_dir(Path(sys.argv[1]), storage.make_path(sys.argv[2]), kind="lm_eval_tasks")
"""


def _source(path: Path, n: int = 3) -> Path:
    path.mkdir(parents=True)
    for i in range(n):
        (path / f"part{i}.jsonl").write_text(f'{{"i": {i}}}\n')
    return path


def _killed_copy(src: Path, dest: Path, tmp_path: Path) -> Path:
    """Start a slow copy of `src` to `dest`, check its live temporary is left alone, SIGKILL it; return the
    temporary it left, aged past the grace period."""
    env = {**os.environ, "CLIMB_CACHE_DIR": str(tmp_path / "cache"), "CLIMB_HOME": str(tmp_path / "home")}
    child = subprocess.Popen(
        [sys.executable, "-c", SLOW_COPY, str(src), str(dest)], cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE
    )
    try:
        assert child.stdout.readline().strip() == b"copied"
        (temp,) = [p for p in dest.parent.iterdir() if storage.TEMP_NAME.match(p.name)]
        old = time.time() - 3600
        os.utime(temp, (old, old))
        assert storage.sweep_temps(dest.parent) == [], "a live writer's temporary must stay"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    assert temp.is_dir(), "SIGKILL leaves the temporary behind"
    return temp


def test_killed_copy_is_removed_by_the_next_copy(tmp_path: Path):
    dest = tmp_path / "storage" / "targets" / "exp" / "lm_eval_tasks"
    temp = _killed_copy(_source(tmp_path / "v1"), dest, tmp_path)
    storage.upload_dir(_source(tmp_path / "v2", n=2), storage.make_path(dest), kind="lm_eval_tasks")
    assert not temp.exists()
    assert sorted(p.name for p in dest.parent.iterdir()) == ["lm_eval_tasks"]
    assert sorted(p.name for p in dest.iterdir()) == ["part0.jsonl", "part1.jsonl"]


def test_killed_copy_is_removed_by_the_retention_job(tmp_path: Path):
    root = tmp_path / "storage"
    dest = root / "targets" / "exp" / "lm_eval_tasks"
    temp = _killed_copy(_source(tmp_path / "v1"), dest, tmp_path)
    (root / "raw_documents").mkdir(parents=True)
    (root / "raw_documents" / "drop-0001.parquet").write_bytes(b"asset")
    result = storage_retention_job.execute_in_process(
        instance=dg.DagsterInstance.ephemeral(), resources={"storage": ClimbStorage(base_path=str(root))}
    )
    assert result.output_for_node("delete_old_run_folders")["temporaries"] == [str(temp)]
    assert not temp.exists()
    assert (root / "raw_documents" / "drop-0001.parquet").read_bytes() == b"asset"
