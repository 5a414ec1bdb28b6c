"""Which new super-clusters an update left unchanged, and the freeze-and-expand plan built on them (issue 24).

An update that only adds drops keeps every earlier document in its fine cluster; a re-merge after it may still
renumber or regroup super-clusters. A new super-cluster counts as unchanged when it is an old one under another
number: most (the map's `min_overlap`) of the earlier tokens it holds come from one old super-cluster and most of
that old one's tokens went to it. Those keep the previous final mixture's ratios as one frozen block; the search then runs over
the others and the block's total (`core/search/block.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.reuse.mapping import ClusterMap
from climb_dagster.core.search.block import FrozenBlock

RUN = "run"


def supercluster_overlap(cmap: ClusterMap) -> np.ndarray:
    """Tokens [n_old, n_new] of each old super-cluster now in each new one (gone tokens left out)."""
    if cmap.old_super is None:
        raise ClimbInputError(
            "the cluster map was built without the old super-clusters (old_kept as a mapping)"
        )
    known = cmap.old_super >= 0
    n_old = int(cmap.old_super[known].max()) + 1 if known.any() else 0
    out = np.zeros((n_old, cmap.n_new))
    np.add.at(out, cmap.old_super[known], cmap.tokens[known, None] * cmap.shares[known, : cmap.n_new])
    return out


def unchanged_superclusters(cmap: ClusterMap) -> np.ndarray:
    """bool [n_new]: the new super-clusters that are an old one under another number, judged on the earlier
    documents (an added drop's documents only grow it: they join the same fine clusters)."""
    overlap = supercluster_overlap(cmap)
    out = np.zeros(cmap.n_new, dtype=bool)
    if not overlap.size:
        return out
    for s_new in range(cmap.n_new):
        s_old = int(np.argmax(overlap[:, s_new]))
        m = overlap[s_old, s_new]
        out[s_new] = (
            m > 0
            and m >= cmap.min_overlap * overlap[:, s_new].sum()
            and m >= cmap.min_overlap * overlap[s_old].sum()
        )
    return out


def reexpress_final(weights: np.ndarray, cmap: ClusterMap) -> np.ndarray:
    """An earlier experiment's final mixture (over its super-clusters) over the new ones: each old super-cluster's
    weight follows its tokens; weight on tokens now gone is dropped and the rest renormalised."""
    overlap = supercluster_overlap(cmap)
    w = np.asarray(weights, dtype=np.float64)
    if w.size < overlap.shape[0]:
        raise ClimbInputError(
            f"a final mixture of {w.size} weights, the old clustering has {overlap.shape[0]}"
        )
    rows = overlap.sum(axis=1, keepdims=True)
    share = np.divide(overlap, rows, out=np.zeros_like(overlap), where=rows > 0)
    out = w[: overlap.shape[0]] @ share
    if out.sum() <= 0:
        raise ClimbInputError("nothing of the earlier final mixture's super-clusters remains")
    return out / out.sum()


def freeze_reason(cmap: ClusterMap, unchanged: np.ndarray) -> str:
    """`RUN` when freeze-and-expand applies to this update, else why not."""
    s = cmap.summary()
    if s["gone_share"] > 0 or s["changed_share"] > 0:
        return (
            f"not run: the update did more than add drops ({s['gone_share']:.1%} of the earlier tokens gone, "
            f"{s['changed_share']:.1%} in changed fine clusters)"
        )
    n = int(np.asarray(unchanged).sum())
    if n < 2:
        return f"not run: {n} super-cluster(s) unchanged, a block needs 2"
    if n == np.asarray(unchanged).size:
        return "not run: every super-cluster unchanged (only the whole block would be left to search)"
    return RUN


@dataclass(frozen=True)
class FreezePlan:
    """What freeze-and-expand does for an experiment: the block (None: not run) and why, from which experiment."""

    reason: str
    block: FrozenBlock | None = None
    source: str | None = None

    @property
    def runs(self) -> bool:
        return self.block is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "reason": self.reason,
            "source": self.source,
            "block": None if self.block is None else self.block.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FreezePlan:
        block = d.get("block")
        return cls(str(d["reason"]), None if block is None else FrozenBlock.from_dict(block), d.get("source"))
