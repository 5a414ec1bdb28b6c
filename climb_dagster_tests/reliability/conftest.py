"""Fixtures of the reliability tests.

`tiny_corpus` (session): the bootstrapping fixture's seeded, clustered demo corpus with proxy data
(tokenizer + token store) materialized and one valid experiment `base` recorded, so a test can
materialize a single experiment asset or one round in a few seconds.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from climb_dagster.assets.targets import documents_target
from climb_dagster_tests.assets.bootstrap_fixture import (
    TINY_EXPERIMENT,
    all_assets,
    materialize_proxy_data,
    seed_clustered_corpus,
)
from climb_dagster_tests.reliability.helpers import CANARY_ENV, experiment_run_config, local_resources


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    from climb_dagster.partitions import experiments

    home = tmp_path_factory.mktemp("tiny-corpus")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CLIMB_CACHE_DIR", str(home / "cache"))
        target = seed_clustered_corpus(home)
        instance = dg.DagsterInstance.ephemeral()
        instance.add_dynamic_partitions(experiments.name, ["base"])
        resources = local_resources(home)
        materialize_proxy_data(instance, resources)
        # Each experiment here tests one fault on its own proxies: none starts from another's (issue 24).
        spec = {**TINY_EXPERIMENT, "target": documents_target(target), "reuse": False}
        exp = dg.materialize(
            all_assets(),
            selection=["experiment"],
            partition_key="base",
            instance=instance,
            resources=resources,
            run_config=experiment_run_config(spec, ["experiment"]),
        )
        assert exp.success
        yield {
            "home": home,
            "root": home / "storage",
            "instance": instance,
            "resources": resources,
            "spec": spec,
            "target": target,
        }


@pytest.fixture
def fresh_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "climb"
    (home / "landing").mkdir(parents=True)
    monkeypatch.setenv("CLIMB_HOME", str(home))
    monkeypatch.setenv("CLIMB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("CLIMB_DEPLOYMENT", raising=False)
    monkeypatch.delenv("CLIMB_LANDING_URL", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return home


@pytest.fixture(scope="session")
def clean_run(tiny_corpus: dict) -> dict:
    """Experiment `base` end to end (3 rounds, final, export) while MLflow does not answer and canary
    credentials sit in the environment. Its final mixture is the reference of the kill/resume test."""
    from climb_dagster.jobs import EXPERIMENT_GROUPS

    with pytest.MonkeyPatch.context() as mp:
        for key, value in CANARY_ENV.items():
            mp.setenv(key, value)
        result = dg.materialize(
            all_assets(),
            selection=dg.AssetSelection.groups(*EXPERIMENT_GROUPS),
            partition_key="base",
            instance=tiny_corpus["instance"],
            resources=tiny_corpus["resources"],
            run_config=experiment_run_config(tiny_corpus["spec"]),
        )
    assert result.success
    return {**tiny_corpus, "result": result}
