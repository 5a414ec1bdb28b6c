"""The round decisions without Dagster (core/rounds.py), core configs from Dagster configs, the timer."""

from __future__ import annotations

import time

import numpy as np
import polars as pl
import pytest

from climb_dagster.core import bootstrap, schema
from climb_dagster.core.configs import core_config
from climb_dagster.core.quality.pruning import PruneConfig
from climb_dagster.core.rounds import cv_folds, history_for_proposal, unexplained_scores, weights_valid
from climb_dagster.core.timing import Timer


def _evals(scores: list[float | None], status: list[str], reason: list[str]) -> pl.DataFrame:
    weights = np.array([[0.5, 0.5], [0.9, 0.1], [0.2, 0.8]])[: len(scores)]
    table = bootstrap.mixtures_table(1, weights, [f"k{i}" for i in range(len(scores))])
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
    good = bootstrap.mixtures_table(2, np.array([[0.25, 0.75]]), ["k"])
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
    from climb_dagster.core.direction import Direction
    from climb_dagster.core.rounds import round_progress

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

    from climb_dagster.core import schema
    from climb_dagster.core.direction import Direction
    from climb_dagster.core.rounds import round_progress

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
