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


def test_experiment_phases_split_the_job_at_the_experiments_rounds() -> None:
    from climb_dagster.assets.experiments import MAX_ROUNDS
    from climb_dagster.definitions import defs
    from climb_dagster.demo.run import experiment_phases
    from climb_dagster.jobs import EXPERIMENT_GROUPS

    job_keys = dg.AssetSelection.groups(*EXPERIMENT_GROUPS).resolve(defs.resolve_asset_graph())
    head, tail = experiment_phases(defs, 3)
    names = {k.to_user_string() for k in head}, {k.to_user_string() for k in tail}
    assert set(head) | set(tail) == job_keys and not set(head) & set(tail)
    assert {"experiment", "round_1_mixtures", "round_3_proxy_evaluations", "round_3_predictor"} <= names[0]
    assert {"round_4_mixtures", f"round_{MAX_ROUNDS}_predictor", "final_mixture", "mixture_export"} <= names[
        1
    ]
    assert not any(n.startswith("round_4") for n in names[0])


def test_step_preload_modules_import() -> None:
    import importlib

    from climb_dagster.demo.run import STEP_PRELOAD_MODULES

    for name in STEP_PRELOAD_MODULES:
        importlib.import_module(name)
