"""Mixtures on the simplex: validation, Dirichlet sampling around a prior, caps, dedup."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from climb_dagster.core.common.errors import ClimbInputError

SUM_TOLERANCE = 1e-6


def validate_mixtures(
    mixtures: np.ndarray, n_clusters: int | None = None, source: str = "mixtures", atol: float = SUM_TOLERANCE
) -> np.ndarray:
    """Check shape [n, K], finite, non-negative weights that sum to 1; return them as float64.

    Raises ClimbInputError naming `source`, the row and the value at fault.
    """
    m = np.asarray(mixtures, dtype=np.float64)
    if m.ndim != 2:
        raise ClimbInputError(f"{source}: expected a 2-D array [n, K], got shape {m.shape}")
    if n_clusters is not None and m.shape[1] != n_clusters:
        raise ClimbInputError(f"{source}: expected {n_clusters} weight columns, got {m.shape[1]}")
    bad = ~np.isfinite(m)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise ClimbInputError(f"{source}: row {r} column {c} has non-finite weight {float(m[r, c])}")
    if (m < 0).any():
        r, c = np.argwhere(m < 0)[0]
        raise ClimbInputError(f"{source}: row {r} column {c} has negative weight {float(m[r, c])}")
    sums = m.sum(axis=1)
    off = np.abs(sums - 1.0) > atol
    if off.any():
        r = int(np.argmax(off))
        raise ClimbInputError(
            f"{source}: row {r} weights sum to {float(sums[r])!r}, not 1 (tolerance {atol})"
        )
    return m


def validate_prior(prior: np.ndarray | int, source: str = "prior") -> np.ndarray:
    """A prior is a mixture (token shares); an int K means the uniform prior over K clusters."""
    if isinstance(prior, int | np.integer):
        if prior < 1:
            raise ClimbInputError(f"{source}: number of clusters must be >= 1, got {prior}")
        return np.full(int(prior), 1.0 / int(prior))
    p = np.asarray(prior, dtype=np.float64).reshape(1, -1)
    return validate_mixtures(p, source=source)[0]


@dataclass(frozen=True)
class SamplingConfig:
    """How to draw mixtures: Dirichlet(concentration * K * prior) at each concentration scale.

    Low concentrations give sparse mixtures, high ones stay close to the prior. `min_weight` zeroes
    weights below it (then renormalises); `cap` bounds each weight, the excess going to the other
    non-zero weights. `dedup_decimals` defines "near-identical" (equal after rounding).
    """

    concentrations: tuple[float, ...] = (0.1, 0.3, 1.0, 3.0, 10.0)
    cap: float | None = None
    min_weight: float = 0.0
    dedup_decimals: int = 3

    def __post_init__(self) -> None:
        if not self.concentrations or any(not (np.isfinite(c) and c > 0) for c in self.concentrations):
            raise ClimbInputError(
                f"SamplingConfig.concentrations must be positive, got {self.concentrations}"
            )
        if self.cap is not None and not (0 < self.cap <= 1):
            raise ClimbInputError(f"SamplingConfig.cap must be in (0, 1], got {self.cap}")
        if not (0 <= self.min_weight < 1):
            raise ClimbInputError(f"SamplingConfig.min_weight must be in [0, 1), got {self.min_weight}")
        if self.cap is not None and self.min_weight > self.cap:
            raise ClimbInputError(f"SamplingConfig.min_weight {self.min_weight} exceeds cap {self.cap}")
        if not (1 <= self.dedup_decimals <= 12):
            raise ClimbInputError(
                f"SamplingConfig.dedup_decimals must be in [1, 12], got {self.dedup_decimals}"
            )


def _apply_cap(m: np.ndarray, cap: float) -> tuple[np.ndarray, np.ndarray]:
    """Water-fill: clip at cap, hand the excess to non-zero uncapped weights pro rata; returns (m, ok)."""
    m = m.copy()
    for _ in range(m.shape[1]):
        over = m > cap + 1e-12
        if not over.any():
            break
        excess = np.where(over, m - cap, 0.0).sum(axis=1, keepdims=True)
        m = np.where(over, cap, m)
        room = (m > 0) & (m < cap)
        share = np.where(room, m, 0.0)
        total = share.sum(axis=1, keepdims=True)
        m = m + np.divide(excess * share, total, out=np.zeros_like(m), where=total > 0)
    ok = (np.abs(m.sum(axis=1) - 1.0) < 1e-9) & (m.max(axis=1) <= cap + 1e-9)
    return m, ok


def _draw(n: int, prior: np.ndarray, config: SamplingConfig, rng: np.random.Generator) -> np.ndarray:
    k = prior.size
    scales = np.asarray(config.concentrations)[rng.integers(0, len(config.concentrations), size=n)]
    # Tiny alphas underflow to all-zero gamma draws; the floor keeps every row valid.
    alpha = np.maximum(scales[:, None] * k * prior[None, :], 1e-3)
    g = rng.standard_gamma(alpha)
    g = np.where(prior[None, :] > 0, g, 0.0)
    s = g.sum(axis=1, keepdims=True)
    ok = s[:, 0] > 0
    m = np.divide(g, s, out=np.zeros_like(g), where=s > 0)
    if config.min_weight > 0:
        m = np.where(m < config.min_weight, 0.0, m)
        s = m.sum(axis=1, keepdims=True)
        ok &= s[:, 0] > 0
        m = np.divide(m, s, out=np.zeros_like(m), where=s > 0)
    if config.cap is not None:
        m, capped_ok = _apply_cap(m, config.cap)
        ok &= capped_ok
    return m[ok]


def dedup_mixtures(mixtures: np.ndarray, decimals: int = 3, exclude: np.ndarray | None = None) -> np.ndarray:
    """Drop rows equal to an earlier row (or to a row of `exclude`) after rounding; keeps first-seen order."""
    m = np.asarray(mixtures, dtype=np.float64)
    if m.shape[0] == 0:
        return m
    keys = np.round(m, decimals) + 0.0  # +0.0 folds -0.0 into 0.0
    n_ex = 0
    if exclude is not None and len(exclude):
        ex = np.round(np.asarray(exclude, dtype=np.float64), decimals) + 0.0
        n_ex = ex.shape[0]
        keys = np.vstack([ex, keys])
    _, first = np.unique(keys, axis=0, return_index=True)
    first = np.sort(first[first >= n_ex]) - n_ex
    return m[first]


def sample_mixtures(
    n: int,
    prior: np.ndarray | int,
    seed: int | np.random.Generator,
    config: SamplingConfig | None = None,
    exclude: np.ndarray | None = None,
) -> np.ndarray:
    """Draw `n` distinct mixtures [n, K] around `prior`, none near-identical to a row of `exclude`.

    Vectorised: 100k mixtures over 20 clusters take well under a second.
    """
    config = config or SamplingConfig()
    if n < 0:
        raise ClimbInputError(f"number of mixtures must be >= 0, got {n}")
    p = validate_prior(prior)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    out = np.empty((0, p.size))
    for _ in range(50):
        if out.shape[0] >= n:
            break
        need = n - out.shape[0]
        batch = _draw(int(need * 1.2) + 16, p, config, rng)
        out = dedup_mixtures(np.vstack([out, batch]), config.dedup_decimals, exclude)
    if out.shape[0] < n:
        raise ClimbInputError(
            f"could only draw {out.shape[0]} distinct mixtures of the {n} asked for "
            f"(K={p.size}, cap={config.cap}, min_weight={config.min_weight}); relax the constraints"
        )
    return out[:n]
