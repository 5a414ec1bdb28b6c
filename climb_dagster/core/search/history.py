"""Mixture tables of a round and the search history (mixtures, scores) read back from its evaluations."""

from __future__ import annotations

import numpy as np
import polars as pl

from climb_dagster.core.common import schema
from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.common.schema import weight_columns
from climb_dagster.core.search.sampling import validate_mixtures


def mixtures_table(round_number: int, mixtures: np.ndarray, keys: list[str]) -> pl.DataFrame:
    """One row per mixture: id, round, proxy run key and one weight column per super-cluster."""
    mixtures = validate_mixtures(
        mixtures, mixtures.shape[1] if mixtures.ndim == 2 else 0, source=f"round {round_number}"
    )
    ids = [f"r{round_number}-{i:03d}" for i in range(mixtures.shape[0])]
    frame = pl.DataFrame(
        {schema.MIXTURE_ID: ids, schema.ROUND: [round_number] * len(ids), schema.PROXY_KEY: keys}
    )
    weights = pl.DataFrame(mixtures, schema=weight_columns(mixtures.shape[1]), orient="row")
    return pl.concat([frame, weights], how="horizontal")


def table_mixtures(df: pl.DataFrame) -> np.ndarray:
    cols = schema.weight_columns_of(df.columns)
    if not cols:
        raise ClimbInputError(f"mixtures table has no weight columns (w_000, ...): columns {df.columns}")
    return df.select(cols).to_numpy().astype(np.float64)


def history(evaluations: list[pl.DataFrame]) -> tuple[np.ndarray, np.ndarray, int]:
    """Mixtures and scores of every successful proxy so far, plus the count of all proxies spent.

    Failed (diverged) proxies consumed budget but carry no score: they are excluded from the fit.
    """
    frames = [f for f in evaluations if f.height]
    if not frames:
        return np.zeros((0, 0)), np.zeros(0), 0
    all_rows = pl.concat(frames, how="diagonal_relaxed")
    ok = all_rows.filter(pl.col(schema.STATUS) == schema.OK)
    scores = ok[schema.SCORE].to_numpy().astype(np.float64)
    if not np.isfinite(scores).all():
        raise ClimbInputError("an evaluation marked ok has a non-finite score; refusing to fit on it")
    return table_mixtures(ok), scores, all_rows.height
