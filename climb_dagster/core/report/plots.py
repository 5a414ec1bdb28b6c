"""Clustering plots as PNG bytes (matplotlib Agg), and markdown that embeds them in Dagster metadata."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

import numpy as np

from climb_dagster.core.common.errors import ClimbInputError


def _figure(width: float, height: float):  # noqa: ANN202 - matplotlib types are imported lazily
    from matplotlib.figure import Figure

    # Figure() without pyplot: no global state, no GUI backend, safe in threads.
    return Figure(figsize=(width, height), dpi=100)


def _png(fig) -> bytes:  # noqa: ANN001
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def supercluster_sizes_png(n_docs: Sequence[int], labels: Sequence[str] | None = None) -> bytes:
    """Bar plot of documents per super-cluster."""
    sizes = np.asarray(n_docs)
    if sizes.ndim != 1 or len(sizes) == 0:
        raise ClimbInputError(f"need a non-empty 1-D list of sizes, got shape {sizes.shape}")
    fig = _figure(_label_width(labels, len(sizes)), 3.6 if labels is not None else 3.2)
    ax = fig.add_subplot()
    ax.bar(np.arange(len(sizes)), sizes, color="#4c72b0")
    _super_cluster_axis(ax, len(sizes), labels)
    ax.set_ylabel("documents")
    ax.set_title("Documents per super-cluster")
    return _png(fig)


def pca_2d(points: np.ndarray) -> np.ndarray:
    """Project rows onto their first two principal components ([n, 2]; zeros past the data's rank)."""
    x = np.asarray(points, dtype=np.float64)
    x = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    out = x @ vt[:2].T
    if out.shape[1] < 2:
        out = np.pad(out, ((0, 0), (0, 2 - out.shape[1])))
    return out


def centroid_map_png(
    centroids: np.ndarray,
    groups: np.ndarray,
    sizes: np.ndarray | None = None,
    labels: Sequence[str] | None = None,
) -> bytes:
    """2-D PCA map of cluster centroids coloured by super-cluster (-1 = pruned, grey crosses); with `labels`
    (one per super-cluster id) a legend names each colour."""
    c = np.asarray(centroids)
    g = np.asarray(groups)
    if c.ndim != 2 or len(c) != len(g) or len(c) == 0:
        raise ClimbInputError(f"centroids {c.shape} and groups {g.shape} do not match")
    if labels is not None and len(labels) <= int(g.max(initial=-1)):
        raise ClimbInputError(f"{len(labels)} labels for super-cluster ids up to {int(g.max())}")
    xy = pca_2d(c)
    s = np.asarray(sizes, dtype=np.float64) if sizes is not None else np.ones(len(c))
    area = 10 + 190 * s / max(float(s.max()), 1.0)
    fig = _figure(9.0 if labels is not None else 5.5, 4.5)
    ax = fig.add_subplot()
    pruned = g < 0
    if pruned.any():
        ax.scatter(xy[pruned, 0], xy[pruned, 1], s=15, c="#aaaaaa", marker="x", label="pruned")
    kept = ~pruned
    if kept.any():
        points = ax.scatter(
            xy[kept, 0],
            xy[kept, 1],
            s=area[kept],
            c=g[kept],
            cmap="tab20",
            alpha=0.75,
            edgecolors="k",
            linewidths=0.3,
        )
        for sc in np.unique(g[kept]):
            cx, cy = xy[g == sc].mean(axis=0)
            ax.annotate(str(int(sc)), (cx, cy), fontsize=7, ha="center", va="center", weight="bold")
            if labels is not None:
                colour = points.cmap(points.norm(sc))
                ax.scatter([], [], s=30, color=colour, edgecolors="k", linewidths=0.3, label=labels[int(sc)])
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.set_title("Cluster centroids (PCA), numbered by super-cluster")
    if labels is not None:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False)
    elif pruned.any():
        ax.legend(loc="best", fontsize=7)
    return _png(fig)


def png_markdown(png: bytes, alt: str) -> str:
    """Markdown image with the PNG inline as a base64 data URI (Dagster metadata has no image type)."""
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode('ascii')})"


def _super_cluster_axis(ax, n: int, labels: Sequence[str] | None) -> None:  # noqa: ANN001
    """One tick per super-cluster at integer positions, named by its label (or its id)."""
    if labels is not None and len(labels) != n:
        raise ClimbInputError(f"{len(labels)} labels for {n} super-clusters")
    x = np.arange(n)
    named = labels is not None
    ax.set_xticks(
        x,
        list(labels) if named else [str(i) for i in x],
        rotation=60 if named else 0,
        ha="right" if named else "center",
        fontsize=7,
    )
    ax.set_xlabel("super-cluster")


