"""Clustering assets end to end through the real IO manager, plus the sensors, jobs and schedule."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
import pytest

from climb_dagster.assets.clustering import CLUSTERING_ASSETS, CLUSTERING_CHECKS
from climb_dagster.assets.ingest import raw_documents
from climb_dagster.automation.clustering import (
    CLUSTERING_SCHEDULES,
    CLUSTERING_SENSORS,
    merge_sensor,
    new_drops_sensor,
    reassign_sensor,
    recluster_schedule,
)
from climb_dagster.jobs import CLUSTERING_JOBS
from climb_dagster.partitions import crawl_drops
from climb_dagster.resources.embedding import EmbeddingModelResource, default_embedder
from climb_dagster.resources.io_manager import ClimbIOManagerFactory
from climb_dagster.resources.landing import LandingZone
from climb_dagster.resources.tracking import MlflowTracker
from climb_dagster_tests.unit.embedding.test_encoder import make_tiny_model

TOPICS = {
    "db": "The database query planner chooses an index scan when the table is large and the filter is selective.",
    "bible": "And the Lord spake unto Moses, saying, speak unto the children of Israel, that they bring me an offering.",
    "kernel": "The kernel scheduler preempts the running task when an interrupt arrives and a higher priority thread waits.",
}
ALL_ASSETS = [raw_documents, *CLUSTERING_ASSETS]


def _write_drop(landing: Path, key: str, n_per_topic: int, offset: int) -> None:
    rows = []
    for topic, text in TOPICS.items():
        for i in range(n_per_topic):
            rows.append(
                {"id": f"{key}-{topic}-{i}", "text": f"{text} Note {i + offset}.", "title": f"{topic} {i}"}
            )
    pl.DataFrame(rows).write_parquet(landing / f"{key}.parquet")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture
def setup(tmp_path: Path, tiny_model: Path) -> dict:
    landing = tmp_path / "landing"
    landing.mkdir()
    _write_drop(landing, "drop-0001", 6, 0)
    _write_drop(landing, "drop-0002", 4, 100)
    resources = {
        "io_manager": ClimbIOManagerFactory(base_path=str(tmp_path / "store")),
        "landing": LandingZone(base=str(landing), settle_seconds=0),
        "embedder": EmbeddingModelResource(
            model_path=str(tiny_model), precision="fp32", progress_interval_s=0
        ),
        # The clustering plots go to MLflow (a local store here); the metadata links them.
        "tracker": MlflowTracker(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", artifact_root=str(tmp_path / "mlflow")),
    }
    defs = dg.Definitions(
        assets=ALL_ASSETS,
        asset_checks=CLUSTERING_CHECKS,
        jobs=CLUSTERING_JOBS,
        sensors=CLUSTERING_SENSORS,
        schedules=CLUSTERING_SCHEDULES,
        resources=resources,
    )
    return {
        "resources": resources,
        "defs": defs,
        "instance": dg.DagsterInstance.ephemeral(),
        "store": tmp_path / "store",
    }


RUN_CONFIG = {
    "ops": {
        "cluster_centroids": {"config": {"n_clusters": 3, "seed": 0}},
        "pruned_clusters": {"config": {"threshold": 1.0}},
        "super_clusters": {"config": {"n_superclusters": 2}},
    }
}


def _materialize(
    setup: dict, selection: list[str], partition: str | None = None
) -> dg.ExecuteInProcessResult:
    config = {"ops": {k: v for k, v in RUN_CONFIG["ops"].items() if k in selection}}
    return dg.materialize(
        ALL_ASSETS + CLUSTERING_CHECKS,
        selection=selection,
        partition_key=partition,
        instance=setup["instance"],
        resources=setup["resources"],
        run_config=config,
    )


def _meta(result: dg.ExecuteInProcessResult, key: str) -> dict:
    mats = [m for m in result.get_asset_materialization_events() if m.asset_key == dg.AssetKey(key)]
    return mats[-1].materialization.metadata


def _sensor(setup: dict, sensor: dg.SensorDefinition) -> dg.SensorResult:
    context = dg.build_sensor_context(
        instance=setup["instance"],
        definitions=setup["defs"],
        resources={"landing": setup["resources"]["landing"]},
    )
    return sensor(context)


def test_definitions_load(setup: dict) -> None:
    """The clustering stage alone: its assets, checks, five jobs, three sensors and the weekly schedule."""
    defs = setup["defs"]
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    assert {k.to_user_string() for k in graph.get_all_asset_keys()} == {
        "raw_documents",
        "document_embeddings",
        "document_quality",
        "cluster_centroids",
        "cluster_assignments",
        "cluster_profiles",
        "cluster_quality",
        "pruned_clusters",
        "super_clusters",
        "super_cluster_stats",
    }
    assert {graph.get(k).group_name for k in graph.get_all_asset_keys()} == {"ingest", "clustering"}
    assert {(c.asset_key.to_user_string(), c.name) for c in graph.asset_check_keys} == {
        ("raw_documents", "ingest_counts"),
        ("document_embeddings", "embeddings_finite"),
        ("cluster_assignments", "assignments_complete"),
        ("cluster_centroids", "centroids_are_finite"),
        ("pruned_clusters", "enough_documents_kept"),
        ("super_cluster_stats", "no_empty_super_cluster"),
    }
    assert sorted(j.name for j in defs.jobs) == [
        "drop_clustering_job",
        "drop_embedding_job",
        "merge_clusters_job",
        "reassign_drop_job",
        "refit_centroids_job",
    ]
    assert {s.name: sorted(j.name for j in s.jobs) for s in defs.sensors} == {
        "new_drops_sensor": ["drop_clustering_job", "drop_embedding_job"],
        "reassign_sensor": ["reassign_drop_job"],
        "merge_sensor": ["merge_clusters_job"],
    }
    assert [(s.name, s.cron_schedule, s.job_name) for s in defs.schedules] == [
        ("recluster_schedule", "0 3 * * 0", "refit_centroids_job")
    ]
    assert isinstance(default_embedder(), EmbeddingModelResource)


def test_full_stage_new_drop_and_recluster(setup: dict) -> None:
    instance = setup["instance"]
    drops = ["drop-0001", "drop-0002"]

    # 1. The landing sensor registers both drops and, with no centroids yet, only embeds them.
    result = _sensor(setup, new_drops_sensor)
    assert [r.partition_key for r in result.run_requests] == drops
    assert [r.run_key.split("@")[0] for r in result.run_requests] == drops  # key@file fingerprint
    assert {r.job_name for r in result.run_requests} == {"drop_embedding_job"}
    assert result.dynamic_partitions_requests[0].partition_keys == drops
    instance.add_dynamic_partitions(crawl_drops.name, drops)
    assert _sensor(setup, new_drops_sensor).skip_reason
    assert _sensor(setup, reassign_sensor).skip_reason.skip_message == "no centroids yet"

    for key in drops:
        r = _materialize(setup, ["raw_documents", "document_embeddings", "document_quality"], key)
        assert r.success
        meta = _meta(r, "document_embeddings")
        assert meta["dagster/row_count"].value in (18, 12)
        assert meta["tokens_per_s"].value > 0
        checks = {c.check_name: c for c in r.get_asset_check_evaluations()}
        assert {"ingest_counts", "embeddings_finite"} <= set(checks)
        assert all(c.passed for c in checks.values())
        assert checks["embeddings_finite"].metadata["nonfinite_rows"].value == 0
        emb = np.load(setup["store"] / "document_embeddings" / f"{key}.npy", allow_pickle=False)
        assert emb.dtype == np.float32 and emb.shape[1] == 32

    # 2. Centroids from a sample across both drops.
    r = _materialize(setup, ["cluster_centroids"])
    assert r.success
    meta = _meta(r, "cluster_centroids")
    assert meta["k_init"].value == 3 and meta["n_docs"].value == 30 and meta["drops"].value == 2
    assert meta["points_per_centroid"].value == 10.0  # 30 documents, 3 centroids: thin, and said so
    logs = setup["instance"].all_logs(r.run_id)
    assert any("10.0 per centroid" in e.user_message and e.level >= 30 for e in logs)  # a WARNING
    assert all(c.passed for c in r.get_asset_check_evaluations())

    # 3. New centroids: every drop gets re-assigned, one run each.
    result = _sensor(setup, reassign_sensor)
    assert sorted(r.partition_key for r in result.run_requests) == drops
    for key in drops:
        r = _materialize(setup, ["cluster_assignments", "cluster_profiles"], key)
        assert r.success
        checks = r.get_asset_check_evaluations()
        assert checks and all(c.passed for c in checks)
        table = pl.read_parquet(setup["store"] / "cluster_assignments" / f"{key}.parquet")
        assert table.columns == ["id", "cluster", "distance"] and table["cluster"].is_between(0, 2).all()
    assert _sensor(setup, reassign_sensor).skip_reason

    # 4. All drops profiled: the merge sensor fires once.
    result = _sensor(setup, merge_sensor)
    assert len(result.run_requests) == 1
    r = _materialize(setup, ["cluster_quality", "pruned_clusters", "super_clusters", "super_cluster_stats"])
    assert r.success
    assert all(c.passed for c in r.get_asset_check_evaluations())
    stats_meta = _meta(r, "super_cluster_stats")
    assert stats_meta["documents"].value == 30
    assert len(stats_meta["super_clusters"].value.records) == stats_meta["dagster/row_count"].value <= 2
    # Each plot as the MLflow server serves it (short markdown: inline in the UI), a link, and the PNG itself.
    assert "data:image/png;base64," in stats_meta["sizes_plot_png"].value
    assert stats_meta["sizes_plot"].value.startswith("![super-cluster sizes](http")
    assert "/get-artifact?path=plots/sizes_plot-" in stats_meta["sizes_plot_link"].value
    merge_meta = _meta(r, "super_clusters")
    assert "data:image/png;base64," in merge_meta["centroid_map_png"].value
    kept = merge_meta["clusters_kept"].value
    assert merge_meta["cluster_funnel"].value == f"3 -> {kept} -> {merge_meta['n_superclusters'].value}"
    assert "cut at 2 super-clusters" in merge_meta["merge"].value
    quality_meta = _meta(r, "cluster_quality")
    assert "data:image/png;base64," in quality_meta["quality_histogram_png"].value
    per_cluster = quality_meta["per_cluster"].value
    assert "at_least_3" in [c.name for c in per_cluster.schema.columns] and per_cluster.records
    labels = [r.data["label"] for r in stats_meta["super_clusters"].value.records]
    assert labels[0].startswith("00 ") and len(labels[0]) > 3, "named by its top terms"
    mapping = pl.read_parquet(setup["store"] / "super_clusters.parquet")
    assert mapping.columns == ["cluster", "super_cluster"]
    stats = pl.read_parquet(setup["store"] / "super_cluster_stats.parquet")
    assert stats["n_docs"].sum() == 30 and stats["top_terms"].list.len().min() > 0
    assert _sensor(setup, merge_sensor).skip_reason.skip_message == "super-clusters are up to date"

    # 5. A new drop lands: registered and processed alone, with assignment since centroids exist.
    _write_drop(Path(setup["resources"]["landing"].base), "drop-0003", 2, 200)
    result = _sensor(setup, new_drops_sensor)
    assert [(r.partition_key, r.job_name) for r in result.run_requests] == [
        ("drop-0003", "drop_clustering_job")
    ]
    instance.add_dynamic_partitions(crawl_drops.name, ["drop-0003"])
    sel = [
        "raw_documents",
        "document_embeddings",
        "document_quality",
        "cluster_assignments",
        "cluster_profiles",
    ]
    assert _materialize(setup, sel, "drop-0003").success
    assert len(_sensor(setup, merge_sensor).run_requests) == 1


def test_recluster_schedule_seeds_from_tick_date() -> None:
    context = dg.build_schedule_context(scheduled_execution_time=dt.datetime(2026, 11, 29, 3, tzinfo=dt.UTC))
    request = recluster_schedule(context)
    assert request.run_config["ops"]["cluster_centroids"]["config"]["seed"] == 20261129
    assert request.run_key == "recluster@20261129"


def test_rater_config_errors_are_clear(setup: dict) -> None:
    setup["instance"].add_dynamic_partitions(crawl_drops.name, ["drop-0001"])
    with pytest.raises(Exception, match="not listed in raters"):
        dg.materialize(
            ALL_ASSETS,
            selection=["raw_documents", "document_quality"],
            partition_key="drop-0001",
            instance=setup["instance"],
            resources=setup["resources"],
            run_config={
                "ops": {"document_quality": {"config": {"rater_options": {"fasttext": {"model_path": "x"}}}}}
            },
        )


def test_document_quality_reads_a_raters_file(setup: dict, tmp_path) -> None:
    setup["instance"].add_dynamic_partitions(crawl_drops.name, ["drop-0001"])
    raters = tmp_path / "raters.json"
    raters.write_text(
        '[{"dimension": "gopher", "kind": "heuristic", "weight": 1},'
        ' {"dimension": "strict", "kind": "heuristic", "weight": 3, "options": {"weights": {"words_in_range": 5}}}]'
    )
    result = dg.materialize(
        ALL_ASSETS,
        selection=["raw_documents", "document_quality"],
        partition_key="drop-0001",
        instance=setup["instance"],
        resources=setup["resources"],
        run_config={"ops": {"document_quality": {"config": {"raters_file": str(raters)}}}},
    )
    assert result.success
    assert _meta(result, "document_quality")["raters"].value == "gopher (x1), strict (x3)"


class _TwoModelCopies(EmbeddingModelResource):
    """The multi-GPU path on a CPU: two copies of the model, each embedding half of the drop."""

    def load(self):  # noqa: ANN201
        from climb_dagster.core.embedding.encoder import SentenceEmbedder
        from climb_dagster.core.embedding.sharded import ShardedEmbedder

        config = self.embedder_config()
        return ShardedEmbedder([SentenceEmbedder.load(config), SentenceEmbedder.load(config)])


def test_document_embeddings_through_a_sharded_embedder_match_one_model(
    setup: dict, tiny_model: Path
) -> None:
    key = "drop-0001"
    setup["instance"].add_dynamic_partitions(crawl_drops.name, [key])
    assert _materialize(setup, ["raw_documents", "document_embeddings"], key).success
    one = np.load(setup["store"] / "document_embeddings" / f"{key}.npy", allow_pickle=False)
    two = {
        **setup["resources"],
        "embedder": _TwoModelCopies(model_path=str(tiny_model), precision="fp32", progress_interval_s=0),
    }
    r = _materialize({**setup, "resources": two}, ["document_embeddings"], key)
    assert r.success and _meta(r, "document_embeddings")["device"].value == "cpu,cpu"
    sharded = np.load(setup["store"] / "document_embeddings" / f"{key}.npy", allow_pickle=False)
    np.testing.assert_allclose(sharded, one, atol=1e-5)
    assert _meta(r, "document_embeddings")["dagster/row_count"].value == one.shape[0]
