"""Mixture search: sampling on the simplex, the LightGBM predictor, strategies and offline pools."""

from climb_dagster.core.search.pool import MixturePool, PoolLookup, parse_composite, read_pool, regret
from climb_dagster.core.search.predictor import (
    Predictor,
    PredictorConfig,
    cross_val_spearman,
    fit_predictor,
    spearman,
)
from climb_dagster.core.search.sampling import (
    SamplingConfig,
    dedup_mixtures,
    sample_mixtures,
    validate_mixtures,
)
from climb_dagster.core.search.strategies import (
    SearchResult,
    StrategyConfig,
    budget_split,
    default_strategy,
    propose_round,
    round_seed,
    run_search,
    select_final,
)

__all__ = [
    "MixturePool",
    "PoolLookup",
    "Predictor",
    "PredictorConfig",
    "SamplingConfig",
    "SearchResult",
    "StrategyConfig",
    "budget_split",
    "cross_val_spearman",
    "dedup_mixtures",
    "default_strategy",
    "fit_predictor",
    "parse_composite",
    "propose_round",
    "read_pool",
    "regret",
    "round_seed",
    "run_search",
    "sample_mixtures",
    "select_final",
    "spearman",
    "validate_mixtures",
]
