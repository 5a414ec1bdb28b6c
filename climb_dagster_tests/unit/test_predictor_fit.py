"""Out-of-fold predictions of the round predictor: what the fit table, the plot and the warning check show."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from climb_dagster.core import bootstrap, schema
from climb_dagster.core.plots import predicted_vs_actual_png
from climb_dagster.core.rounds import OOF_PREDICTED, PREDICTED, fit_table, oof_spearman_check
from climb_dagster.core.search.predictor import (
    PredictorConfig,
    cross_val_predictions,
    fit_predictor,
    spearman,
)


def _evals(n: int, seed: int, status: list[str] | None = None):
    rng = np.random.default_rng(seed)
    w = rng.dirichlet(np.ones(3), n)
    records = [
        {
            schema.MIXTURE_ID: f"m{seed}-{i}",
            schema.PROXY_KEY: f"k{seed}-{i}",
            schema.STATUS: (status or [schema.OK] * n)[i],
            schema.REASON: "" if (status or [schema.OK] * n)[i] == schema.OK else "diverged",
            schema.SCORE: float(w[i] @ np.array([1.0, 2.0, 3.0]))
            if (status or [schema.OK] * n)[i] == "ok"
            else None,
            schema.WEIGHTS: w[i].tolist(),
        }
        for i in range(n)
    ]
    return bootstrap.evaluations_table(records, 3)


def test_fit_table_holds_in_sample_and_out_of_fold_predictions_of_every_scored_proxy():
    evals = [_evals(8, 1), _evals(4, 2, [schema.OK, schema.FAILED, schema.OK, schema.OK])]
    hm, hs, _ = bootstrap.history(evals)
    fitted = fit_predictor(hm, hs, "minimize", 0, PredictorConfig(n_models=2), cv_folds=4)
    table = fit_table(evals, fitted, fitted.predict(hm))
    assert table.height == 11 and "m2-1" not in table[schema.MIXTURE_ID].to_list()
    np.testing.assert_array_equal(table[schema.SCORE].to_numpy(), hs)
    np.testing.assert_array_equal(table[PREDICTED].to_numpy(), fitted.predict(hm))
    np.testing.assert_array_equal(table[OOF_PREDICTED].to_numpy(), fitted.metadata["cv_predictions"])
    assert fitted.metadata["cv_spearman"] == spearman(table[OOF_PREDICTED].to_numpy(), hs)
    np.testing.assert_array_equal(bootstrap.table_mixtures(table), hm)
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
