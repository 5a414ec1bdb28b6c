"""Search strategies (climb, regmix, random, doremi) as pure round-level functions plus a driver.

The Dagster pipeline runs one round per asset, possibly in another process, so every round is a
pure function of (config, round index, history, prior, seed): `propose_round` -> evaluate ->
append to history -> next round; `select_final` picks the answer. `run_search` chains them.
Pool mode (`candidates` given) restricts every proposal and the final pick to those rows.
DoReMi does not propose from a history: it trains two proxies itself (`core/proxy/doremi.py`) and its
one round evaluates the answer, so it has a config here but no `propose_round`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from climb_dagster.core.common.direction import Direction
from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.search.predictor import Predictor, PredictorConfig, check_direction, fit_predictor
from climb_dagster.core.search.sampling import (
    SamplingConfig,
    sample_mixtures,
    validate_mixtures,
    validate_prior,
)

STRATEGIES = ("climb", "regmix", "random", "doremi")
# Strategies that propose from the history (and so run in pool mode / `run_search`).
PROPOSING = ("climb", "regmix", "random")
FINAL_PICKS = ("predicted", "observed", "top_k_mean", "trusted", "first")
INITIAL_DESIGNS = ("random", "maximin")
# Fewer evaluated rows than this and climb's later rounds fall back to the round-0 design.
MIN_FIT_ROWS = 2
# Pool rows and history are matched after rounding, so a history reloaded from Parquet still matches.
MATCH_DECIMALS = 9

Evaluate = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class StrategyConfig:
    """One search strategy.

    Args:
        name: climb (iterative), regmix (one round + predictor), random (best observed).
        budget: total number of evaluations (proxy trainings).
        ratios: climb's per-round budget split (paper 4:2:1); ignored by regmix/random.
        top_n_factor: later climb rounds choose from the predicted top `factor * round size`.
        exploit_fraction: share of a round taken greedily from the top; the rest is drawn at
            random from the remaining top-N (exploration).
        kappa: optimism bonus in ensemble std when ranking candidates (0 = mean only).
        final: how the final mixture is chosen (see `select_final`).
        top_k: number of predicted-best mixtures averaged by final="top_k_mean".
        n_candidates: candidates drawn per ranking in sampling mode (no pool).
        initial_design: round 0 as a uniform random draw, or "maximin": a greedy farthest-point
            (L1) subset of the pool / of 20x as many Dirichlet draws, so the first predictor sees
            the corners of the simplex as well as its middle.
    """

    name: str = "climb"
    budget: int = 112
    ratios: tuple[float, ...] = (4.0, 2.0, 1.0)
    direction: str = Direction.MINIMIZE
    top_n_factor: float = 4.0
    exploit_fraction: float = 0.5
    kappa: float = 0.0
    final: str = "predicted"
    top_k: int = 1
    n_candidates: int = 100_000
    initial_design: str = "random"
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    predictor: PredictorConfig = field(default_factory=PredictorConfig)

    def __post_init__(self) -> None:
        if self.name not in STRATEGIES:
            raise ClimbInputError(f"strategy name must be one of {STRATEGIES}, got {self.name!r}")
        check_direction(self.direction)
        if self.final not in FINAL_PICKS:
            raise ClimbInputError(f"StrategyConfig.final must be one of {FINAL_PICKS}, got {self.final!r}")
        if self.initial_design not in INITIAL_DESIGNS:
            raise ClimbInputError(
                f"StrategyConfig.initial_design must be one of {INITIAL_DESIGNS}, got {self.initial_design!r}"
            )
        if self.name == "doremi" and self.final != "first":
            raise ClimbInputError(
                f"doremi's answer is its first evaluated mixture; final must be 'first', got {self.final!r}"
            )
        if self.name == "random" and self.final != "observed":
            raise ClimbInputError(
                f"random search has no predictor; final must be 'observed', got {self.final!r}"
            )
        checks = {
            "budget": self.budget >= 1,
            "top_n_factor": self.top_n_factor >= 1,
            "exploit_fraction": 0 <= self.exploit_fraction <= 1,
            "kappa": np.isfinite(self.kappa),
            "top_k": self.top_k >= 1,
            "n_candidates": self.n_candidates >= 1,
        }
        for name, ok in checks.items():
            if not ok:
                raise ClimbInputError(f"StrategyConfig.{name} out of range: {getattr(self, name)!r}")
        budget_split(self.budget, self.round_ratios)

    @property
    def round_ratios(self) -> tuple[float, ...]:
        return tuple(self.ratios) if self.name == "climb" else (1.0,)

    @property
    def n_rounds(self) -> int:
        return len(self.round_ratios)

    def round_sizes(self) -> list[int]:
        return budget_split(self.budget, self.round_ratios)


def default_strategy(name: str, budget: int, direction: str = Direction.MINIMIZE) -> StrategyConfig:
    """The configuration the benchmark measured best for each strategy (see bench/search.py)."""
    if name == "climb":
        return StrategyConfig(
            "climb",
            budget,
            direction=direction,
            final="observed",
            exploit_fraction=1.0,
            initial_design="maximin",
            predictor=PredictorConfig(n_models=8),
        )
    if name == "regmix":
        return StrategyConfig("regmix", budget, direction=direction, final="predicted")
    if name == "doremi":
        return StrategyConfig("doremi", budget, direction=direction, final="first")
    return StrategyConfig(name, budget, direction=direction, final="observed")


def budget_split(total: int, ratios: tuple[float, ...] | list[float]) -> list[int]:
    """Split `total` evaluations over rounds in proportion to `ratios`: exact sum, each round >= 1."""
    r = np.asarray(ratios, dtype=np.float64)
    if r.ndim != 1 or r.size == 0 or not np.all(np.isfinite(r)) or np.any(r <= 0):
        raise ClimbInputError(f"round ratios must be positive numbers, got {list(ratios)}")
    if int(total) != total or total < r.size:
        raise ClimbInputError(f"budget {total} is smaller than the number of rounds {r.size}")
    ideal = total * r / r.sum()
    sizes = np.maximum(np.floor(ideal).astype(int), 1)
    # Largest remainder first; when the floor of 1 overshoots, take back from the largest rounds.
    frac_order = np.argsort(-(ideal - np.floor(ideal)), kind="stable")
    i = 0
    while sizes.sum() < total:
        sizes[frac_order[i % r.size]] += 1
        i += 1
    while sizes.sum() > total:
        sizes[int(np.argmax(sizes))] -= 1
    return [int(s) for s in sizes]


def _history(
    history_mixtures: np.ndarray | None, history_scores: np.ndarray | None, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """History as float arrays ([n, K], [n]); None or an empty array means nothing evaluated yet."""
    hm = np.empty((0, k)) if history_mixtures is None else np.asarray(history_mixtures, dtype=np.float64)
    hs = np.empty(0) if history_scores is None else np.asarray(history_scores, dtype=np.float64).reshape(-1)
    if hm.size == 0:
        hm = np.empty((0, k))
    if hm.ndim != 2 or hm.shape[0] != hs.shape[0]:
        raise ClimbInputError(f"history has mixtures of shape {hm.shape} but {hs.shape[0]} scores")
    if hm.shape[0]:
        validate_mixtures(hm, k, source="history mixtures")
    bad = ~np.isfinite(hs)
    if bad.any():
        i = int(np.argmax(bad))
        raise ClimbInputError(f"history score of row {i} is {hs[i]}, expected a finite number")
    return hm, hs


def _unevaluated(candidates: np.ndarray, history: np.ndarray) -> np.ndarray:
    """Boolean mask of candidate rows not already in history."""
    if history.shape[0] == 0:
        return np.ones(candidates.shape[0], dtype=bool)
    seen = {r.tobytes() for r in np.round(history, MATCH_DECIMALS) + 0.0}
    keys = np.round(candidates, MATCH_DECIMALS) + 0.0
    return np.fromiter((r.tobytes() not in seen for r in keys), dtype=bool, count=keys.shape[0])


def _best_observed(hm: np.ndarray, hs: np.ndarray, direction: str) -> int:
    if hs.size == 0:
        raise ClimbInputError("no evaluated mixtures to pick the best observed one from")
    return Direction(direction).argbest(hs)


def _sampled_candidates(
    config: StrategyConfig, prior: np.ndarray, hm: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Sampling mode: fresh Dirichlet draws around the prior, none near an evaluated mixture."""
    return sample_mixtures(config.n_candidates, prior, rng, config.sampling, exclude=hm)


