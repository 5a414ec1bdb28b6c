"""Freeze-and-expand (as Olmix does when domains are added): the super-clusters an update left unchanged keep
their relative ratios as one block (`block.FrozenBlock`, ratios from the previous final mixture); the search runs
over the changed or new super-clusters plus the block's total, and every mixture it proposes is expanded back to
all super-clusters before a proxy trains on it.
"""

from __future__ import annotations

import numpy as np

from climb_dagster.core.search.block import FrozenBlock
from climb_dagster.core.search.strategies import Evaluate, SearchResult, StrategyConfig, run_search

__all__ = ["FrozenBlock", "frozen_block", "run_frozen_search"]


def frozen_block(previous_final: np.ndarray, unchanged: np.ndarray) -> FrozenBlock:
    """The block of the `unchanged` super-clusters (boolean [k]) with the ratios of `previous_final` (the
    earlier experiment's final mixture re-expressed over these super-clusters); uniform inside the block if
    that mixture gave it no weight."""
    w = np.asarray(previous_final, dtype=np.float64)
    keep = np.flatnonzero(np.asarray(unchanged, dtype=bool))
    inner = w[keep]
    ratios = inner / inner.sum() if inner.sum() > 0 else np.full(keep.size, 1.0 / max(keep.size, 1))
    return FrozenBlock(tuple(keep.tolist()), tuple(ratios.tolist()), w.size)


def run_frozen_search(
    config: StrategyConfig,
    evaluate: Evaluate,
    block: FrozenBlock,
    prior: np.ndarray,
    seed: int = 0,
    reused: tuple[np.ndarray, np.ndarray] | None = None,
) -> SearchResult:
    """`run_search` with the block frozen: every mixture handed to `evaluate`, the history and the final pick
    keep the block's inner ratios; the predictors fit full mixtures (reused rows included, whatever their block
    held) and rank reduced candidates expanded."""
    return run_search(config, evaluate, prior=prior, seed=seed, reused=reused, block=block)
