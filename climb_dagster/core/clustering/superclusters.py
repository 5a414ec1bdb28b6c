"""Merge surviving clusters into super-clusters and describe them.

Per drop, `drop_profile` summarises each cluster (documents, tokens, quality sum, top term counts,
titles nearest the centroid) so the corpus-wide step only ever reads these small tables, never texts.
Tokens are whitespace-separated words (cheap, tokenizer-independent).
Top terms use class-based TF-IDF (c-TF-IDF, as in BERTopic): all documents of a super-cluster form one
class; tf = term count / class total, idf = log(1 + mean class total / term count over all classes).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from climb_dagster.core.common import schema
from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.quality.pruning import KEPT, N_DOCS, QUALITY_MEAN, quality_from_sums

LINKAGES = ("ward", "average", "complete", "single")
QUALITY_SUM = "quality_sum"
TERM = "term"
COUNT = "count"
N_CLUSTERS = "n_clusters"
TOP_TERMS = "top_terms"
EXAMPLE_TITLES = "example_titles"
TERMS = "terms"
TERM_COUNTS = "term_counts"
TITLES = "titles"
TITLE_DISTANCES = "title_distances"

# Function words that would top every class; c-TF-IDF's idf handles the rest.
STOP_WORDS = frozenset(
    """a about above after again against all also am an and any are as at be because been before being
    below between both but by can could did do does doing down during each few for from further had has
    have having he her here hers herself him himself his how i if in into is it its itself just may me
    might more most must my myself no nor not now of off on once one only or other our ours ourselves out
    over own same shall she should so some such than that the their theirs them themselves then there
    these they this those through thus to too under until up upon us very was we were what when where
    which while who whom why will with would yet you your yours yourself yourselves""".split()
)


# The paper merges by centroid distance. With average linkage on cosine distance (1 - cos, the k-means
# metric), two groups merge while the mean distance between their member centroids is below the
# threshold. 0.45 was chosen on the demo (1,400 documents of 12 sources, MiniLM, K_init 18, none pruned
# by the heuristic rater): 0.40 -> 12 super-clusters, 0.45 -> 11, 0.50 -> 7, 0.60 -> 5. Corpora with
# another embedding model or K_init need their own value (see docs/merging.md).
DEFAULT_DISTANCE_THRESHOLD = 0.45
# The paper's upper end (16-21 super-clusters): a threshold cut above it is cut at 21 instead.
DEFAULT_MAX_SUPERCLUSTERS = 21
MERGE_METRICS = ("cosine", "euclidean")


@dataclass(frozen=True)
class MergeConfig:
    """Agglomerative merge of cluster centroids.

    At most one of `n_superclusters` (a fixed-count cut) and `distance_threshold` (the paper's criterion:
    merge while the linkage distance is below it) is set; neither = the threshold cut at
    `DEFAULT_DISTANCE_THRESHOLD`. `min_superclusters` / `max_superclusters` bound a threshold cut: where it
    gives a count outside them, the tree is cut at the nearest bound instead (a fixed distance merges
    less as K_init grows, so a count range is what keeps the search's dimension where the paper has it,
    16-21, or where a small corpus can learn it). The threshold is in `metric` units (cosine: 1 - cos, euclidean: L2),
    the metric the centroids were fitted with; under "ward" it is Ward's height (Euclidean, grows with
    group size), so thresholds are meant for average/complete/single linkage.
    """

    n_superclusters: int | None = None
    distance_threshold: float | None = None
    linkage: str = "average"
    metric: str = "cosine"
    min_superclusters: int | None = None
    max_superclusters: int | None = DEFAULT_MAX_SUPERCLUSTERS

    def __post_init__(self) -> None:
        if self.n_superclusters is not None and self.distance_threshold is not None:
            raise ClimbInputError(
                f"set at most one of n_superclusters={self.n_superclusters!r} and "
                f"distance_threshold={self.distance_threshold!r}"
            )
        if self.n_superclusters is None and self.distance_threshold is None:
            object.__setattr__(self, "distance_threshold", DEFAULT_DISTANCE_THRESHOLD)
        for name in ("min_superclusters", "max_superclusters"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ClimbInputError(f"{name}={value!r}: must be >= 1")
        if (self.min_superclusters or 1) > (self.max_superclusters or float("inf")):
            raise ClimbInputError(
                f"min_superclusters={self.min_superclusters} exceeds max_superclusters={self.max_superclusters}"
            )
        if self.n_superclusters is not None and self.n_superclusters < 1:
            raise ClimbInputError(f"n_superclusters={self.n_superclusters!r}: must be >= 1")
        if self.distance_threshold is not None and not self.distance_threshold > 0:
            raise ClimbInputError(f"distance_threshold={self.distance_threshold!r}: must be > 0")
        if self.linkage not in LINKAGES:
            raise ClimbInputError(f"linkage={self.linkage!r}: expected one of {LINKAGES}")
        if self.metric == "l2":
            object.__setattr__(self, "metric", "euclidean")
        if self.metric not in MERGE_METRICS:
            raise ClimbInputError(f"metric={self.metric!r}: expected one of {MERGE_METRICS}")

    def describe(self) -> str:
        if self.n_superclusters is not None:
            return f"{self.linkage} linkage cut at {self.n_superclusters} super-clusters"
        bounds = ""
        if self.min_superclusters is not None or self.max_superclusters is not None:
            bounds = f", kept within [{self.min_superclusters or 1}, {self.max_superclusters or 'all'}]"
        return f"{self.linkage} linkage, {self.metric} distance < {self.distance_threshold:g}{bounds}"

    def bounded(self, n: int) -> int | None:
        """The count to cut at instead when the threshold cut gives `n` super-clusters out of bounds."""
        if self.max_superclusters is not None and n > self.max_superclusters:
            return self.max_superclusters
        if self.min_superclusters is not None and n < self.min_superclusters:
            return self.min_superclusters
        return None


def merge_clusters(centroids: np.ndarray, clusters: pl.DataFrame, config: MergeConfig) -> pl.DataFrame:
    """Map kept clusters to super-clusters 0..S-1, numbered by documents, largest first.

    Args:
        centroids: [k, d] centroids of all clusters (rows indexed by cluster id).
        clusters: table with `cluster`, `n_docs` and optionally `kept` (only kept rows are merged).
        config: merge settings.

    Returns: `cluster`, `super_cluster` (int32) for every kept cluster.
    """
    from scipy.cluster.hierarchy import fcluster, linkage

    if KEPT in clusters.columns:
        clusters = clusters.filter(pl.col(KEPT))
    for col in (schema.CLUSTER, N_DOCS):
        if col not in clusters.columns:
            raise ClimbInputError(f"cluster table lacks column {col!r}; has {clusters.columns}")
    clusters = clusters.sort(schema.CLUSTER)
    ids = clusters.get_column(schema.CLUSTER).to_numpy()
    if len(ids) == 0:
        raise ClimbInputError("no clusters to merge (all pruned?)")
    if ids.max() >= len(centroids):
        raise ClimbInputError(f"cluster id {ids.max()} has no centroid (only {len(centroids)} centroids)")
    points = np.asarray(centroids, dtype=np.float64)[ids]
    if len(ids) == 1:
        labels = np.array([1])
    else:
        # Ward is defined for Euclidean distances only (on unit centroids it orders like cosine).
        metric = "euclidean" if config.linkage == "ward" else config.metric
        tree = linkage(points, method=config.linkage, metric=metric)
        if config.n_superclusters is not None:
            labels = fcluster(tree, t=min(config.n_superclusters, len(ids)), criterion="maxclust")
        else:
            labels = fcluster(tree, t=config.distance_threshold, criterion="distance")
            count = config.bounded(int(np.unique(labels).size))
            if count is not None:
                labels = fcluster(tree, t=min(count, len(ids)), criterion="maxclust")
    sizes = clusters.get_column(N_DOCS).to_numpy()
    raw = pl.DataFrame({schema.CLUSTER: ids.astype(np.int32), "raw": labels, N_DOCS: sizes})
    order = (
        raw.group_by("raw")
        .agg(pl.col(N_DOCS).sum(), pl.col(schema.CLUSTER).min().alias("first"))
        .sort([N_DOCS, "first"], descending=[True, False])
        .with_row_index(schema.SUPER_CLUSTER)
        .select("raw", pl.col(schema.SUPER_CLUSTER).cast(pl.Int32))
    )
    return raw.join(order, on="raw").select(schema.CLUSTER, schema.SUPER_CLUSTER).sort(schema.CLUSTER)


def merge_counts(k_init: int, pruned: pl.DataFrame, n_superclusters: int) -> dict[str, Any]:
    """The paper's funnel K_init -> kept after pruning -> super-clusters, for metadata and reports."""
    kept = int(pruned.get_column(KEPT).sum()) if KEPT in pruned.columns else pruned.height
    return {
        "k_init": int(k_init),
        "clusters_kept": kept,
        "n_superclusters": int(n_superclusters),
        "cluster_funnel": f"{int(k_init)} -> {kept} -> {int(n_superclusters)}",
    }