def _maximin(cands: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Greedy farthest-point subset (L1) from a random start: spreads round 0 over the candidates."""
    chosen = [int(rng.integers(cands.shape[0]))]
    dist = np.abs(cands - cands[chosen[0]]).sum(axis=1)
    for _ in range(n - 1):
        i = int(np.argmax(dist))
        chosen.append(i)
        dist = np.minimum(dist, np.abs(cands - cands[i]).sum(axis=1))
    return np.asarray(chosen)


def round_seed(seed: int, round_index: int) -> int:
    """Seed of the predictor fitted before round `round_index` (== n_rounds: the final one)."""
    return int(np.random.default_rng([int(seed), int(round_index), 104729]).integers(2**31 - 1))


def propose_round(
    config: StrategyConfig,
    round_index: int,
    history_mixtures: np.ndarray | None,
    history_scores: np.ndarray | None,
    prior: np.ndarray | int,
    seed: int,
    candidates: np.ndarray | None = None,
    predictor: Predictor | None = None,
) -> np.ndarray:
    """Mixtures [n_round, K] to evaluate in round `round_index`, none already in the history.

    Round 0 (and every round of regmix/random) is a random draw: Dirichlet around `prior`, or a
    uniform subset of `candidates` in pool mode (`initial_design="maximin"` spreads it). Later
    climb rounds rank fresh candidates with `predictor` (fitted on the history here when not
    given) and take the predicted top (`exploit_fraction`) plus a random draw from the rest of
    the top-N.
    """
    if config.name not in PROPOSING:
        raise ClimbInputError(
            f"strategy {config.name!r} does not propose from a history; doremi trains its own proxies "
            "(climb_dagster.core.proxy.doremi.doremi_mixture)"
        )
    sizes = config.round_sizes()
    if not (0 <= round_index < len(sizes)):
        raise ClimbInputError(
            f"round_index {round_index} out of range for {len(sizes)} rounds of {config.name}"
        )
    n = sizes[round_index]
    p = validate_prior(prior)
    k = p.size
    hm, hs = _history(history_mixtures, history_scores, k)
    expected = sum(sizes[:round_index])
    if hm.shape[0] != expected:
        raise ClimbInputError(
            f"round {round_index} of {config.name} expects {expected} evaluated mixtures in history, "
            f"got {hm.shape[0]}"
        )
    rng = np.random.default_rng([int(seed), int(round_index)])
    pool = None
    if candidates is not None:
        pool = validate_mixtures(candidates, k, source="candidates")
        pool = pool[_unevaluated(pool, hm)]
        if pool.shape[0] < n:
            raise ClimbInputError(
                f"round {round_index} needs {n} mixtures but only {pool.shape[0]} candidates are left"
            )

    if round_index == 0 or config.name != "climb" or hm.shape[0] < MIN_FIT_ROWS:
        if config.initial_design == "maximin":
            cands = pool if pool is not None else sample_mixtures(20 * n, p, rng, config.sampling, exclude=hm)
            return cands[_maximin(cands, n, rng)]
        if pool is not None:
            return pool[np.sort(rng.choice(pool.shape[0], n, replace=False))]
        return sample_mixtures(n, p, rng, config.sampling, exclude=hm)

    if predictor is None:
        predictor = fit_predictor(hm, hs, config.direction, round_seed(seed, round_index), config.predictor)
    cands = pool if pool is not None else _sampled_candidates(config, p, hm, rng)
    order = predictor.rank(cands, config.kappa)
    n_top = min(cands.shape[0], max(n, math.ceil(config.top_n_factor * n)))
    n_exploit = int(round(config.exploit_fraction * n))
    explore = rng.choice(order[n_exploit:n_top], n - n_exploit, replace=False)
    return cands[np.concatenate([order[:n_exploit], explore]).astype(int)]


def select_final(
    config: StrategyConfig,
    predictor: Predictor | None,
    history_mixtures: np.ndarray,
    history_scores: np.ndarray,
    seed: int,
    candidates: np.ndarray | None = None,
    prior: np.ndarray | int | None = None,
) -> np.ndarray:
    """The final mixture [K].

    final="first": the first evaluated mixture (a strategy whose answer is fixed before evaluation:
    DoReMi). final="observed": best evaluated mixture. "predicted": the predictor's best over the candidates
    (pool, or a fresh sample around `prior`) and the history. "top_k_mean": mean of the predicted
    top-k (RegMix), snapped to the nearest pool row in pool mode. "trusted": the predicted best only
    when it is an evaluated mixture or predicted better than the best observed score, else the
    best observed.
    """
    hm = np.asarray(history_mixtures, dtype=np.float64)
    k = hm.shape[1] if hm.ndim == 2 else validate_prior(prior).size
    hm, hs = _history(hm, history_scores, k)
    if config.final == "first":
        if hm.shape[0] == 0:
            raise ClimbInputError("final='first' but nothing was evaluated")
        return hm[0].copy()
    if config.final == "observed":
        return hm[_best_observed(hm, hs, config.direction)].copy()
    if predictor is None:
        raise ClimbInputError(f"final={config.final!r} needs a fitted predictor")
    if candidates is not None:
        pool = validate_mixtures(candidates, k, source="candidates")
        cands = np.vstack([hm, pool[_unevaluated(pool, hm)]])
    else:
        if prior is None:
            raise ClimbInputError("select_final needs `prior` or `candidates` to rank fresh mixtures")
        rng = np.random.default_rng([int(seed), 1_000_003])
        cands = np.vstack([hm, _sampled_candidates(config, validate_prior(prior), hm, rng)])
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
    i_obs = _best_observed(hm, hs, config.direction)
    pred_best = predictor.predict(cands[best : best + 1])[0]
    better = Direction(config.direction).better(pred_best, hs[i_obs])
    return (cands[best] if better else hm[i_obs]).copy()


@dataclass
class SearchResult:
    """Everything a search evaluated, with the round of each row, its predictors and the final pick."""

    config: StrategyConfig
    mixtures: np.ndarray
    scores: np.ndarray
    rounds: np.ndarray
    predictors: list[Predictor]
    final_mixture: np.ndarray

    @property
    def best_observed(self) -> int:
        return _best_observed(self.mixtures, self.scores, self.config.direction)


def _check_scores(scores: np.ndarray, n: int, round_index: int) -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if s.shape[0] != n:
        raise ClimbInputError(
            f"evaluate returned {s.shape[0]} scores for {n} mixtures in round {round_index}"
        )
    bad = ~np.isfinite(s)
    if bad.any():
        i = int(np.argmax(bad))
        raise ClimbInputError(f"evaluate returned score {s[i]} for mixture {i} of round {round_index}")
    return s


def run_search(
    strategy: str | StrategyConfig,
    evaluate: Evaluate,
    budget: int | None = None,
    prior: np.ndarray | int | None = None,
    seed: int = 0,
    candidates: np.ndarray | None = None,
    direction: str | None = None,
) -> SearchResult:
    """Run a whole search: every round proposed, evaluated in one batch, appended; then the final pick.

    `prior` is the token-share prior or K (uniform); in pool mode it defaults to K of `candidates`.
    `evaluate` is called exactly once per round and `budget` times in total over distinct mixtures.
    """
    if not isinstance(strategy, StrategyConfig):
        if budget is None:
            raise ClimbInputError(f"run_search({strategy!r}) needs a budget")
        strategy = default_strategy(strategy, budget)
    config = strategy
    changes = {}
    if budget is not None:
        changes["budget"] = budget
    if direction is not None:
        changes["direction"] = direction
    config = replace(config, **changes) if changes else config
    if prior is None:
        if candidates is None:
            raise ClimbInputError("run_search needs `prior` (token shares or K) or `candidates`")
        prior = int(np.asarray(candidates).shape[1])
    k = validate_prior(prior).size
    hm, hs = np.empty((0, k)), np.empty(0)
    rounds: list[int] = []
    predictors: list[Predictor] = []
    for r, n in enumerate(config.round_sizes()):
        pred = None
        if r > 0 and config.name == "climb" and hm.shape[0] >= MIN_FIT_ROWS:
            pred = fit_predictor(hm, hs, config.direction, round_seed(seed, r), config.predictor)
            predictors.append(pred)
        new = propose_round(config, r, hm, hs, prior, seed, candidates, pred)
        scores = _check_scores(evaluate(new), n, r)
        hm, hs = np.vstack([hm, new]), np.concatenate([hs, scores])
        rounds += [r] * n
    final_pred, final_cfg = None, config
    if hm.shape[0] < MIN_FIT_ROWS:
        final_cfg = replace(config, final="observed")  # nothing to fit a predictor on
    elif config.name == "regmix" or (config.name == "climb" and config.final != "observed"):
        final_pred = fit_predictor(
            hm, hs, config.direction, round_seed(seed, config.n_rounds), config.predictor
        )
        predictors.append(final_pred)
    final = select_final(final_cfg, final_pred, hm, hs, seed, candidates, prior)
    return SearchResult(config, hm, hs, np.asarray(rounds), predictors, final)


def reevaluated_best(
    history_mixtures: np.ndarray,
    history_scores: np.ndarray,
    evaluate_again: Evaluate,
    top: int,
    direction: str,
) -> tuple[np.ndarray, np.ndarray]:
    """A noise-aware final pick: the `top` best observed mixtures evaluated once more (another proxy seed),
    and the one whose mean of both scores is best. Returns (mixture, the `top` second scores).

    One proxy score is one draw of a noisy measurement: the best observed of many is biased towards the
    luckiest draw, a second evaluation of the few best removes most of that bias for `top` extra proxies.
    """
    hm, hs = _history(history_mixtures, history_scores, np.asarray(history_mixtures).shape[1])
    if hs.size == 0:
        raise ClimbInputError("no evaluated mixtures to re-evaluate")
    if top < 1:
        raise ClimbInputError(f"top must be >= 1, got {top}")
    d = Direction(direction)
    order = np.argsort(-d.goodness(hs), kind="stable")[: min(top, hs.size)]
    again = _check_scores(evaluate_again(hm[order]), order.size, -1)
    mean = (hs[order] + again) / 2
    return hm[order[d.argbest(mean)]].copy(), again
