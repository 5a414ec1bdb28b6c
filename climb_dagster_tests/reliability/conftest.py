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

from climb_dagster_tests.assets.bootstrap_fixture import (
    TINY_EXPERIMENT,
    all_assets,
    materialize_proxy_data,
    seed_clustered_corpus,
)

# The real S3 server of the system tests (moto on 127.0.0.1), shared with the integration group.
from climb_dagster_tests.integration.conftest import s3_server  # noqa: F401
from climb_dagster_tests.reliability.helpers import experiment_run_config, local_resources


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
        spec = {**TINY_EXPERIMENT, "target_documents_path": str(target)}
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


def materialize_in(corpus: dict, selection, partition: str | None, spec: dict | None = None, **kw):
    """Materialize `selection` against the tiny corpus (the partition is registered first)."""
    from climb_dagster.partitions import experiments

    if partition is not None:
        corpus["instance"].add_dynamic_partitions(experiments.name, [partition])
    return dg.materialize(
        all_assets(),
        selection=selection,
        partition_key=partition,
        instance=corpus["instance"],
        resources=kw.pop("resources", corpus["resources"]),
        run_config=experiment_run_config(spec or corpus["spec"], list(selection)),
        raise_on_error=False,
        **kw,
    )


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


# Canary credentials: set while the clean run executes; they must never reach the event log, asset
# metadata, stored values or MLflow.
CANARY = "climb-canary-9f3b2c71d4"
CANARY_ENV = {
    "AWS_ACCESS_KEY_ID": f"AKIA{CANARY}",
    "AWS_SECRET_ACCESS_KEY": f"secret-{CANARY}",
    "AWS_SESSION_TOKEN": f"token-{CANARY}",
    "MLFLOW_TRACKING_PASSWORD": f"mlflow-{CANARY}",
    "DAGSTER_PG_PASSWORD": f"pg-{CANARY}",
}


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