@dataclass(frozen=True)
class ProfileConfig:
    """How much of each drop a cluster profile keeps."""

    terms_per_cluster: int = 300
    words_per_doc: int = 256
    titles_per_cluster: int = 5

    def __post_init__(self) -> None:
        for name in ("terms_per_cluster", "words_per_doc", "titles_per_cluster"):
            if getattr(self, name) < 1:
                raise ClimbInputError(f"{name}={getattr(self, name)!r}: must be >= 1")


def drop_profile(
    docs: pl.DataFrame,
    cluster: np.ndarray,
    distance: np.ndarray,
    quality: np.ndarray,
    config: ProfileConfig | None = None,
) -> pl.DataFrame:
    """Per-cluster summary of one drop: n_docs, n_tokens, quality_sum, top terms, nearest titles."""
    config = config or ProfileConfig()
    n = docs.height
    for name, arr in (("cluster", cluster), ("distance", distance), ("quality", quality)):
        if len(arr) != n:
            raise ClimbInputError(f"{name} has {len(arr)} rows but the drop has {n} documents")
    if schema.TEXT not in docs.columns:
        raise ClimbInputError(f"documents lack column {schema.TEXT!r}; have {docs.columns}")
    titles = (
        docs.get_column(schema.TITLE)
        if schema.TITLE in docs.columns
        else pl.Series([None] * n, dtype=pl.String)
    )
    frame = pl.DataFrame(
        {
            schema.CLUSTER: np.asarray(cluster, dtype=np.int32),
            schema.DISTANCE: np.asarray(distance, dtype=np.float32),
            schema.QUALITY: np.asarray(quality, dtype=np.float64),
            schema.TEXT: docs.get_column(schema.TEXT).fill_null(""),
            schema.TITLE: titles.cast(pl.String),
        }
    )
    base = frame.group_by(schema.CLUSTER).agg(
        pl.len().cast(pl.Int64).alias(N_DOCS),
        pl.col(schema.TEXT).str.count_matches(r"\S+").sum().cast(pl.Int64).alias(schema.N_TOKENS),
        pl.col(schema.QUALITY).sum().alias(QUALITY_SUM),
        pl.col(schema.TITLE)
        .sort_by(schema.DISTANCE)
        .drop_nulls()
        .head(config.titles_per_cluster)
        .alias(TITLES),
        pl.col(schema.DISTANCE)
        .filter(pl.col(schema.TITLE).is_not_null())
        .sort()
        .head(config.titles_per_cluster)
        .alias(TITLE_DISTANCES),
    )
    terms = (
        frame.select(
            schema.CLUSTER,
            pl.col(schema.TEXT)
            .str.to_lowercase()
            .str.extract_all(r"[a-z][a-z]{2,}")
            .list.head(config.words_per_doc)
            .alias(TERM),
        )
        .explode(TERM)
        .filter(pl.col(TERM).is_not_null() & ~pl.col(TERM).is_in(list(STOP_WORDS)))
        .group_by(schema.CLUSTER, TERM)
        .agg(pl.len().cast(pl.Int64).alias(COUNT))
        .sort([schema.CLUSTER, COUNT, TERM], descending=[False, True, False])
        .group_by(schema.CLUSTER, maintain_order=True)
        .agg(
            pl.col(TERM).head(config.terms_per_cluster).alias(TERMS),
            pl.col(COUNT).head(config.terms_per_cluster).alias(TERM_COUNTS),
        )
    )
    return base.join(terms, on=schema.CLUSTER, how="left").sort(schema.CLUSTER)


