"""Clustering stage on demo documents: embed -> k-means -> quality prune -> merge, scored against `domain`.

`python -m climb_dagster.bench cluster --docs 3000` samples documents (seeded, across all demo drops),
runs the stage with the pipeline defaults and prints NMI/ARI of the super-clusters against the hidden
domain label (on documents whose cluster survived pruning), plus plain k-means at the true number of
domains on the same embeddings as a reference, and timings.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from climb_dagster.bench.demo_sample import DEMO_DATA, sample_table
from climb_dagster.core.clustering.kmeans import KMeansConfig
from climb_dagster.core.common import schema
from climb_dagster.core.embedding.encoder import EmbedderConfig, SentenceEmbedder


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--docs", type=int, default=3000, help="documents sampled across the demo drops")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", default=str(DEMO_DATA), help="folder with drop-*.parquet (needs `domain`)")
    parser.add_argument("--k", type=int, default=None, help="K_init (default: default_n_clusters(docs))")
    # The NMI figure of docs/results-embedding.md (2026-11-26) used a fixed 20-way Ward cut;
    # --distance-threshold runs the paper's threshold merge instead (then --linkage defaults to MergeConfig's).
    parser.add_argument("--superclusters", type=int, default=20, help="fixed-count cut (default 20)")
    parser.add_argument("--distance-threshold", type=float, default=None, help="threshold merge instead")
    parser.add_argument("--linkage", default=None, help="ward|average|complete|single (count cut: ward)")
    parser.add_argument(
        "--threshold", type=float, default=None, help="quality threshold (default: PruneConfig)"
    )
    parser.add_argument("--model-path", default=None)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--max-windows", type=int, default=None, help="default: EmbedderConfig's")
    parser.add_argument("--cache-dir", default=None, help="reuse embeddings of identical runs (.npy)")


def sample_demo(data: Path, n_docs: int, seed: int) -> pl.DataFrame:
    """`n_docs` documents drawn uniformly over all drops, in drop/row order (`demo_sample.sample_table`)."""
    return pl.from_arrow(sample_table(data, n_docs, seed))


def _embed(docs: pl.DataFrame, args: argparse.Namespace) -> tuple[np.ndarray, float, str, int]:

    extra = {} if args.max_windows is None else {"max_windows": args.max_windows}
    embedder = SentenceEmbedder.load(
        EmbedderConfig(model_path=args.model_path, precision=args.precision, **extra)
    )
    cache = None
    if args.cache_dir:
        digest = hashlib.sha256(
            "\n".join(
                [
                    str(embedder.spec.path),
                    embedder.precision,
                    str(embedder.config.max_windows),
                    *docs[schema.ID].to_list(),
                ]
            ).encode()
        ).hexdigest()[:16]
        cache = Path(args.cache_dir) / f"embeddings-{digest}.npy"
        if cache.is_file():
            return np.load(cache, allow_pickle=False), 0.0, embedder.precision, embedder.config.max_windows
    t0 = time.perf_counter()
    emb = embedder.embed(docs[schema.TEXT].to_list())
    seconds = time.perf_counter() - t0
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.save(cache, emb, allow_pickle=False)
    return emb, seconds, embedder.precision, embedder.config.max_windows


def run(args: argparse.Namespace) -> dict[str, Any]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    from climb_dagster.core.clustering.stage import cluster_documents
    from climb_dagster.core.clustering.superclusters import MergeConfig
    from climb_dagster.core.quality.pruning import PruneConfig

    timings: dict[str, float] = {}
    t_all = time.perf_counter()
    docs = sample_demo(Path(args.data), args.docs, args.seed)
    emb, timings["embed_s"], precision, windows = _embed(docs, args)
    prune_cfg = PruneConfig() if args.threshold is None else PruneConfig(threshold=args.threshold)
    merge_kwargs: dict[str, Any] = {}
    if args.distance_threshold is not None:
        merge_kwargs["distance_threshold"] = args.distance_threshold
    else:
        merge_kwargs |= {"n_superclusters": args.superclusters, "linkage": "ward"}
    if args.linkage is not None:
        merge_kwargs["linkage"] = args.linkage
    stage = cluster_documents(
        docs, emb, KMeansConfig(n_clusters=args.k, seed=args.seed), prune_cfg, MergeConfig(**merge_kwargs)
    )
    timings.update(stage.timings)
    sc, kept = stage.super_cluster, stage.kept
    domain = docs.get_column(schema.DOMAIN).to_numpy()

    import faiss

    n_domains = len(set(domain.tolist()))
    ref = faiss.Kmeans(emb.shape[1], n_domains, niter=25, seed=args.seed, spherical=True, verbose=False)
    ref.train(np.ascontiguousarray(emb))
    ref_labels = ref.index.search(np.ascontiguousarray(emb), 1)[1][:, 0]
    timings["total_s"] = time.perf_counter() - t_all

    return {
        "docs": int(docs.height),
        "domains": n_domains,
        "precision": precision,
        "max_windows": windows,
        "k_init": int(len(stage.centroids)),
        "kmeans_sample": stage.n_sample,
        "clusters_kept": stage.clusters_kept,
        "docs_kept": int(kept.sum()),
        "n_superclusters": stage.n_superclusters,
        "nmi": round(float(normalized_mutual_info_score(domain[kept], sc[kept])), 4),
        "ari": round(float(adjusted_rand_score(domain[kept], sc[kept])), 4),
        "reference_kmeans_true_k_nmi": round(float(normalized_mutual_info_score(domain, ref_labels)), 4),
        "reference_kmeans_true_k_ari": round(float(adjusted_rand_score(domain, ref_labels)), 4),
        **{k: round(v, 3) for k, v in timings.items()},
        "embed_docs_per_s": round(docs.height / timings["embed_s"], 1) if timings["embed_s"] else None,
    }
