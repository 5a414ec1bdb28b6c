"""The round decisions without Dagster (core/search/rounds.py): history, checks, the out-of-fold fit table and
plot; core configs from Dagster configs; the timer."""

from __future__ import annotations

import time
from types import SimpleNamespace

import numpy as np
import polars as pl
import pytest

from climb_dagster.core.common import schema
from climb_dagster.core.common.configs import core_config
from climb_dagster.core.common.timing import Timer
from climb_dagster.core.proxy import jobs as proxy_jobs
from climb_dagster.core.proxy.records import ProxyOutcome
from climb_dagster.core.quality.pruning import PruneConfig
from climb_dagster.core.report.plots import predicted_vs_actual_png
from climb_dagster.core.search import history as search_history
from climb_dagster.core.search.predictor import (
    PredictorConfig,
    cross_val_predictions,
    fit_predictor,
    spearman,
)
from climb_dagster.core.search.rounds import (
    OOF_PREDICTED,
    PREDICTED,
    cv_folds,
    fit_table,
    history_for_proposal,
    oof_spearman_check,
    unexplained_scores,
    weights_valid,
)


def _evals(scores: list[float | None], status: list[str], reason: list[str]) -> pl.DataFrame:
    weights = np.array([[0.5, 0.5], [0.9, 0.1], [0.2, 0.8]])[: len(scores)]
    table = search_history.mixtures_table(1, weights, [f"k{i}" for i in range(len(scores))])
    return table.with_columns(
        pl.Series(schema.SCORE, scores, dtype=pl.Float64),
        pl.Series(schema.STATUS, status),
        pl.Series(schema.REASON, reason),
    )


def test_failed_proxies_get_the_worst_score_for_proposals():
    evals = _evals([2.0, None, 3.0], ["ok", "failed", "ok"], ["", "diverged", ""])
    hm, hs = history_for_proposal([evals], "minimize")
    assert hm.shape == (3, 2) and hs.tolist() == [2.0, 3.0, 3.0]
    assert history_for_proposal([evals], "maximize")[1].tolist() == [2.0, 2.0, 3.0]
    assert history_for_proposal([evals.clear()], "minimize") == (None, None)


def test_unexplained_scores_names_the_rows():
    evals = _evals([float("nan"), None, 1.0], ["ok", "failed", "failed"], ["", "", "diverged"])
    assert unexplained_scores([evals]) == ["r1-000", "r1-001"]


def test_weights_valid_and_folds():
    good = search_history.mixtures_table(2, np.array([[0.25, 0.75]]), ["k"])
    assert weights_valid(good, 2) == (True, {"n_clusters": 2, "max_abs_sum_error": 0.0})
    assert weights_valid(good, 3)[0] is False
    assert [cv_folds(n) for n in (2, 3, 4, 9)] == [0, 0, 4, 5]


def test_core_config_takes_every_field_or_names_the_stray_one():
    assert core_config(PruneConfig, {"threshold": 2.5, "min_docs": 3}) == PruneConfig(2.5, 3)
    with pytest.raises(TypeError, match="top_terms"):
        core_config(PruneConfig, {"threshold": 2.5, "top_terms": 3})
    assert (
        core_config(PruneConfig, {"threshold": 2.5, "top_terms": 3}, exclude=("top_terms",)).threshold == 2.5
    )


def test_timer_runs_until_its_block_ends():
    with Timer() as timer:
        time.sleep(0.01)
    frozen = timer.seconds
    assert frozen >= 0.01 and timer.seconds == frozen and timer.rounded(1) == round(frozen, 1)
    live = Timer()
    first = live.seconds
    time.sleep(0.005)
    assert live.seconds > first


def test_round_progress_says_which_round_improved():
    from climb_dagster.core.common.direction import Direction
    from climb_dagster.core.search.rounds import round_progress

    summaries = [
        {"best_observed_score": 5.0, "cv_spearman": None},
        {"best_observed_score": 5.0, "cv_spearman": -0.3},
        {"best_observed_score": 4.5, "cv_spearman": 0.6},
    ]
    rows = round_progress(summaries, Direction.MINIMIZE)
    assert [r["improved"] for r in rows] == [None, False, True]
    assert [r["oof_spearman"] for r in rows] == [None, -0.3, 0.6] and rows[2]["best_observed"] == 4.5
    assert [r["improved"] for r in round_progress(summaries, Direction.MAXIMIZE)] == [None, False, False]
    assert "round_median" not in rows[0]


