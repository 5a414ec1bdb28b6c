"""DoReMi's domain-weight update (Xie et al., 2023), as pure numpy so it is testable without torch.

Group DRO over domains: after each step, every domain's weight is multiplied by
exp(step_size * excess loss), renormalised, then smoothed toward uniform; excess loss is the proxy's
loss minus the reference model's loss on that domain's tokens, clipped at 0 (a domain the reference
already fits as well gains nothing). DoReMi's answer is the average of the weights over all steps.
The training loop that produces the excess losses lives in `core/proxy/doremi.py`; DoReMi as a search
strategy (its proxy count, its one round) in `core/search/strategies/doremi.py`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

import numpy as np

from climb_dagster.core.common.errors import ClimbInputError


@dataclass(frozen=True)
class DoReMiConfig:
    """Group DRO settings; the paper uses step_size 1 and smoothing 1e-3 over 30 domains."""

    step_size: float = 1.0
    smoothing: float = 1e-3

    def __post_init__(self) -> None:
        if not (np.isfinite(self.step_size) and self.step_size > 0):
            raise ClimbInputError(f"DoReMiConfig.step_size={self.step_size!r}: must be > 0")
        if not (0 <= self.smoothing < 1):
            raise ClimbInputError(f"DoReMiConfig.smoothing={self.smoothing!r}: must be in [0, 1)")

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def dro_update(weights: np.ndarray, excess: np.ndarray, config: DoReMiConfig) -> np.ndarray:
    """One exponentiated-gradient step on the domain weights.

    Args:
        weights: current weights [K] (sum 1, > 0).
        excess: per-domain excess loss [K] this step (proxy minus reference); negatives count as 0,
            and a domain absent from the batch passes 0.
    """
    w = np.asarray(weights, dtype=np.float64)
    e = np.asarray(excess, dtype=np.float64)
    if w.ndim != 1 or e.shape != w.shape:
        raise ClimbInputError(f"weights shape {w.shape} and excess shape {e.shape} differ")
    if not (np.isfinite(w).all() and (w > 0).all()):
        raise ClimbInputError(f"domain weights must be finite and > 0, got {w.tolist()}")
    if not np.isfinite(e).all():
        raise ClimbInputError(f"excess losses must be finite, got {e.tolist()}")
    # In log space: a large excess times many steps would overflow exp().
    logits = np.log(w) + config.step_size * np.maximum(e, 0.0)
    logits -= logits.max()
    new = np.exp(logits)
    new /= new.sum()
    return (1.0 - config.smoothing) * new + config.smoothing / w.size


def average_weights(initial: np.ndarray, excesses: Iterable[np.ndarray], config: DoReMiConfig) -> np.ndarray:
    """DoReMi's answer from a sequence of per-step excess losses: the mean of the updated weights."""
    w = np.asarray(initial, dtype=np.float64)
    total = np.zeros_like(w)
    steps = 0
    for e in excesses:
        w = dro_update(w, e, config)
        total += w
        steps += 1
    if steps == 0:
        raise ClimbInputError("no DRO steps: cannot average domain weights")
    return total / steps
