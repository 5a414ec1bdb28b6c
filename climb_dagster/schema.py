"""Column names and dtypes shared by every stage; check them at stage boundaries."""

from __future__ import annotations

# Documents (one crawl drop).
ID = "id"
TEXT = "text"
SOURCE = "source"
TITLE = "title"
# Label column of the demo corpus: never read by the pipeline, only by benches/targets.
DOMAIN = "domain"
DROP = "drop"

# Cluster assignments (one row per document, in raw_documents row order).
CLUSTER = "cluster"
DISTANCE = "distance"
SUPER_CLUSTER = "super_cluster"
QUALITY = "quality"
N_TOKENS = "n_tokens"

# Mixtures: one row per mixture, weight columns named by super-cluster.
MIXTURE_ID = "mixture_id"
SCORE = "score"


def weight_column(super_cluster: int) -> str:
    """Name of the weight column of a super-cluster in a mixtures table."""
    return f"w_{super_cluster:03d}"
