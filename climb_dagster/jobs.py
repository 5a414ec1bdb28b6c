"""Jobs of the bootstrapping side; the clustering side's jobs live in automation/clustering.py."""

import dagster as dg

from climb_dagster.assets.experiments import MAX_ROUNDS
from climb_dagster.k8s import GPU_RUN_TAGS, heavy_job_executor
from climb_dagster.partitions import experiments

EXPERIMENT_GROUPS = ["experiments", *[f"round_{k}" for k in range(1, MAX_ROUNDS + 1)], "final"]

proxy_data_job = dg.define_asset_job(
    "proxy_data_job",
    selection=dg.AssetSelection.groups("proxy_data"),
    description="Train the proxy tokenizer and tokenize every super-cluster once.",
)

experiment_job = dg.define_asset_job(
    "climb_experiment_job",
    selection=dg.AssetSelection.groups(*EXPERIMENT_GROUPS),
    partitions_def=experiments,
    executor_def=heavy_job_executor(),
    tags=GPU_RUN_TAGS,
    description="One experiment end to end: rounds of proxy training, predictors, final mixture and export.",
)

BOOTSTRAP_JOBS = [proxy_data_job, experiment_job]
