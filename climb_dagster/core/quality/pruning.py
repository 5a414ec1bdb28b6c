"""Mean quality per cluster and pruning of the low-quality clusters (CLIMB keeps clusters >= 3.0)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from climb_dagster.core.common import schema
from climb_dagster.core.common.errors import ClimbInputError

PAPER_THRESHOLD = 3.0
KEPT = "kept"
N_DOCS = "n_docs"
QUALITY_MEAN = "quality_mean"


@dataclass(frozen=True)
class PruneConfig:
    """Clusters whose mean quality is below `threshold` are dropped; so are clusters with fewer
    than `min_docs` documents (empty clusters always are)."""

    threshold: float = PAPER_THRESHOLD
    min_docs: int = 1

    def __post_init__(self) -> None:
        if not 1.0 <= self.threshold <= 5.0:
            raise ClimbInputError(f"threshold={self.threshold!r}: must lie in [1, 5]")
        if self.min_docs < 1:
            raise ClimbInputError(f"min_docs={self.min_docs!r}: must be >= 1")


def cluster_quality(clusters: np.ndarray, scores: np.ndarray, n_clusters: int) -> pl.DataFrame:
    """Documents and mean quality per cluster id 0..n_clusters-1 (mean is null for empty clusters)."""
    clusters = np.asarray(clusters)
    scores = np.asarray(scores, dtype=np.float64)
    if clusters.shape != scores.shape:
        raise ClimbInputError(f"{clusters.shape[0]} cluster ids but {scores.shape[0]} quality scores")
    if len(clusters) and (clusters.min() < 0 or clusters.max() >= n_clusters):
        raise ClimbInputError(
            f"cluster ids span {clusters.min()}..{clusters.max()}, expected 0..{n_clusters - 1}"
        )
    counts = np.bincount(clusters, minlength=n_clusters)
    sums = np.bincount(clusters, weights=scores, minlength=n_clusters)
    return quality_from_sums(counts, sums)


def quality_from_sums(counts: np.ndarray, sums: np.ndarray) -> pl.DataFrame:
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return pl.DataFrame(
        {
            schema.CLUSTER: np.arange(len(counts), dtype=np.int32),
            N_DOCS: counts.astype(np.int64),
            QUALITY_MEAN: mean,
        }
    ).with_columns(pl.col(QUALITY_MEAN).fill_nan(None))


def prune_clusters(quality: pl.DataFrame, config: PruneConfig) -> pl.DataFrame:
    """Add a `kept` column; refuse a threshold that would remove every cluster."""
    for col in (schema.CLUSTER, N_DOCS, QUALITY_MEAN):
        if col not in quality.columns:
            raise ClimbInputError(f"cluster quality table lacks column {col!r}; has {quality.columns}")
    out = quality.with_columns(
        ((pl.col(N_DOCS) >= config.min_docs) & (pl.col(QUALITY_MEAN) >= config.threshold))
        .fill_null(False)
        .alias(KEPT)
    )
    if not out.get_column(KEPT).any():
        best = out.filter(pl.col(N_DOCS) >= config.min_docs).get_column(QUALITY_MEAN).max()
        raise ClimbInputError(
            f"quality threshold {config.threshold} would prune every cluster "
            f"(best cluster mean quality: {best if best is None else round(float(best), 3)}); lower the threshold"
        )
    return out
