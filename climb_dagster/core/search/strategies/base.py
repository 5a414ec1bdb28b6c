"""The search-strategy extension point: `SearchStrategy` (what the pipeline, the experiment config and the
benchmarks ask of a strategy), its `StrategyConfig`, and the registry a strategy joins with
`@register_strategy`.

A strategy says how many rounds it runs and how the budget splits over them, how it proposes a round from
the history (`propose`), how it picks the final mixture (`select`), which of its rounds and its final pick
fit a predictor, what configuration it starts from and which it refuses, and whether it trains proxies of
its own before round 1 (DoReMi) instead of proposing.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, TypeVar

import numpy as np

from climb_dagster.core.common.direction import Direction
from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.search.predictor import Predictor, PredictorConfig, check_direction
from climb_dagster.core.search.sampling import SamplingConfig, sample_mixtures
from climb_dagster.core.search.strategies.draws import maximin
from climb_dagster.core.search.strategies.picks import FINAL_PICKS, final_pick

INITIAL_DESIGNS = ("random", "maximin")
# Fewer evaluated rows than this and a round (or the final pick) has no predictor to fit.
MIN_FIT_ROWS = 2


# Dirichlet concentrations of the draws near a best mixture (x K x centre): close, but not a copy.
LOCAL_CONCENTRATIONS = (10.0, 30.0, 100.0)


@dataclass(frozen=True)
class StrategyConfig:
    """One search strategy.

    Args:
        name: a registered strategy (`registered_strategies()`): climb (iterative), regmix (one round +
            predictor), random (best observed), doremi (its own proxies).
        budget: total number of evaluations (proxy trainings).
        ratios: the per-round budget split of an iterative strategy (climb: paper 4:2:1); ignored by
            one-round strategies.
        top_n_factor: later climb rounds choose from the predicted top `factor * round size`.
        exploit_fraction: share of a round taken greedily from the top; the rest is drawn at
            random from the remaining top-N (exploration).
        kappa: optimism bonus in ensemble std when ranking candidates (0 = mean only).
        final: how the final mixture is chosen (see `picks.final_pick`).
        top_k: number of predicted-best mixtures averaged by final="top_k_mean".
        n_candidates: candidates drawn per ranking in sampling mode (no pool).
        initial_design: round 0 as a uniform random draw, or "maximin": a greedy farthest-point
            (L1) subset of the pool / of 20x as many Dirichlet draws, so the first predictor sees
            the corners of the simplex as well as its middle.
        local_fraction: share of the candidates (sampling mode) drawn close to the `local_top` best
            mixtures observed so far instead of around the prior, so that later rounds can refine
            near the best region (global draws in 16+ dimensions rarely land there).
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
    local_fraction: float = 0.0
    local_top: int = 3
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    predictor: PredictorConfig = field(default_factory=PredictorConfig)

    def __post_init__(self) -> None:
        strategy = strategy_named(self.name)
        check_direction(self.direction)
        if self.final not in FINAL_PICKS:
            raise ClimbInputError(f"StrategyConfig.final must be one of {FINAL_PICKS}, got {self.final!r}")
        if self.initial_design not in INITIAL_DESIGNS:
            raise ClimbInputError(
                f"StrategyConfig.initial_design must be one of {INITIAL_DESIGNS}, got {self.initial_design!r}"
            )
        strategy.check(self)
        checks = {
            "budget": self.budget >= 1,
            "top_n_factor": self.top_n_factor >= 1,
            "exploit_fraction": 0 <= self.exploit_fraction <= 1,
            "kappa": np.isfinite(self.kappa),
            "top_k": self.top_k >= 1,
            "n_candidates": self.n_candidates >= 1,
            "local_fraction": 0 <= self.local_fraction <= 1,
            "local_top": self.local_top >= 1,
        }
        for name, ok in checks.items():
            if not ok:
                raise ClimbInputError(f"StrategyConfig.{name} out of range: {getattr(self, name)!r}")
        budget_split(self.budget, self.round_ratios)

    @property
    def strategy(self) -> SearchStrategy:
        return strategy_named(self.name)

    @property
    def round_ratios(self) -> tuple[float, ...]:
        return self.strategy.round_ratios(self)

    @property
    def n_rounds(self) -> int:
        return len(self.round_ratios)

    def round_sizes(self) -> list[int]:
        return budget_split(self.budget, self.round_ratios)


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


