"""Clustering stage: embed each drop, fit k-means on a sample across drops, assign, rate, prune, merge.

Per drop (crawl_drops): document_embeddings, document_quality, cluster_assignments, cluster_profiles.
A new drop needs only these four; the corpus-wide assets read the small per-drop profiles, never texts.
Corpus-wide: cluster_centroids, cluster_quality, pruned_clusters, super_clusters + super_cluster_stats.
"""

# No `from __future__ import annotations`: Dagster reads Config annotations at decoration time.

import warnings
from typing import Any

import dagster as dg
import numpy as np
import polars as pl
from pydantic import Field

from climb_dagster.assets.metadata import table as table_metadata
from climb_dagster.core import schema
from climb_dagster.core.artifacts import TensorBundle
from climb_dagster.core.configs import core_config
from climb_dagster.core.errors import ClimbInputError
from climb_dagster.core.kmeans import (
    KMeansConfig,
    assign_clusters,
    fit_centroids,
    nonfinite_rows,
    thin_sample,
)
from climb_dagster.core.plots import (
    centroid_map_png,
    png_markdown,
    quality_histogram_png,
    supercluster_sizes_png,
)
from climb_dagster.core.quality import (
    KEPT,
    N_DOCS,
    PAPER_THRESHOLD,
    QUALITY_MEAN,
    PruneConfig,
    RaterSpec,
    build_rater,
    prune_clusters,
    rate_documents,
)
from climb_dagster.core.superclusters import (
    DEFAULT_MAX_SUPERCLUSTERS,
    EXAMPLE_TITLES,
    MergeConfig,
    ProfileConfig,
    cluster_quality_from_profile,
    combine_profiles,
    drop_profile,
    merge_clusters,
    merge_counts,
    supercluster_labels,
    supercluster_stats,
)
from climb_dagster.core.timing import Timer
from climb_dagster.k8s import EMBEDDING_OP_TAGS
from climb_dagster.partitions import crawl_drops
from climb_dagster.resources.embedding import EmbeddingModelResource
from climb_dagster.resources.io_manager import LAZY

GROUP = "clustering"
CENTROIDS = "centroids"
LAZY_IN = {LAZY: True}


def _bundle_centroids(bundle: TensorBundle) -> tuple[np.ndarray, str]:
    if CENTROIDS not in bundle.tensors:
        raise ClimbInputError(
            f"cluster_centroids bundle lacks tensor {CENTROIDS!r}; has {list(bundle.tensors)}"
        )
    return np.asarray(bundle.tensors[CENTROIDS], dtype=np.float32), bundle.metadata.get("metric", "cosine")


def _check_rows(name: str, n: int, docs: pl.DataFrame, key: str) -> None:
    if n != docs.height:
        raise ClimbInputError(f"drop {key}: {name} has {n} rows but raw_documents has {docs.height}")


