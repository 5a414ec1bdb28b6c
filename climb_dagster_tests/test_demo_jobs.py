"""Issue 12, item 5: the demo runs every stage through the named jobs of the code location, so the UI's
runs list and overview timeline show them (no `__ephemeral_asset_job__`)."""

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from climb_dagster_tests.paths import REPO_ROOT

# Fresh deployment order: embed each drop, fit centroids, assign + profile each drop, merge, the proxies'
# tokenizer, tokenize each drop, index the tokens, experiment.
PER_DROP = {"drop_embedding_job", "reassign_drop_job", "drop_tokens_job"}
ONCE = {"refit_centroids_job", "merge_clusters_job", "proxy_tokenizer_job", "proxy_data_job"}
EXPERIMENT_JOB = "climb_experiment_job"


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("executor", ["in_process", "multiprocess"])
def test_tiny_demo_runs_only_named_jobs(tmp_path: Path, executor: str):
    """In process (fast), and as `make demo` runs it: the experiment's own rounds in parallel step processes
    (forkserver with preloaded modules), then the unused rounds, final mixture and export in process."""
    home, dagster_home = tmp_path / "climb", tmp_path / "dagster_home"
    dagster_home.mkdir()
    env = {
        **os.environ,
        "CLIMB_HOME": str(home),
        "DAGSTER_HOME": str(dagster_home),
        "CLIMB_CACHE_DIR": str(tmp_path / "cache"),
        "PYTHONPATH": str(REPO_ROOT),
        "CLIMB_EXECUTOR": executor,
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

    from climb_dagster.definitions import defs
    from climb_dagster.jobs import EXPERIMENT_GROUPS, JOBS

    instance = dg.DagsterInstance.from_config(str(dagster_home))
    try:
        runs = instance.get_runs()
        drops = sorted(instance.get_dynamic_partitions("crawl_drops"))
        graph = defs.resolve_asset_graph()
        unmaterialized = [
            key.to_user_string()
            for key in dg.AssetSelection.groups(*EXPERIMENT_GROUPS).resolve(graph)
            if instance.get_latest_materialization_event(key) is None
        ]
    finally:
        instance.dispose()
    assert drops == ["drop-0001", "drop-0002"]
    names = [run.job_name for run in runs]
    assert "__ephemeral_asset_job__" not in names
    assert set(names) == PER_DROP | ONCE | {EXPERIMENT_JOB} and set(names) <= {job.name for job in JOBS}
    assert all(run.status == dg.DagsterRunStatus.SUCCESS for run in runs)
    for job in PER_DROP:
        partitions = sorted(r.tags.get("dagster/partition") for r in runs if r.job_name == job)
        assert partitions == drops, (job, partitions)
    for job in ONCE:
        assert names.count(job) == 1, (job, names)
    experiment_runs = [r for r in runs if r.job_name == EXPERIMENT_JOB]
    assert len(experiment_runs) == (1 if executor == "in_process" else 2)
    assert all(r.tags.get("dagster/partition") == "demo" for r in experiment_runs)
    assert "[demo] final mixture" in out.stdout and not unmaterialized, unmaterialized
