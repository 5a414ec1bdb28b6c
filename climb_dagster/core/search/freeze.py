"""Freeze-and-expand (as Olmix does when domains are added): the super-clusters an update left unchanged keep
their relative ratios as one block; the search runs over the changed or new super-clusters plus the block's
total, and every mixture it proposes is expanded back to all super-clusters before a proxy trains on it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.search.sampling import validate_prior
from climb_dagster.core.search.strategies import Evaluate, SearchResult, StrategyConfig, run_search


@dataclass(frozen=True)
class FrozenBlock:
    """frozen: indices of the unchanged super-clusters; ratios: their relative weights (sum 1); k: all
    super-clusters. The reduced space has the free super-clusters in index order, then the block."""

    frozen: tuple[int, ...]
    ratios: tuple[float, ...]
    k: int

    def __post_init__(self) -> None:
        f = np.asarray(self.frozen, dtype=np.int64)
        r = np.asarray(self.ratios, dtype=np.float64)
        if f.size < 2 or f.size != r.size or len(set(f.tolist())) != f.size or f.min() < 0 or f.max() >= self.k:
            raise ClimbInputError(
                f"a frozen block needs >= 2 distinct super-clusters of 0..{self.k - 1} with one ratio each, got "
                f"{list(self.frozen)} and {list(self.ratios)}"
            )
        if f.size == self.k:
            raise ClimbInputError("every super-cluster is frozen: nothing is left to search")
        if np.any(r < 0) or not np.isclose(r.sum(), 1.0, atol=1e-6):
            raise ClimbInputError(f"frozen ratios must be >= 0 and sum to 1, got {list(self.ratios)}")

    @property
    def free(self) -> np.ndarray:
        return np.setdiff1d(np.arange(self.k), np.asarray(self.frozen))

    @property
    def k_reduced(self) -> int:
        return self.k - len(self.frozen) + 1

    def expand(self, reduced: np.ndarray) -> np.ndarray:
        """[n, k_reduced] -> [n, k]: the block's total spread over the frozen super-clusters by the ratios."""
        x = np.atleast_2d(np.asarray(reduced, dtype=np.float64))
        if x.shape[1] != self.k_reduced:
            raise ClimbInputError(f"reduced mixtures have {x.shape[1]} columns, the block needs {self.k_reduced}")
        out = np.zeros((x.shape[0], self.k))
        out[:, self.free] = x[:, :-1]
        out[:, list(self.frozen)] = x[:, -1:] * np.asarray(self.ratios)[None, :]
        return out

    def reduce(self, full: np.ndarray) -> np.ndarray:
        """[n, k] -> [n, k_reduced]: the free weights and the block's total (its inner ratios are dropped: a
        reused row whose block was mixed otherwise is read as if it had the block's ratios)."""
        x = np.atleast_2d(np.asarray(full, dtype=np.float64))
        if x.shape[1] != self.k:
            raise ClimbInputError(f"mixtures have {x.shape[1]} columns, the block is over {self.k}")
        return np.column_stack([x[:, self.free], x[:, list(self.frozen)].sum(axis=1)])


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
    candidates: np.ndarray | None = None,
) -> SearchResult:
    """`run_search` in the block's reduced space; every mixture handed to `evaluate`, the history and the final
    pick are expanded to all super-clusters (the predictors stay in the reduced space: free weights, then the
    block's total)."""
    p = validate_prior(prior)
    if p.size != block.k:
        raise ClimbInputError(f"prior has {p.size} super-clusters, the block is over {block.k}")
    reduced_reused = None if reused is None else (block.reduce(reused[0]), np.asarray(reused[1], dtype=np.float64))
    # Few free dimensions hold few distinct candidates at the sampler's rounding: ask for at most half of them.
    k = block.k_reduced
    distinct = math.comb(10**config.sampling.dedup_decimals + k - 1, k - 1)
    config = replace(config, n_candidates=min(config.n_candidates, max(1, distinct // 2)))
    result = run_search(
        config,
        lambda x: evaluate(block.expand(x)),
        prior=block.reduce(p[None, :])[0],
        seed=seed,
        candidates=None if candidates is None else block.reduce(candidates),
        reused=reduced_reused,
    )
    return replace(result, mixtures=block.expand(result.mixtures), final_mixture=block.expand(result.final_mixture)[0])
