"""What every strategy shares below the registry: the history as checked arrays, the pool rows not evaluated
yet, the best observed row, and the maximin spread of a round-0 design."""

from __future__ import annotations

import numpy as np

from climb_dagster.core.common.direction import Direction
from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.search.sampling import validate_mixtures

# Pool rows and history are matched after rounding, so a history reloaded from Parquet still matches.
MATCH_DECIMALS = 9


def history_arrays(
    history_mixtures: np.ndarray | None, history_scores: np.ndarray | None, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """History as float arrays ([n, K], [n]); None or an empty array means nothing evaluated yet."""
    hm = np.empty((0, k)) if history_mixtures is None else np.asarray(history_mixtures, dtype=np.float64)
    hs = np.empty(0) if history_scores is None else np.asarray(history_scores, dtype=np.float64).reshape(-1)
    if hm.size == 0:
        hm = np.empty((0, k))
    if hm.ndim != 2 or hm.shape[0] != hs.shape[0]:
        raise ClimbInputError(f"history has mixtures of shape {hm.shape} but {hs.shape[0]} scores")
    if hm.shape[0]:
        validate_mixtures(hm, k, source="history mixtures")
    bad = ~np.isfinite(hs)
    if bad.any():
        i = int(np.argmax(bad))
        raise ClimbInputError(f"history score of row {i} is {hs[i]}, expected a finite number")
    return hm, hs


def unevaluated(candidates: np.ndarray, history: np.ndarray) -> np.ndarray:
    """Boolean mask of candidate rows not already in history."""
    if history.shape[0] == 0:
        return np.ones(candidates.shape[0], dtype=bool)
    seen = {r.tobytes() for r in np.round(history, MATCH_DECIMALS) + 0.0}
    keys = np.round(candidates, MATCH_DECIMALS) + 0.0
    return np.fromiter((r.tobytes() not in seen for r in keys), dtype=bool, count=keys.shape[0])


def best_observed(scores: np.ndarray, direction: str) -> int:
    if scores.size == 0:
        raise ClimbInputError("no evaluated mixtures to pick the best observed one from")
    return Direction(direction).argbest(scores)


def maximin(
    cands: np.ndarray, n: int, rng: np.random.Generator, fixed: np.ndarray | None = None
) -> np.ndarray:
    """Greedy farthest-point subset (L1) from a random start: spreads round 0 over the candidates. With
    `fixed` rows (evidence already in hand, e.g. reused from an earlier clustering) it starts from them
    instead: each pick is the candidate farthest from everything known, so the round goes where evidence is
    thin."""
    if fixed is not None and len(fixed):
        dist = np.min(np.abs(cands[:, None, :] - np.asarray(fixed)[None, :, :]).sum(axis=2), axis=1)
        chosen: list[int] = []
    else:
        chosen = [int(rng.integers(cands.shape[0]))]
        dist = np.abs(cands - cands[chosen[0]]).sum(axis=1)
    while len(chosen) < n:
        i = int(np.argmax(dist))
        chosen.append(i)
        dist = np.minimum(dist, np.abs(cands - cands[i]).sum(axis=1))
    return np.asarray(chosen)
