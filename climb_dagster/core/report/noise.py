"""How much a proxy's score says about a mixture: seed noise against the spread between mixtures, and how well
the small model's ranking carries to a larger one. Scores come as arrays [mixture, seed]; scipy loads on first
use."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from climb_dagster.core.common.errors import ClimbInputError


def _check(scores: np.ndarray, name: str) -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2 or s.shape[0] < 3 or s.shape[1] < 2:
        raise ClimbInputError(f"{name}: need scores [>= 3 mixtures, >= 2 seeds], got shape {s.shape}")
    if not np.isfinite(s).all():
        bad = np.argwhere(~np.isfinite(s))[0]
        raise ClimbInputError(f"{name}: score of mixture {bad[0]}, seed {bad[1]} is {s[tuple(bad)]}")
    return s


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b)[0])


@dataclass(frozen=True)
class SeedNoise:
    """One model size on one target. `seed_std`: pooled std of one mixture's score over seeds; `mixture_std`:
    std over mixtures of the seed-mean scores; `reliability`: the share of one run's score variance that is the
    mixture's (between / (between + within), from the one-way ANOVA; 1 = seeds agree); `seed_rank`: mean
    Spearman between the mixture rankings of two seeds."""

    n_mixtures: int
    n_seeds: int
    seed_std: float
    mixture_std: float
    reliability: float
    seed_rank: float

    def to_dict(self) -> dict[str, Any]:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def seed_noise(scores: np.ndarray) -> SeedNoise:
    s = _check(scores, "seed_noise")
    m, k = s.shape
    within = float(s.var(axis=1, ddof=1).mean())
    # Variance of the mixture means holds within/k of seed noise; the rest is the mixtures'.
    between = max(float(s.mean(axis=1).var(ddof=1)) - within / k, 0.0)
    pairs = [_spearman(s[:, i], s[:, j]) for i in range(k) for j in range(i + 1, k)]
    return SeedNoise(
        n_mixtures=m,
        n_seeds=k,
        seed_std=float(np.sqrt(within)),
        mixture_std=float(s.mean(axis=1).std(ddof=1)),
        reliability=between / (between + within) if between + within > 0 else float("nan"),
        seed_rank=float(np.mean(pairs)),
    )


@dataclass(frozen=True)
class RankTransfer:
    """How a small model's ranking of mixtures carries to a larger one, on one target. `mean_rank`: Spearman of
    the seed-mean scores; `one_seed_rank`: mean over the small model's seeds of the Spearman between one seed's
    scores (what a search sees) and the larger model's seed means; `top_half_rank`: the same as `mean_rank`
    among the small model's better half (where later rounds choose); `best_regret`: how much worse, in the larger
    model's seed-mean score, the small model's one-seed best is than the larger model's best (mean over seeds)."""

    mean_rank: float
    one_seed_rank: float
    top_half_rank: float
    best_regret: float

    def to_dict(self) -> dict[str, Any]:
        return {k: round(v, 6) for k, v in asdict(self).items()}


def rank_transfer(small: np.ndarray, large: np.ndarray) -> RankTransfer:
    """`small`, `large`: scores [mixture, seed] of the same mixtures (lower is better)."""
    a, b = _check(small, "rank_transfer small"), _check(large, "rank_transfer large")
    if a.shape[0] != b.shape[0]:
        raise ClimbInputError(f"rank_transfer: {a.shape[0]} small-model mixtures but {b.shape[0]} large-model ones")
    am, bm = a.mean(axis=1), b.mean(axis=1)
    top = np.argsort(am, kind="stable")[: max(3, a.shape[0] // 2)]
    return RankTransfer(
        mean_rank=_spearman(am, bm),
        one_seed_rank=float(np.mean([_spearman(a[:, j], bm) for j in range(a.shape[1])])),
        top_half_rank=_spearman(am[top], bm[top]),
        best_regret=float(np.mean([bm[int(np.argmin(a[:, j]))] for j in range(a.shape[1])]) - bm.min()),
    )
