"""super_clusters + super_cluster_stats: surviving clusters merged into labelled super-clusters."""

# No `from __future__ import annotations`: Dagster reads Config annotations at decoration time.

import dagster as dg
import numpy as np
import polars as pl
from pydantic import Field

from climb_dagster.assets.clustering.common import GROUP, LAZY_IN, bundle_centroids
from climb_dagster.assets.clustering.pruning import read_profiles
from climb_dagster.assets.metadata import table as table_metadata
from climb_dagster.core.clustering.superclusters import (
    DEFAULT_MAX_SUPERCLUSTERS,
    EXAMPLE_TITLES,
    MergeConfig,
    combine_profiles,
    merge_clusters,
    merge_counts,
    supercluster_labels,
    supercluster_stats,
)
from climb_dagster.core.common import schema
from climb_dagster.core.common.artifacts import TensorBundle
from climb_dagster.core.common.configs import core_config
from climb_dagster.core.common.timing import Timer
from climb_dagster.core.quality.pruning import (
    N_DOCS,
    QUALITY_MEAN,
)
from climb_dagster.core.report.plots import (
    centroid_map_png,
    supercluster_sizes_png,
)
from climb_dagster.resources.tracking import MlflowTracker
from climb_dagster.tracking.experiment_tree import plot_metadata


class SuperClustersConfig(dg.Config):
    """Distance-threshold merge (the paper's) by default; n_superclusters instead = a fixed-count cut.

    distance_threshold None = DEFAULT_DISTANCE_THRESHOLD, in the k-means metric's units (cosine: 1 - cos);
    linkage average|complete|single|ward (ward: Ward's height, meant for fixed-count cuts).
    min_superclusters / max_superclusters bound the threshold cut's count (None: unbounded).
    """

    n_superclusters: int | None = Field(
        default=None,
        description="A fixed number of super-clusters (cut of the merge tree); null: distance cut.",
    )
    distance_threshold: float | None = Field(
        default=None,
        description="Merge while the linkage distance is below this (k-means metric units, cosine: 1 - cos); "
        "null = the default threshold. Set at most one of this and n_superclusters.",
    )
    linkage: str = Field(default="average", description="average, complete, single or ward.")
    min_superclusters: int | None = Field(
        default=None,
        description="Lower bound on the distance cut's count: fewer super-clusters = cut at this count instead.",
    )
    max_superclusters: int | None = Field(
        default=DEFAULT_MAX_SUPERCLUSTERS,
        description="Upper bound on the distance cut's count (default 21, the paper's upper end): more = cut "
        "at this count instead. null: unbounded.",
    )
    top_terms: int = Field(
        default=10, description="c-TF-IDF terms shown (and used for names) per super-cluster."
    )
    example_titles: int = Field(default=3, description="Example document titles shown per super-cluster.")


def _stats_table(stats: pl.DataFrame, labels: list[str]) -> dg.TableMetadataValue:
    shown = stats.with_columns(
        pl.Series("label", labels),
        pl.col(QUALITY_MEAN).fill_null(0.0),
        pl.col(EXAMPLE_TITLES).list.join(" | "),
    ).select(schema.SUPER_CLUSTER, "label", pl.exclude(schema.SUPER_CLUSTER, "label"))
    return table_metadata(
        shown,
        max_rows=1000,
        decimals=3,
        descriptions={
            "label": "id and first top terms: the name used in every table, plot and export",
            schema.N_TOKENS: "whitespace-separated words",
        },
    )


@dg.multi_asset(
    group_name=GROUP,
    outs={
        "super_clusters": dg.AssetOut(
            kinds={"polars"}, description="Mapping cluster -> super_cluster (0..S-1)."
        ),
        "super_cluster_stats": dg.AssetOut(
            kinds={"polars"}, description="Per super-cluster: documents, words, quality, top terms, titles."
        ),
    },
    ins={"cluster_profiles": dg.AssetIn(metadata=LAZY_IN)},
)
def super_clusters(
    context: dg.AssetExecutionContext,
    config: SuperClustersConfig,
    tracker: MlflowTracker,
    pruned_clusters: pl.DataFrame,
    cluster_centroids: TensorBundle,
    cluster_profiles: dict,
) -> tuple[dg.Output[pl.DataFrame], dg.Output[pl.DataFrame]]:
    """Merge the kept clusters by centroid distance (agglomerative) and describe each super-cluster."""
    timer = Timer()
    centroids, metric = bundle_centroids(cluster_centroids)
    merge = core_config(MergeConfig, config, exclude=("top_terms", "example_titles"), metric=metric)
    mapping = merge_clusters(centroids, pruned_clusters, merge)
    merge_s = timer.seconds
    profile = combine_profiles(read_profiles(cluster_profiles))
    stats = supercluster_stats(mapping, profile, config.top_terms, config.example_titles)
    groups = np.full(len(centroids), -1)
    groups[mapping.get_column(schema.CLUSTER).to_numpy()] = mapping.get_column(
        schema.SUPER_CLUSTER
    ).to_numpy()
    sizes = np.zeros(len(centroids))
    sizes[pruned_clusters.get_column(schema.CLUSTER).to_numpy()] = pruned_clusters.get_column(
        N_DOCS
    ).to_numpy()
    labels = supercluster_labels(stats, stats.height)
    sizes_png = supercluster_sizes_png(stats.get_column(N_DOCS).to_list(), labels)
    map_png = centroid_map_png(centroids, groups, sizes, labels)
    n_super = stats.height
    counts = merge_counts(len(centroids), pruned_clusters, n_super)
    shown = plot_metadata(
        context.log.warning,
        tracker,
        {"centroid_map": ("centroid map", map_png), "sizes_plot": ("super-cluster sizes", sizes_png)},
    )
    return (
        dg.Output(
            mapping,
            output_name="super_clusters",
            metadata={
                "dagster/row_count": mapping.height,
                "n_superclusters": n_super,
                "clusters_merged": mapping.height,
                "merge": merge.describe(),
                **counts,
                "merge_seconds": round(merge_s, 3),
                **{k: v for k, v in shown.items() if k.startswith("centroid_map")},
            },
        ),
        dg.Output(
            stats,
            output_name="super_cluster_stats",
            metadata={
                "dagster/row_count": n_super,
                "documents": int(stats.get_column(N_DOCS).sum()),
                "tokens": int(stats.get_column(schema.N_TOKENS).sum()),
                "token_unit": "whitespace-separated words",
                "super_clusters": _stats_table(stats, labels),
                **{k: v for k, v in shown.items() if k.startswith("sizes_plot")},
                "seconds": round(timer.seconds, 3),
            },
        ),
    )


@dg.asset_check(asset="super_cluster_stats", blocking=True)
def no_empty_super_cluster(super_cluster_stats: pl.DataFrame) -> dg.AssetCheckResult:
    """Every super-cluster holds documents, and ids run 0..S-1."""
    ids = super_cluster_stats.get_column(schema.SUPER_CLUSTER).to_list()
    empty = super_cluster_stats.filter(pl.col(N_DOCS) == 0).get_column(schema.SUPER_CLUSTER).to_list()
    contiguous = sorted(ids) == list(range(len(ids)))
    return dg.AssetCheckResult(
        passed=not empty and contiguous and len(ids) > 0,
        metadata={
            "n_superclusters": len(ids),
            "empty": dg.MetadataValue.json(empty),
            "contiguous_ids": contiguous,
        },
    )
