"""A tiny, fast bootstrapping setup: demo documents with clusters = their domain, stored as the clustering
stage would store them, so the bootstrapping assets can be materialized alone."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import polars as pl

from climb_dagster.core.common import schema
from climb_dagster.core.io import storage
from climb_dagster.deployments import build_resources
from climb_dagster.resources.io_manager import write_value
from climb_dagster_tests.paths import DEMO_DATA

DOMAINS = ["postgres_docs", "literature", "religious", "lexicon"]
TINY_EXPERIMENT = {
    "strategy": "climb",
    "rounds": [4, 2, 2],
    "n_candidates": 2000,
    "proxy_d_model": 32,
    "proxy_layers": 1,
    "proxy_heads": 2,
    "proxy_block_size": 32,
    "proxy_batch_size": 8,
    "proxy_steps": 12,
    "proxy_lr": 0.01,
}


def seed_clustered_corpus(home: Path, docs_per_domain: int = 40) -> Path:
    """Write raw_documents/cluster_assignments (2 drops), super_clusters and stats; return a target file."""
    docs = pl.read_parquet(DEMO_DATA / "drop-0001.parquet").filter(pl.col(schema.DOMAIN).is_in(DOMAINS))
    docs = docs.sort(schema.ID).group_by(schema.DOMAIN, maintain_order=True).head(docs_per_domain + 10)
    target = docs.filter(pl.col(schema.DOMAIN) == "postgres_docs").tail(10)
    docs = docs.join(target.select(schema.ID), on=schema.ID, how="anti")
    root = storage.make_path(home / "storage")
    cluster_of = {d: i for i, d in enumerate(DOMAINS)}
    for i, part in enumerate([docs[::2], docs[1::2]]):
        key = f"drop-{i + 1:04d}"
        write_value(
            root / "raw_documents" / key, part.select(schema.ID, schema.TEXT, schema.TITLE, schema.SOURCE)
        )
        clusters = [cluster_of[d] for d in part[schema.DOMAIN].to_list()]
        write_value(
            root / "cluster_assignments" / key,
            pl.DataFrame(
                {schema.ID: part[schema.ID], schema.CLUSTER: clusters, schema.DISTANCE: [0.1] * part.height}
            ),
        )
    mapping = pl.DataFrame({schema.CLUSTER: [0, 1, 2, 3], schema.SUPER_CLUSTER: [0, 1, 2, 3]})
    write_value(root / "super_clusters", mapping)
    write_value(
        root / "super_cluster_stats", pl.DataFrame({schema.SUPER_CLUSTER: [0, 1, 2, 3], "top_terms": DOMAINS})
    )
    path = home / "target.parquet"
    target.write_parquet(path)
    return path


def all_assets() -> list:
    from climb_dagster.definitions import defs

    return list(defs.assets) + list(defs.asset_checks or [])


def materialize_proxy_data(instance: dg.DagsterInstance, resources: dict) -> dg.ExecuteInProcessResult:
    """Register the two drops and materialize the proxy tokenizer (vocab 512), each drop's tokens and the token
    index, as the jobs do (the per-drop step once per drop)."""
    from climb_dagster.partitions import crawl_drops

    drops = ["drop-0001", "drop-0002"]
    instance.add_dynamic_partitions(crawl_drops.name, drops)
    tokenizer = dg.materialize(
        all_assets(),
        selection=["proxy_tokenizer"],
        instance=instance,
        resources=resources,
        run_config={"ops": {"proxy_tokenizer": {"config": {"vocab_size": 512}}}},
    )
    assert tokenizer.success
    for drop in drops:
        assert dg.materialize(
            all_assets(), selection=["drop_tokens"], partition_key=drop, instance=instance, resources=resources
        ).success
    result = dg.materialize(all_assets(), selection=["cluster_tokens"], instance=instance, resources=resources)
    assert result.success
    return result


def run_experiment(instance: dg.DagsterInstance, name: str, spec: dict, raise_on_error: bool = True):
    """Materialize proxy data + one experiment with the code location's own asset definitions."""
    from climb_dagster.jobs import EXPERIMENT_GROUPS
    from climb_dagster.partitions import experiments

    resources = build_resources()
    materialize_proxy_data(instance, resources)
    instance.add_dynamic_partitions(experiments.name, [name])
    return dg.materialize(
        all_assets(),
        selection=dg.AssetSelection.groups(*EXPERIMENT_GROUPS),
        partition_key=name,
        instance=instance,
        resources=resources,
        run_config={
            "ops": {
                "experiment": {"config": spec},
                # A tiny corpus: the export's budget shrinks to what its smallest super-cluster can fill, where
                # one document is a few percent of it (the export meets shares within one document).
                "mixture_export": {
                    "config": {"token_budget": 20_000, "shard_rows": 50, "share_tolerance": 0.05}
                },
            }
        },
        raise_on_error=raise_on_error,
    )
