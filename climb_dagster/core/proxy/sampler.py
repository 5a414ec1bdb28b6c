"""Training windows sampled from the token store in proportion to a mixture over super-clusters."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.proxy.store import TokenStore

MIXTURE_TOLERANCE = 1e-6


def validate_mixture(
    mixture: Sequence[float] | np.ndarray, n_clusters: int, what: str = "mixture"
) -> np.ndarray:
    """Return the mixture as float64 after checking shape, finiteness, signs and sum (1 within 1e-6)."""
    try:
        w = np.asarray(mixture, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ClimbInputError(f"{what} is not a vector of numbers: {mixture!r}") from exc
    if w.ndim != 1 or w.shape[0] != n_clusters:
        raise ClimbInputError(
            f"{what} has shape {w.shape}, expected ({n_clusters},) (one weight per super-cluster)"
        )
    if not np.all(np.isfinite(w)):
        raise ClimbInputError(
            f"{what} has non-finite weights at {np.flatnonzero(~np.isfinite(w)).tolist()}: {w.tolist()}"
        )
    if np.any(w < 0):
        raise ClimbInputError(
            f"{what} has negative weights at {np.flatnonzero(w < 0).tolist()}: {w.tolist()}"
        )
    total = float(w.sum())
    if not math.isclose(total, 1.0, rel_tol=0.0, abs_tol=MIXTURE_TOLERANCE):
        raise ClimbInputError(
            f"{what} weights sum to {total:.9g}, not 1 (tolerance {MIXTURE_TOLERANCE}): {w.tolist()}"
        )
    return w


def window_plan(
    store: TokenStore, mixture: Sequence[float] | np.ndarray, n_windows: int, block_size: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(super-cluster, start offset) of each of `n_windows` windows of `block_size + 1` tokens.

    Each window's super-cluster is drawn from the mixture, then a uniform start inside that cluster's
    token file. Zero-weight clusters are never drawn.
    """
    w = validate_mixture(mixture, store.n_clusters)
    if isinstance(n_windows, bool) or not isinstance(n_windows, int) or n_windows <= 0:
        raise ClimbInputError(f"n_windows must be a positive integer, got {n_windows!r}")
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size <= 0:
        raise ClimbInputError(f"block_size must be a positive integer, got {block_size!r}")
    span = block_size + 1
    too_small = [c for c in np.flatnonzero(w > 0).tolist() if store.n_tokens[c] < span]
    if too_small:
        raise ClimbInputError(
            f"super-clusters {too_small} have weight > 0 but fewer than block_size+1={span} tokens "
            f"(n_tokens={[store.n_tokens[c] for c in too_small]}) in {store.path}"
        )
    rng = np.random.default_rng(seed)
    # Renormalise in float64 so numpy's own sum check never trips on a 1e-7 drift.
    clusters = rng.choice(store.n_clusters, size=n_windows, p=w / w.sum())
    starts = np.zeros(n_windows, dtype=np.int64)
    # Offsets drawn cluster by cluster in id order: a fixed order keeps the plan a function of the seed.
    for c in np.unique(clusters).tolist():
        rows = np.flatnonzero(clusters == c)
        starts[rows] = rng.integers(0, store.n_tokens[c] - span + 1, size=rows.size)
    return clusters, starts


def sample_windows(
    store: TokenStore, mixture: Sequence[float] | np.ndarray, n_windows: int, block_size: int, seed: int
) -> np.ndarray:
    """`n_windows` windows of `block_size + 1` consecutive tokens, as int64 (n_windows, block_size + 1).

    Windows may span document boundaries (separated by the end-of-document token), as in nanoGPT.
    Only the memmapped slices that are needed are read; no text is loaded.
    """
    clusters, starts = window_plan(store, mixture, n_windows, block_size, seed)
    out = np.empty((n_windows, block_size + 1), dtype=np.int64)
    ar = np.arange(block_size + 1)
    for c in np.unique(clusters).tolist():
        rows = np.flatnonzero(clusters == c)
        out[rows] = store.tokens[c][starts[rows][:, None] + ar]
    return out
