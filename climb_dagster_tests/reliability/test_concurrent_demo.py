"""Issue 15, item 8: two `make demo` runs started at once on a fresh home must not crash.

Proves: several processes opening the demo's Dagster instance on one fresh DAGSTER_HOME at the same moment
all succeed (plain `DagsterInstance.get()` fails there with sqlite "table already exists"), so does the
local MLflow sqlite store, and several processes laying out the same landing folder at once all succeed with
intact drop files (the writer used one fixed temporary name per file).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import polars as pl
import pytest

REPO = Path(__file__).resolve().parents[2]


def _together(code: str, env: dict[str, str], n: int = 4) -> list[subprocess.CompletedProcess]:
    script = textwrap.dedent(code)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script],
            cwd=REPO,
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(n)
    ]
    return [subprocess.CompletedProcess(p.args, p.wait(timeout=120), *p.communicate()) for p in procs]


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_demo_instance_opens_concurrently_on_a_fresh_home(tmp_path: Path):
    home = tmp_path / "dagster_home"
    results = _together(
        """
        from climb_dagster.demo.instance import open_instance
        instance = open_instance()
        instance.add_dynamic_partitions("crawl_drops", ["drop-0001", "drop-0002"])
        print("opened")
        """,
        {"DAGSTER_HOME": str(home)},
    )
    for r in results:
        assert r.returncode == 0 and "opened" in r.stdout, r.stderr[-2000:]


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_demo_landing_written_concurrently(tmp_path: Path):
    landing = tmp_path / "landing"
    results = _together(
        f"""
        from pathlib import Path
        from climb_dagster.demo.landing import prepare_landing
        for _ in range(6):
            prepare_landing(Path({str(landing)!r}), None, seed=0)
        print("written")
        """,
        {},
    )
    for r in results:
        assert r.returncode == 0 and "written" in r.stdout, r.stderr[-2000:]
    files = sorted(p.name for p in landing.iterdir())
    assert files == ["drop-0001.parquet", "drop-0002.parquet"], files
    assert all(pl.read_parquet(landing / f).height > 1000 for f in files)


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_local_mlflow_store_set_up_concurrently(tmp_path: Path):
    """Found while fixing the above: MLflow migrating one fresh sqlite store from several processes at once
    leaves it half-migrated for good ("table _alembic_tmp_metrics already exists")."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    results = _together(
        f"""
        from climb_dagster.resources.tracking import MlflowTracker
        print("experiment", MlflowTracker(tracking_uri={uri!r}, backoff_s=0.1).experiment_id())
        """,
        {},
    )
    for r in results:
        assert r.returncode == 0 and "experiment" in r.stdout, r.stderr[-2000:]
