"""Per-drop cluster profiles, their corpus-wide quality, and the pruning of low-quality clusters."""

# No `from __future__ import annotations`: Dagster reads Config annotations at decoration time.

from typing import Any

import dagster as dg
import polars as pl
from pydantic import Field

from climb_dagster.assets.clustering.common import GROUP, LAZY_IN, bundle_centroids, check_rows
from climb_dagster.assets.metadata import table as table_metadata
from climb_dagster.core.clustering.superclusters import (
    ProfileConfig,
    cluster_quality_from_profile,
    combine_profiles,
    drop_profile,
)
from climb_dagster.core.common import schema
from climb_dagster.core.common.artifacts import TensorBundle
from climb_dagster.core.common.configs import core_config
from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.common.timing import Timer
from climb_dagster.core.quality.pruning import (
    KEPT,
    N_DOCS,
    PAPER_THRESHOLD,
    QUALITY_MEAN,
    PruneConfig,
    prune_clusters,
)
from climb_dagster.core.report.plots import (
    quality_histogram_png,
)
from climb_dagster.partitions import crawl_drops
from climb_dagster.resources.tracking import MlflowTracker
from climb_dagster.tracking.experiment_tree import plot_metadata


class ProfilesConfig(dg.Config):
    terms_per_cluster: int = Field(
        default=300, description="Term counts kept per cluster of a drop (for c-TF-IDF)."
    )
    words_per_doc: int = Field(default=256, description="Leading words of each document that are counted.")
    titles_per_cluster: int = Field(default=5, description="Titles nearest the centroid kept per cluster.")


@dg.asset(partitions_def=crawl_drops, group_name=GROUP, kinds={"polars"})
def cluster_profiles(
    context: dg.AssetExecutionContext,
    config: ProfilesConfig,
    raw_documents: pl.DataFrame,
    cluster_assignments: pl.DataFrame,
    document_quality: pl.DataFrame,
) -> dg.Output[pl.DataFrame]:
    """Per-cluster summary of the drop (documents, words, quality sum, top terms, nearest titles)."""
    key = context.partition_key
    check_rows("cluster_assignments", cluster_assignments.height, raw_documents, key)
    check_rows("document_quality", document_quality.height, raw_documents, key)
    for name, frame in (("cluster_assignments", cluster_assignments), ("document_quality", document_quality)):
        if not frame.get_column(schema.ID).equals(raw_documents.get_column(schema.ID)):
            raise ClimbInputError(f"drop {key}: {name} ids are not in raw_documents order; rematerialize it")
    timer = Timer()
    profile = drop_profile(
        raw_documents,
        cluster_assignments.get_column(schema.CLUSTER).to_numpy(),
        cluster_assignments.get_column(schema.DISTANCE).to_numpy(),
        document_quality.get_column(schema.QUALITY).to_numpy(),
        core_config(ProfileConfig, config),
    )
    return dg.Output(
        profile,
        metadata={"dagster/row_count": profile.height, "seconds": round(timer.seconds, 3)},
    )


def read_profiles(cluster_profiles: dict) -> Any:
    # One drop's profile in memory at a time.
    return (cluster_profiles[key].load() for key in sorted(cluster_profiles))


@dg.asset(group_name=GROUP, kinds={"polars"}, ins={"cluster_profiles": dg.AssetIn(metadata=LAZY_IN)})
def cluster_quality(
    context: dg.AssetExecutionContext,
    tracker: MlflowTracker,
    cluster_profiles: dict,
    cluster_centroids: TensorBundle,
) -> dg.Output[pl.DataFrame]:
    """Documents, words and mean quality of every cluster over all drops (table lowest first, histogram vs 3.0)."""
    timer = Timer()
    centroids, _ = bundle_centroids(cluster_centroids)
    table = cluster_quality_from_profile(combine_profiles(read_profiles(cluster_profiles)), len(centroids))
    used = table.filter(pl.col(N_DOCS) > 0)
    means = used.get_column(QUALITY_MEAN).to_numpy()
    sizes = used.get_column(N_DOCS).to_numpy()
    hist = quality_histogram_png(means, sizes, PAPER_THRESHOLD)
    per_cluster = used.sort(QUALITY_MEAN).with_columns(
        (pl.col(QUALITY_MEAN) >= PAPER_THRESHOLD).alias(f"at_least_{PAPER_THRESHOLD:g}")
    )
    return dg.Output(
        table,
        metadata={
            "dagster/row_count": table.height,
            f"clusters_below_{PAPER_THRESHOLD:g}": int((means < PAPER_THRESHOLD).sum()),
            f"docs_below_{PAPER_THRESHOLD:g}": int(sizes[means < PAPER_THRESHOLD].sum()),
            "per_cluster": table_metadata(per_cluster, max_rows=60, decimals=3),
            **plot_metadata(context.log.warning, tracker, {"quality_histogram": ("cluster quality histogram", hist)}),
            "drops": len(cluster_profiles),
            "documents": int(table.get_column(N_DOCS).sum()),
            "empty_clusters": table.height - used.height,
            "mean_cluster_quality": float(used.get_column(QUALITY_MEAN).mean() or 0.0),
            "seconds": round(timer.seconds, 3),
        },
    )


class PruneClustersConfig(dg.Config):
    threshold: float = Field(
        default=3.0, description="Drop clusters whose mean quality is below this (1-5; the paper's 3.0)."
    )
    min_docs: int = Field(default=1, description="Drop clusters with fewer documents than this.")


@dg.asset(group_name=GROUP, kinds={"polars"})
def pruned_clusters(config: PruneClustersConfig, cluster_quality: pl.DataFrame) -> dg.Output[pl.DataFrame]:
    """Clusters with a `kept` flag: mean quality >= threshold (paper: 3.0) and at least min_docs documents."""
    table = prune_clusters(cluster_quality, core_config(PruneConfig, config))
    kept = table.filter(pl.col(KEPT))
    docs_all = int(table.get_column(N_DOCS).sum())
    docs_kept = int(kept.get_column(N_DOCS).sum())
    return dg.Output(
        table,
        metadata={
            "threshold": config.threshold,
            "clusters_kept": kept.height,
            "clusters_pruned": int((table.get_column(N_DOCS) > 0).sum()) - kept.height,
            "docs_kept": docs_kept,
            "docs_pruned": docs_all - docs_kept,
            "docs_kept_share": round(docs_kept / max(docs_all, 1), 4),
        },
    )


@dg.asset_check(asset=pruned_clusters)
def enough_documents_kept(pruned_clusters: pl.DataFrame) -> dg.AssetCheckResult:
    """Warn when pruning removes more than half of the documents."""
    total = int(pruned_clusters.get_column(N_DOCS).sum())
    kept = int(pruned_clusters.filter(pl.col(KEPT)).get_column(N_DOCS).sum())
    share = kept / max(total, 1)
    return dg.AssetCheckResult(
        passed=share >= 0.5,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"docs_kept_share": round(share, 4)},
    )
