"""A past run's mixture re-expressed over the new super-clusters, with its error.

The run's nominal weight of each old super-cluster is split the way its own tokens in that super-cluster were
split over (drop, fine) cells (its Composition), and each cell's part goes where the cell's documents are now
(ClusterMap). So a run whose clustering did not change comes back with exactly its nominal weights, and the
predictor sees reused rows on the same footing as new ones (nominal weights, not sampled token shares).

Error = gone + changed: the share of the run's weight whose tokens no longer exist in the new space (documents
of removed drops, pruned clusters; an old super-cluster the run drew no window from is spread like that
super-cluster's documents when the map knows them, else gone) plus the share in old fine
clusters that changed beyond the map's `min_overlap`. The weights are renormalised over what remains, so a
removed domain renormalises the rest; a run above `max_error` is excluded from reuse.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from climb_dagster.core.proxy.composition import CELL_DROP, CELL_FINE, SUPER, TOKENS, Composition
from climb_dagster.core.reuse.mapping import ClusterMap

DEFAULT_MAX_ERROR = 0.2


@dataclass(frozen=True)
class Reexpressed:
    """weights: over the new super-clusters, summing to 1 (all zero when nothing remains); gone, changed and
    error as shares of the run's weight; usable: error <= the threshold it was judged by."""

    weights: np.ndarray
    gone: float
    changed: float
    error: float
    usable: bool


def reexpress(
    composition: Composition, weights: np.ndarray, cmap: ClusterMap, max_error: float = DEFAULT_MAX_ERROR
) -> Reexpressed:
    """`weights` (the run's nominal mixture over the super-clusters it trained on) over `cmap`'s new
    super-clusters."""
    w = np.asarray(weights, dtype=np.float64)
    cells = composition.cells
    per_super = composition.super_tokens(w.size)
    if cells.size and cells[:, SUPER].max() >= w.size:
        raise ValueError(f"composition names super-cluster {cells[:, SUPER].max()}, the mixture has {w.size}")
    out = np.zeros(cmap.n_new + 1)
    changed = 0.0
    unseen = 0.0
    # An old super-cluster with weight but no window drawn (a small weight, a short run): its weight goes where
    # that super-cluster's documents went, when the map knows them; otherwise nothing says where, so it is gone.
    for s in np.flatnonzero((per_super == 0) & (w > 0)).tolist():
        rows = np.flatnonzero(cmap.old_super == s) if cmap.old_super is not None else np.zeros(0, np.int64)
        if not rows.size or cmap.tokens[rows].sum() == 0:
            unseen += float(w[s])
            continue
        share = cmap.tokens[rows] / cmap.tokens[rows].sum()
        out += w[s] * (share @ cmap.shares[rows])
        changed += float(w[s] * share[cmap.changed[rows]].sum())
    if cells.size:
        part = w[cells[:, SUPER]] * cells[:, TOKENS] / per_super[cells[:, SUPER]]
        rows = cmap.rows(composition.drops, cells[:, CELL_DROP], cells[:, CELL_FINE])
        known = rows >= 0
        out += part[known] @ cmap.shares[rows[known]]
        out[-1] += float(part[~known].sum())
        changed += float(part[known][cmap.changed[rows[known]]].sum())
    gone = float(out[-1]) + unseen
    remaining = out[:-1]
    total = float(remaining.sum())
    new_w = remaining / total if total > 0 else np.zeros(cmap.n_new)
    error = min(1.0, gone + changed)
    return Reexpressed(
        weights=new_w,
        gone=gone,
        changed=changed,
        error=error,
        usable=total > 0 and error <= max_error,
    )
