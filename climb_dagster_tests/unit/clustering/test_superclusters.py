"""Super-clusters: merge, per-drop profiles, corpus stats with c-TF-IDF terms, and the plots."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from climb_dagster.core.clustering.superclusters import (
    DEFAULT_DISTANCE_THRESHOLD,
    MergeConfig,
    c_tf_idf,
    cluster_quality_from_profile,
    combine_profiles,
    drop_profile,
    merge_clusters,
    merge_counts,
    supercluster_stats,
)
from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.report.plots import centroid_map_png, pca_2d, png_markdown, supercluster_sizes_png

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _centroids() -> np.ndarray:
    # Two tight groups of three clusters each, far apart, plus one cluster that will be pruned.
    rng = np.random.default_rng(0)
    a = np.array([1.0, 0, 0, 0]) + rng.normal(size=(3, 4)) * 0.01
    b = np.array([0, 0, 1.0, 0]) + rng.normal(size=(3, 4)) * 0.01
    return np.vstack([a, b, [[0, 1.0, 0, 0]]]).astype(np.float32)


def _table(kept: list[bool]) -> pl.DataFrame:
    return pl.DataFrame(
        {"cluster": np.arange(7, dtype=np.int32), "n_docs": [5, 5, 5, 1, 1, 1, 9], "kept": kept}
    )


@pytest.mark.parametrize("linkage", ["ward", "average", "complete", "single"])
def test_merge_by_count_groups_near_centroids(linkage: str) -> None:
    m = merge_clusters(
        _centroids(), _table([True] * 6 + [False]), MergeConfig(n_superclusters=2, linkage=linkage)
    )
    assert m["cluster"].to_list() == [0, 1, 2, 3, 4, 5]
    # Super-cluster 0 is the larger group (15 documents).
    assert m["super_cluster"].to_list() == [0, 0, 0, 1, 1, 1]
    assert m["super_cluster"].dtype == pl.Int32


def test_merge_by_distance_threshold() -> None:
    m = merge_clusters(
        _centroids(), _table([True] * 7), MergeConfig(n_superclusters=None, distance_threshold=0.1)
    )
    assert m["super_cluster"].n_unique() == 3
    assert sorted(m["super_cluster"].unique().to_list()) == [0, 1, 2]
    assert (
        m.filter(pl.col("cluster") == 6)["super_cluster"].item() == 1
    )  # 9 docs: second after the 15 of group a


def _unit(angles_deg: list[float]) -> np.ndarray:
    a = np.radians(angles_deg)
    return np.stack([np.cos(a), np.sin(a)], axis=1).astype(np.float32)


def test_threshold_merge_groups_by_cosine_distance() -> None:
    # Three fans of unit centroids: within a fan <= 10 degrees apart (1 - cos <= 0.015), fans >= 60
    # degrees apart (1 - cos >= 0.5). A 0.1 threshold recovers the fans; 0.7 joins the two nearest.
    centroids = _unit([0, 5, 10, 70, 75, 150, 155, 160])
    table = pl.DataFrame({"cluster": np.arange(8, dtype=np.int32), "n_docs": [3, 3, 3, 1, 1, 2, 2, 2]})
    m = merge_clusters(centroids, table, MergeConfig(distance_threshold=0.1))
    assert m["super_cluster"].to_list() == [0, 0, 0, 2, 2, 1, 1, 1]
    coarse = merge_clusters(centroids, table, MergeConfig(distance_threshold=0.7))
    assert coarse["super_cluster"].n_unique() == 2
    assert coarse["super_cluster"].to_list()[:5] == [0] * 5  # the 0-10 and 70-75 fans (mean 1 - cos 0.62)
    # Euclidean units: the same fans scaled by 10 (distances between fans >= 10).
    euclid = merge_clusters(centroids * 10, table, MergeConfig(distance_threshold=2.0, metric="l2"))
    assert euclid["super_cluster"].to_list() == [0, 0, 0, 2, 2, 1, 1, 1]


def test_threshold_cut_is_kept_within_the_count_bounds() -> None:
    # The three fans of the test above: a 0.1 threshold gives 3 super-clusters, 0.7 gives 2, 0.001 gives 8.
    centroids = _unit([0, 5, 10, 70, 75, 150, 155, 160])
    table = pl.DataFrame({"cluster": np.arange(8, dtype=np.int32), "n_docs": [3, 3, 3, 1, 1, 2, 2, 2]})

    def count(**kw) -> int:
        return merge_clusters(centroids, table, MergeConfig(**kw))["super_cluster"].n_unique()

    assert count(distance_threshold=0.1, min_superclusters=2, max_superclusters=4) == 3  # within: unchanged
    assert count(distance_threshold=0.001) == 8
    assert count(distance_threshold=0.001, max_superclusters=3) == 3  # too fine: cut at the upper bound
    bounded = merge_clusters(centroids, table, MergeConfig(distance_threshold=0.001, max_superclusters=3))
    assert bounded["super_cluster"].to_list() == [0, 0, 0, 2, 2, 1, 1, 1]  # the fans, as by distance
    assert count(distance_threshold=0.7, min_superclusters=3) == 3  # too coarse: cut at the lower bound
    assert count(distance_threshold=0.7, min_superclusters=20) == 8  # never more than the clusters
    assert "kept within [2, 4]" in MergeConfig(min_superclusters=2, max_superclusters=4).describe()
    with pytest.raises(ClimbInputError, match="min_superclusters=5 exceeds max_superclusters=4"):
        MergeConfig(min_superclusters=5, max_superclusters=4)
    with pytest.raises(ClimbInputError, match="max_superclusters=0"):
        MergeConfig(max_superclusters=0)


def test_default_merge_is_the_threshold_cut_and_counts_are_reported() -> None:
    cfg = MergeConfig()
    assert cfg.n_superclusters is None and cfg.distance_threshold == DEFAULT_DISTANCE_THRESHOLD > 0
    assert "distance <" in cfg.describe()
    assert MergeConfig(n_superclusters=4).distance_threshold is None
    pruned = pl.DataFrame({"cluster": [0, 1, 2], "n_docs": [1, 1, 1], "kept": [True, False, True]})
    counts = merge_counts(250, pruned, 1)
    assert counts["cluster_funnel"] == "250 -> 2 -> 1" and counts["clusters_kept"] == 2
    with pytest.raises(ClimbInputError, match="metric='manhattan'"):
        MergeConfig(metric="manhattan")


def test_merge_config_and_input_errors() -> None:
    with pytest.raises(ClimbInputError, match="at most one"):
        MergeConfig(n_superclusters=5, distance_threshold=0.3)
    with pytest.raises(ClimbInputError, match="'median'"):
        MergeConfig(linkage="median")
    with pytest.raises(ClimbInputError, match="no clusters"):
        merge_clusters(_centroids(), _table([False] * 7), MergeConfig())
    m = merge_clusters(_centroids(), _table([True] * 7), MergeConfig(n_superclusters=50))
    assert m["super_cluster"].n_unique() == 7  # capped at the number of clusters


def _drop(texts: list[str], titles: list[str]) -> pl.DataFrame:
    return pl.DataFrame({"id": [f"d{i}" for i in range(len(texts))], "text": texts, "title": titles})


def test_profiles_combine_into_supercluster_stats() -> None:
    d1 = _drop(
        ["postgres index query planner", "postgres vacuum table index", "kernel scheduler interrupt"],
        ["pg1", "pg2", "k1"],
    )
    d2 = _drop(["kernel driver interrupt memory", "postgres query"], ["k2", "pg3"])
    p1 = drop_profile(d1, np.array([0, 1, 2]), np.array([0.1, 0.2, 0.3]), np.array([5.0, 4.0, 3.0]))
    p2 = drop_profile(d2, np.array([2, 0]), np.array([0.05, 0.4]), np.array([1.0, 5.0]))
    profile = combine_profiles([p1, p2])
    quality = cluster_quality_from_profile(profile, n_clusters=4)
    assert quality["n_docs"].to_list() == [2, 1, 2, 0]
    assert quality["quality_mean"].to_list()[:3] == [5.0, 4.0, 2.0]
    assert quality["n_tokens"].to_list() == [6, 4, 7, 0]
    mapping = pl.DataFrame(
        {"cluster": [0, 1, 2], "super_cluster": [0, 0, 1]},
        schema={"cluster": pl.Int32, "super_cluster": pl.Int32},
    )
    stats = supercluster_stats(mapping, profile, n_terms=2, n_titles=2)
    assert stats["n_docs"].to_list() == [3, 2]
    assert stats["n_clusters"].to_list() == [2, 1]
    assert stats["n_tokens"].to_list() == [10, 7]
    assert stats["quality_mean"].to_list() == pytest.approx([14 / 3, 2.0])
    assert stats["top_terms"][0].to_list()[0] == "postgres"
    assert stats["top_terms"][1].to_list()[0] == "interrupt"
    assert stats["example_titles"][1].to_list() == ["k2", "k1"]  # nearest to the centroid first


def test_drop_profile_row_mismatch_is_named() -> None:
    with pytest.raises(ClimbInputError, match="cluster has 1 rows but the drop has 2"):
        drop_profile(
            _drop(["a b", "c d"], ["x", "y"]), np.array([0]), np.array([0.0, 0.0]), np.array([3.0, 3.0])
        )


def test_c_tf_idf_prefers_distinctive_terms() -> None:
    terms = pl.DataFrame(
        {"sc": [0, 0, 1, 1], "term": ["common", "alpha", "common", "beta"], "count": [10, 5, 10, 5]}
    )
    top = c_tf_idf(terms, "sc", top_n=1)
    assert top["top_terms"].to_list() == [["alpha"], ["beta"]]


def test_plots_are_png() -> None:
    bars = supercluster_sizes_png([10, 5, 1])
    cmap = centroid_map_png(_centroids(), np.array([0, 0, 0, 1, 1, 1, -1]), np.array([5, 5, 5, 1, 1, 1, 9]))
    assert bars.startswith(PNG_MAGIC) and cmap.startswith(PNG_MAGIC)
    md = png_markdown(bars, "sizes")
    assert md.startswith("![sizes](data:image/png;base64,")
    assert pca_2d(np.ones((3, 5))).shape == (3, 2)
    with pytest.raises(ClimbInputError):
        centroid_map_png(_centroids(), np.array([0]))


def test_centroid_map_names_each_super_cluster_in_a_legend() -> None:
    from io import BytesIO

    from PIL import Image

    groups, sizes = np.array([0, 0, 0, 1, 1, 1, -1]), np.array([5, 5, 5, 1, 1, 1, 9])
    plain = centroid_map_png(_centroids(), groups, sizes)
    named = centroid_map_png(_centroids(), groups, sizes, ["00 postgres·query", "01 kernel·driver"])
    assert Image.open(BytesIO(named)).width > Image.open(BytesIO(plain)).width  # room for the legend
    with pytest.raises(ClimbInputError, match="1 labels for super-cluster ids up to 1"):
        centroid_map_png(_centroids(), groups, sizes, ["00 postgres·query"])
