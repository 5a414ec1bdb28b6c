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

Variants of climb measured against seed noise (issue 23, item 6; `--arms climb,...,climb_smoothed`), each at the
same budget and seed, so they share climb's proxies where they agree with it:
- climb_smoothed: climb's search, the answer the evaluated mixture with the best mean of observed and predicted
  score (final="smoothed");
- climb_reeval: climb's rounds but the last, whose proxies evaluate the best mixtures so far once more with
  another proxy seed; the answer the best mean of both scores (`reevaluated_best`);
- climb_explore: climb with half of each later round drawn from the predicted top-N instead of its top;
- climb_seeds: climb whose every round trains its proxies with a seed of its own (round 0's is climb's), so a later
  round near the best so far draws other windows than the best did instead of sharing its luck;
- climb_seeds_smoothed: climb_seeds' search with the smoothed answer.

Against the first predictor's weakness (about 11 rows in 8 dimensions; LightGBM's out-of-fold Spearman 0.0-0.5 on
the development labs) and its memorised training scores:
- climb_gp: climb whose predictor is a Gaussian process (`core/search/gp.py`), best observed answer;
- climb_gp_denoised: climb_gp's search, the answer the evaluated mixture with the best GP mean (final="denoised").

Against later rounds that only rank draws around the token shares (at 16 super-clusters few land near the best
mixtures found, so the rounds cannot refine there):
- climb_local: climb whose later rounds rank half their candidates from draws close to the 3 best mixtures so far
  (`local_fraction=0.5`), the other half as climb's.
"""

from __future__ import annotations

from dataclasses import replace

from climb_dagster.core.common.direction import Direction
from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.search.predictor import PredictorConfig
from climb_dagster.core.search.strategies import StrategyConfig, budget_split, default_strategy

ARMS = ("climb", "random_design", "climb_1round", "regmix", "random")
VARIANT_ARMS = (
    "climb_smoothed",
    "climb_reeval",
    "climb_explore",
    "climb_seeds",
    "climb_seeds_smoothed",
    "climb_gp",
    "climb_gp_denoised",
    "climb_local",
)
ROUND_SEED_ARMS = ("climb_seeds", "climb_seeds_smoothed")
OPTIONAL_ARMS = ("doremi", *VARIANT_ARMS)
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
    if name == "climb_smoothed":
        return replace(default_strategy("climb", budget, minimize), ratios=ratios, final="smoothed", n_candidates=candidates)
    if name == "climb_reeval":
        climb = arm_config("climb", budget, ratios, candidates)
        kept = tuple(float(n) for n in climb.round_sizes()[:-1])
        return replace(climb, budget=int(sum(kept)), ratios=kept)
    if name == "climb_seeds":
        return arm_config("climb", budget, ratios, candidates)
    if name == "climb_seeds_smoothed":
        return arm_config("climb_smoothed", budget, ratios, candidates)
    if name == "climb_explore":
        return replace(arm_config("climb", budget, ratios, candidates), exploit_fraction=0.5)
    if name == "climb_gp":
        return replace(arm_config("climb", budget, ratios, candidates), predictor=PredictorConfig(kind="gp"))
    if name == "climb_gp_denoised":
        return replace(arm_config("climb_gp", budget, ratios, candidates), final="denoised")
    if name == "climb_local":
        return replace(arm_config("climb", budget, ratios, candidates), local_fraction=0.5)
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


def reevaluations(name: str, budget: int, ratios: tuple[float, ...]) -> int:
    """How many of arm `name`'s proxies evaluate its best mixtures again (climb_reeval: climb's last round)."""
    if name != "climb_reeval":
        return 0
    return budget_split(budget, ratios)[-1]


def arm_names(spec: str, doremi: bool) -> tuple[str, ...]:
    names = [a.strip() for a in spec.split(",") if a.strip()]
    if doremi and "doremi" not in names:
        names.append("doremi")
    bad = [a for a in names if a not in ARMS + OPTIONAL_ARMS]
    if bad or SUBJECT not in names:
        raise ClimbInputError(f"--arms {spec!r}: choose from {ARMS + OPTIONAL_ARMS}, climb included")
    return tuple(names)
