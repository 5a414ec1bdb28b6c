"""K-means: seeded sampling across drops, bounded sample, refusals, chunked assignment, memory."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from climb_dagster.core.clustering.kmeans import (
    KMeansConfig,
    assign_clusters,
    default_n_clusters,
    fit_centroids,
    fit_centroids_on_arrays,
    sample_indices,
)
from climb_dagster.core.common.errors import ClimbInputError


def blobs(n: int, d: int = 8, k: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(k, d)) * 5
    labels = rng.integers(0, k, size=n)
    x = centers[labels] + rng.normal(size=(n, d)) * 0.3
    return x.astype(np.float32), labels


def test_sample_indices_is_seeded_uniform_and_split_by_drop() -> None:
    counts = {"b": 50, "a": 30, "c": 0}
    s1 = sample_indices(counts, 40, seed=3)
    s2 = sample_indices(dict(reversed(list(counts.items()))), 40, seed=3)
    assert {k: v.tolist() for k, v in s1.items()} == {k: v.tolist() for k, v in s2.items()}
    assert sum(len(v) for v in s1.values()) == 40 and len(s1["c"]) == 0
    for key, idx in s1.items():
        assert np.all(np.diff(idx) > 0) and (len(idx) == 0 or idx.max() < counts[key])
    assert sample_indices(counts, 40, seed=4)["a"].tolist() != s1["a"].tolist()


def test_fit_reads_only_the_sample_and_caps_it() -> None:
    x, _ = blobs(3000)
    drops = {"d1": x[:1000], "d2": x[1000:]}
    read: list[int] = []

    def reader(key: str, idx: np.ndarray) -> np.ndarray:
        read.append(len(idx))
        return drops[key][idx]

    cfg = KMeansConfig(n_clusters=4, max_points_per_centroid=100, seed=1)
    fit = fit_centroids({k: len(v) for k, v in drops.items()}, reader, cfg)
    assert fit.n_sample == 400 and sum(read) == 400 and fit.centroids.shape == (4, 8)
    np.testing.assert_allclose(np.linalg.norm(fit.centroids, axis=1), 1.0, atol=1e-5)
    again = fit_centroids_on_arrays(drops, cfg)
    np.testing.assert_array_equal(fit.centroids, again.centroids)


def test_kmeans_recovers_blobs_and_assigns_in_chunks() -> None:
    x, labels = blobs(2000)
    cfg = KMeansConfig(n_clusters=8, seed=0, chunk_rows=128, metric="l2")
    fit = fit_centroids_on_arrays({"a": x}, cfg)
    a = assign_clusters(x, fit.centroids, cfg)
    assert a.cluster.dtype == np.int32 and a.distance.dtype == np.float32
    # More clusters than blobs: every cluster stays inside one blob (no local optimum can merge two).
    for c in set(a.cluster.tolist()):
        assert len(set(labels[a.cluster == c].tolist())) == 1
    whole = assign_clusters(x, fit.centroids, KMeansConfig(metric="l2", chunk_rows=10_000))
    np.testing.assert_array_equal(a.cluster, whole.cluster)
    np.testing.assert_allclose(
        a.distance, np.linalg.norm(x - fit.centroids[a.cluster], axis=1), rtol=1e-3, atol=1e-3
    )


def test_cosine_distance_is_one_minus_cos() -> None:
    x, _ = blobs(500)
    cfg = KMeansConfig(n_clusters=4, seed=0)
    fit = fit_centroids_on_arrays({"a": x}, cfg)
    a = assign_clusters(x, fit.centroids, cfg)
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    np.testing.assert_allclose(a.distance, 1 - (xn * fit.centroids[a.cluster]).sum(1), atol=1e-4)


def test_refuses_fewer_docs_than_clusters() -> None:
    x, _ = blobs(10)
    with pytest.raises(ClimbInputError, match=r"n_docs=10 .*K_init\)=16"):
        fit_centroids_on_arrays({"a": x}, KMeansConfig(n_clusters=16))


def test_config_and_shape_errors() -> None:
    with pytest.raises(ClimbInputError, match="'manhattan'"):
        KMeansConfig(metric="manhattan")
    with pytest.raises(ClimbInputError, match="n_clusters=1"):
        KMeansConfig(n_clusters=1)
    x, _ = blobs(100)
    with pytest.raises(ClimbInputError, match="dimension"):
        fit_centroids_on_arrays({"a": x, "b": x[:, :4]}, KMeansConfig(n_clusters=2))
    with pytest.raises(ClimbInputError, match="does not match"):
        assign_clusters(x[:, :4], np.zeros((2, 8), np.float32), KMeansConfig())
    bad = x.copy()
    bad[3, 0] = np.nan
    with pytest.raises(ClimbInputError, match="NaN"):
        assign_clusters(bad, np.ones((2, 8), np.float32), KMeansConfig())


def test_default_k_scales_with_corpus() -> None:
    assert default_n_clusters(3000) == 64 and default_n_clusters(1400) == 64  # well above 8-21 merged
    assert default_n_clusters(19_000) == 253 and default_n_clusters(600) == 30
    assert default_n_clusters(100) == 16
    assert default_n_clusters(10_000_000) == 1000


def _write_drops(folder: Path, n_drops: int, rows: int, d: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    for i in range(n_drops):
        np.save(folder / f"d{i:03d}.npy", rng.normal(size=(rows, d)).astype(np.float32), allow_pickle=False)
    return {p.stem: np.load(p, mmap_mode="r", allow_pickle=False) for p in sorted(folder.glob("*.npy"))}


def _peak_fit_bytes(arrays: dict[str, np.ndarray], cfg: KMeansConfig) -> int:
    tracemalloc.start()
    try:
        fit_centroids_on_arrays(arrays, cfg)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.slow
def test_centroid_memory_does_not_grow_with_corpus(tmp_path: Path) -> None:
    """10x more embeddings (over 10x more .npy drops) leave the fit's peak traced memory flat."""
    d, rows, cfg = 64, 4000, KMeansConfig(n_clusters=8, max_points_per_centroid=256, niter=5)
    (tmp_path / "small").mkdir()
    (tmp_path / "large").mkdir()
    small = _write_drops(tmp_path / "small", 2, rows, d)
    large = _write_drops(tmp_path / "large", 20, rows, d)
    corpus_bytes = 20 * rows * d * 4
    fit_centroids_on_arrays(small, cfg)  # one-off imports and FAISS set-up stay out of the measurement
    peak_small = _peak_fit_bytes(small, cfg)
    peak_large = _peak_fit_bytes(large, cfg)
    sample_bytes = 8 * 256 * d * 4
    assert peak_large < 1.5 * peak_small + 256 * 1024, (peak_small, peak_large)
    assert peak_large < 4 * sample_bytes + 1024 * 1024 and peak_large < corpus_bytes / 5, (
        peak_large,
        corpus_bytes,
    )


