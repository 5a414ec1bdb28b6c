"""An experiment: target objective + search strategy + budget split + proxy config, as one validated record."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any

from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.common.hashing import content_hash
from climb_dagster.core.common.keys import validate_key
from climb_dagster.core.proxy.config import ProxyConfig
from climb_dagster.core.proxy.cost import CostEstimate, CostLimits, check_cost, estimate_cost
from climb_dagster.core.reuse.mapping import DEFAULT_MIN_OVERLAP
from climb_dagster.core.reuse.reexpress import DEFAULT_MAX_ERROR
from climb_dagster.core.search.strategies import (
    SearchStrategy,
    StrategyConfig,
    budget_split,
    default_strategy,
    registered_strategies,
    strategy_named,
)
from climb_dagster.core.targets.config import TargetConfig

# Seeds feed numpy (non-negative, < 2**32) and torch; training uses `seed + 1` for its window stream.
MAX_SEED = 2**31 - 2


# Default ceiling on proxies per experiment (the paper's largest search, 64:32:16, trains 112).
DEFAULT_MAX_BUDGET = 1024

# Proxies per round by default: 18 in all, enough for the predictor to learn at demo scale.
DEFAULT_ROUNDS = (10, 5, 3)


# The predictor has one input per super-cluster; beyond this many proxies per input a search only burns
# compute on a corpus that small (a 4-cluster corpus allows 256 proxies).
MAX_PROXIES_PER_SUPER_CLUSTER = 64


REUSE_DEFAULTS = {
    "reuse": True,
    "reuse_max_error": DEFAULT_MAX_ERROR,
    "reuse_min_overlap": DEFAULT_MIN_OVERLAP,
    "reuse_freeze": False,
}


@dataclass(frozen=True)
class ExperimentConfig:
    """One CLIMB (or baseline) search. `rounds` gives the proxies per round, e.g. (6, 3, 2) or (64, 32, 16)."""

    name: str
    target: TargetConfig
    strategy: str = "climb"
    rounds: tuple[int, ...] = DEFAULT_ROUNDS
    proxy: ProxyConfig = field(default_factory=ProxyConfig)
    seed: int = 0
    n_candidates: int = 20_000
    top_n_factor: float = 4.0
    # Earlier experiments' proxies on the same target and proxy, re-expressed over this clustering (issue 24).
    reuse: bool = True
    reuse_max_error: float = DEFAULT_MAX_ERROR
    reuse_min_overlap: float = DEFAULT_MIN_OVERLAP
    # Freeze-and-expand after an update that only added drops: unchanged super-clusters keep the previous final's
    # ratios as one block; only the others and the block's total are searched. Nothing without `reuse`.
    reuse_freeze: bool = False

    def __post_init__(self) -> None:
        validate_key(self.name, "experiment name")
        if self.strategy not in registered_strategies():
            raise ClimbInputError(
                f"unknown strategy {self.strategy!r}; expected one of {registered_strategies()}"
            )
        if not self.rounds or any(not isinstance(r, int) or r < 1 for r in self.rounds):
            raise ClimbInputError(
                f"rounds must be positive integers (proxies per round), got {self.rounds!r}"
            )
        # A one-round strategy spends the budget in one round; DoReMi evaluates its answer and the prior.
        object.__setattr__(self, "rounds", self.search.experiment_rounds(tuple(self.rounds)))
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed <= MAX_SEED:
            raise ClimbInputError(f"seed must be an integer in [0, {MAX_SEED}], got {self.seed!r}")
        if self.n_candidates < 1:
            raise ClimbInputError(f"n_candidates must be >= 1, got {self.n_candidates}")
        if not 0.0 <= self.reuse_max_error <= 1.0:
            raise ClimbInputError(f"reuse_max_error must be in [0, 1], got {self.reuse_max_error}")
        if not 0.0 < self.reuse_min_overlap <= 1.0:
            raise ClimbInputError(f"reuse_min_overlap must be in (0, 1], got {self.reuse_min_overlap}")
        self.strategy_config()  # validates the budget against the rounds

    def check_bounds(self, n_super_clusters: int, max_budget: int = DEFAULT_MAX_BUDGET) -> None:
        """Refuse a budget the corpus or the deployment cannot justify, before anything is trained.

        The budget (sum of `rounds`, plus the proxies the strategy trains itself: DoReMi's reference and
        DRO proxies) must be at most `max_budget` and at most MAX_PROXIES_PER_SUPER_CLUSTER x the number
        of super-clusters; each round picks from `n_candidates` sampled mixtures, so no round may ask for
        more. The round count itself is bounded by the code location (MAX_ROUNDS, assets/experiments.py).
        """
        if n_super_clusters < 1:
            raise ClimbInputError(f"the token store has no super-clusters ({n_super_clusters})")
        corpus_cap = MAX_PROXIES_PER_SUPER_CLUSTER * n_super_clusters
        extra = f" + {self.extra_proxies} {self.strategy} proxies" if self.extra_proxies else ""
        where = f"rounds {list(self.rounds)}{extra} (budget {self.budget} proxies)"
        if self.budget > max_budget:
            raise ClimbInputError(
                f"{where} exceeds max_budget={max_budget}; lower rounds or raise max_budget"
            )
        if self.budget > corpus_cap:
            raise ClimbInputError(
                f"{where} exceeds {MAX_PROXIES_PER_SUPER_CLUSTER} proxies per super-cluster for this corpus of "
                f"{n_super_clusters} super-clusters (at most {corpus_cap})"
            )
        if max(self.rounds) > self.n_candidates:
            raise ClimbInputError(
                f"rounds {list(self.rounds)}: a round cannot train more proxies than n_candidates={self.n_candidates}"
            )

    def cost(self, limits: CostLimits | None = None) -> CostEstimate:
        """What training this experiment's proxies costs on the device `limits` describe (proxy/cost.py)."""
        return estimate_cost(self.proxy, self.rounds, self.extra_proxies, limits)

    def check_cost(self, limits: CostLimits | None = None) -> CostEstimate:
        """The cost estimate, or a ClimbInputError naming the fields and the numbers when a proxy step cannot
        fit the device memory or the training would take longer than `limits.max_hours`."""
        estimate = self.cost(limits)
        check_cost(estimate, f"experiment {self.name!r}")
        return estimate

    @property
    def budget(self) -> int:
        """Proxy trainings the experiment spends: its rounds plus any the strategy trains itself."""
        return sum(self.rounds) + self.extra_proxies

    @property
    def extra_proxies(self) -> int:
        return self.search.own_proxies

    @property
    def search(self) -> SearchStrategy:
        """The registered strategy the experiment runs."""
        return strategy_named(self.strategy)

    @property
    def n_rounds(self) -> int:
        return len(self.rounds)

    def strategy_config(self) -> StrategyConfig:
        base = default_strategy(self.strategy, sum(self.rounds), self.target.direction)
        kwargs: dict[str, Any] = {"n_candidates": self.n_candidates, "top_n_factor": self.top_n_factor}
        if self.search.iterative:
            kwargs["ratios"] = tuple(float(r) for r in self.rounds)
        config = replace(base, **kwargs)
        sizes = budget_split(config.budget, config.round_ratios)
        if self.search.iterative and tuple(sizes) != self.rounds:
            raise ClimbInputError(f"budget split {sizes} does not reproduce rounds {self.rounds}")
        return config

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            # As JSON gives it back (a list), so a stored record equals its to_dict().
            "target": self.target.to_dict(),
            "strategy": self.strategy,
            "rounds": list(self.rounds),
            "proxy": self.proxy.to_dict(),
            "seed": self.seed,
            "n_candidates": self.n_candidates,
            "top_n_factor": self.top_n_factor,
            # Only when changed: records and hashes of configs written before issue 24 stay as they were.
            **{k: getattr(self, k) for k, v in REUSE_DEFAULTS.items() if getattr(self, k) != v},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExperimentConfig:
        try:
            target = TargetConfig(**data["target"])
            proxy = ProxyConfig.from_dict(data["proxy"]) if "proxy" in data else ProxyConfig()
            rest = {k: v for k, v in data.items() if k not in ("target", "proxy", "budget", "ratios")}
            if "budget" in data:
                # A total budget split by ratios (paper 4:2:1); fewer proxies than rounds is refused here.
                ratios = tuple(data.get("ratios", (4, 2, 1)))
                rest["rounds"] = tuple(budget_split(int(data["budget"]), ratios))
            elif "rounds" in rest:
                rest["rounds"] = tuple(rest["rounds"])
            return cls(target=target, proxy=proxy, **rest)
        except KeyError as exc:
            raise ClimbInputError(
                f"experiment config is missing {exc.args[0]!r}: {json.dumps(data)[:300]}"
            ) from exc
        except TypeError as exc:
            raise ClimbInputError(f"bad experiment config ({exc}): {json.dumps(data)[:300]}") from exc

    def content_hash(self) -> str:
        return content_hash(self.to_dict())
