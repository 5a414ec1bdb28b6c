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

# Per-super-cluster tables (token store summary, export summary).
DOCUMENTS = "documents"
TOKENS = "tokens"

# Mixtures: one row per mixture, weight columns named by super-cluster.
MIXTURE_ID = "mixture_id"
ROUND = "round"
PROXY_KEY = "proxy_key"
SCORE = "score"
WEIGHT_PREFIX = "w_"

# Proxy evaluations: a mixtures row plus the outcome of its proxy run.
STATUS = "status"
REASON = "reason"
TRAIN_LOSS = "train_loss"
STEPS = "steps"
WALL_S = "wall_s"
# Wall-clock epoch seconds when a proxy's training began and its scoring ended (MLflow run times).
STARTED_AT = "started_at"
ENDED_AT = "ended_at"
TOKENS_PER_S = "tokens_per_s"
N_PARAMS = "n_params"
CACHED = "cached"
# What a run trained on, per (super-cluster, drop, fine cluster) (core/proxy/composition.py), as JSON.
COMPOSITION = "composition"
# A proxy job's (and cached run's) weights as one list, before they become weight columns.
WEIGHTS = "weights"

# A proxy run's summary (ProxyResult.to_dict) besides the columns above.
RUN_KEY = "run_key"
LOSS_FIRST = "loss_first"
LOSS_LAST = "loss_last"
LOSS_MIN = "loss_min"
LOSS_CURVE = "loss_curve"
MODEL_DIR = "model_dir"

# Values of STATUS.
OK = "ok"
FAILED = "failed"


def weight_column(super_cluster: int) -> str:
    """Name of the weight column of a super-cluster in a mixtures table."""
    return f"{WEIGHT_PREFIX}{super_cluster:03d}"


def weight_columns_of(columns: list[str]) -> list[str]:
    """The weight columns among `columns`, in super-cluster order."""
    return sorted(c for c in columns if c.startswith(WEIGHT_PREFIX))


def weight_columns(n_clusters: int) -> list[str]:
    """The weight column names of a mixture over `n_clusters` super-clusters."""
    return [weight_column(i) for i in range(n_clusters)]
