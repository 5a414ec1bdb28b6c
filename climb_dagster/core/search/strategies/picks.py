"""The final picks a strategy's `config.final` names (a strategy may refuse some: random has no predictor)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from climb_dagster.core.common.direction import Direction
from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.search.predictor import Predictor
from climb_dagster.core.search.sampling import sample_mixtures, validate_mixtures, validate_prior
from climb_dagster.core.search.strategies.draws import best_observed, unevaluated

if TYPE_CHECKING:
    from climb_dagster.core.search.strategies.base import StrategyConfig

FINAL_PICKS = ("predicted", "observed", "top_k_mean", "trusted", "first", "smoothed", "denoised")


def final_pick(
    config: StrategyConfig,
    predictor: Predictor | None,
    hm: np.ndarray,
    hs: np.ndarray,
    seed: int,
    candidates: np.ndarray | None = None,
    prior: np.ndarray | int | None = None,
) -> np.ndarray:
    """The final mixture [K] from a checked history (`hm` [n, K], `hs` [n]).

    final="first": the first evaluated mixture (a strategy whose answer is fixed before evaluation:
    DoReMi). final="observed": best evaluated mixture. "predicted": the predictor's best over the candidates
    (pool, or a fresh sample around `prior`) and the history. "top_k_mean": mean of the predicted
    top-k (RegMix), snapped to the nearest pool row in pool mode. "trusted": the predicted best only
    when it is an evaluated mixture or predicted better than the best observed score, else the
    best observed. "smoothed": the evaluated mixture whose mean of observed and predicted score is best (a
    proxy score is one noisy draw; the predictor pools its neighbours', so the luckiest draw wins less often).
    "denoised": the evaluated mixture whose predicted score is best (for a predictor that does not reproduce its
    training scores, such as a Gaussian process with a fitted noise term: its mean at an evaluated mixture is
    already the observed score shrunk toward its neighbours').
    """
    k = hm.shape[1]
    if config.final == "first":
        if hm.shape[0] == 0:
            raise ClimbInputError("final='first' but nothing was evaluated")
        return hm[0].copy()
    if config.final == "observed":
        return hm[best_observed(hs, config.direction)].copy()
    if predictor is None:
        raise ClimbInputError(f"final={config.final!r} needs a fitted predictor")
    if config.final == "smoothed":
        if hm.shape[0] == 0:
            raise ClimbInputError("final='smoothed' but nothing was evaluated")
        return hm[Direction(config.direction).argbest((hs + predictor.predict(hm)) / 2)].copy()
    if config.final == "denoised":
        if hm.shape[0] == 0:
            raise ClimbInputError("final='denoised' but nothing was evaluated")
        return hm[Direction(config.direction).argbest(predictor.predict(hm))].copy()
    if candidates is not None:
        pool = validate_mixtures(candidates, k, source="candidates")
        cands = np.vstack([hm, pool[unevaluated(pool, hm)]])
    else:
        if prior is None:
            raise ClimbInputError("select_final needs `prior` or `candidates` to rank fresh mixtures")
        rng = np.random.default_rng([int(seed), 1_000_003])
        fresh = sample_mixtures(config.n_candidates, validate_prior(prior), rng, config.sampling, exclude=hm)
        cands = np.vstack([hm, fresh])
    order = predictor.rank(cands)
    if config.final == "predicted":
        return cands[order[0]].copy()
    if config.final == "top_k_mean":
        mean = cands[order[: config.top_k]].mean(axis=0)
        if candidates is None:
            return mean
        return cands[int(np.argmin(np.abs(cands - mean).sum(axis=1)))].copy()
    # trusted
    best = order[0]
    if best < hm.shape[0]:
        return cands[best].copy()
    i_obs = best_observed(hs, config.direction)
    pred_best = predictor.predict(cands[best : best + 1])[0]
    better = Direction(config.direction).better(pred_best, hs[i_obs])
    return (cands[best] if better else hm[i_obs]).copy()