def test_round_progress_reports_each_rounds_median_of_successful_proxies():
    import polars as pl

    from climb_dagster.core.common import schema
    from climb_dagster.core.common.direction import Direction
    from climb_dagster.core.search.rounds import round_progress

    def evals(scores, statuses):
        return pl.DataFrame({schema.SCORE: scores, schema.STATUS: statuses})

    summaries = [{"best_observed_score": 5.0}, {"best_observed_score": 5.0}, {"best_observed_score": 5.0}]
    tables = [
        evals([5.0, 7.0, 9.0], [schema.OK] * 3),
        evals([5.5, 100.0, 6.5], [schema.OK, "diverged", schema.OK]),
        evals([None], ["failed"]),
    ]
    rows = round_progress(summaries, Direction.MINIMIZE, tables)
    assert [r["round_median"] for r in rows] == [7.0, 6.0, None]


def _oof_evals(n: int, seed: int, status: list[str] | None = None):
    rng = np.random.default_rng(seed)
    w = rng.dirichlet(np.ones(3), n)
    status = status or [schema.OK] * n
    outcomes = [
        ProxyOutcome(
            mixture_id=f"m{seed}-{i}",
            proxy_key=f"k{seed}-{i}",
            status=status[i],
            reason="" if status[i] == schema.OK else "diverged",
            score=float(w[i] @ np.array([1.0, 2.0, 3.0])) if status[i] == schema.OK else None,
            train_loss=None,
            tokens=1000,
            steps=10,
            wall_s=1.0,
            tokens_per_s=1000.0,
            n_params=100,
            weights=w[i],
        )
        for i in range(n)
    ]
    return proxy_jobs.evaluations_table(outcomes, 3)


def test_fit_table_holds_in_sample_and_out_of_fold_predictions_of_every_scored_proxy():
    evals = [_oof_evals(8, 1), _oof_evals(4, 2, [schema.OK, schema.FAILED, schema.OK, schema.OK])]
    hm, hs, _ = search_history.history(evals)
    fitted = fit_predictor(hm, hs, "minimize", 0, PredictorConfig(n_models=2), cv_folds=4)
    table = fit_table(evals, fitted, fitted.predict(hm))
    assert table.height == 11 and "m2-1" not in table[schema.MIXTURE_ID].to_list()
    np.testing.assert_array_equal(table[schema.SCORE].to_numpy(), hs)
    np.testing.assert_array_equal(table[PREDICTED].to_numpy(), fitted.predict(hm))
    np.testing.assert_array_equal(table[OOF_PREDICTED].to_numpy(), fitted.metadata["cv_predictions"])
    assert fitted.metadata["cv_spearman"] == spearman(table[OOF_PREDICTED].to_numpy(), hs)
    np.testing.assert_array_equal(search_history.table_mixtures(table), hm)
    png = predicted_vs_actual_png(table[PREDICTED].to_numpy(), hs, "t", table[OOF_PREDICTED].to_numpy())
    assert png.startswith(b"\x89PNG")


def test_out_of_fold_prediction_never_sees_its_row():
    """Identical mixtures: a model fitted without row i predicts the mean of the others (leave-one-out)."""
    x = np.full((5, 3), 1 / 3)
    y = np.array([1.0, 2.0, 4.0, 8.0, 16.0])
    oof = cross_val_predictions(x, y, PredictorConfig(), seed=0, folds=5)
    np.testing.assert_allclose(oof, (y.sum() - y) / 4, rtol=1e-9)
    assert spearman(oof, y) == pytest.approx(-1.0)


def test_oof_check_fails_at_or_below_zero_and_when_undefined():
    def check(cv):
        return oof_spearman_check(SimpleNamespace(metadata={} if cv == "absent" else {"cv_spearman": cv}))

    assert check(0.4) == (True, {"oof_spearman": 0.4})
    assert check(0.0)[0] is False and check(-0.7)[0] is False
    assert check(float("nan"))[0] is False
    passed, seen = check("absent")
    assert passed and "not computed" in seen["oof_spearman"]
