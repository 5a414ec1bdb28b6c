"""The demo trains a round's proxies in parallel: its run config is valid for the experiment job."""

from __future__ import annotations

import dagster as dg

from climb_dagster.assets.targets import documents_target
from climb_dagster.demo.run import experiment_job, parallel_execution


def test_parallel_execution_config_is_valid_for_the_experiment_job() -> None:
    job = experiment_job()
    assert job.name == "climb_experiment_job"
    assert job.executor_def.name == "multiprocess"
    config = parallel_execution(3)
    # The experiment's target is required config (issue 12, item 6); the execution part is what is checked.
    target = {"ops": {"experiment": {"config": {"target": documents_target("heldout.parquet")}}}}
    dg.validate_run_config(job, {**config, **target})
    assert config["execution"]["config"]["max_concurrent"] == 3
    assert parallel_execution(0)["execution"]["config"]["max_concurrent"] == 1
    # Step processes rebuild the job by importing this function, so it must be reconstructable.
    assert dg.reconstructable(experiment_job).get_definition().name == job.name
