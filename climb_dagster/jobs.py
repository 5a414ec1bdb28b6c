"""Every job of the code location: the clustering side (run by the sensors and schedule in
automation/clustering.py), the bootstrapping side, and storage retention (scheduled in
automation/retention.py)."""

import dagster as dg

from climb_dagster.assets.clustering import CORPUS_KEYS
from climb_dagster.assets.experiments import MAX_ROUNDS
from climb_dagster.hooks import step_memory
from climb_dagster.k8s import heavy_job_executor, heavy_job_run_tags
from climb_dagster.ops.retention import delete_old_run_folders
from climb_dagster.partitions import crawl_drops, experiments

RAW = "raw_documents"
EMBED_ONLY_KEYS = [RAW, "document_embeddings", "document_quality"]
FULL_DROP_KEYS = [*EMBED_ONLY_KEYS, "cluster_assignments", "cluster_profiles"]
REASSIGN_KEYS = ["cluster_assignments", "cluster_profiles"]

drop_clustering_job = dg.define_asset_job(
    "drop_clustering_job",
    hooks={step_memory},
    selection=dg.AssetSelection.assets(*FULL_DROP_KEYS),
    description="Ingest, embed, rate, assign and profile one crawl drop.",
)
drop_embedding_job = dg.define_asset_job(
    "drop_embedding_job",
    hooks={step_memory},
    selection=dg.AssetSelection.assets(*EMBED_ONLY_KEYS),
    description="Ingest, embed and rate one crawl drop (before any centroids exist).",
)
reassign_drop_job = dg.define_asset_job(
    "reassign_drop_job",
    hooks={step_memory},
    selection=dg.AssetSelection.assets(*REASSIGN_KEYS),
    description="Re-assign one drop to the current centroids and rebuild its cluster profile.",
)
refit_centroids_job = dg.define_asset_job(
    "refit_centroids_job",
    hooks={step_memory},
    selection=dg.AssetSelection.assets("cluster_centroids"),
    description="Refit k-means centroids on a fresh sample over all drops.",
)
merge_job = dg.define_asset_job(
    "merge_clusters_job",
    hooks={step_memory},
    selection=dg.AssetSelection.assets(*CORPUS_KEYS),
    description="Recompute cluster quality, prune, and merge into super-clusters.",
)


EXPERIMENT_GROUPS = ["experiments", *[f"round_{k}" for k in range(1, MAX_ROUNDS + 1)], "final"]

proxy_tokenizer_job = dg.define_asset_job(
    "proxy_tokenizer_job",
    hooks={step_memory},
    selection=dg.AssetSelection.assets("proxy_tokenizer"),
    description="Train the proxies' tokenizer on a bounded sample of the drops.",
)
drop_tokens_job = dg.define_asset_job(
    "drop_tokens_job",
    hooks={step_memory},
    selection=dg.AssetSelection.assets("drop_tokens"),
    partitions_def=crawl_drops,
    description="Tokenize one crawl drop (token counts of every document, token ids of a bounded sample).",
)
proxy_data_job = dg.define_asset_job(
    "proxy_data_job",
    hooks={step_memory},
    selection=dg.AssetSelection.assets("cluster_tokens"),
    description="Index the drops' token stores per super-cluster (no tokenizing), after a bounded cross-drop "
    "duplicate-id check.",
)

experiment_job = dg.define_asset_job(
    "climb_experiment_job",
    hooks={step_memory},
    selection=dg.AssetSelection.groups(*EXPERIMENT_GROUPS),
    partitions_def=experiments,
    executor_def=heavy_job_executor(),
    tags=heavy_job_run_tags(),
    description=(
        "One experiment end to end: rounds of proxy training, predictors, final mixture and export. In the "
        "launchpad, pick the experiment's name in the partition box (or add one: Materialize -> Add partition); the "
        "scaffolded config is valid as is (the demo's held-out documents as target) and `target` takes exactly one "
        "kind: documents_loss, mc_accuracy, lm_eval or combined."
    ),
)


@dg.job(
    hooks={step_memory},
    description="Delete <storage>/<run_id>/ folders of runs finished more than max_age_days ago.",
)
def storage_retention_job():
    delete_old_run_folders()


CLUSTERING_JOBS = [drop_clustering_job, drop_embedding_job, reassign_drop_job, refit_centroids_job, merge_job]
BOOTSTRAP_JOBS = [proxy_tokenizer_job, drop_tokens_job, proxy_data_job, experiment_job]
RETENTION_JOBS = [storage_retention_job]
JOBS = [*CLUSTERING_JOBS, *BOOTSTRAP_JOBS, *RETENTION_JOBS]
