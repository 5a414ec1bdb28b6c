"""Issue 12, item 5: the demo runs every stage through the named jobs of the code location, so the UI's
runs list and overview timeline show them (no `__ephemeral_asset_job__`)."""

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from climb_dagster_tests.paths import REPO_ROOT

# Fresh deployment order: embed each drop, fit centroids, assign + profile each drop, merge, proxy data, experiment.
PER_DROP = {"drop_embedding_job", "reassign_drop_job"}
ONCE = {"refit_centroids_job", "merge_clusters_job", "proxy_data_job", "climb_experiment_job"}


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_tiny_demo_runs_only_named_jobs(tmp_path: Path):
    home, dagster_home = tmp_path / "climb", tmp_path / "dagster_home"
    dagster_home.mkdir()
    env = {
        **os.environ,
        "CLIMB_HOME": str(home),
        "DAGSTER_HOME": str(dagster_home),
        "CLIMB_CACHE_DIR": str(tmp_path / "cache"),
        "PYTHONPATH": str(REPO_ROOT),
        # The experiment's steps in the demo's process: minutes faster than a process per step on 2 cores.
        # The default multiprocess path runs the same named job (test_demo_parallel checks its name).
        "CLIMB_EXECUTOR": "in_process",
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    args = ["--docs-per-drop", "60", "--rounds", "2,1", "--proxy-steps", "4", "--parallel", "2"]
    out = subprocess.run(
        [sys.executable, "-m", "climb_dagster.demo", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=840,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]

    from climb_dagster.jobs import JOBS

    instance = dg.DagsterInstance.from_config(str(dagster_home))
    try:
        runs = instance.get_runs()
        drops = sorted(instance.get_dynamic_partitions("crawl_drops"))
    finally:
        instance.dispose()
    assert drops == ["drop-0001", "drop-0002"]
    names = [run.job_name for run in runs]
    assert "__ephemeral_asset_job__" not in names
    assert set(names) == PER_DROP | ONCE and set(names) <= {job.name for job in JOBS}
    assert all(run.status == dg.DagsterRunStatus.SUCCESS for run in runs)
    for job in PER_DROP:
        partitions = sorted(r.tags.get("dagster/partition") for r in runs if r.job_name == job)
        assert partitions == drops, (job, partitions)
    for job in ONCE:
        assert names.count(job) == 1, (job, names)
    (experiment,) = [r for r in runs if r.job_name == "climb_experiment_job"]
    assert experiment.tags.get("dagster/partition") == "demo"
