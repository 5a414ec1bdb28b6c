"""Whether a target's score is to be minimized (a loss) or maximized (an accuracy), in one type."""

from __future__ import annotations

from enum import StrEnum

import numpy as np

from climb_dagster.core.common.errors import ClimbInputError


class Direction(StrEnum):
    """A str enum, so stored JSON and content hashes see the plain words "minimize"/"maximize"."""

    MINIMIZE = "minimize"
    MAXIMIZE = "maximize"

    @classmethod
    def parse(cls, value: str) -> Direction:
        try:
            return cls(value)
        except ValueError:
            raise ClimbInputError(
                f"direction must be one of {[d.value for d in cls]}, got {value!r}"
            ) from None

    @property
    def minimizes(self) -> bool:
        return self is Direction.MINIMIZE

    def argbest(self, values: np.ndarray) -> int:
        """Index of the best value (the first one on ties, like numpy)."""
        return int(np.argmin(values) if self.minimizes else np.argmax(values))

    def best(self, values: np.ndarray) -> float:
        return float(np.min(values) if self.minimizes else np.max(values))

    def worst(self, values: np.ndarray) -> float:
        return float(np.max(values) if self.minimizes else np.min(values))

    def better(self, a: float, b: float) -> bool:
        """Whether `a` strictly beats `b`."""
        return bool(a < b if self.minimizes else a > b)

    def goodness(self, values: np.ndarray) -> np.ndarray:
        """Values turned so that larger is better."""
        return -np.asarray(values) if self.minimizes else np.asarray(values)

    def regret(self, score: float, values: np.ndarray) -> float:
        """How much worse `score` is than the best of `values` (>= 0 when `score` is among them)."""
        return float(score - self.best(values)) if self.minimizes else float(self.best(values) - score)
