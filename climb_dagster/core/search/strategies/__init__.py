"""Search strategies: one extension point, one file per strategy.

`base.py` holds the `SearchStrategy` protocol, its `StrategyConfig` and the registry; `climb.py`, `regmix.py`,
`random_search.py` and `doremi.py` are the built-ins; `driver.py` the round-level API the pipeline calls
(`propose_round`, `select_final`) and the whole-search driver (`run_search`); `draws.py` and `picks.py` the
round-0 designs and the final picks every strategy shares.

Adding a strategy: a file here that subclasses `SearchStrategy` and decorates it with `@register_strategy`,
and its import below (so every process registers it). The experiment config, the round assets, `bench
search` and `bench e2e` then take its name.
"""

# The built-ins, in the order messages and choices list them.
from climb_dagster.core.search.strategies import climb, regmix, random_search, doremi  # noqa: I001, F401
from climb_dagster.core.search.strategies.base import (
    INITIAL_DESIGNS,
    MIN_FIT_ROWS,
    Round,
    SearchStrategy,
    StrategyConfig,
    budget_split,
    proposing_strategies,
    register_strategy,
    registered_strategies,
    round_seed,
    strategy_named,
    strategy_summaries,
    unregister_strategy,
)
from climb_dagster.core.search.strategies.driver import (
    Evaluate,
    SearchResult,
    default_strategy,
    propose_round,
    reevaluated_best,
    reuse_round_sizes,
    run_search,
    select_final,
)
from climb_dagster.core.search.strategies.picks import FINAL_PICKS

__all__ = [
    "FINAL_PICKS",
    "INITIAL_DESIGNS",
    "MIN_FIT_ROWS",
    "Evaluate",
    "Round",
    "SearchResult",
    "SearchStrategy",
    "StrategyConfig",
    "budget_split",
    "default_strategy",
    "proposing_strategies",
    "propose_round",
    "reevaluated_best",
    "register_strategy",
    "reuse_round_sizes",
    "registered_strategies",
    "round_seed",
    "run_search",
    "select_final",
    "strategy_named",
    "strategy_summaries",
    "unregister_strategy",
]
