"""Determinism guard: what the strategies, their defaults and the experiment's budget split give today.

`pinned_search.json` was written by `python -m climb_dagster_tests.unit.search.test_pinned_search` from the
code before strategies became a registry (issue 25); rewrite it only for a change meant to alter searches,
and say so in the commit. Every search here has a fixed seed, a fixed prior or pool and a closed-form score.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from climb_dagster.core.experiment.config import ExperimentConfig
from climb_dagster.core.search.predictor import fit_predictor
from climb_dagster.core.search.sampling import sample_mixtures
from climb_dagster.core.search.strategies import (
    StrategyConfig,
    budget_split,
    default_strategy,
    propose_round,
    round_seed,
    run_search,
    select_final,
)
from climb_dagster.core.targets.config import TargetConfig
from climb_dagster_tests.pinned import assert_pinned, refusal, write_pinned

PINNED = Path(__file__).with_name("pinned_search.json")
K = 5
PRIOR = np.array([0.4, 0.25, 0.15, 0.12, 0.08])
PROPOSING = ("climb", "regmix", "random")


def _loss(m: np.ndarray) -> np.ndarray:
    return 3.0 - 0.5 * np.log(m[:, 0] + 0.01) + 2.0 * m[:, 3] + 0.3 * m[:, 4] ** 2


def _search(result: Any) -> dict[str, Any]:
    return {
        "mixtures": result.mixtures.tolist(),
        "scores": result.scores.tolist(),
        "rounds": result.rounds.tolist(),
        "final": result.final_mixture.tolist(),
        "predictors": len(result.predictors),
    }


def _searches() -> dict[str, Any]:
    pool = sample_mixtures(300, K, seed=7)
    out: dict[str, Any] = {}
    for name in PROPOSING:
        cfg = replace(default_strategy(name, 14), n_candidates=2000)
        out[f"{name}_sampling"] = _search(run_search(cfg, _loss, prior=PRIOR, seed=3))
        out[f"{name}_pool"] = _search(run_search(name, _loss, budget=21, seed=5, candidates=pool))
    for final in ("predicted", "trusted", "top_k_mean"):
        cfg = replace(default_strategy("climb", 14), n_candidates=2000, final=final, top_k=3)
        out[f"climb_final_{final}"] = _search(run_search(cfg, _loss, prior=PRIOR, seed=1))
    maximize = replace(
        default_strategy("regmix", 12, "maximize"), n_candidates=2000, final="top_k_mean", top_k=4
    )
    out["regmix_maximize_top_k"] = _search(run_search(maximize, lambda m: -_loss(m), prior=PRIOR, seed=2))
    return out


def _rounds() -> dict[str, Any]:
    """propose_round one round at a time (as the assets call it), with and without a fitted predictor."""
    cfg = replace(
        default_strategy("climb", 14), n_candidates=2000, exploit_fraction=0.5, initial_design="random"
    )
    out: dict[str, Any] = {}
    hm, hs = np.empty((0, K)), np.empty(0)
    for r in range(cfg.n_rounds):
        new = propose_round(cfg, r, hm, hs, PRIOR, seed=11)
        out[f"round_{r}"] = new.tolist()
        hm, hs = np.vstack([hm, new]), np.concatenate([hs, _loss(new)])
    pred = fit_predictor(hm[:8], hs[:8], cfg.direction, round_seed(11, 1), cfg.predictor)
    out["round_1_given_predictor"] = propose_round(cfg, 1, hm[:8], hs[:8], PRIOR, 11, predictor=pred).tolist()
    out["select_predicted"] = select_final(
        replace(cfg, final="predicted"), pred, hm, hs, seed=11, prior=PRIOR
    ).tolist()
    out["round_seeds"] = [round_seed(s, r) for s in (0, 7) for r in range(4)]
    return out


def _defaults() -> dict[str, Any]:
    out = {name: asdict(default_strategy(name, 28)) for name in ("climb", "regmix", "random", "doremi")}
    out["climb_maximize"] = asdict(default_strategy("climb", 28, "maximize"))
    out["budget_split"] = [
        budget_split(t, r) for t, r in ((56, (4, 2, 1)), (20, (1, 1, 1)), (10, (1, 1, 10)))
    ]
    return out


def _experiments() -> dict[str, Any]:
    target = TargetConfig(documents_path="/data/heldout.parquet")
    out: dict[str, Any] = {}
    for name in ("climb", "regmix", "random", "doremi"):
        for rounds in ((6, 3, 2), (8, 4, 2), (5,)):
            exp = ExperimentConfig("pin", target, strategy=name, rounds=rounds, seed=4)
            out[f"{name}_{'-'.join(map(str, rounds))}"] = {
                "rounds": list(exp.rounds),
                "budget": exp.budget,
                "extra_proxies": exp.extra_proxies,
                "n_rounds": exp.n_rounds,
                "strategy_config": asdict(exp.strategy_config()),
                "round_sizes": exp.strategy_config().round_sizes(),
                "to_dict": exp.to_dict(),
                "content_hash": exp.content_hash(),
            }
        from_budget = ExperimentConfig.from_dict(
            {"name": "pin", "target": asdict(target), "strategy": name, "budget": 28, "ratios": [4, 2, 1]}
        )
        out[f"{name}_budget_28"] = {"rounds": list(from_budget.rounds), "hash": from_budget.content_hash()}
    return out


def _refusals() -> dict[str, str]:
    target = TargetConfig(documents_path="/data/heldout.parquet")
    return {
        "unknown": refusal(lambda: StrategyConfig("grid")),
        "random_predicted": refusal(lambda: StrategyConfig("random", final="predicted")),
        "doremi_observed": refusal(lambda: StrategyConfig("doremi", final="observed")),
        "doremi_proposes": refusal(
            lambda: propose_round(StrategyConfig("doremi", 2, final="first"), 0, None, None, K, 0)
        ),
        "experiment_unknown": refusal(lambda: ExperimentConfig("pin", target, strategy="grid")),
        "run_search_doremi": refusal(lambda: run_search("doremi", _loss, budget=2, prior=K)),
    }


def pinned_now() -> dict[str, Any]:
    return {
        "searches": _searches(),
        "rounds": _rounds(),
        "defaults": _defaults(),
        "experiments": _experiments(),
        "refusals": _refusals(),
    }


def test_search_behaviour_is_pinned() -> None:
    assert_pinned(PINNED, pinned_now())


if __name__ == "__main__":
    write_pinned(PINNED, pinned_now())