def round_seed(seed: int, round_index: int) -> int:
    """Seed of the predictor fitted before round `round_index` (== n_rounds: the final one)."""
    return int(np.random.default_rng([int(seed), int(round_index), 104729]).integers(2**31 - 1))


@dataclass(frozen=True)
class Round:
    """What a strategy proposes round `index` from, checked by `propose_round`.

    `mixtures`/`scores`: the history [n, K] / [n] (failed proxies carry the worst score). `pool`: in pool
    mode, the candidate rows not evaluated yet (else None). `predictor`: one fitted on the history by the
    caller, when the strategy's round uses one (None: fit it here if needed). `rng`: this round's stream.
    """

    config: StrategyConfig
    index: int
    size: int
    mixtures: np.ndarray
    scores: np.ndarray
    prior: np.ndarray
    seed: int
    rng: np.random.Generator
    pool: np.ndarray | None = None
    predictor: Predictor | None = None

    def candidates(self) -> np.ndarray:
        """Mixtures to rank: the pool, or `n_candidates` fresh Dirichlet draws around the prior, none near an
        evaluated mixture."""
        if self.pool is not None:
            return self.pool
        c = self.config
        n_local = int(round(c.local_fraction * c.n_candidates)) if self.mixtures.shape[0] else 0
        around = sample_mixtures(c.n_candidates - n_local, self.prior, self.rng, c.sampling, exclude=self.mixtures)
        if n_local == 0:
            return around
        return np.vstack([around, self._near_best(n_local)])

    def _near_best(self, n: int) -> np.ndarray:
        """`n` draws close to the best observed mixtures, split evenly among the `local_top` best. Each
        centre keeps a tenth of the prior's mass so a cluster the best left out can come back in small
        amounts; concentrations 10-100 stay within a few points of weight of the centre."""
        c = self.config
        goodness = Direction(c.direction).goodness(self.scores)
        top = np.argsort(-goodness, kind="stable")[: c.local_top]
        local = replace(c.sampling, concentrations=LOCAL_CONCENTRATIONS)
        counts = np.full(top.size, n // top.size)
        counts[: n % top.size] += 1
        parts = [
            sample_mixtures(int(k), 0.9 * self.mixtures[i] + 0.1 * self.prior, self.rng, local, exclude=self.mixtures)
            for i, k in zip(top, counts, strict=True)
            if k
        ]
        return np.vstack(parts)

    def draw(self) -> np.ndarray:
        """The round-0 design: `size` mixtures drawn uniformly (pool rows or Dirichlet draws around the
        prior), or spread by maximin over the pool / 20x as many draws."""
        c, n = self.config, self.size
        if c.initial_design == "maximin":
            cands = self.pool
            if cands is None:
                cands = sample_mixtures(20 * n, self.prior, self.rng, c.sampling, exclude=self.mixtures)
            # Rows already in the history at round 0 are reused evidence: the design fills around them.
            return cands[maximin(cands, n, self.rng, fixed=self.mixtures if self.mixtures.shape[0] else None)]
        if self.pool is not None:
            return self.pool[np.sort(self.rng.choice(self.pool.shape[0], n, replace=False))]
        return sample_mixtures(n, self.prior, self.rng, c.sampling, exclude=self.mixtures)


class SearchStrategy:
    """A search strategy; subclass it in one file and decorate the class with `@register_strategy`.

    The defaults describe a one-round strategy that draws its round like everyone's round 0 and picks the
    final mixture by `config.final`; override what differs.
    """

    name: ClassVar[str]
    # One line for the launchpad's description of the `strategy` field.
    summary: ClassVar[str] = ""
    # Rounds follow `config.ratios` (the experiment's `rounds`); otherwise one round spends the budget.
    iterative: ClassVar[bool] = False
    # Proxies the strategy trains itself before its round, beside the evaluated ones (DoReMi: 2), and the
    # step that trains them, as "module:function" (resolved by the caller: it lives above core/search):
    # step(store, prior, proxy_config, seed, cache_dir, storage_options) -> (mixtures [n, K] for the round,
    # the answer first; metadata dict). A strategy with such a step does not propose from a history.
    own_proxies: ClassVar[int] = 0
    own_proxies_step: ClassVar[str | None] = None

    @property
    def proposes(self) -> bool:
        """Whether it proposes rounds from a history (pool mode and `run_search` need that)."""
        return self.own_proxies_step is None

    def default_config(self, budget: int, direction: str) -> StrategyConfig:
        """The configuration a name stands for (`default_strategy`)."""
        return StrategyConfig(self.name, budget, direction=direction, final="observed")

    def check(self, config: StrategyConfig) -> None:
        """Refuse a configuration the strategy cannot honour (raise ClimbInputError naming the field)."""

    def round_ratios(self, config: StrategyConfig) -> tuple[float, ...]:
        return tuple(config.ratios) if self.iterative else (1.0,)

    def experiment_rounds(self, rounds: tuple[int, ...]) -> tuple[int, ...]:
        """The proxies per round an experiment asking for `rounds` runs (a one-round strategy: their sum)."""
        return tuple(rounds) if self.iterative else (sum(rounds),)

    def round_uses_predictor(self, config: StrategyConfig, round_index: int) -> bool:
        """Whether proposing round `round_index` ranks candidates with a predictor fitted on the history."""
        return False

    def final_uses_predictor(self, config: StrategyConfig) -> bool:
        return config.final != "observed"

    def propose(self, r: Round) -> np.ndarray:
        """`r.size` mixtures [n, K] for round `r.index`, none already in the history."""
        return r.draw()

    def select(
        self,
        config: StrategyConfig,
        predictor: Predictor | None,
        mixtures: np.ndarray,
        scores: np.ndarray,
        seed: int,
        candidates: np.ndarray | None,
        prior: np.ndarray | int | None,
    ) -> np.ndarray:
        """The final mixture [K] from the (checked) history."""
        return final_pick(config, predictor, mixtures, scores, seed, candidates, prior)

    def own_proxies_trainer(self) -> Callable[..., tuple[np.ndarray, dict[str, Any]]]:
        """The function `own_proxies_step` names."""
        if self.own_proxies_step is None:
            raise ClimbInputError(f"strategy {self.name!r} trains no proxies of its own")
        module, _, attr = self.own_proxies_step.partition(":")
        return getattr(importlib.import_module(module), attr)


_REGISTRY: dict[str, SearchStrategy] = {}
S = TypeVar("S", bound=type[SearchStrategy])


def register_strategy(cls: S) -> S:
    """Class decorator: make the strategy available by its `name` (replacing one of the same name)."""
    _REGISTRY[cls.name] = cls()
    return cls


def unregister_strategy(name: str) -> None:
    _REGISTRY.pop(name, None)


def registered_strategies() -> tuple[str, ...]:
    """Names in registration order (the built-ins first)."""
    return tuple(_REGISTRY)


def proposing_strategies() -> tuple[str, ...]:
    return tuple(name for name, s in _REGISTRY.items() if s.proposes)


def strategy_summaries() -> str:
    """Each registered strategy and what it does, for a config field's description."""
    return "; ".join(f"{name}: {s.summary}" for name, s in _REGISTRY.items())


def strategy_named(name: str) -> SearchStrategy:
    if name not in _REGISTRY:
        raise ClimbInputError(f"strategy name must be one of {registered_strategies()}, got {name!r}")
    return _REGISTRY[name]
