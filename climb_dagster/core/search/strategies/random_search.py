"""Random search: one round of random mixtures, the best observed one is the answer.

(Not `random.py`: a module of that name shadows the standard library's wherever its folder is on sys.path.)
"""

from __future__ import annotations

from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.search.strategies.base import SearchStrategy, StrategyConfig, register_strategy


@register_strategy
class RandomSearch(SearchStrategy):
    name = "random"
    summary = "the best of one random round (baseline)"

    def check(self, config: StrategyConfig) -> None:
        if config.final != "observed":
            raise ClimbInputError(
                f"random search has no predictor; final must be 'observed', got {config.final!r}"
            )
