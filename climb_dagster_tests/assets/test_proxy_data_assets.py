"""Issue 22: proxy data fans out per drop. A new drop tokenizes only itself, the index re-indexes without
tokenizing, and the sensors chain tokenizer -> drop_tokens (per drop) -> cluster_tokens with no manual step."""

from __future__ import annotations

import dagster as dg
import polars as pl
import pytest

from climb_dagster.automation.proxy_data import drop_tokens_sensor, proxy_data_sensor
from climb_dagster.core.common import schema
from climb_dagster.core.io import storage
from climb_dagster.deployments import build_resources
from climb_dagster.partitions import crawl_drops
from climb_dagster.resources.io_manager import read_value, write_value
from climb_dagster_tests.assets.bootstrap_fixture import all_assets, seed_clustered_corpus


def _materialize(instance: dg.DagsterInstance, key: str, partition: str | None = None, config: dict | None = None):
    result = dg.materialize(
        all_assets(),
        selection=[key],
        partition_key=partition,
        instance=instance,
        resources=build_resources(),
        run_config={"ops": {key: {"config": config}}} if config else None,
    )
    assert result.success
    return result


def _requests(sensor, instance: dg.DagsterInstance) -> list[str | None]:
    result = sensor(dg.build_sensor_context(instance=instance))
    return sorted(r.partition_key or r.run_key for r in result.run_requests or [])


@pytest.fixture
def corpus(climb_home):
    seed_clustered_corpus(climb_home)
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(crawl_drops.name, ["drop-0001", "drop-0002"])
    root = storage.make_path(climb_home / "storage")
    # The clustering stage's materializations the sensors look for (the values are already stored).
    for key in ("drop-0001", "drop-0002"):
        for asset in ("raw_documents", "cluster_assignments"):
            instance.report_runless_asset_event(dg.AssetMaterialization(asset, partition=key))
    instance.report_runless_asset_event(dg.AssetMaterialization("super_clusters"))
    return instance, root


def test_sensors_chain_proxy_data_and_a_new_drop_tokenizes_only_itself(corpus):
    instance, root = corpus
    assert drop_tokens_sensor(dg.build_sensor_context(instance=instance)).skip_reason  # no tokenizer yet
    _materialize(instance, "proxy_tokenizer", config={"vocab_size": 512})
    assert _requests(drop_tokens_sensor, instance) == ["drop-0001", "drop-0002"]
    assert proxy_data_sensor(dg.build_sensor_context(instance=instance)).skip_reason  # waiting for tokens
    for key in ("drop-0001", "drop-0002"):
        _materialize(instance, "drop_tokens", key)
    assert drop_tokens_sensor(dg.build_sensor_context(instance=instance)).skip_reason
    assert len(_requests(proxy_data_sensor, instance)) == 1
    _materialize(instance, "cluster_tokens")
    assert proxy_data_sensor(dg.build_sensor_context(instance=instance)).skip_reason
    first = read_value(root / "cluster_tokens")

    # A third drop arrives: only it is tokenized; the index then covers all three.
    docs = read_value(root / "raw_documents" / "drop-0002").head(20).with_columns(
        pl.concat_str([pl.lit("new-"), pl.col(schema.ID)]).alias(schema.ID)
    )
    write_value(root / "raw_documents" / "drop-0003", docs)
    write_value(
        root / "cluster_assignments" / "drop-0003",
        pl.DataFrame({schema.ID: docs[schema.ID], schema.CLUSTER: [1] * docs.height, schema.DISTANCE: [0.1] * docs.height}),
    )
    instance.add_dynamic_partitions(crawl_drops.name, ["drop-0003"])
    for asset in ("raw_documents", "cluster_assignments"):
        instance.report_runless_asset_event(dg.AssetMaterialization(asset, partition="drop-0003"))
    tokenized = {k: v for k, v in instance.get_latest_storage_id_by_partition(
        dg.AssetKey("drop_tokens"), dg.DagsterEventType.ASSET_MATERIALIZATION
    ).items()}
    assert _requests(drop_tokens_sensor, instance) == ["drop-0003"]
    _materialize(instance, "drop_tokens", "drop-0003")
    after = instance.get_latest_storage_id_by_partition(dg.AssetKey("drop_tokens"), dg.DagsterEventType.ASSET_MATERIALIZATION)
    assert {k: after[k] for k in tokenized} == tokenized  # the old drops were not tokenized again
    assert len(_requests(proxy_data_sensor, instance)) == 1
    _materialize(instance, "cluster_tokens")
    second = read_value(root / "cluster_tokens")
    assert second.documents[1] == first.documents[1] + 20 and second.key != first.key

    # A re-merge: the index is rebuilt, nothing is tokenized.
    write_value(root / "super_clusters", pl.DataFrame({schema.CLUSTER: [0, 1, 2, 3], schema.SUPER_CLUSTER: [0, 0, 1, 1]}))
    write_value(root / "super_cluster_stats", pl.DataFrame({schema.SUPER_CLUSTER: [0, 1], "top_terms": ["a", "b"]}))
    instance.report_runless_asset_event(dg.AssetMaterialization("super_clusters"))
    assert drop_tokens_sensor(dg.build_sensor_context(instance=instance)).skip_reason
    assert len(_requests(proxy_data_sensor, instance)) == 1
    _materialize(instance, "cluster_tokens")
    merged = read_value(root / "cluster_tokens")
    assert merged.n_clusters == 2 and sum(merged.tokens) == sum(second.tokens)
