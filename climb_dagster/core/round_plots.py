"""Small PNG charts for bootstrapping rounds (shown in Dagster metadata and logged to MLflow)."""

from __future__ import annotations

import io

import numpy as np


def _figure(width: float = 5.0, height: float = 3.0):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(width, height), dpi=80)
    return plt, fig, ax


def _png(plt, fig) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def weights_bar_png(mixtures: np.ndarray, title: str) -> bytes:
    """Mean weight per super-cluster (bars) with the min-max range of the round's mixtures."""
    plt, fig, ax = _figure()
    k = mixtures.shape[1]
    x = np.arange(k)
    if mixtures.shape[0]:
        mean = mixtures.mean(axis=0)
        ax.bar(x, mean, color="#4c72b0")
        ax.vlines(x, mixtures.min(axis=0), mixtures.max(axis=0), color="#333333", linewidth=1)
    ax.set_xlabel("super-cluster")
    ax.set_ylabel("weight")
    ax.set_title(title, fontsize=9)
    return _png(plt, fig)


def predicted_vs_actual_png(predicted: np.ndarray, actual: np.ndarray, title: str) -> bytes:
    plt, fig, ax = _figure(4.0, 3.5)
    ax.scatter(actual, predicted, s=14, color="#dd8452")
    if actual.size:
        lo, hi = float(min(actual.min(), predicted.min())), float(max(actual.max(), predicted.max()))
        ax.plot([lo, hi], [lo, hi], color="#999999", linewidth=1)
    ax.set_xlabel("actual score")
    ax.set_ylabel("predicted score")
    ax.set_title(title, fontsize=9)
    return _png(plt, fig)


def png_markdown(png: bytes, alt: str) -> str:
    """A PNG as a data-URI image in markdown (Dagster has no image metadata type)."""
    import base64

    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})"
