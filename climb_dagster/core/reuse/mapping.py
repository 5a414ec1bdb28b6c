"""Old fine clusters -> new super-clusters, through the documents both clusterings assign (never by index).

A past run's tokens sit in (drop, old fine cluster) cells (its Composition). After new drops, a centroid refit, a
re-prune or a re-merge, each document of a cell is either assigned a new fine cluster that belongs to a new
super-cluster, or it is gone (its drop removed, its new cluster pruned). A cell's tokens are spread over the new
super-clusters in proportion to its documents' tokens: the best estimate of where a run's windows from that cell
landed, since windows start uniformly over a cluster's stream. An old fine cluster whose present tokens do not
mostly (`min_overlap`) fall in one new super-cluster counts as changed: the proportional spread is then a guess
for the tokens of that cluster, and those tokens count in a re-expression's error.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from climb_dagster.core.common.errors import ClimbInputError

# An old fine cluster is unchanged when at least this share of its present tokens is in one new super-cluster.
DEFAULT_MIN_OVERLAP = 0.7
# Column names of the frames `build_cluster_map` reads.
ID, CLUSTER, N_TOKENS, SUPER_CLUSTER = "id", "cluster", "n_tokens", "super_cluster"


@dataclass(frozen=True)
class ClusterMap:
    """Where the tokens of each old (drop, fine cluster) cell are in the new clustering.

    cells: int64 [m, 2] (index into `drops`, old fine cluster), sorted; tokens: int64 [m] of each cell's
    documents; shares: float64 [m, n_new + 1], each row the cell's tokens per new super-cluster then (last
    column) gone; changed: bool [m], the cell's old fine cluster changed beyond `min_overlap`."""

    drops: tuple[str, ...]
    n_new: int
    cells: np.ndarray
    tokens: np.ndarray
    shares: np.ndarray
    changed: np.ndarray
    min_overlap: float
    # The old super-cluster of each cell's fine cluster (-1: not given): where a run's weight on an old
    # super-cluster it drew no window from is spread.
    old_super: np.ndarray | None = None

    def rows(self, drop_keys: tuple[str, ...], drop_index: np.ndarray, fine: np.ndarray) -> np.ndarray:
        """The row of each (drop of `drop_keys`, old fine) cell; -1 where this map has none (a drop or a
        cluster it never saw: those tokens count as gone)."""
        position = {d: i for i, d in enumerate(self.drops)}
        ours = np.array([position.get(d, -1) for d in drop_keys], dtype=np.int64)
        d = ours[np.asarray(drop_index, dtype=np.int64)] if len(drop_keys) else np.zeros(0, dtype=np.int64)
        key = d * (1 << 32) + np.asarray(fine, dtype=np.int64)
        table = self.cells[:, 0] * (1 << 32) + self.cells[:, 1]
        at = np.searchsorted(table, key)
        found = (d >= 0) & (at < len(table))
        found[found] = table[at[found]] == key[found]
        return np.where(found, at, -1)

    def summary(self) -> dict[str, Any]:
        """Tokens of the old clustering's cells still present, gone, and in changed clusters (shares)."""
        total = float(self.tokens.sum())
        gone = float((self.tokens * self.shares[:, -1]).sum())
        changed = float(self.tokens[self.changed].sum())
        old_fine = np.unique(self.cells[:, 1])
        changed_fine = np.unique(self.cells[self.changed, 1])
        return {
            "old_cells": int(len(self.cells)),
            "old_fine_clusters": int(old_fine.size),
            "changed_fine_clusters": int(changed_fine.size),
            "new_superclusters": self.n_new,
            "old_tokens": int(total),
            "gone_share": gone / total if total else 0.0,
            "changed_share": changed / total if total else 0.0,
            "min_overlap": self.min_overlap,
        }


