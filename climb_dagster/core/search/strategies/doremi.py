"""DoReMi (Xie et al., 2023) as a strategy: its weights come from two proxies it trains itself (a reference
and a Group DRO proxy, `core/proxy/doremi.py`); its one round evaluates that answer beside the natural
mixture, and the answer stays the answer whatever the scores."""

from __future__ import annotations

from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.search.strategies.base import SearchStrategy, StrategyConfig, register_strategy

# Proxy trainings DoReMi spends before its answer is evaluated: the reference model and the DRO proxy.
DOREMI_PROXIES = 2
# Mixtures a DoReMi experiment then evaluates on the target: its answer, and the prior as the baseline
# (and a second row for the predictor).
DOREMI_EVALUATED = 2


@register_strategy
class DoReMi(SearchStrategy):
    name = "doremi"
    summary = "DoReMi's domain weights from its own reference and DRO proxies (baseline)"
    own_proxies = DOREMI_PROXIES
    own_proxies_step = "climb_dagster.core.proxy.doremi:doremi_round"

    def default_config(self, budget: int, direction: str) -> StrategyConfig:
        return StrategyConfig(self.name, budget, direction=direction, final="first")

    def check(self, config: StrategyConfig) -> None:
        if config.final != "first":
            raise ClimbInputError(
                f"doremi's answer is its first evaluated mixture; final must be 'first', got {config.final!r}"
            )

    def experiment_rounds(self, rounds: tuple[int, ...]) -> tuple[int, ...]:
        return (DOREMI_EVALUATED,)