def test_a_thin_sample_is_reported_by_us_not_printed_by_faiss(capfd: pytest.CaptureFixture) -> None:
    from climb_dagster.core.clustering.kmeans import thin_sample

    capfd.readouterr()
    fit = fit_centroids_on_arrays({"d1": blobs(200)[0]}, KMeansConfig(n_clusters=16, seed=1))
    assert "please provide" not in capfd.readouterr().err
    assert "12.5 per centroid" in (thin_sample(fit) or "")
    assert thin_sample(fit_centroids_on_arrays({"d1": blobs(3000)[0]}, KMeansConfig(n_clusters=4))) is None


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_torch_assignment_matches_faiss(metric: str) -> None:
    """The GPU path for machines without faiss-gpu, run here on the CPU: same nearest centroid as FAISS's
    flat index, chunk by chunk, distances equal to float32 rounding."""
    from climb_dagster.core.clustering.kmeans import assign_with_torch

    x, _ = blobs(1000, d=16, k=6, seed=3)
    centroids = blobs(12, d=16, k=6, seed=4)[0]
    expected = assign_clusters(x, centroids, KMeansConfig(metric=metric, device="cpu"))
    got = assign_with_torch(x, centroids, metric == "cosine", "cpu", step=300)
    np.testing.assert_array_equal(got.cluster, expected.cluster)
    np.testing.assert_allclose(got.distance, expected.distance, atol=1e-4)
    bad = x.copy()
    bad[700, 2] = np.nan
    with pytest.raises(ClimbInputError, match="rows 600..899"):
        assign_with_torch(bad, centroids, metric == "cosine", "cpu", step=300)


def test_assign_backend_prefers_faiss_gpu_then_torch_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    from climb_dagster.core.clustering import kmeans

    def machine(faiss_gpus: int, torch_cuda: bool) -> None:
        monkeypatch.setattr(kmeans, "_faiss_gpus", lambda: faiss_gpus)
        monkeypatch.setattr(kmeans, "_torch_cuda", lambda: torch_cuda)

    machine(2, True)
    assert kmeans.assign_backend("auto") == "faiss-gpu" and kmeans.assign_backend("cpu") == "faiss"
    machine(0, True)
    assert kmeans.assign_backend("cuda") == "torch-cuda" and not kmeans._use_gpu("cuda")  # fit on the CPU
    machine(0, False)
    assert kmeans.assign_backend("auto") == "faiss"
    with pytest.raises(ClimbInputError, match="neither faiss-gpu nor torch"):
        kmeans.assign_backend("cuda")
