"""FAISS k-means over embeddings spread across many drops, with bounded memory.

Centroids are fit on a seeded uniform sample drawn across all drops; the sample never exceeds
`n_clusters * max_points_per_centroid` rows (FAISS would subsample down to that anyway), so the fit's
memory does not grow with the corpus. Assignment then streams each drop in chunks.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.embedding.sizing import rows_per_chunk

PAPER_K_INIT = 1000
METRICS = ("cosine", "l2")

RowReader = Callable[[str, np.ndarray], np.ndarray]


def default_n_clusters(n_docs: int) -> int:
    """K_init for a corpus size: ~1 cluster per 75 documents, at least 64 where there are >= 20 documents
    per cluster, between 16 and the paper's 1000.

    The demo's ~19k documents get 250; 1,400-3,000 documents get 64. Tuned with `bench cluster` at 3,000
    documents, 4 k-means seeds, merged to 16-20 super-clusters: K_init 40 and 60 scored NMI 0.67 on
    truncated MiniLM embeddings (0.70-0.71 with two windows per document), K_init >= 100 0.62-0.65
    (clusters of ~30 documents are noisy). The floor of 64 keeps K_init well above the super-clusters so
    that merging merges (the paper: 1000 -> ~240 kept -> 16-21): on 2,915 demo documents K_init 64 merged
    at cosine distance 0.45-0.55 scored NMI 0.69-0.70 against the sources, K_init 40 0.64-0.73.
    """
    return int(min(PAPER_K_INIT, max(16, n_docs // 75, min(64, n_docs // 20))))


@dataclass(frozen=True)
class KMeansConfig:
    """K-means settings.

    Args:
        n_clusters: K_init; None = `default_n_clusters(total documents)`.
        niter: Lloyd iterations.
        seed: seeds both the sample and FAISS's initialisation.
        max_points_per_centroid: sample cap per centroid (FAISS's own default is 256).
        metric: "cosine" (spherical k-means on L2-normalised rows; distance = 1 - cos, the default) or
            "euclidean" (plain k-means, Euclidean distance; "l2" is the same).
        chunk_rows: rows per assignment chunk.
        device: "auto" (a GPU when faiss-gpu or a CUDA build of torch sees one, see `assign_backend`),
            "cpu" or "cuda".
    """

    n_clusters: int | None = None
    niter: int = 25
    seed: int = 0
    max_points_per_centroid: int = 256
    metric: str = "cosine"
    chunk_rows: int = 65536
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.n_clusters is not None and self.n_clusters < 2:
            raise ClimbInputError(f"n_clusters={self.n_clusters!r}: must be >= 2 or None")
        if self.niter < 1:
            raise ClimbInputError(f"niter={self.niter!r}: must be >= 1")
        if self.max_points_per_centroid < 1:
            raise ClimbInputError(f"max_points_per_centroid={self.max_points_per_centroid!r}: must be >= 1")
        if self.metric == "euclidean":
            object.__setattr__(self, "metric", "l2")
        if self.metric not in METRICS:
            raise ClimbInputError(f"metric={self.metric!r}: expected cosine or euclidean (l2)")
        if self.chunk_rows < 1:
            raise ClimbInputError(f"chunk_rows={self.chunk_rows!r}: must be >= 1")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ClimbInputError(f"device={self.device!r}: expected auto, cpu or cuda")

    def k_for(self, n_docs: int) -> int:
        return self.n_clusters if self.n_clusters is not None else default_n_clusters(n_docs)


@dataclass(frozen=True)
class KMeansFit:
    """Fitted centroids and how they were obtained."""

    centroids: np.ndarray  # float32 [k, d]; unit rows for the cosine metric
    n_docs: int
    n_sample: int
    sample_per_drop: dict[str, int]
    objective: float
    sample_seconds: float
    fit_seconds: float


def sample_indices(counts: Mapping[str, int], n_sample: int, seed: int) -> dict[str, np.ndarray]:
    """Draw `n_sample` distinct rows uniformly over all drops: sorted row indices per drop.

    Drops are taken in sorted key order so the draw does not depend on mapping order.
    """
    keys = sorted(counts)
    sizes = np.array([int(counts[k]) for k in keys], dtype=np.int64)
    if (sizes < 0).any():
        raise ClimbInputError(f"negative row count in {dict(zip(keys, sizes.tolist(), strict=True))}")
    total = int(sizes.sum())
    if n_sample > total:
        raise ClimbInputError(f"cannot sample {n_sample} rows from {total}")
    rng = np.random.default_rng(seed)
    # Generator.choice without replacement does not materialise the population when n_sample << total.
    flat = np.sort(rng.choice(total, size=n_sample, replace=False))
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    out = {}
    for i, key in enumerate(keys):
        lo, hi = np.searchsorted(flat, [bounds[i], bounds[i + 1]])
        out[key] = flat[lo:hi] - bounds[i]
    return out


def _normalise(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def _faiss_gpus() -> int:
    try:
        import faiss
    except ImportError:  # torch-only GPU machines: assignment still runs, on torch
        return 0
    return faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0


def _torch_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def assign_backend(device: str) -> str:
    """Where assignment runs: "faiss-gpu" (faiss-gpu sees a GPU), else "torch-cuda" (a CUDA build of torch
    does; faiss-gpu's wheels need CUDA 12, torch may not), else "faiss" on the CPU. "cpu" forces the CPU;
    "cuda" refuses a machine where neither sees a GPU."""
    if device == "cpu":
        return "faiss"
    if _faiss_gpus() > 0:
        return "faiss-gpu"
    if _torch_cuda():
        return "torch-cuda"
    if device == "cuda":
        raise ClimbInputError("device='cuda' but neither faiss-gpu nor torch sees a GPU on this machine")
    return "faiss"


def _use_gpu(device: str) -> bool:
    """Whether the k-means fit runs on faiss-gpu. Without it the fit stays on the CPU: its sample is bounded
    (K x max_points_per_centroid rows), the assignment of every document is the part that needs a GPU."""
    return assign_backend(device) == "faiss-gpu"


def fit_centroids(counts: Mapping[str, int], read_rows: RowReader, config: KMeansConfig) -> KMeansFit:
    """Fit k-means on a seeded sample across drops.

    Args:
        counts: rows per drop.
        read_rows: `read_rows(drop, sorted_indices) -> float array [len(indices), d]`, e.g. fancy
            indexing into the drop's .npy memmap; only sampled rows are ever read.
        config: k-means settings.
    """
    import faiss

    n_docs = int(sum(counts.values()))
    k = config.k_for(n_docs)
    if n_docs < k:
        raise ClimbInputError(f"n_docs={n_docs} is smaller than n_clusters (K_init)={k}: lower n_clusters")
    n_sample = min(n_docs, k * config.max_points_per_centroid)
    t0 = time.perf_counter()
    plan = sample_indices(counts, n_sample, config.seed)
    sample: np.ndarray | None = None
    row = 0
    for key in sorted(plan):
        idx = plan[key]
        if len(idx) == 0:
            continue
        rows = np.asarray(read_rows(key, idx), dtype=np.float32)
        if rows.ndim != 2 or rows.shape[0] != len(idx):
            raise ClimbInputError(
                f"drop {key!r}: read_rows returned shape {rows.shape}, expected ({len(idx)}, d)"
            )
        if sample is None:
            sample = np.empty((n_sample, rows.shape[1]), dtype=np.float32)
        elif rows.shape[1] != sample.shape[1]:
            raise ClimbInputError(f"drop {key!r}: embedding dimension {rows.shape[1]} != {sample.shape[1]}")
        sample[row : row + len(idx)] = rows
        row += len(idx)
    assert sample is not None and row == n_sample
    if not np.isfinite(sample).all():
        raise ClimbInputError("embeddings contain NaN or inf values")
    if config.metric == "cosine":
        sample = _normalise(sample)
    sample_seconds = time.perf_counter() - t0
    t1 = time.perf_counter()
    km = faiss.Kmeans(
        sample.shape[1],
        k,
        niter=config.niter,
        seed=config.seed,
        spherical=config.metric == "cosine",
        max_points_per_centroid=config.max_points_per_centroid,
        # FAISS prints its own "please provide at least ..." line to stderr, outside any log; the caller
        # reports thin samples instead (`thin_sample`).
        min_points_per_centroid=1,
        verbose=False,
        gpu=_use_gpu(config.device),
    )
    km.train(sample)
    centroids = np.ascontiguousarray(km.centroids, dtype=np.float32)
    if config.metric == "cosine":
        centroids = _normalise(centroids)
    return KMeansFit(
        centroids=centroids,
        n_docs=n_docs,
        n_sample=n_sample,
        sample_per_drop={key: len(idx) for key, idx in plan.items()},
        objective=float(km.obj[-1]) if len(km.obj) else float("nan"),
        sample_seconds=sample_seconds,
        fit_seconds=time.perf_counter() - t1,
    )


# Fewest sampled documents per centroid that `default_n_clusters` allows (its measured floor; FAISS itself
# asks for 39 and prints to stderr below that, which the fit silences).
MIN_POINTS_PER_CENTROID = 20


def thin_sample(fit: KMeansFit) -> str | None:
    """A warning when the fit had fewer sampled documents per centroid than `MIN_POINTS_PER_CENTROID`."""
    k = len(fit.centroids)
    if fit.n_sample >= MIN_POINTS_PER_CENTROID * k:
        return None
    return (
        f"k-means fit {k} centroids on {fit.n_sample} sampled documents ({fit.n_sample / k:.1f} per centroid, "
        f"below the {MIN_POINTS_PER_CENTROID} the default K_init keeps; clusters this thin were noisy in "
        "`bench cluster`): lower n_clusters (K_init)"
    )


def fit_centroids_on_arrays(arrays: Mapping[str, Any], config: KMeansConfig) -> KMeansFit:
    """`fit_centroids` over per-drop arrays (typically read-only .npy memmaps)."""
    counts = {key: int(arr.shape[0]) for key, arr in arrays.items()}
    return fit_centroids(counts, lambda key, idx: arrays[key][idx], config)


@dataclass(frozen=True)
class Assignment:
    """Nearest centroid and distance to it for every row of one drop."""

    cluster: np.ndarray  # int32 [n]
    distance: np.ndarray  # float32 [n]


def _on_gpu(index: Any, centroid_shape: tuple[int, int]) -> tuple[Any, int]:
    """The flat index on every visible GPU, and the assignment rows per chunk that fit the smallest
    device's free memory (chunk plus its scores against every centroid; core/embedding/sizing.rows_per_chunk)."""
    import faiss


    try:
        import torch

        free = min(torch.cuda.mem_get_info(i)[0] for i in range(torch.cuda.device_count()))
    except (ImportError, RuntimeError, ValueError):
        free = 4 << 30  # torch without CUDA next to faiss-gpu: assume a small device
    k, dim = centroid_shape
    return faiss.index_cpu_to_all_gpus(index), rows_per_chunk(free, dim, k)


def _chunk(embeddings: Any, start: int, step: int, cosine: bool) -> np.ndarray:
    chunk = np.ascontiguousarray(embeddings[start : start + step], dtype=np.float32)
    if not np.isfinite(chunk).all():
        raise ClimbInputError(f"embeddings rows {start}..{start + len(chunk) - 1} contain NaN or inf")
    return _normalise(chunk) if cosine else chunk


def assign_with_torch(
    embeddings: Any, centroids: np.ndarray, cosine: bool, device: str, step: int
) -> Assignment:
    """The exact nearest centroid with torch matrix products on `device` (fp32, TF32 off), chunk by chunk:
    what FAISS's flat index computes, for GPU machines without faiss-gpu."""
    import torch

    dev = torch.device(device)
    c = torch.from_numpy(_normalise(centroids) if cosine else centroids).to(dev)
    c_sq = (c * c).sum(1)  # Euclidean only
    n = embeddings.shape[0]
    cluster = np.empty(n, dtype=np.int32)
    distance = np.empty(n, dtype=np.float32)
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False  # proxy training may have turned it on in this process
    try:
        with torch.inference_mode():
            for start in range(0, n, step):
                x = torch.from_numpy(_chunk(embeddings, start, step, cosine)).to(dev)
                if cosine:
                    best, idx = (x @ c.T).max(1)
                    dist = 1.0 - best
                else:
                    # One [rows, K] tensor (|c|^2 - 2 x.c, as FAISS computes it); |x|^2 is added after the
                    # min: it is the same for every centroid of a row. Chunks are sized for one such tensor.
                    best, idx = torch.addmm(c_sq, x, c.T, alpha=-2.0).min(1)
                    dist = (best + (x * x).sum(1)).clamp_min(0.0).sqrt()
                cluster[start : start + len(x)] = idx.cpu().numpy()
                distance[start : start + len(x)] = dist.cpu().numpy()
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
    return Assignment(cluster=cluster, distance=distance)


def assign_clusters(embeddings: Any, centroids: np.ndarray, config: KMeansConfig) -> Assignment:
    """Nearest centroid for every row, `config.chunk_rows` rows at a time (on GPUs: sized to device memory;
    faiss-gpu when installed, else torch on CUDA, see `assign_backend`)."""
    centroids = np.ascontiguousarray(centroids, dtype=np.float32)
    if centroids.ndim != 2 or embeddings.ndim != 2 or embeddings.shape[1] != centroids.shape[1]:
        raise ClimbInputError(
            f"embeddings shape {tuple(embeddings.shape)} does not match centroids shape {centroids.shape}"
        )
    cosine = config.metric == "cosine"
    backend = assign_backend(config.device)
    if backend == "torch-cuda":
        import torch


        free = torch.cuda.mem_get_info()[0]
        step = rows_per_chunk(free, centroids.shape[1], centroids.shape[0])
        return assign_with_torch(embeddings, centroids, cosine, "cuda", step)
    import faiss

    index = faiss.IndexFlatIP(centroids.shape[1]) if cosine else faiss.IndexFlatL2(centroids.shape[1])
    index.add(_normalise(centroids) if cosine else centroids)
    step = config.chunk_rows
    if backend == "faiss-gpu":
        index, step = _on_gpu(index, centroids.shape)
    n = embeddings.shape[0]
    cluster = np.empty(n, dtype=np.int32)
    distance = np.empty(n, dtype=np.float32)
    for start in range(0, n, step):
        chunk = _chunk(embeddings, start, step, cosine)
        scores, labels = index.search(chunk, 1)
        cluster[start : start + len(chunk)] = labels[:, 0]
        if cosine:
            distance[start : start + len(chunk)] = 1.0 - scores[:, 0]
        else:
            distance[start : start + len(chunk)] = np.sqrt(np.maximum(scores[:, 0], 0.0))
    return Assignment(cluster=cluster, distance=distance)


def nonfinite_rows(embeddings: np.ndarray, chunk_rows: int = 65536) -> int:
    """How many rows hold a NaN or inf, read `chunk_rows` at a time (embeddings may be a large memmap)."""
    bad = 0
    for start in range(0, embeddings.shape[0], chunk_rows):
        chunk = np.asarray(embeddings[start : start + chunk_rows])
        bad += int((~np.isfinite(chunk)).any(axis=tuple(range(1, chunk.ndim))).sum())
    return bad