@dataclass(frozen=True)
class CorpusProfile:
    """Drop profiles combined over the corpus."""

    clusters: pl.DataFrame  # cluster, n_docs, n_tokens, quality_sum
    terms: pl.DataFrame  # cluster, term, count
    titles: pl.DataFrame  # cluster, title, distance


def combine_profiles(profiles: Iterable[pl.DataFrame], titles_per_cluster: int = 5) -> CorpusProfile:
    """Sum drop profiles one at a time, so only one drop's profile is held besides the running totals."""
    clusters = terms = titles = None
    for profile in profiles:
        c = profile.select(schema.CLUSTER, N_DOCS, schema.N_TOKENS, QUALITY_SUM)
        t = (
            profile.select(schema.CLUSTER, TERMS, TERM_COUNTS)
            .explode([TERMS, TERM_COUNTS])
            .drop_nulls(TERMS)
            .rename({TERMS: TERM, TERM_COUNTS: COUNT})
        )
        ti = (
            profile.select(schema.CLUSTER, TITLES, TITLE_DISTANCES)
            .explode([TITLES, TITLE_DISTANCES])
            .drop_nulls(TITLES)
            .rename({TITLES: schema.TITLE, TITLE_DISTANCES: schema.DISTANCE})
        )
        clusters = (
            c if clusters is None else pl.concat([clusters, c]).group_by(schema.CLUSTER).agg(pl.all().sum())
        )
        terms = (
            t
            if terms is None
            else pl.concat([terms, t]).group_by(schema.CLUSTER, TERM).agg(pl.col(COUNT).sum())
        )
        titles = (
            ti
            if titles is None
            else pl.concat([titles, ti])
            .sort(schema.DISTANCE)
            .group_by(schema.CLUSTER, maintain_order=True)
            .head(titles_per_cluster)
        )
    if clusters is None or terms is None or titles is None:
        raise ClimbInputError("no drop profiles to combine")
    return CorpusProfile(clusters.sort(schema.CLUSTER), terms, titles)


