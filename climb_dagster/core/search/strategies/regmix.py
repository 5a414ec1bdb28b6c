"""RegMix (Liu et al., 2024): one round of random mixtures, and the answer its regression model predicts best."""

from __future__ import annotations

from climb_dagster.core.search.strategies.base import SearchStrategy, StrategyConfig, register_strategy


@register_strategy
class RegMix(SearchStrategy):
    name = "regmix"
    summary = "one random round and a regression model (baseline)"

    def default_config(self, budget: int, direction: str) -> StrategyConfig:
        return StrategyConfig(self.name, budget, direction=direction, final="predicted")

    def final_uses_predictor(self, config: StrategyConfig) -> bool:
        # The regression model is the method: fitted whatever the final pick.
        return True
