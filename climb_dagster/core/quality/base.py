"""The rater protocol, the 1–5 scale, and building raters by name."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
import polars as pl

from climb_dagster.core.common import schema
from climb_dagster.core.common.errors import ClimbInputError

MIN_SCORE = 1.0
MAX_SCORE = 5.0


@runtime_checkable
class QualityRater(Protocol):
    """Scores documents from 1 (worst) to 5 (best).

    `rate` receives a frame with at least the `text` column (and whatever else the drop has, e.g.
    `title`, `source`) and returns float64 [n] in [1, 5], in row order.
    """

    name: str

    def rate(self, docs: pl.DataFrame) -> np.ndarray: ...


def check_scores(scores: Any, n: int, rater: str) -> np.ndarray:
    """Validate a rater's output: n finite floats within [1, 5]."""
    out = np.asarray(scores, dtype=np.float64)
    if out.shape != (n,):
        raise ClimbInputError(f"rater {rater!r} returned shape {out.shape}, expected ({n},)")
    bad = ~np.isfinite(out) | (out < MIN_SCORE - 1e-9) | (out > MAX_SCORE + 1e-9)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ClimbInputError(
            f"rater {rater!r} returned {float(out[i])} at row {i}: scores must lie in [1, 5]"
        )
    return out


def require_text(docs: pl.DataFrame, rater: str) -> pl.Series:
    if schema.TEXT not in docs.columns:
        raise ClimbInputError(f"rater {rater!r} needs column {schema.TEXT!r}; got {docs.columns}")
    if docs.schema[schema.TEXT] != pl.String:
        raise ClimbInputError(
            f"rater {rater!r}: column {schema.TEXT!r} is {docs.schema[schema.TEXT]}, not String"
        )
    return docs.get_column(schema.TEXT).fill_null("")


@dataclass(frozen=True)
class WeightedMeanRater:
    """Weighted mean of several raters (each already on the 1–5 scale)."""

    raters: tuple[QualityRater, ...]
    weights: tuple[float, ...]
    name: str = "mean"

    def __post_init__(self) -> None:
        if not self.raters or len(self.raters) != len(self.weights):
            raise ClimbInputError(f"{len(self.raters)} raters but {len(self.weights)} weights")
        if any(w < 0 for w in self.weights) or sum(self.weights) <= 0:
            raise ClimbInputError(f"rater weights {self.weights}: must be >= 0 with a positive sum")

    def rate(self, docs: pl.DataFrame) -> np.ndarray:
        total = np.zeros(docs.height)
        for rater, weight in zip(self.raters, self.weights, strict=True):
            total += weight * check_scores(rater.rate(docs), docs.height, rater.name)
        return total / sum(self.weights)


RaterFactory = Callable[..., QualityRater]
_REGISTRY: dict[str, RaterFactory] = {}


def register_rater(name: str, factory: RaterFactory) -> None:
    """Make `factory(**options)` available to `build_rater` under `name`."""
    _REGISTRY[name] = factory


def registered_raters() -> list[str]:
    return sorted(_REGISTRY)


@dataclass(frozen=True)
class RaterSpec:
    """One rater by name (registered) or import path ("package.module:Factory"), with options."""

    name: str
    options: Mapping[str, Any] = field(default_factory=dict)
    weight: float = 1.0
    label: str | None = None  # what it rates (a raters file's `dimension`), for reports


def _factory(name: str) -> RaterFactory:
    if name in _REGISTRY:
        return _REGISTRY[name]
    if ":" in name:
        module, _, attr = name.partition(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise ClimbInputError(f"rater {name!r}: cannot import ({exc})") from exc
    raise ClimbInputError(
        f"rater {name!r} is not registered (known: {registered_raters()}); use 'module:Factory'"
    )


def build_rater(specs: Sequence[RaterSpec]) -> QualityRater:
    """One rater from specs: the rater itself when there is one, else their weighted mean."""
    if not specs:
        raise ClimbInputError("no quality rater configured")
    raters = []
    for spec in specs:
        try:
            rater = _factory(spec.name)(**dict(spec.options))
        except TypeError as exc:
            raise ClimbInputError(f"rater {spec.name!r}: bad options {dict(spec.options)} ({exc})") from exc
        if not isinstance(rater, QualityRater):
            raise ClimbInputError(f"rater {spec.name!r} has no name/rate(docs) (see QualityRater)")
        raters.append(rater)
    if len(raters) == 1:
        return raters[0]
    return WeightedMeanRater(tuple(raters), tuple(s.weight for s in specs))


def constant_raters(rater: QualityRater, docs: pl.DataFrame, n_probe: int = 256) -> list[str]:
    """Names of the raters (the components of a weighted mean) that give the first `n_probe` documents all
    the same score: such a rater cannot rank documents. fastText raters are refused for it when loaded."""
    probe = docs.head(n_probe)
    if probe.get_column(schema.TEXT).n_unique() < 2:
        return []
    return [
        r.name
        for r in getattr(rater, "raters", (rater,))
        if np.ptp(check_scores(r.rate(probe), probe.height, r.name)) == 0.0
    ]


def rate_documents(rater: QualityRater, docs: pl.DataFrame) -> np.ndarray:
    """Run a rater and check its output."""
    return check_scores(rater.rate(docs), docs.height, rater.name)
