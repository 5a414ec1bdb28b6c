"""Document quality raters (1–5) by registered name, their model files verified, and quality-based cluster
pruning.

May import: common, io. Importing the package registers the built-in raters (heuristic, fasttext).
"""

from climb_dagster.core.quality.base import (
    QualityRater,
    RaterSpec,
    WeightedMeanRater,
    build_rater,
    rate_documents,
    register_rater,
    registered_raters,
)
from climb_dagster.core.quality.fasttext_rater import FastTextRater
from climb_dagster.core.quality.heuristics import HeuristicRater, HeuristicThresholds, heuristic_features
from climb_dagster.core.quality.pruning import (
    KEPT,
    N_DOCS,
    PAPER_THRESHOLD,
    QUALITY_MEAN,
    PruneConfig,
    cluster_quality,
    prune_clusters,
    quality_from_sums,
)

__all__ = [
    "KEPT",
    "N_DOCS",
    "PAPER_THRESHOLD",
    "QUALITY_MEAN",
    "FastTextRater",
    "HeuristicRater",
    "HeuristicThresholds",
    "PruneConfig",
    "QualityRater",
    "RaterSpec",
    "WeightedMeanRater",
    "build_rater",
    "cluster_quality",
    "heuristic_features",
    "prune_clusters",
    "quality_from_sums",
    "rate_documents",
    "register_rater",
    "registered_raters",
]
