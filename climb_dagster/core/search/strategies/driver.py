"""The round-level API the pipeline calls and the driver that chains it, for any registered strategy.

The Dagster pipeline runs one round per asset, possibly in another process, so every round is a
pure function of (config, round index, history, prior, seed): `propose_round` -> evaluate ->
append to history -> next round; `select_final` picks the answer. `run_search` chains them.
Pool mode (`candidates` given) restricts every proposal and the final pick to those rows.
A strategy that trains its own proxies (DoReMi) does not propose from a history: it has a config here
but no `propose_round`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from climb_dagster.core.common.direction import Direction
from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.search.block import ExpandedPredictor, FrozenBlock
from climb_dagster.core.search.predictor import Predictor, fit_predictor
from climb_dagster.core.search.sampling import validate_mixtures, validate_prior
from climb_dagster.core.search.strategies.base import (
    MIN_FIT_ROWS,
    Round,
    StrategyConfig,
    round_seed,
    strategy_named,
)
from climb_dagster.core.search.strategies.draws import best_observed, history_arrays, unevaluated

Evaluate = Callable[[np.ndarray], np.ndarray]


def default_strategy(name: str, budget: int, direction: str = Direction.MINIMIZE) -> StrategyConfig:
    """The configuration the benchmark measured best for each strategy (see bench/search.py)."""
    return strategy_named(name).default_config(budget, direction)


def propose_round(
    config: StrategyConfig,
    round_index: int,
    history_mixtures: np.ndarray | None,
    history_scores: np.ndarray | None,
    prior: np.ndarray | int,
    seed: int,
    candidates: np.ndarray | None = None,
    predictor: Predictor | None = None,
    n_reused: int = 0,
    block: FrozenBlock | None = None,
) -> np.ndarray:
    """Mixtures [n_round, K] to evaluate in round `round_index`, none already in the history.

    `block`: freeze-and-expand. The round is proposed in the block's reduced space (the free super-clusters and
    the block's total) and expanded, so every mixture keeps the block's inner ratios; `predictor` is fitted on full
    mixtures as always.

    `n_reused`: the history starts with that many rows reused from earlier experiments (re-expressed over
    these super-clusters); round 0 then proposes fewer (`reuse_round_sizes`), spread around them.

    Round 0 (and every round of a one-round strategy) is a random draw: Dirichlet around `prior`, or a
    uniform subset of `candidates` in pool mode (`initial_design="maximin"` spreads it). Later
    rounds are the strategy's (climb ranks fresh candidates with `predictor`, fitted on the history when
    not given).
    """
    strategy = config.strategy
    if not strategy.proposes:
        raise ClimbInputError(
            f"strategy {config.name!r} does not propose from a history; it trains its own proxies "
            f"({strategy.own_proxies_step})"
        )
    if block is not None:
        # The round in the block's reduced space, ranked by a predictor of full mixtures (fitted here on the full
        # history when not given: the strategy would otherwise fit one on the reduced rows).
        reduced_prior = _check_block(block, prior, candidates)
        hm, hs = history_arrays(history_mixtures, history_scores, block.k)
        uses = strategy.round_uses_predictor(config, round_index) and hm.shape[0] >= MIN_FIT_ROWS
        if predictor is None and uses:
            predictor = fit_predictor(hm, hs, config.direction, round_seed(seed, round_index), config.predictor)
        reduced = propose_round(
            _reduced_config(config, block),
            round_index,
            block.reduce(hm),
            hs,
            reduced_prior,
            seed,
            predictor=None if predictor is None else ExpandedPredictor.wrap(predictor, block),
            n_reused=n_reused,
        )
        return validate_mixtures(block.expand(reduced), block.k, source=f"{config.name} round {round_index} (frozen)")
    sizes = reuse_round_sizes(config.round_sizes(), n_reused)
    if not (0 <= round_index < len(sizes)):
        raise ClimbInputError(
            f"round_index {round_index} out of range for {len(sizes)} rounds of {config.name}"
        )
    n = sizes[round_index]
    p = validate_prior(prior)
    k = p.size
    hm, hs = history_arrays(history_mixtures, history_scores, k)
    expected = n_reused + sum(sizes[:round_index])
    if hm.shape[0] != expected:
        raise ClimbInputError(
            f"round {round_index} of {config.name} expects {expected} evaluated mixtures in history, "
            f"got {hm.shape[0]}" + (f" ({n_reused} of them reused)" if n_reused else "")
        )
    rng = np.random.default_rng([int(seed), int(round_index)])
    pool = None
    if candidates is not None:
        pool = validate_mixtures(candidates, k, source="candidates")
        pool = pool[unevaluated(pool, hm)]
        if pool.shape[0] < n:
            raise ClimbInputError(
                f"round {round_index} needs {n} mixtures but only {pool.shape[0]} candidates are left"
            )
    proposed = strategy.propose(Round(config, round_index, n, hm, hs, p, int(seed), rng, pool, predictor))
    source = f"{config.name} round {round_index} proposal"
    if np.shape(proposed)[0] != n:
        raise ClimbInputError(f"{source}: {np.shape(proposed)[0]} mixtures, the round plans {n}")
    return validate_mixtures(proposed, k, source=source)


def _reduced_config(config: StrategyConfig, block: FrozenBlock) -> StrategyConfig:
    # Few free dimensions hold few distinct candidates at the sampler's rounding: ask for at most half of them.
    most = max(1, block.distinct_candidates(config.sampling.dedup_decimals) // 2)
    return replace(config, n_candidates=min(config.n_candidates, most))


def _check_block(block: FrozenBlock, prior: np.ndarray | int, candidates: np.ndarray | None) -> np.ndarray:
    p = validate_prior(prior)
    if p.size != block.k:
        raise ClimbInputError(f"prior has {p.size} super-clusters, the frozen block is over {block.k}")
    if candidates is not None:
        raise ClimbInputError("a frozen block searches fresh mixtures; it cannot be restricted to a candidate pool")
    return block.reduce(p[None, :])[0]


# With reused evidence round 0 still proposes at least this share of its planned size: reused rows sit where
# the earlier search looked (mostly near its optimum), so a spread of new ones is always worth having.
REUSE_MIN_NEW_FRACTION = 0.25


def reuse_round_sizes(sizes: list[int], n_reused: int, min_new_fraction: float = REUSE_MIN_NEW_FRACTION) -> list[int]:
    """Round sizes when `n_reused` rows come from earlier experiments: each reused row replaces one of round
    0's proposals, down to `min_new_fraction` of it (at least 1); later rounds are unchanged."""
    if n_reused < 0:
        raise ClimbInputError(f"n_reused must be >= 0, got {n_reused}")
    if not n_reused:
        return list(sizes)
    floor = max(1, int(np.ceil(sizes[0] * min_new_fraction)))
    return [max(floor, sizes[0] - n_reused), *sizes[1:]]


