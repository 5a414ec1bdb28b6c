"""The Gaussian-process predictor (kind="gp"): it ranks unseen mixtures from few rows, its
fitted noise shrinks a lucky score toward its neighbours', it round-trips through JSON, and the "denoised" pick."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.search.predictor import Predictor, PredictorConfig, fit_predictor, spearman
from climb_dagster.core.search.sampling import sample_mixtures
from climb_dagster.core.search.strategies import default_strategy
from climb_dagster.core.search.strategies.picks import final_pick

GP = PredictorConfig(kind="gp")


def _loss(m: np.ndarray) -> np.ndarray:
    # Smooth, with its optimum inside the simplex: the shape of a proxy loss over a mixture.
    return 3.0 + 2.0 * (m[:, 0] - 0.4) ** 2 + 1.5 * m[:, 3] - 0.5 * m[:, 1]


def test_a_gp_ranks_fresh_mixtures_from_eleven_rows() -> None:
    # (Whether it ranks better than LightGBM on real proxy scores is measured in docs/results-e2e.md, not here: on
    # this noise-free function the 8 trees do as well.)
    x, xt = sample_mixtures(11, 8, seed=0), sample_mixtures(500, 8, seed=1)
    gp = fit_predictor(x, _loss(x), "minimize", seed=0, config=GP)
    assert spearman(gp.predict(xt), _loss(xt)) > 0.6
    assert gp.kind == "gp" and gp.metadata["gp"]["length_scale"] > 0


def test_the_fitted_noise_shrinks_a_lucky_score_toward_its_neighbours() -> None:
    rng = np.random.default_rng(3)
    x = sample_mixtures(40, 4, seed=2)
    y = _loss(x) + rng.normal(0.0, 0.05, size=40)
    y[7] = y.min() - 0.5  # one proxy far luckier than its neighbourhood
    gp = fit_predictor(x, y, "minimize", seed=0, config=GP)
    assert gp.metadata["gp"]["noise"] > 1e-3
    assert int(np.argmin(y)) == 7 and gp.predict(x[7:8])[0] > y[7] + 0.4
    # The denoised answer is an evaluated mixture, and not the lucky one.
    config = replace(default_strategy("climb", 40, "minimize"), final="denoised")
    answer = final_pick(config, gp, x, y, seed=0)
    assert min(np.abs(x - answer).sum(axis=1)) < 1e-12
    assert np.abs(answer - x[7]).sum() > 1e-6


def test_posterior_std_grows_away_from_the_evaluated_mixtures() -> None:
    x = sample_mixtures(12, 5, seed=4)
    gp = fit_predictor(x, _loss(x), "minimize", seed=0, config=GP)
    far = np.eye(5)
    _, near_std = gp.predict_std(x)
    _, far_std = gp.predict_std(far)
    assert near_std.mean() < far_std.mean()
    assert gp.rank(far, kappa=0.0).shape == (5,)


def test_a_gp_round_trips_through_json_without_pickle(tmp_path: Path) -> None:
    x = sample_mixtures(15, 6, seed=5)
    gp = fit_predictor(x, _loss(x), "minimize", seed=0, config=GP)
    gp.save(tmp_path / "p")
    text = (tmp_path / "p" / "model_000.txt").read_text()
    assert json.loads(text)["kind"] == "gp"
    back = Predictor.load(tmp_path / "p")
    xt = sample_mixtures(50, 6, seed=6)
    np.testing.assert_array_equal(back.predict(xt), gp.predict(xt))
    np.testing.assert_array_equal(back.predict_std(xt)[1], gp.predict_std(xt)[1])


def test_a_gp_is_deterministic_and_its_settings_are_checked() -> None:
    x = sample_mixtures(11, 8, seed=7)
    a = fit_predictor(x, _loss(x), "minimize", seed=0, config=GP)
    b = fit_predictor(x, _loss(x), "minimize", seed=9, config=GP)
    np.testing.assert_array_equal(a.predict(x), b.predict(x))
    with pytest.raises(ClimbInputError, match="one model"):
        PredictorConfig(kind="gp", n_models=8)
    with pytest.raises(ClimbInputError, match="kind"):
        PredictorConfig(kind="forest")
