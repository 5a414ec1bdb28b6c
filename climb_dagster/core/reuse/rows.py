"""Earlier experiments' proxy runs as rows of a new search: each finished run with a composition, re-expressed
over the new super-clusters (`reexpress`), kept when its error is within the threshold. What was left out, and
why, is counted, so no evidence is dropped silently.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from climb_dagster.core.common import schema
from climb_dagster.core.proxy.composition import Composition
from climb_dagster.core.reuse.mapping import ClusterMap
from climb_dagster.core.reuse.reexpress import DEFAULT_MAX_ERROR, reexpress

# Why a past run is not reused.
FAILED, NO_COMPOSITION, TOO_UNCERTAIN, DUPLICATE = (
    "failed",
    "no composition",
    "error above threshold",
    "duplicate",
)


@dataclass(frozen=True)
class ReusedRows:
    """mixtures [m, K] over the new super-clusters, their scores, and per row the experiment it came from, its
    proxy key and its re-expression error; `excluded`: runs left out per reason; `max_error`: the threshold."""

    mixtures: np.ndarray
    scores: np.ndarray
    sources: tuple[str, ...]
    proxy_keys: tuple[str, ...]
    errors: np.ndarray
    max_error: float
    excluded: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.scores.size)

    def summary(self) -> dict[str, Any]:
        by_source: dict[str, int] = {}
        for s in self.sources:
            by_source[s] = by_source.get(s, 0) + 1
        seen = len(self) + sum(v for k, v in self.excluded.items() if k != DUPLICATE)
        return {
            "reused": len(self),
            "past_runs": seen,
            "reused_share": len(self) / seen if seen else 0.0,
            "by_experiment": by_source,
            "excluded": dict(self.excluded),
            "mean_error": float(self.errors.mean()) if len(self) else None,
            "max_error": self.max_error,
        }


def reuse_rows(
    evaluations: Iterable[tuple[str, Any]], cmap: ClusterMap, max_error: float = DEFAULT_MAX_ERROR
) -> ReusedRows:
    """Rows of the earlier experiments' evaluation tables ((experiment, table) pairs: weight columns, status,
    score, proxy_key, composition) that can be reused over `cmap`'s new super-clusters. A run met twice (two
    experiments shared it through the proxy cache) counts once. Scores are what those searches saw: the
    search target's, never a held-out test split."""
    rows, scores, sources, keys, errors = [], [], [], [], []
    excluded: dict[str, int] = {}
    seen: set[str] = set()

    def skip(reason: str) -> None:
        excluded[reason] = excluded.get(reason, 0) + 1

    for experiment, table in evaluations:
        weight_cols = schema.weight_columns_of(table.columns)
        has_comp = schema.COMPOSITION in table.columns
        for row in table.iter_rows(named=True):
            key = str(row[schema.PROXY_KEY])
            if key in seen:
                skip(DUPLICATE)
                continue
            seen.add(key)
            if row[schema.STATUS] != schema.OK or row.get(schema.SCORE) is None:
                skip(FAILED)
                continue
            if not has_comp or not row[schema.COMPOSITION]:
                skip(NO_COMPOSITION)
                continue
            comp = Composition.from_dict(json.loads(row[schema.COMPOSITION]))
            again = reexpress(comp, np.array([row[c] for c in weight_cols]), cmap, max_error)
            if not again.usable:
                skip(TOO_UNCERTAIN)
                continue
            rows.append(again.weights)
            scores.append(float(row[schema.SCORE]))
            sources.append(str(experiment))
            keys.append(key)
            errors.append(again.error)
    return ReusedRows(
        mixtures=np.asarray(rows).reshape(-1, cmap.n_new),
        scores=np.asarray(scores, dtype=np.float64),
        sources=tuple(sources),
        proxy_keys=tuple(keys),
        errors=np.asarray(errors, dtype=np.float64),
        max_error=max_error,
        excluded=excluded,
    )


def merge_rows(parts: list[ReusedRows], k: int, max_error: float) -> ReusedRows:
    """Rows of several earlier experiments (each re-expressed through its own store's map) as one set; a run
    two experiments shared through the proxy cache counts once."""
    keep: list[tuple[ReusedRows, int]] = []
    seen: set[str] = set()
    excluded: dict[str, int] = {}
    for part in parts:
        for reason, n in part.excluded.items():
            excluded[reason] = excluded.get(reason, 0) + n
        for i, key in enumerate(part.proxy_keys):
            if key in seen:
                excluded[DUPLICATE] = excluded.get(DUPLICATE, 0) + 1
                continue
            seen.add(key)
            keep.append((part, i))
    return ReusedRows(
        mixtures=np.asarray([p.mixtures[i] for p, i in keep]).reshape(-1, k),
        scores=np.asarray([p.scores[i] for p, i in keep], dtype=np.float64),
        sources=tuple(p.sources[i] for p, i in keep),
        proxy_keys=tuple(p.proxy_keys[i] for p, i in keep),
        errors=np.asarray([p.errors[i] for p, i in keep], dtype=np.float64),
        max_error=max_error,
        excluded=excluded,
    )