def select_final(
    config: StrategyConfig,
    predictor: Predictor | None,
    history_mixtures: np.ndarray,
    history_scores: np.ndarray,
    seed: int,
    candidates: np.ndarray | None = None,
    prior: np.ndarray | int | None = None,
    block: FrozenBlock | None = None,
) -> np.ndarray:
    """The final mixture [K], by the strategy (by default `config.final`, see `picks.final_pick`); with `block`,
    fresh candidates keep the block's inner ratios (the history may hold reused rows that do not)."""
    hm = np.asarray(history_mixtures, dtype=np.float64)
    k = hm.shape[1] if hm.ndim == 2 else validate_prior(prior).size
    hm, hs = history_arrays(hm, history_scores, k)
    if block is None:
        return config.strategy.select(config, predictor, hm, hs, seed, candidates, prior)
    if prior is None:
        raise ClimbInputError("select_final with a frozen block needs the prior")
    reduced_prior = _check_block(block, prior, candidates)
    # The history's own rows already carry the block's ratios: expanding their reduced form gives them back.
    wrapped = None if predictor is None else ExpandedPredictor.wrap(predictor, block)
    cfg = _reduced_config(config, block)
    picked = config.strategy.select(cfg, wrapped, block.reduce(hm), hs, seed, None, reduced_prior)
    return block.expand(picked)[0]


