"""A frozen block (freeze-and-expand, as Olmix does when domains are added): the super-clusters an update left
unchanged keep their relative ratios as one block. A search over the block's reduced space (the free
super-clusters, then the block's total) proposes there; every mixture is expanded to all super-clusters before a
proxy trains on it, and a predictor fitted on full mixtures ranks reduced ones through `ExpandedPredictor`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.search.predictor import Predictor


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
        if (
            f.size < 2
            or f.size != r.size
            or len(set(f.tolist())) != f.size
            or f.min() < 0
            or f.max() >= self.k
        ):
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
            raise ClimbInputError(
                f"reduced mixtures have {x.shape[1]} columns, the block needs {self.k_reduced}"
            )
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

    def to_dict(self) -> dict[str, Any]:
        return {"frozen": list(self.frozen), "ratios": list(self.ratios), "k": self.k}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FrozenBlock:
        return cls(tuple(int(i) for i in d["frozen"]), tuple(float(r) for r in d["ratios"]), int(d["k"]))

    def distinct_candidates(self, dedup_decimals: int) -> int:
        """How many distinct reduced mixtures the sampler's rounding allows (few free super-clusters: few)."""
        k = self.k_reduced
        return math.comb(10**dedup_decimals + k - 1, k - 1)


@dataclass
class ExpandedPredictor(Predictor):
    """A predictor fitted on full mixtures, asked about reduced ones: each is expanded by `block` first."""

    block: FrozenBlock | None = None

    @classmethod
    def wrap(cls, predictor: Predictor, block: FrozenBlock) -> ExpandedPredictor:
        return cls(
            predictor.boosters, predictor.direction, predictor.feature_names, predictor.metadata, block
        )

    def _x(self, mixtures: np.ndarray) -> np.ndarray:
        assert self.block is not None
        return super()._x(self.block.expand(mixtures))