def _label_width(labels: Sequence[str] | None, n: int) -> float:
    """Figure width that leaves each bar group room for its (rotated) label."""
    return max(5.0, (0.55 if labels is not None else 0.3) * n + 2)


def weights_bar_png(mixtures: np.ndarray, title: str, labels: Sequence[str] | None = None) -> bytes:
    """Mean weight per super-cluster (bars) with the min-max range over the mixtures of a round."""
    n = mixtures.shape[1]
    fig = _figure(_label_width(labels, n), 3.6 if labels is not None else 3.0)
    ax = fig.subplots()
    x = np.arange(n)
    if mixtures.shape[0]:
        ax.bar(x, mixtures.mean(axis=0), color="#4c72b0")
        ax.vlines(x, mixtures.min(axis=0), mixtures.max(axis=0), color="#333333", linewidth=1)
    _super_cluster_axis(ax, n, labels)
    ax.set_ylabel("weight")
    ax.set_title(title, fontsize=9)
    return _png(fig)


def final_vs_natural_png(
    weights: Sequence[float], natural: Sequence[float], labels: Sequence[str] | None, title: str
) -> bytes:
    """Grouped bars per super-cluster: the selected mixture beside the natural (token-share) mixture."""
    w, nat = np.asarray(weights, dtype=np.float64), np.asarray(natural, dtype=np.float64)
    if w.shape != nat.shape or w.ndim != 1 or w.size == 0:
        raise ClimbInputError(f"weights {w.shape} and natural {nat.shape} must be equal, non-empty 1-D")
    fig = _figure(_label_width(labels, w.size), 3.8)
    ax = fig.subplots()
    x = np.arange(w.size)
    ax.bar(x - 0.2, w, width=0.4, color="#4c72b0", label="selected")
    ax.bar(x + 0.2, nat, width=0.4, color="#aaaaaa", label="natural (token shares)")
    _super_cluster_axis(ax, w.size, labels)
    ax.set_ylabel("weight")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return _png(fig)


def predicted_vs_actual_png(
    predicted: np.ndarray, actual: np.ndarray, title: str, out_of_fold: np.ndarray | None = None
) -> bytes:
    """Predicted vs observed score: out-of-fold predictions (each by a model that never saw that proxy)
    in colour when given, the in-sample fit in grey beside them, so a perfect in-sample diagonal cannot
    pass for predictive skill."""
    fig = _figure(4.0, 3.5)
    ax = fig.subplots()
    shown = [predicted]
    if out_of_fold is None:
        ax.scatter(actual, predicted, s=14, color="#dd8452", label="in-sample")
    else:
        ax.scatter(actual, predicted, s=10, color="#bbbbbb", label="in-sample")
        ax.scatter(actual, out_of_fold, s=16, color="#dd8452", label="out-of-fold")
        shown.append(out_of_fold)
        ax.legend(loc="best", fontsize=7)
    if actual.size:
        values = np.concatenate([actual, *shown])
        lo, hi = float(values.min()), float(values.max())
        ax.plot([lo, hi], [lo, hi], color="#999999", linewidth=1)
    ax.set_xlabel("observed score")
    ax.set_ylabel("predicted score")
    ax.set_title(title, fontsize=9)
    return _png(fig)


def quality_histogram_png(quality_mean: np.ndarray, n_docs: np.ndarray, threshold: float) -> bytes:
    """Histogram of cluster mean quality (1-5), weighted by documents, with the pruning threshold marked."""
    q = np.asarray(quality_mean, dtype=np.float64)
    w = np.asarray(n_docs, dtype=np.float64)
    if q.shape != w.shape:
        raise ClimbInputError(f"{q.shape[0]} quality means but {w.shape[0]} document counts")
    fig = _figure(5.0, 3.0)
    ax = fig.add_subplot()
    bins = np.linspace(1.0, 5.0, 33)
    ax.hist(q[q < threshold], bins=bins, weights=w[q < threshold], color="#c44e52", label="pruned")
    ax.hist(q[q >= threshold], bins=bins, weights=w[q >= threshold], color="#4c72b0", label="kept")
    ax.axvline(threshold, color="black", linestyle="--", linewidth=1)
    ax.set_xlabel("cluster mean quality (1-5)")
    ax.set_ylabel("documents")
    ax.set_title(f"Cluster quality vs threshold {threshold:g}")
    ax.legend(fontsize=7)
    return _png(fig)