def build_cluster_map(
    drops: Iterable[tuple[str, Any, Any]],
    new_super: Any,
    n_new: int,
    min_overlap: float = DEFAULT_MIN_OVERLAP,
    old_kept: Collection[int] | Mapping[int, int] | None = None,
) -> ClusterMap:
    """The map of the old clustering's cells onto the new super-clusters.

    drops: (drop key, old, new) per drop the old clustering assigned: `old` has id, cluster (old fine) and
    n_tokens; `new` has id and cluster (new fine), and lacks documents that are gone (a drop removed: pass an
    empty frame). new_super: the new fine -> super-cluster table (cluster, super_cluster); new fine clusters
    absent from it are pruned. old_kept: the old fine clusters that were kept (no run trained on a pruned one,
    so its documents are left out of the map); a mapping old fine -> old super-cluster also records each cell's old
    super-cluster; None: all kept, old super-clusters unknown. Read one drop at a time.
    """
    import polars as pl

    if not 0.0 < min_overlap <= 1.0:
        raise ClimbInputError(f"min_overlap must be in (0, 1], got {min_overlap}")
    supers = new_super.select(
        pl.col(CLUSTER).cast(pl.Int64).alias("_new"), pl.col(SUPER_CLUSTER).cast(pl.Int64).alias("_super")
    )
    bad = supers.filter((pl.col("_super") < 0) | (pl.col("_super") >= n_new))
    if bad.height:
        raise ClimbInputError(f"new super-clusters {bad['_super'].to_list()[:5]} are outside 0..{n_new - 1}")
    keys: list[str] = []
    parts = []
    for key, old, new in drops:
        for frame, need, what in ((old, (ID, CLUSTER, N_TOKENS), "old"), (new, (ID, CLUSTER), "new")):
            missing = [c for c in need if c not in frame.columns]
            if missing:
                raise ClimbInputError(
                    f"drop {key!r}: the {what} assignments lack columns {missing} ({frame.columns})"
                )
        new_cols = new.select(pl.col(ID).cast(pl.String), pl.col(CLUSTER).cast(pl.Int64).alias("_new"))
        if old_kept is not None:
            old = old.filter(pl.col(CLUSTER).cast(pl.Int64).is_in(sorted(int(c) for c in old_kept)))
        joined = (
            old.select(
                pl.col(ID).cast(pl.String),
                pl.col(CLUSTER).cast(pl.Int64).alias("_old"),
                pl.col(N_TOKENS).cast(pl.Int64).alias("_tokens"),
            )
            .join(new_cols, on=ID, how="left")
            .join(supers, on="_new", how="left")
            .with_columns(pl.col("_super").fill_null(n_new))
            .group_by("_old", "_super")
            .agg(pl.col("_tokens").sum())
            .with_columns(pl.lit(len(keys), dtype=pl.Int64).alias("_drop"))
        )
        keys.append(str(key))
        parts.append(joined)
    if len(set(keys)) != len(keys):
        raise ClimbInputError(f"drops named twice: {sorted(k for k in set(keys) if keys.count(k) > 1)}")
    empty = pl.DataFrame(
        schema={"_old": pl.Int64, "_super": pl.Int64, "_tokens": pl.Int64, "_drop": pl.Int64}
    )
    counts = pl.concat([p.select(empty.columns) for p in parts]) if parts else empty
    cells = counts.select("_drop", "_old").unique().sort("_drop", "_old")
    cell_arr = cells.to_numpy().astype(np.int64).reshape(-1, 2)
    grid = np.zeros((len(cell_arr), n_new + 1))
    row_of = {(int(d), int(o)): i for i, (d, o) in enumerate(cell_arr.tolist())}
    for d, o, s, t in counts.select("_drop", "_old", "_super", "_tokens").iter_rows():
        grid[row_of[(int(d), int(o))], int(s)] += t
    tokens = grid.sum(axis=1)
    shares = np.divide(grid, tokens[:, None], out=np.zeros_like(grid), where=tokens[:, None] > 0)
    shares[tokens == 0, -1] = 1.0  # a cell of empty documents: nothing of it is known to remain
    # Purity per old fine cluster over every drop: the share of its present tokens in its main super-cluster.
    fine = cell_arr[:, 1]
    changed = np.zeros(len(cell_arr), dtype=bool)
    for o in np.unique(fine).tolist():
        present = grid[fine == o, :n_new].sum(axis=0)
        if present.sum() > 0 and present.max() / present.sum() < min_overlap:
            changed[fine == o] = True
    old_super = None
    if isinstance(old_kept, Mapping):
        old_super = np.array([int(old_kept.get(int(f), -1)) for f in fine], dtype=np.int64)
    return ClusterMap(
        old_super=old_super,
        drops=tuple(keys),
        n_new=n_new,
        cells=cell_arr,
        tokens=tokens.astype(np.int64),
        shares=shares,
        changed=changed,
        min_overlap=min_overlap,
    )
