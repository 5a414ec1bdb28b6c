"""What the round assets decide, without Dagster: the history a proposal sees, which evaluation rows are
unexplained, whether a mixtures table is valid, and the summary of a fitted predictor."""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from climb_dagster.core.common import schema
from climb_dagster.core.common.artifacts import ModelText
from climb_dagster.core.common.direction import Direction
from climb_dagster.core.search.history import table_mixtures
from climb_dagster.core.search.predictor import Predictor

CV_FOLDS = 5
# Columns of fit_table besides the mixture id, score and weights.
PREDICTED = "predicted"
OOF_PREDICTED = "oof_predicted"


def load_predictor(model: ModelText):

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


def fit_table(evals: list[pl.DataFrame], fitted: Any, in_sample: np.ndarray) -> pl.DataFrame:
    """Every successful proxy so far (rows of `bootstrap.history`, in its order): mixture id, observed
    score, the predictor's in-sample and out-of-fold predictions (null without cross-validation), weights."""
    frames = [f for f in evals if f.height]
    rows = pl.concat(frames, how="diagonal_relaxed").filter(pl.col(schema.STATUS) == schema.OK)
    oof = fitted.metadata.get("cv_predictions")
    return pl.DataFrame(
        {
            schema.MIXTURE_ID: rows[schema.MIXTURE_ID],
            schema.SCORE: rows[schema.SCORE],
            PREDICTED: in_sample.astype(np.float64),
            OOF_PREDICTED: pl.Series(oof if oof is not None else [None] * rows.height, dtype=pl.Float64),
        }
    ).hstack(rows.select(schema.weight_columns_of(rows.columns)))


def oof_spearman_check(fitted: Any) -> tuple[bool, dict[str, Any]]:
    """Whether the predictor ranks held-out mixtures better than chance (out-of-fold Spearman > 0), and
    what the check saw. Without cross-validation (fewer than 4 scored proxies) it passes and says so."""
    cv = fitted.metadata.get("cv_spearman")
    if cv is None:
        return True, {"oof_spearman": "not computed: fewer than 4 scored proxies"}
    if not np.isfinite(cv):
        return False, {"oof_spearman": "undefined: constant out-of-fold predictions"}
    return bool(cv > 0), {"oof_spearman": float(cv)}


def round_progress(
    summaries: list[dict[str, Any]], direction: Direction, evaluations: list[pl.DataFrame] | None = None
) -> list[dict[str, Any]]:
    """Per round, from its predictor summary: the best observed score so far, the predictor's out-of-fold
    Spearman, and whether the round improved on the best before it (None for round 1). With the rounds'
    `evaluations`, also the median score of the round's own successful proxies: a search that learns moves
    it even when no single proxy beats a lucky round-1 draw."""
    out: list[dict[str, Any]] = []
    previous = None
    for k, summary in enumerate(summaries, start=1):
        best = float(summary["best_observed_score"])
        row = {
            "round": k,
            "best_observed": best,
            "oof_spearman": summary.get("cv_spearman"),
            "improved": None if previous is None else direction.better(best, previous),
        }
        if evaluations is not None:
            table = evaluations[k - 1]
            scores = table.filter(pl.col(schema.STATUS) == schema.OK)[schema.SCORE].to_numpy()
            row["round_median"] = float(np.median(scores)) if scores.size else None
        out.append(row)
        previous = best
    return out
