"""The clustering stage in one process, on documents already in memory: k-means over per-drop embedding
arrays -> assignment and quality rating drop by drop -> prune -> merge into super-clusters.

The pipeline runs the same core functions as separate assets; the benches (cluster, e2e) call this."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from climb_dagster.core.clustering.kmeans import assign_clusters, fit_centroids_on_arrays
from climb_dagster.core.common import schema
from climb_dagster.core.common.errors import ClimbInputError


@dataclass(frozen=True)
class ClusteringResult:
    """Per document: its k-means cluster and super-cluster (-1: its cluster was pruned)."""

    centroids: np.ndarray
    cluster: np.ndarray
    super_cluster: np.ndarray
    n_sample: int
    clusters_kept: int
    n_superclusters: int
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def kept(self) -> np.ndarray:
        return self.super_cluster >= 0


def cluster_documents(
    docs: pl.DataFrame,
    embeddings: np.ndarray,
    kmeans: object,
    prune: object,
    merge: object,
    centroids: np.ndarray | None = None,
) -> ClusteringResult:
    """Cluster `docs` (with a drop column) given their `embeddings` (rows aligned) and the stage configs
    (KMeansConfig, PruneConfig, MergeConfig), rating quality with the heuristic rater. `centroids`: keep these
    (a new drop assigned to the fitted clusters, then re-pruned and re-merged) instead of fitting."""
    from climb_dagster.core.clustering.superclusters import (
        cluster_quality_from_profile,
        combine_profiles,
        drop_profile,
        merge_clusters,
    )
    from climb_dagster.core.quality.base import rate_documents
    from climb_dagster.core.quality.heuristics import HeuristicRater
    from climb_dagster.core.quality.pruning import prune_clusters

    if schema.DROP not in docs.columns:
        raise ClimbInputError(f"documents have no {schema.DROP!r} column (columns: {docs.columns})")
    if embeddings.shape[0] != docs.height:
        raise ClimbInputError(f"{embeddings.shape[0]} embeddings for {docs.height} documents")
    timings: dict[str, float] = {}
    # Drops stay separate arrays, as in the pipeline: the sample and the assignment go drop by drop.
    drops = docs.get_column(schema.DROP).to_numpy()
    keys = sorted(set(drops.tolist()))
    arrays = {k: embeddings[drops == k] for k in keys}
    t0 = time.perf_counter()
    if centroids is None:
        fit = fit_centroids_on_arrays(arrays, kmeans)
        centroids, n_sample = fit.centroids, fit.n_sample
    else:
        centroids, n_sample = np.asarray(centroids, dtype=np.float32), 0
    timings["kmeans_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    rater = HeuristicRater()
    profiles = []
    cluster = np.empty(docs.height, dtype=np.int32)
    for key in keys:
        rows = np.flatnonzero(drops == key)
        a = assign_clusters(arrays[key], centroids, kmeans)
        cluster[rows] = a.cluster
        q = rate_documents(rater, docs[rows])
        profiles.append(drop_profile(docs[rows], a.cluster, a.distance, q))
    timings["assign_and_rate_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    quality = cluster_quality_from_profile(combine_profiles(profiles), len(centroids))
    pruned = prune_clusters(quality, prune)
    mapping = merge_clusters(centroids, pruned, merge)
    timings["prune_and_merge_s"] = time.perf_counter() - t0

    lookup = np.full(len(centroids), -1, dtype=np.int64)
    lookup[mapping[schema.CLUSTER].to_numpy()] = mapping[schema.SUPER_CLUSTER].to_numpy()
    return ClusteringResult(
        centroids=centroids,
        cluster=cluster,
        super_cluster=lookup[cluster],
        n_sample=n_sample,
        clusters_kept=int(pruned["kept"].sum()),
        n_superclusters=int(mapping[schema.SUPER_CLUSTER].n_unique()),
        timings=timings,
    )
