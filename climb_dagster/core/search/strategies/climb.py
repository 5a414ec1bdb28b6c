"""CLIMB's iterative search: round 0 spreads its share of the budget over the simplex; each later round
ranks candidates with a predictor fitted on everything evaluated so far and takes the predicted top
(`exploit_fraction`) plus a random draw from the rest of the top-N (`top_n_factor`)."""

from __future__ import annotations

import math

import numpy as np

from climb_dagster.core.search.predictor import PredictorConfig, fit_predictor
from climb_dagster.core.search.strategies.base import (
    MIN_FIT_ROWS,
    Round,
    SearchStrategy,
    StrategyConfig,
    register_strategy,
    round_seed,
)


@register_strategy
class Climb(SearchStrategy):
    name = "climb"
    summary = "the paper's iterative search"
    iterative = True

    def default_config(self, budget: int, direction: str) -> StrategyConfig:
        # The setting bench/search.py measured best on the RegMix pool: greedy rounds, a spread first
        # round, an ensemble of 8, and the best observed proxy as the answer.
        return StrategyConfig(
            self.name,
            budget,
            direction=direction,
            final="observed",
            exploit_fraction=1.0,
            initial_design="maximin",
            predictor=PredictorConfig(n_models=8),
        )

    def round_uses_predictor(self, config: StrategyConfig, round_index: int) -> bool:
        return round_index > 0

    def propose(self, r: Round) -> np.ndarray:
        if r.index == 0 or r.mixtures.shape[0] < MIN_FIT_ROWS:
            return r.draw()
        c, n = r.config, r.size
        predictor = r.predictor
        if predictor is None:
            predictor = fit_predictor(r.mixtures, r.scores, c.direction, round_seed(r.seed, r.index), c.predictor)
        cands = r.candidates()
        order = predictor.rank(cands, c.kappa)
        n_top = min(cands.shape[0], max(n, math.ceil(c.top_n_factor * n)))
        n_exploit = int(round(c.exploit_fraction * n))
        explore = r.rng.choice(order[n_exploit:n_top], n - n_exploit, replace=False)
        return cands[np.concatenate([order[:n_exploit], explore]).astype(int)]