@dg.asset(
    partitions_def=crawl_drops,
    group_name=GROUP,
    kinds={"pytorch", "numpy"},
    op_tags=EMBEDDING_OP_TAGS,
    check_specs=[
        dg.AssetCheckSpec(
            "embeddings_finite",
            asset="document_embeddings",
            blocking=True,
            description="No NaN or infinite value in any embedding, and one row per document of the drop.",
        )
    ],
)
def document_embeddings(
    context: dg.AssetExecutionContext, raw_documents: pl.DataFrame, embedder: EmbeddingModelResource
):
    """One float32 row per document of the drop (sentence-transformers pooling, normalised)."""
    timer = Timer()
    model = embedder.load()
    load_s = timer.seconds
    key = context.partition_key
    context.log.info(
        f"drop {key}: embedding {raw_documents.height} documents with {model.spec.path.name} "
        f"on {model.device} ({model.precision}, max {model.max_length} tokens)"
    )
    last: list[Any] = []

    def report(progress: Any) -> None:
        last[:] = [progress]
        context.log.info(f"drop {key}: {progress}")

    from climb_dagster.core.embedding import scratch_rows
    from climb_dagster.core.settings import Settings

    # Rows go to an unlinked scratch file chunk by chunk (bounded memory for large drops); the IO manager
    # then streams that file to storage.
    rows = scratch_rows(Settings.from_env().local_cache_dir(), raw_documents.height, model.dimension)
    emb = model.embed(raw_documents.get_column(schema.TEXT).to_list(), progress=report, out=rows)
    p = last[0] if last else None
    yield dg.Output(
        emb,
        metadata={
            "dagster/row_count": int(emb.shape[0]),
            "dimension": int(emb.shape[1]),
            "model": str(model.spec.path),
            "device": model.device,
            "precision": model.precision,
            "max_length": model.max_length,
            "token_budget": model.token_budget,
            "max_batch_size": model.max_batch_size,
            "load_seconds": round(load_s, 3),
            "embed_seconds": round(p.elapsed_s, 3) if p else 0.0,
            "docs_per_s": round(p.docs_per_s, 1) if p else 0.0,
            "tokens_per_s": round(p.tokens_per_s, 1) if p else 0.0,
            "tokens": int(p.tokens_done) if p else 0,
        },
    )
    bad = nonfinite_rows(emb)
    yield dg.AssetCheckResult(
        check_name="embeddings_finite",
        passed=bad == 0 and emb.shape[0] == raw_documents.height,
        metadata={"rows": int(emb.shape[0]), "documents": raw_documents.height, "nonfinite_rows": bad},
    )


class CentroidsConfig(dg.Config):
    """K-means settings (see climb_dagster.core.kmeans.KMeansConfig); n_clusters None = sized to the corpus."""

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
    centroids, metric = _bundle_centroids(cluster_centroids)
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
    _check_rows("document_embeddings", document_embeddings.shape[0], raw_documents, key)
    centroids, metric = _bundle_centroids(cluster_centroids)
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


def _partitioned_check(**kwargs: Any) -> Any:
    # Partitioned asset checks are a Dagster "preview" feature (1.13); it works here (asset test), so
    # keep the warning out of every definitions load.
    def decorate(fn: Any) -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", dg.PreviewWarning)
            return dg.asset_check(partitions_def=crawl_drops, **kwargs)(fn)

    return decorate