def cluster_quality_from_profile(profile: CorpusProfile, n_clusters: int) -> pl.DataFrame:
    """Per-cluster `n_docs` and `quality_mean` for all cluster ids 0..n_clusters-1."""
    counts = np.zeros(n_clusters, dtype=np.int64)
    sums = np.zeros(n_clusters)
    ids = profile.clusters.get_column(schema.CLUSTER).to_numpy()
    if len(ids) and ids.max() >= n_clusters:
        raise ClimbInputError(f"profile has cluster id {ids.max()} but there are {n_clusters} centroids")
    counts[ids] = profile.clusters.get_column(N_DOCS).to_numpy()
    sums[ids] = profile.clusters.get_column(QUALITY_SUM).to_numpy()
    tokens = np.zeros(n_clusters, dtype=np.int64)
    tokens[ids] = profile.clusters.get_column(schema.N_TOKENS).to_numpy()
    return quality_from_sums(counts, sums).with_columns(pl.Series(schema.N_TOKENS, tokens))


def c_tf_idf(terms: pl.DataFrame, class_column: str, top_n: int = 10) -> pl.DataFrame:
    """Top `top_n` terms per class by c-TF-IDF: `class_column`, `top_terms` (list[str])."""
    totals = terms.group_by(class_column).agg(pl.col(COUNT).sum().alias("class_total"))
    mean_total = float(totals.get_column("class_total").mean() or 1.0)
    term_freq = terms.group_by(TERM).agg(pl.col(COUNT).sum().alias("term_total"))
    return (
        terms.join(totals, on=class_column)
        .join(term_freq, on=TERM)
        .with_columns(
            (pl.col(COUNT) / pl.col("class_total") * (1.0 + mean_total / pl.col("term_total")).log()).alias(
                "w"
            )
        )
        .sort([class_column, "w", TERM], descending=[False, True, False])
        .group_by(class_column, maintain_order=True)
        .agg(pl.col(TERM).head(top_n).alias(TOP_TERMS))
    )