@dataclass
class SearchResult:
    """Everything a search evaluated, with the round of each row (-1: reused from an earlier experiment, first),
    its predictors and the final pick."""

    config: StrategyConfig
    mixtures: np.ndarray
    scores: np.ndarray
    rounds: np.ndarray
    predictors: list[Predictor]
    final_mixture: np.ndarray

    @property
    def best_observed(self) -> int:
        return best_observed(self.scores, self.config.direction)

    @property
    def n_reused(self) -> int:
        return int((self.rounds < 0).sum())

    @property
    def n_trained(self) -> int:
        return int((self.rounds >= 0).sum())


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
    reused: tuple[np.ndarray, np.ndarray] | None = None,
    block: FrozenBlock | None = None,
) -> SearchResult:
    """Run a whole search: every round proposed, evaluated in one batch, appended; then the final pick.

    `prior` is the token-share prior or K (uniform); in pool mode it defaults to K of `candidates`.
    `evaluate` is called exactly once per round and `budget` times in total over distinct mixtures (fewer with
    `reused`: (mixtures, scores) of earlier experiments' proxies over these super-clusters, which open the
    history, let round 0 propose fewer and around them, and fit every predictor with the new rows). `block`:
    freeze-and-expand (`propose_round`): predictors fit full mixtures, every proposal keeps the block's ratios.
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
    method = config.strategy
    if prior is None:
        if candidates is None:
            raise ClimbInputError("run_search needs `prior` (token shares or K) or `candidates`")
        prior = int(np.asarray(candidates).shape[1])
    k = validate_prior(prior).size
    hm, hs = history_arrays(*(reused if reused is not None else (None, None)), k)
    if hm.shape[0] and not method.proposes:
        raise ClimbInputError(f"strategy {config.name!r} trains its own proxies: it cannot start from reused ones")
    n_reused = hm.shape[0]
    rounds: list[int] = [-1] * n_reused
    predictors: list[Predictor] = []
    for r, n in enumerate(reuse_round_sizes(config.round_sizes(), n_reused)):
        pred = None
        if method.round_uses_predictor(config, r) and hm.shape[0] >= MIN_FIT_ROWS:
            pred = fit_predictor(hm, hs, config.direction, round_seed(seed, r), config.predictor)
            predictors.append(pred)
        new = propose_round(config, r, hm, hs, prior, seed, candidates, pred, n_reused, block)
        scores = _check_scores(evaluate(new), n, r)
        hm, hs = np.vstack([hm, new]), np.concatenate([hs, scores])
        rounds += [r] * n
    final_pred, final_cfg = None, config
    if hm.shape[0] < MIN_FIT_ROWS:
        final_cfg = replace(config, final="observed")  # nothing to fit a predictor on
    elif method.final_uses_predictor(config):
        final_pred = fit_predictor(
            hm, hs, config.direction, round_seed(seed, config.n_rounds), config.predictor
        )
        predictors.append(final_pred)
    # The answer is picked among this search's own proxies (the predictor has seen every row): a reused row's
    # score was measured on an earlier clustering's data, and the best of an earlier search is its luckiest
    # draw, which new proxies would rarely be seen to beat.
    own = np.asarray(rounds) >= 0
    final = select_final(final_cfg, final_pred, hm[own], hs[own], seed, candidates, prior, block)
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
    hm, hs = history_arrays(history_mixtures, history_scores, np.asarray(history_mixtures).shape[1])
    if hs.size == 0:
        raise ClimbInputError("no evaluated mixtures to re-evaluate")
    if top < 1:
        raise ClimbInputError(f"top must be >= 1, got {top}")
    d = Direction(direction)
    order = np.argsort(-d.goodness(hs), kind="stable")[: min(top, hs.size)]
    again = _check_scores(evaluate_again(hm[order]), order.size, -1)
    mean = (hs[order] + again) / 2
    return hm[order[d.argbest(mean)]].copy(), again
