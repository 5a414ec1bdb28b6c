"""Paired comparisons of two search arms scored on the same cells (lab x search seed): the mean difference with
a t interval on its degrees of freedom, its p-value and the win rate. scipy loads on first use."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from climb_dagster.core.common.direction import Direction
from climb_dagster.core.common.errors import ClimbInputError


@dataclass(frozen=True)
class PairedDifference:
    """`mean` of a - b over `n` paired cells, its `low`/`high` bounds at `confidence` from Student's t with
    `df` = n - 1 degrees of freedom, the two-sided `p_value` of "no difference", and `win_rate`: the share of
    cells where a is better than b in `direction` (a tie counts half)."""

    n: int
    mean: float
    low: float
    high: float
    df: int
    t_critical: float
    p_value: float
    win_rate: float
    confidence: float

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def to_dict(self) -> dict[str, Any]:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def paired_difference(
    a: Sequence[float], b: Sequence[float], direction: str = Direction.MINIMIZE, confidence: float = 0.95
) -> PairedDifference:
    """The paired comparison of `a` against `b` (same cells, same order). Cells where either is not finite
    are refused: a diverged final retrain is a result to look at, not a row to drop silently."""
    from scipy import stats

    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ClimbInputError(f"paired scores need equal 1-d lengths, got {x.shape} and {y.shape}")
    if x.size < 2:
        raise ClimbInputError(f"a paired interval needs at least 2 cells, got {x.size}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ClimbInputError(f"paired scores hold non-finite values: {x.tolist()} vs {y.tolist()}")
    if not 0 < confidence < 1:
        raise ClimbInputError(f"confidence must be in (0, 1), got {confidence}")
    d = x - y
    n, df = int(d.size), int(d.size - 1)
    mean = float(d.mean())
    se = float(d.std(ddof=1) / math.sqrt(n))
    t_crit = float(stats.t.ppf(0.5 + confidence / 2, df))
    if se == 0.0:
        p = 1.0 if mean == 0.0 else 0.0
    else:
        p = float(2 * stats.t.sf(abs(mean / se), df))
    better = d < 0 if Direction(direction) == Direction.MINIMIZE else d > 0
    ties = d == 0
    return PairedDifference(
        n=n,
        mean=mean,
        low=mean - t_crit * se,
        high=mean + t_crit * se,
        df=df,
        t_critical=t_crit,
        p_value=p,
        win_rate=float((better.sum() + 0.5 * ties.sum()) / n),
        confidence=confidence,
    )


def cells_to_exclude_zero(mean: float, sd: float, confidence: float = 0.95, limit: int = 100_000) -> int | None:
    """The fewest paired cells whose t interval excludes 0 when the cells' mean difference and sd are `mean`
    and `sd` (the smallest n with t(n-1) * sd / sqrt(n) < |mean|): how far a protocol's cell count is from
    resolving an effect of the measured size. None when `mean` is 0 or no n up to `limit` suffices."""
    from scipy import stats

    if not (math.isfinite(mean) and math.isfinite(sd)) or sd < 0:
        raise ClimbInputError(f"mean and sd must be finite and sd >= 0, got {mean} and {sd}")
    if not 0 < confidence < 1:
        raise ClimbInputError(f"confidence must be in (0, 1), got {confidence}")
    if mean == 0.0:
        return None
    if sd == 0.0:
        return 2
    q = 0.5 + confidence / 2

    def resolves(n: int) -> bool:
        return float(stats.t.ppf(q, n - 1)) * sd / math.sqrt(n) < abs(mean)

    # t(n-1) falls as n grows, so the condition is monotone in n: bracket it, then bisect.
    high = 2
    while not resolves(high):
        if high >= limit:
            return None
        high = min(high * 2, limit)
    low = max(high // 2, 1)
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if resolves(mid) else (mid, high)
    return high