@_partitioned_check(
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


class QualityConfig(dg.Config):
    """Raters: a raters file (YAML/JSON list of dimension, model path or URI, weight; see
    climb_dagster.core.quality.config), or by registered name ("heuristic", "fasttext") / "module:Factory".

    rater_options: name -> keyword options, e.g. {"fasttext": {"model_path": "/models/quality.bin"}};
    rater_weights: name -> weight when several raters are averaged. Default: the heuristic rater alone.
    """

    raters_file: str | None = Field(
        default=None,
        description="A raters file (YAML/JSON list of dimension, model path or URI, weight); when set, "
        "raters, rater_options and rater_weights are not used.",
    )
    raters: list[str] = Field(
        default=["heuristic"],
        description='Raters by registered name ("heuristic", "fasttext") or "module:Factory".',
    )
    rater_options: dict[str, dict[str, Any]] = Field(
        default={},
        description='Rater name -> keyword options, e.g. {"fasttext": {"model_path": "/models/quality.bin"}}.',
    )
    rater_weights: dict[str, float] = Field(
        default={}, description="Rater name -> weight when several raters are averaged (default 1 each)."
    )

    def build(self, storage_options: dict[str, Any] | None = None) -> list[RaterSpec]:
        if self.raters_file:
            from climb_dagster.core.quality.config import load_raters

            return [entry.spec(storage_options) for entry in load_raters(self.raters_file)]
        unknown = (set(self.rater_options) | set(self.rater_weights)) - set(self.raters)
        if unknown:
            raise ClimbInputError(
                f"options/weights for raters {sorted(unknown)} not listed in raters={self.raters}"
            )
        return [
            RaterSpec(n, self.rater_options.get(n, {}), self.rater_weights.get(n, 1.0)) for n in self.raters
        ]


@dg.asset(partitions_def=crawl_drops, group_name=GROUP, kinds={"polars"})
def document_quality(
    context: dg.AssetExecutionContext, config: QualityConfig, raw_documents: pl.DataFrame
) -> dg.Output[pl.DataFrame]:
    """Quality score 1-5 per document of the drop from the configured raters (id, quality)."""
    specs = config.build()
    rater = build_rater(specs)
    timer = Timer()
    scores = rate_documents(rater, raw_documents)
    seconds = timer.seconds
    table = pl.DataFrame({schema.ID: raw_documents.get_column(schema.ID), schema.QUALITY: scores})
    q = np.quantile(scores, [0.1, 0.5, 0.9]) if len(scores) else [0.0, 0.0, 0.0]
    return dg.Output(
        table,
        metadata={
            "dagster/row_count": table.height,
            "raters": ", ".join(f"{s.label or s.name} (x{s.weight:g})" for s in specs),
            "mean_quality": float(scores.mean()) if len(scores) else 0.0,
            "p10_p50_p90": dg.MetadataValue.json([round(float(x), 3) for x in q]),
            "below_3": int((scores < 3.0).sum()),
            "seconds": round(seconds, 3),
            "docs_per_s": round(table.height / max(seconds, 1e-9), 1),
        },
    )


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
    _check_rows("cluster_assignments", cluster_assignments.height, raw_documents, key)
    _check_rows("document_quality", document_quality.height, raw_documents, key)
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


def _profiles(cluster_profiles: dict) -> Any:
    # One drop's profile in memory at a time.
    return (cluster_profiles[key].load() for key in sorted(cluster_profiles))


@dg.asset(group_name=GROUP, kinds={"polars"}, ins={"cluster_profiles": dg.AssetIn(metadata=LAZY_IN)})
def cluster_quality(cluster_profiles: dict, cluster_centroids: TensorBundle) -> dg.Output[pl.DataFrame]:
    """Documents, words and mean quality of every cluster over all drops (table lowest first, histogram vs 3.0)."""
    timer = Timer()
    centroids, _ = _bundle_centroids(cluster_centroids)
    table = cluster_quality_from_profile(combine_profiles(_profiles(cluster_profiles)), len(centroids))
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
            "quality_histogram": dg.MetadataValue.md(png_markdown(hist, "cluster quality histogram")),
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
    config: SuperClustersConfig,
    pruned_clusters: pl.DataFrame,
    cluster_centroids: TensorBundle,
    cluster_profiles: dict,
) -> tuple[dg.Output[pl.DataFrame], dg.Output[pl.DataFrame]]:
    """Merge the kept clusters by centroid distance (agglomerative) and describe each super-cluster."""
    timer = Timer()
    centroids, metric = _bundle_centroids(cluster_centroids)
    merge = core_config(MergeConfig, config, exclude=("top_terms", "example_titles"), metric=metric)
    mapping = merge_clusters(centroids, pruned_clusters, merge)
    merge_s = timer.seconds
    profile = combine_profiles(_profiles(cluster_profiles))
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
                "centroid_map": dg.MetadataValue.md(png_markdown(map_png, "centroid map")),
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
                "sizes_plot": dg.MetadataValue.md(png_markdown(sizes_png, "super-cluster sizes")),
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


CLUSTERING_ASSETS = [
    document_embeddings,
    cluster_centroids,
    cluster_assignments,
    document_quality,
    cluster_profiles,
    cluster_quality,
    pruned_clusters,
    super_clusters,
]
CLUSTERING_CHECKS = [
    centroids_are_finite,
    assignments_complete,
    no_empty_super_cluster,
    enough_documents_kept,
]
# The corpus-wide assets that merge_clusters_job recomputes.
CORPUS_KEYS = ["cluster_quality", "pruned_clusters", "super_clusters", "super_cluster_stats"]
