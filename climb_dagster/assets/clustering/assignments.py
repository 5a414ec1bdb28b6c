"""cluster_assignments: each document of a drop assigned to its nearest centroid (per drop)."""

# No `from __future__ import annotations`: Dagster reads Config annotations at decoration time.

import dagster as dg
import numpy as np
import polars as pl
from pydantic import Field

from climb_dagster.assets.clustering.common import GROUP, bundle_centroids, check_rows, partitioned_check
from climb_dagster.core.clustering.kmeans import (
    KMeansConfig,
    assign_clusters,
)
from climb_dagster.core.common import schema
from climb_dagster.core.common.artifacts import TensorBundle
from climb_dagster.core.common.timing import Timer
from climb_dagster.partitions import crawl_drops


class AssignmentsConfig(dg.Config):
    chunk_rows: int = Field(default=65536, description="Embeddings assigned per chunk (bounds memory).")


@dg.asset(partitions_def=crawl_drops, group_name=GROUP, kinds={"faiss", "polars"})
def cluster_assignments(
    context: dg.AssetExecutionContext,
    config: AssignmentsConfig,
    raw_documents: pl.DataFrame,
    document_embeddings: np.ndarray,
    cluster_centroids: TensorBundle,
) -> dg.Output[pl.DataFrame]:
    """Nearest centroid and distance to it for every document of the drop (id, cluster, distance)."""
    key = context.partition_key
    check_rows("document_embeddings", document_embeddings.shape[0], raw_documents, key)
    centroids, metric = bundle_centroids(cluster_centroids)
    timer = Timer()
    a = assign_clusters(
        document_embeddings, centroids, KMeansConfig(metric=metric, chunk_rows=config.chunk_rows)
    )
    seconds = timer.seconds
    table = pl.DataFrame(
        {
            schema.ID: raw_documents.get_column(schema.ID),
            schema.CLUSTER: a.cluster,
            schema.DISTANCE: a.distance,
        }
    )
    sizes = np.bincount(a.cluster, minlength=len(centroids))
    return dg.Output(
        table,
        metadata={
            "dagster/row_count": table.height,
            "clusters_used": int((sizes > 0).sum()),
            "largest_cluster": int(sizes.max()) if len(sizes) else 0,
            "mean_distance": float(a.distance.mean()) if len(a.distance) else 0.0,
            "seconds": round(seconds, 3),
            "docs_per_s": round(table.height / max(seconds, 1e-9), 1),
        },
    )


@partitioned_check(
    asset=cluster_assignments,
    blocking=True,
    additional_ins={"document_embeddings": dg.AssetIn("document_embeddings")},
)
def assignments_complete(
    cluster_assignments: pl.DataFrame, document_embeddings: np.ndarray
) -> dg.AssetCheckResult:
    """Every embedded document has exactly one cluster."""
    n_emb = int(document_embeddings.shape[0])
    nulls = int(cluster_assignments.get_column(schema.CLUSTER).null_count())
    dup_ids = cluster_assignments.height - cluster_assignments.get_column(schema.ID).n_unique()
    return dg.AssetCheckResult(
        passed=cluster_assignments.height == n_emb and nulls == 0 and dup_ids == 0,
        metadata={
            "rows": cluster_assignments.height,
            "embeddings": n_emb,
            "null_clusters": nulls,
            "duplicate_ids": dup_ids,
        },
    )
