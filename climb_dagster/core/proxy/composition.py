"""What a proxy run actually trained on: its tokens per (super-cluster, crawl drop, fine k-means cluster).

Why this level: a run's windows are drawn from super-cluster streams whose segments each name one drop and one
fine cluster (`segments.py`), so the count is exact and costs a few hundred cells, while a per-document record
would grow with the corpus (a 49k-token demo proxy touches thousands of documents). Fine clusters are what a
re-clustering maps through the documents both clusterings assign, and drops are what an update adds or
removes; `core/reuse` re-expresses a run over any later set of super-clusters from these cells.

The composition is a function of the store, the mixture, the run's size and its seed (the window plan of
`sampler.window_plan` with the seed `train_proxy` samples with), so it is computed next to training without
reading a token, and it is the same whether the run trained alone or in a pack.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.proxy.sampler import window_plan
from climb_dagster.core.proxy.segments import DROP, FINE, LENGTH

# Columns of Composition.cells.
SUPER, CELL_DROP, CELL_FINE, TOKENS = 0, 1, 2, 3


@dataclass(frozen=True)
class Composition:
    """Tokens a run trained on per cell. `cells`: int64 [n, 4] (super-cluster, drop index into `drops`, fine
    cluster, tokens), sorted, no zero rows; `store_key`: the token store they index."""

    drops: tuple[str, ...]
    cells: np.ndarray
    store_key: str

    def __post_init__(self) -> None:
        cells = np.asarray(self.cells, dtype=np.int64).reshape(-1, 4)
        if cells.size and (
            cells[:, TOKENS].min() <= 0
            or cells[:, CELL_DROP].min() < 0
            or cells[:, CELL_DROP].max() >= len(self.drops)
        ):
            raise ClimbInputError(
                f"composition of store {self.store_key[:12]}: cells need positive tokens and drop indices below "
                f"{len(self.drops)}"
            )
        object.__setattr__(self, "drops", tuple(str(d) for d in self.drops))
        object.__setattr__(self, "cells", cells)

    @property
    def tokens(self) -> int:
        return int(self.cells[:, TOKENS].sum())

    def super_tokens(self, n_superclusters: int) -> np.ndarray:
        """Tokens per super-cluster of the store the run trained on."""
        return np.bincount(self.cells[:, SUPER], weights=self.cells[:, TOKENS], minlength=n_superclusters)

    def to_dict(self) -> dict[str, Any]:
        return {"store_key": self.store_key, "drops": list(self.drops), "cells": self.cells.tolist()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Composition:
        try:
            return cls(
                drops=tuple(data["drops"]),
                cells=np.asarray(data["cells"], dtype=np.int64).reshape(-1, 4),
                store_key=str(data["store_key"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ClimbInputError(
                f"a run composition is malformed ({type(exc).__name__}: {exc}): {json.dumps(data, default=str)[:300]}"
            ) from exc

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Composition)
            and (self.drops, self.store_key) == (other.drops, other.store_key)
            and np.array_equal(self.cells, other.cells)
        )

    __hash__ = None  # type: ignore[assignment]


def window_tokens_per_segment(starts: np.ndarray, span: int, segment_lengths: np.ndarray) -> np.ndarray:
    """Tokens of windows [start, start + span) that fall in each segment of a stream laid out as
    `segment_lengths` back to back. Exact, vectorised: F(x) = tokens of all windows below position x."""
    s = np.sort(np.asarray(starts, dtype=np.int64))
    prefix = np.concatenate([[0], np.cumsum(s)])
    bounds = np.concatenate([[0], np.cumsum(np.asarray(segment_lengths, dtype=np.int64))])

    def below(x: np.ndarray) -> np.ndarray:
        # Windows wholly below x give span each; windows starting in (x - span, x] give x - start each.
        full = np.searchsorted(s, x - span, side="right")
        part = np.searchsorted(s, x, side="right")
        return full * span + (part - full) * x - (prefix[part] - prefix[full])

    covered = below(bounds)
    return np.diff(covered)


def run_composition(store: Any, mixture: Sequence[float] | np.ndarray, config: Any, seed: int) -> Composition | None:
    """The composition of the run `train_proxy(store, mixture, config, seed)` (or a pack member with that seed)
    trains on; None for a v1 store, whose streams keep no drop or fine cluster."""
    drops = tuple(getattr(store, "drop_keys", ()) or ())
    if not drops or not all(hasattr(t, "segments") for t in store.tokens):
        return None
    block = config.model.block_size
    clusters, starts = window_plan(store, mixture, config.train.steps * config.train.batch_size, block, seed + 1)
    parts = []
    for c in np.unique(clusters).tolist():
        segs = store.tokens[c].segments
        per_seg = window_tokens_per_segment(starts[clusters == c], block + 1, segs[:, LENGTH])
        used = per_seg > 0
        cell = np.stack([segs[used, DROP], segs[used, FINE]], axis=1)
        keys, inverse = np.unique(cell, axis=0, return_inverse=True)
        tokens = np.bincount(inverse.reshape(-1), weights=per_seg[used]).astype(np.int64)
        parts.append(np.column_stack([np.full(len(keys), c), keys, tokens]))
    cells = np.concatenate(parts) if parts else np.zeros((0, 4), dtype=np.int64)
    return Composition(drops=drops, cells=cells, store_key=store.key())