def supercluster_stats(
    mapping: pl.DataFrame, profile: CorpusProfile, n_terms: int = 10, n_titles: int = 3
) -> pl.DataFrame:
    """One row per super-cluster: clusters, documents, tokens (words), mean quality, top terms, titles."""
    sc = schema.SUPER_CLUSTER
    base = (
        profile.clusters.join(mapping, on=schema.CLUSTER, how="inner")
        .group_by(sc)
        .agg(
            pl.len().cast(pl.Int64).alias(N_CLUSTERS),
            pl.col(N_DOCS).sum(),
            pl.col(schema.N_TOKENS).sum(),
            (pl.col(QUALITY_SUM).sum() / pl.col(N_DOCS).sum()).alias(QUALITY_MEAN),
        )
    )
    # Clusters of the mapping that hold no documents still count toward n_clusters.
    counts = mapping.group_by(sc).agg(pl.len().cast(pl.Int64).alias(N_CLUSTERS))
    base = counts.join(base.drop(N_CLUSTERS), on=sc, how="left").with_columns(
        pl.col(N_DOCS).fill_null(0), pl.col(schema.N_TOKENS).fill_null(0)
    )
    terms = c_tf_idf(
        profile.terms.join(mapping, on=schema.CLUSTER).group_by(sc, TERM).agg(pl.col(COUNT).sum()),
        sc,
        n_terms,
    )
    titles = (
        profile.titles.join(mapping, on=schema.CLUSTER)
        .sort(schema.DISTANCE)
        .group_by(sc, maintain_order=True)
        .agg(pl.col(schema.TITLE).unique(maintain_order=True).head(n_titles).alias(EXAMPLE_TITLES))
    )
    return (
        base.join(terms, on=sc, how="left")
        .join(titles, on=sc, how="left")
        .with_columns(
            pl.col(TOP_TERMS).fill_null(pl.lit([], dtype=pl.List(pl.String))),
            pl.col(EXAMPLE_TITLES).fill_null(pl.lit([], dtype=pl.List(pl.String))),
        )
        .sort(sc)
        .select(sc, N_CLUSTERS, N_DOCS, schema.N_TOKENS, QUALITY_MEAN, TOP_TERMS, EXAMPLE_TITLES)
    )


# A label names a super-cluster by its first top terms; the zero-padded id in front keeps labels unique
# (two super-clusters may share terms) and sortable, and stable as long as the clustering is.
LABEL_TERMS = 3
LABEL_SEPARATOR = "\u00b7"  # middle dot: short, and never part of a term (terms are [a-z]+)


def supercluster_label(super_cluster: int, top_terms: Sequence[str] | str | None, width: int = 2) -> str:
    """`"07 postgres·query·index"`: the id, zero-padded to `width`, and the first LABEL_TERMS top terms."""
    if isinstance(top_terms, str):  # a single term stored as a plain string
        top_terms = [top_terms]
    terms = LABEL_SEPARATOR.join(list(top_terms or [])[:LABEL_TERMS])
    return f"{int(super_cluster):0{width}d} {terms}".rstrip()


def supercluster_labels(stats: pl.DataFrame | None, n_superclusters: int) -> list[str]:
    """One label per super-cluster id 0..n-1 from `super_cluster_stats` (ids without a row: the bare id)."""
    width = max(2, len(str(max(n_superclusters - 1, 0))))
    terms: dict[int, Any] = {}
    if stats is not None and schema.SUPER_CLUSTER in stats.columns:
        column = (
            stats.get_column(TOP_TERMS).to_list() if TOP_TERMS in stats.columns else [None] * stats.height
        )
        terms = dict(zip(stats.get_column(schema.SUPER_CLUSTER).to_list(), column, strict=True))
    return [supercluster_label(i, terms.get(i), width) for i in range(n_superclusters)]


def label_key(label: str) -> str:
    """A label as an identifier (letters, digits, `_`) for names that allow no other characters (MLflow)."""
    return re.sub(r"[^0-9A-Za-z]+", "_", label).strip("_")
