"""cluster_centroids: k-means fit on a seeded sample across every drop's embeddings (bounded by the sample)."""

# No `from __future__ import annotations`: Dagster reads Config annotations at decoration time.

from typing import Any

import dagster as dg
import numpy as np
from pydantic import Field

from climb_dagster.assets.clustering.common import CENTROIDS, GROUP, LAZY_IN, bundle_centroids
from climb_dagster.core.clustering.kmeans import (
    KMeansConfig,
    fit_centroids,
    thin_sample,
)
from climb_dagster.core.common.artifacts import TensorBundle
from climb_dagster.core.common.configs import core_config


class CentroidsConfig(dg.Config):
    """K-means settings (see climb_dagster.core.clustering.kmeans.KMeansConfig); n_clusters None = sized to the corpus."""

    n_clusters: int | None = Field(
        default=None, description="Number of k-means clusters (K_init); null = sized to the corpus."
    )
    niter: int = Field(default=25, description="Lloyd iterations.")
    seed: int = Field(default=0, description="Seed of the training sample and of FAISS's initialisation.")
    max_points_per_centroid: int = Field(
        default=256, description="Training sample cap per centroid (FAISS's own default is 256)."
    )
    metric: str = Field(
        default="cosine",
        description="cosine (spherical k-means, distance 1 - cos) or euclidean (plain k-means, L2 distance).",
    )
    device: str = Field(default="auto", description="auto (GPU when FAISS sees one), cpu or cuda.")

    def build(self) -> KMeansConfig:
        return core_config(KMeansConfig, self)


@dg.asset(
    group_name=GROUP,
    kinds={"faiss"},
    ins={"document_embeddings": dg.AssetIn(metadata=LAZY_IN)},
)
def cluster_centroids(
    context: dg.AssetExecutionContext, config: CentroidsConfig, document_embeddings: dict
) -> dg.Output[TensorBundle]:
    """K-means centroids fit on a seeded sample drawn across all drops (memory bounded by K x 256 rows)."""
    kcfg = config.build()
    loaded: dict[str, Any] = {}

    def array(key: str) -> Any:
        # One memmap per drop, opened on first use: only sampled rows are read from disk.
        if key not in loaded:
            loaded[key] = document_embeddings[key].load()
        return loaded[key]

    counts = {key: int(array(key).shape[0]) for key in sorted(document_embeddings)}
    context.log.info(f"fitting k-means over {len(counts)} drops, {sum(counts.values())} documents")
    fit = fit_centroids(counts, lambda key, idx: array(key)[idx], kcfg)
    k = len(fit.centroids)
    if (thin := thin_sample(fit)) is not None:
        context.log.warning(thin)
    meta = {
        "metric": kcfg.metric,
        "seed": str(kcfg.seed),
        "n_docs": str(fit.n_docs),
        "n_sample": str(fit.n_sample),
    }
    return dg.Output(
        TensorBundle(tensors={CENTROIDS: fit.centroids}, metadata=meta),
        metadata={
            "k_init": k,
            "dimension": int(fit.centroids.shape[1]),
            "drops": len(counts),
            "n_docs": fit.n_docs,
            "n_sample": fit.n_sample,
            "points_per_centroid": round(fit.n_sample / k, 1),
            "sample_per_drop": dg.MetadataValue.json(fit.sample_per_drop),
            "objective": fit.objective,
            "sample_seconds": round(fit.sample_seconds, 3),
            "fit_seconds": round(fit.fit_seconds, 3),
            "sample_rows_per_s": round(fit.n_sample / max(fit.fit_seconds, 1e-9), 1),
        },
    )


@dg.asset_check(asset=cluster_centroids, blocking=True)
def centroids_are_finite(cluster_centroids: TensorBundle) -> dg.AssetCheckResult:
    """Centroids are finite, and unit length under the cosine metric."""
    centroids, metric = bundle_centroids(cluster_centroids)
    finite = bool(np.isfinite(centroids).all())
    norms = np.linalg.norm(centroids, axis=1)
    unit = metric != "cosine" or bool(np.allclose(norms, 1.0, atol=1e-3))
    return dg.AssetCheckResult(
        passed=finite and unit,
        metadata={
            "finite": finite,
            "unit_norm": unit,
            "min_norm": float(norms.min()),
            "max_norm": float(norms.max()),
        },
    )
