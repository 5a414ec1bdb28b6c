"""The arms bench e2e compares at one proxy budget, each a configuration of a registered strategy, so that each
difference from climb isolates one part of it:

- climb: as the pipeline runs it (a maximin first round, predictor-guided later rounds, best observed answer);
- random_design: climb's first-round design (maximin over Dirichlet draws) for the whole budget, best observed:
  climb minus this is what the later rounds and their predictor add beyond the design;
- climb_1round: the same design rows (same seed: the same proxies) and the predictor's best over fresh
  candidates as the answer: the design plus one predictor, without later rounds;
- regmix: RegMix as published (Liu et al., 2024): Dirichlet draws around the token shares, one LightGBM
  regressor, the answer the mean of its top-k predicted mixtures (k = `--regmix-top-k`, RegMix: 100);
- random: plain Dirichlet draws (the same as RegMix's, same seed: the same proxies), best observed;
- doremi (optional): its reference and Group DRO proxies, not the search budget.
"""

from __future__ import annotations

from dataclasses import replace

from climb_dagster.core.common.direction import Direction
from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.search.predictor import PredictorConfig
from climb_dagster.core.search.strategies import StrategyConfig, default_strategy

ARMS = ("climb", "random_design", "climb_1round", "regmix", "random")
OPTIONAL_ARMS = ("doremi",)
SUBJECT = "climb"
# RegMix's paper averages the top 100 of its simulated mixtures.
REGMIX_TOP_K = 100


def arm_config(
    name: str, budget: int, ratios: tuple[float, ...], candidates: int, regmix_top_k: int = REGMIX_TOP_K
) -> StrategyConfig | None:
    """The strategy configuration of arm `name` (None: doremi, which trains its own proxies)."""
    minimize = Direction.MINIMIZE
    if name == "climb":
        return replace(default_strategy("climb", budget, minimize), ratios=ratios, n_candidates=candidates)
    if name == "random_design":
        return replace(
            default_strategy("random", budget, minimize), initial_design="maximin", n_candidates=candidates
        )
    if name == "climb_1round":
        climb = default_strategy("climb", budget, minimize)
        return replace(climb, ratios=(1.0,), final="predicted", n_candidates=candidates)
    if name == "regmix":
        return StrategyConfig(
            "regmix",
            budget,
            direction=minimize,
            final="top_k_mean",
            top_k=regmix_top_k,
            n_candidates=candidates,
            predictor=PredictorConfig(n_models=1),
        )
    if name == "random":
        return replace(default_strategy("random", budget, minimize), n_candidates=candidates)
    if name == "doremi":
        return None
    raise ClimbInputError(f"unknown arm {name!r}; choose from {ARMS + OPTIONAL_ARMS}")


def arm_names(spec: str, doremi: bool) -> tuple[str, ...]:
    names = [a.strip() for a in spec.split(",") if a.strip()]
    if doremi and "doremi" not in names:
        names.append("doremi")
    bad = [a for a in names if a not in ARMS + OPTIONAL_ARMS]
    if bad or SUBJECT not in names:
        raise ClimbInputError(f"--arms {spec!r}: choose from {ARMS + OPTIONAL_ARMS}, climb included")
    return tuple(names)
