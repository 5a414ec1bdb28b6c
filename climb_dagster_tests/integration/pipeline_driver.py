"""The whole pipeline on tiny inputs, materialized stage by stage as `climb_dagster.demo.run` does it:
ingest + embed + rate per drop, centroids, assignment per drop, super-clusters, proxy data, one experiment.

Shared by the system tests that run it against real servers (S3, MLflow, PostgreSQL) and locally.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl

from climb_dagster.assets.targets import documents_target
from climb_dagster.core.common import schema
from climb_dagster_tests.assets.bootstrap_fixture import TINY_EXPERIMENT
from climb_dagster_tests.paths import DEMO_DATA

PIPELINE_DROPS = ("drop-0001", "drop-0002")
DOMAINS = ("postgres_docs", "literature", "religious", "lexicon")
EXPERIMENT_NAME = "tiny-s3"
CLUSTERING_CONFIG = {
    "cluster_centroids": {"config": {"n_clusters": 6, "seed": 0}},
    "pruned_clusters": {"config": {"threshold": 1.0}},
    "super_clusters": {"config": {"n_superclusters": 3}},
}
TOKENIZER_CONFIG = {"proxy_tokenizer": {"config": {"vocab_size": 512}}}
EXPERIMENT_SPEC = {**TINY_EXPERIMENT, "seed": 3}
EXPORT_CONFIG = {"token_budget": 20_000, "shard_rows": 50}


def pipeline_inputs(docs_per_domain: int = 24) -> tuple[dict[str, bytes], bytes]:
    """Two drop files (id, text, title) of four demo domains, and a held-out target of 10 documents
    (never in the drops), all as Parquet bytes a crawler / a user would upload."""
    docs = pl.read_parquet(DEMO_DATA / "drop-0001.parquet").filter(pl.col(schema.DOMAIN).is_in(DOMAINS))
    docs = docs.sort(schema.ID).group_by(schema.DOMAIN, maintain_order=True).head(docs_per_domain + 10)
    target = docs.filter(pl.col(schema.DOMAIN) == DOMAINS[0]).tail(10)
    docs = docs.join(target.select(schema.ID), on=schema.ID, how="anti").sort(schema.ID)
    drops = {}
    for i, key in enumerate(PIPELINE_DROPS):
        part = docs[i :: len(PIPELINE_DROPS)].select(schema.ID, schema.TEXT, schema.TITLE)
        drops[key] = _parquet_bytes(part)
    return drops, _parquet_bytes(target.select(schema.ID, schema.TEXT))


def _parquet_bytes(frame: pl.DataFrame) -> bytes:
    buf = io.BytesIO()
    frame.write_parquet(buf)
    return buf.getvalue()


def _materialize(
    resources: dict[str, Any],
    instance: dg.DagsterInstance,
    selection,
    partition_key: str | None = None,
    run_config: dict | None = None,
) -> dg.ExecuteInProcessResult:
    from climb_dagster.definitions import defs

    result = dg.materialize(
        list(defs.assets or []) + list(defs.asset_checks or []),
        selection=selection,
        partition_key=partition_key,
        instance=instance,
        resources=resources,
        run_config=run_config or {},
        raise_on_error=True,
    )
    assert result.success, selection
    return result


def _only(config: dict, names: list[str]) -> dict:
    return {"ops": {k: v for k, v in config.items() if k in names}}


def run_clustering(resources: dict[str, Any], instance: dg.DagsterInstance) -> None:
    from climb_dagster.jobs import EMBED_ONLY_KEYS, FULL_DROP_KEYS, REASSIGN_KEYS
    from climb_dagster.partitions import crawl_drops

    drops = resources["landing"].list_drops()
    assert drops == list(PIPELINE_DROPS)
    instance.add_dynamic_partitions(crawl_drops.name, drops)
    for key in drops:
        _materialize(resources, instance, list(EMBED_ONLY_KEYS), key)
    _materialize(
        resources, instance, ["cluster_centroids"], run_config=_only(CLUSTERING_CONFIG, ["cluster_centroids"])
    )
    for key in drops:
        _materialize(resources, instance, list(REASSIGN_KEYS), key)
    rest = dg.AssetSelection.groups("clustering") - dg.AssetSelection.assets(
        *FULL_DROP_KEYS, "cluster_centroids"
    )
    _materialize(
        resources, instance, rest, run_config=_only(CLUSTERING_CONFIG, ["pruned_clusters", "super_clusters"])
    )


def run_bootstrapping(
    resources: dict[str, Any],
    instance: dg.DagsterInstance,
    target_path: str,
    name: str = EXPERIMENT_NAME,
    proxy_data: bool = True,
    groups: list[str] | None = None,
) -> dg.ExecuteInProcessResult:
    """Proxy data (unless `proxy_data` is False), then the experiment's groups (default: all of them)."""
    from climb_dagster.jobs import EXPERIMENT_GROUPS
    from climb_dagster.partitions import experiments

    if proxy_data:
        # As the jobs run it: the tokenizer, each drop's tokens (a step per drop), then the index.
        _materialize(resources, instance, ["proxy_tokenizer"], run_config={"ops": TOKENIZER_CONFIG})
        for key in resources["landing"].list_drops():
            _materialize(resources, instance, ["drop_tokens"], key)
        _materialize(resources, instance, ["cluster_tokens"])
    instance.add_dynamic_partitions(experiments.name, [name])
    groups = groups or EXPERIMENT_GROUPS
    ops: dict[str, Any] = {
        "experiment": {"config": {**EXPERIMENT_SPEC, "target": documents_target(target_path)}}
    }
    if "final" in groups:
        ops["mixture_export"] = {"config": EXPORT_CONFIG}
    return _materialize(resources, instance, dg.AssetSelection.groups(*groups), name, {"ops": ops})


def run_pipeline(
    resources: dict[str, Any], instance: dg.DagsterInstance, target_path: str
) -> dg.ExecuteInProcessResult:
    run_clustering(resources, instance)
    return run_bootstrapping(resources, instance, target_path)


def write_local_landing(landing: Path, drops: dict[str, bytes]) -> None:
    landing.mkdir(parents=True, exist_ok=True)
    for key, data in drops.items():
        (landing / f"{key}.parquet").write_bytes(data)
