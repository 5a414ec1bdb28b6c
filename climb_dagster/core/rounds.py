"""What the round assets decide, without Dagster: the history a proposal sees, which evaluation rows are
unexplained, whether a mixtures table is valid, and the summary of a fitted predictor."""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from climb_dagster.core import schema
from climb_dagster.core.artifacts import ModelText
from climb_dagster.core.bootstrap import table_mixtures
from climb_dagster.core.direction import Direction

CV_FOLDS = 5


def load_predictor(model: ModelText):
    from climb_dagster.core.search.predictor import Predictor

    return Predictor.from_strings(list(model.texts), model.metadata["sidecar"])


def history_for_proposal(evals: list[pl.DataFrame], direction: str) -> tuple[np.ndarray, np.ndarray]:
    """Every evaluated mixture (failed ones included, so none is proposed again) with its score; a failed
    proxy gets the worst score seen, which keeps local search away from it."""
    frames = [f for f in evals if f.height]
    if not frames:
        return None, None
    rows = pl.concat(frames, how="diagonal_relaxed")
    scores = rows[schema.SCORE].to_numpy().astype(np.float64)
    ok = np.isfinite(scores) & (rows[schema.STATUS] == schema.OK).to_numpy()
    if ok.any():
        worst = Direction.parse(direction).worst(scores[ok])
        scores = np.where(ok, scores, worst)
    return table_mixtures(rows), scores


def unexplained_scores(evals: list[pl.DataFrame]) -> list[str]:
    """Mixture ids whose score is NaN/inf/missing while the row claims success, or failed without a reason."""
    bad = []
    for frame in evals:
        for row in frame.iter_rows(named=True):
            score = row[schema.SCORE]
            finite = score is not None and np.isfinite(score)
            if (row[schema.STATUS] == schema.OK and not finite) or (
                row[schema.STATUS] != schema.OK and not row[schema.REASON]
            ):
                bad.append(row[schema.MIXTURE_ID])
    return bad


def weights_valid(table: pl.DataFrame, n_clusters: int) -> tuple[bool, dict[str, Any]]:
    """Finite, >= 0, rows sum to 1 over all super-clusters; with what the check saw."""
    w = table_mixtures(table) if table.height else np.zeros((0, n_clusters))
    sums = w.sum(axis=1)
    valid = bool(
        w.shape[1] == n_clusters
        and np.isfinite(w).all()
        and (w >= 0).all()
        and np.allclose(sums, 1, atol=1e-6)
    )
    seen = {"n_clusters": w.shape[1], "max_abs_sum_error": float(np.abs(sums - 1).max()) if w.size else 0.0}
    return valid, seen


def cv_folds(n_successful: int) -> int:
    """Cross-validation folds for the predictor's Spearman estimate (none below 4 scored proxies)."""
    return min(CV_FOLDS, n_successful) if n_successful >= 4 else 0


def predictor_summary(
    fitted: Any, hm: np.ndarray, hs: np.ndarray, spent: int, direction: Direction
) -> tuple[dict[str, Any], np.ndarray]:
    """What a round's predictor is judged by (best observed, CV Spearman, predicted best, counts), and its
    in-sample predictions."""
    cv = fitted.metadata.get("cv_spearman")
    in_sample = fitted.predict(hm)
    summary = {
        "best_observed_score": float(hs[direction.argbest(hs)]),
        "cv_spearman": None if cv is None or not np.isfinite(cv) else float(cv),
        "predicted_best": float(in_sample[fitted.best(hm)]),
        "n_successful": int(hs.size),
        "n_spent": int(spent),
    }
    return summary, in_sample
