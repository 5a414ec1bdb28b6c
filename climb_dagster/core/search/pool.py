"""Offline pools: mixtures with known scores, read from RegMix-style CSVs and "evaluated" by lookup."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from climb_dagster.core.common.direction import Direction
from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.search.predictor import check_direction
from climb_dagster.core.search.sampling import validate_mixtures

# The RegMix CSVs round weights to 3 decimals, so rows sum to 1 only within ~0.005.
READ_SUM_TOLERANCE = 0.01


@dataclass(frozen=True)
class MixturePool:
    """mixtures [P, K] (rows sum to 1), scores [P, T]; rows pair up by position."""

    mixtures: np.ndarray
    scores: np.ndarray
    domains: tuple[str, ...]
    targets: tuple[str, ...]

    def __post_init__(self) -> None:
        validate_mixtures(self.mixtures, len(self.domains), source="pool mixtures")
        if self.scores.shape != (self.mixtures.shape[0], len(self.targets)):
            raise ClimbInputError(
                f"pool scores shape {self.scores.shape} does not match "
                f"{self.mixtures.shape[0]} mixtures x {len(self.targets)} targets"
            )

    @property
    def size(self) -> int:
        return int(self.mixtures.shape[0])

    def target_scores(self, target: str) -> np.ndarray:
        if target not in self.targets:
            raise ClimbInputError(f"target {target!r} is not a score column; have {list(self.targets)}")
        return self.scores[:, self.targets.index(target)]

    def with_composite(self, name: str, weights: Mapping[str, float]) -> MixturePool:
        """This pool plus a score column `name` = sum of weight * column (see `parse_composite`)."""
        if name in self.targets:
            raise ClimbInputError(f"composite target {name!r} clashes with a score column of the pool")
        column = sum(w * self.target_scores(t) for t, w in weights.items())
        return MixturePool(
            self.mixtures, np.column_stack([self.scores, column]), self.domains, (*self.targets, name)
        )


def parse_composite(spec: str, targets: Sequence[str]) -> tuple[str, dict[str, float]]:
    """`NAME=mean(COL,COL,...)`, `NAME=mean(*)` (every column) or `NAME=W*COL+W*COL` (a weighted sum)
    -> (NAME, {column: weight}). Columns must be score columns of the pool."""
    name, sep, body = spec.partition("=")
    name, body = name.strip(), body.strip()
    if not sep or not name or not body:
        raise ClimbInputError(f"composite target {spec!r}: expected NAME=mean(COL,...) or NAME=W*COL+W*COL")
    if body.startswith("mean(") and body.endswith(")"):
        cols = [c.strip() for c in body[5:-1].split(",") if c.strip()]
        cols = list(targets) if cols == ["*"] else cols
        weights = {c: 1.0 / len(cols) for c in cols} if cols else {}
    else:
        weights = {}
        for term in body.split("+"):
            w, star, col = term.partition("*")
            try:
                weight = float(w)
            except ValueError:
                raise ClimbInputError(
                    f"composite target {spec!r}: weight {w.strip()!r} is not a number"
                ) from None
            if not star or not col.strip():
                raise ClimbInputError(f"composite target {spec!r}: term {term.strip()!r} is not W*COL")
            weights[col.strip()] = weights.get(col.strip(), 0.0) + weight
    if not weights:
        raise ClimbInputError(f"composite target {spec!r} names no columns")
    unknown = [c for c in weights if c not in targets]
    if unknown:
        raise ClimbInputError(
            f"composite target {spec!r}: {unknown} are not score columns; have {list(targets)}"
        )
    return name, weights


def _read_csv(path: Path) -> tuple[list[str], np.ndarray]:
    import polars as pl

    if not path.exists():
        raise ClimbInputError(f"pool file not found: {path}")
    df = pl.read_csv(path)
    if df.width < 2:
        raise ClimbInputError(f"{path}: expected an index column and at least one value column")
    cols = df.columns[1:]
    try:
        values = df.select(cols).cast(pl.Float64).to_numpy()
    except Exception as exc:  # polars raises several types for unparsable cells
        raise ClimbInputError(f"{path}: non-numeric value in columns {cols}: {exc}") from exc
    return cols, values


def read_pool(mixture_paths: Sequence[str | Path], score_paths: Sequence[str | Path]) -> MixturePool:
    """Read paired CSVs (first column an index) and concatenate them into one pool.

    Weight rows are renormalised (the files round to 3 decimals); a row further than 1% from
    summing to 1, a negative or missing value, or mismatched columns/rows raise ClimbInputError.
    """
    if len(mixture_paths) != len(score_paths) or not mixture_paths:
        raise ClimbInputError(
            "need as many mixture files as score files (>= 1), "
            f"got {len(mixture_paths)} and {len(score_paths)}"
        )
    mixes, scores, domains, targets = [], [], None, None
    for mp, sp in zip(mixture_paths, score_paths, strict=True):
        mp, sp = Path(mp), Path(sp)
        d, m = _read_csv(mp)
        t, s = _read_csv(sp)
        if domains is not None and d != domains:
            raise ClimbInputError(f"{mp}: weight columns {d} differ from the first file's {domains}")
        if targets is not None and t != targets:
            raise ClimbInputError(f"{sp}: score columns {t} differ from the first file's {targets}")
        if m.shape[0] != s.shape[0]:
            raise ClimbInputError(f"{mp} has {m.shape[0]} rows but {sp} has {s.shape[0]}")
        validate_mixtures(m, source=str(mp), atol=READ_SUM_TOLERANCE)
        bad = ~np.isfinite(s)
        if bad.any():
            r, c = np.argwhere(bad)[0]
            raise ClimbInputError(f"{sp}: row {r} column {t[c]!r} has score {s[r, c]}")
        domains, targets = d, t
        mixes.append(m / m.sum(axis=1, keepdims=True))
        scores.append(s)
    return MixturePool(np.vstack(mixes), np.vstack(scores), tuple(domains), tuple(targets))


class PoolLookup:
    """`evaluate(mixtures) -> scores` for rows of a pool (exact match); counts every call."""

    def __init__(self, mixtures: np.ndarray, scores: np.ndarray) -> None:
        self._index = {np.ascontiguousarray(row).tobytes(): i for i, row in enumerate(np.asarray(mixtures))}
        self._scores = np.asarray(scores, dtype=np.float64)
        self.n_evaluated = 0

    def __call__(self, mixtures: np.ndarray) -> np.ndarray:
        out = np.empty(len(mixtures))
        for j, row in enumerate(np.asarray(mixtures, dtype=np.float64)):
            i = self._index.get(np.ascontiguousarray(row).tobytes())
            if i is None:
                raise ClimbInputError(f"mixture {row.round(4).tolist()} is not in the pool")
            out[j] = self._scores[i]
        self.n_evaluated += len(out)
        return out


def regret(final_score: float, pool_scores: np.ndarray, direction: str = Direction.MINIMIZE) -> float:
    """How much worse the final mixture's true score is than the pool's best (>= 0)."""
    return check_direction(direction).regret(final_score, pool_scores)
