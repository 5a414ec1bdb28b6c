"""Shared pieces of the reliability tests: explicit resource sets, failure texts, storage listings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg

from climb_dagster.resources.embedding import default_embedder
from climb_dagster.resources.io_manager import ClimbIOManagerFactory
from climb_dagster.resources.landing import LandingZone
from climb_dagster.resources.storage import ClimbStorage
from climb_dagster.resources.tracking import MlflowTracker
from climb_dagster_tests.assets.bootstrap_fixture import all_assets

# Nothing listens on port 9 (discard) of the loopback: connections are refused at once.
DEAD_MLFLOW = "http://127.0.0.1:9"


def local_resources(home: Path, tracking_uri: str = DEAD_MLFLOW, **tracker: Any) -> dict[str, Any]:
    """The local resource set under `home`, with a tracker that gives up fast when MLflow is down."""
    tracker = {"max_attempts": 1, "backoff_s": 0.0, "http_timeout_s": 2, **tracker}
    return {
        "io_manager": ClimbIOManagerFactory(base_path=str(home / "storage")),
        "landing": LandingZone(base=str(home / "landing")),
        "storage": ClimbStorage(base_path=str(home / "storage")),
        "tracker": MlflowTracker(tracking_uri=tracking_uri, **tracker),
        "embedder": default_embedder(),
    }


def failure_text(result: dg.ExecuteInProcessResult) -> str:
    """Every step failure of a run, with the cause chain, as one string."""
    texts = [
        e.step_failure_data.error.to_string()
        for e in result.all_events
        if e.event_type_value == "STEP_FAILURE" and e.step_failure_data.error is not None
    ]
    assert texts, "the run was expected to fail a step"
    return "\n".join(texts)


def files_under(root: Path) -> list[str]:
    """Relative paths of every file below `root` (empty when it does not exist)."""
    if not root.exists():
        return []
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def materialization_meta(result: dg.ExecuteInProcessResult, asset: str) -> dict[str, Any]:
    mats = [m for m in result.get_asset_materialization_events() if m.asset_key == dg.AssetKey(asset)]
    assert mats, f"{asset} was not materialized"
    return {k: v.value for k, v in mats[-1].materialization.metadata.items()}


def experiment_run_config(spec: dict, ops=("experiment", "mixture_export")) -> dict:
    """Run config of the experiment pipeline, for the configurable assets among `ops`."""
    config = {
        "experiment": {"config": spec},
        "mixture_export": {"config": {"token_budget": 20_000, "shard_rows": 50}},
    }
    return {"ops": {k: v for k, v in config.items() if k in ops}}


def fit_centroids(home: Path, n_clusters: int) -> dg.ExecuteInProcessResult:
    """Materialize cluster_centroids over the embeddings already stored for drop-0001 and drop-0002."""
    from climb_dagster.partitions import crawl_drops
    from climb_dagster_tests.assets.bootstrap_fixture import all_assets

    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(crawl_drops.name, ["drop-0001", "drop-0002"])
    return dg.materialize(
        all_assets(),
        selection=["cluster_centroids"],
        instance=instance,
        resources=local_resources(home),
        run_config={"ops": {"cluster_centroids": {"config": {"n_clusters": n_clusters}}}},
        raise_on_error=False,
    )


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


def materialize_in(corpus: dict, selection, partition: str | None, spec: dict | None = None, **kw):
    """Materialize `selection` against the tiny corpus (the partition is registered first)."""
    from climb_dagster.partitions import experiments

    if partition is not None:
        corpus["instance"].add_dynamic_partitions(experiments.name, [partition])
    if isinstance(selection, list) and any(a.startswith(("round_", "final_")) for a in selection):
        # The rounds read the experiment's reused evidence (issue 24); materialize it with them.
        if "reused_evidence" not in selection:
            selection = ["reused_evidence", "frozen_block", *selection]
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
