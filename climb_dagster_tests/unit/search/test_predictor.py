"""The LightGBM predictor: fit, direction, persistence, early stopping on the training rows only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.search.predictor import (
    Predictor,
    PredictorConfig,
    cross_val_spearman,
    fit_predictor,
    spearman,
)
from climb_dagster.core.search.sampling import sample_mixtures


def _loss(m: np.ndarray) -> np.ndarray:
    # A loss that falls with the log-share of cluster 0 and rises with cluster 3: learnable, monotone.
    return 3.0 - 0.5 * np.log(m[:, 0] + 0.01) + 2.0 * m[:, 3]


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    x = sample_mixtures(120, 5, seed=0)
    return x, _loss(x)


def test_fit_generalises_to_fresh_mixtures(data: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = data
    p = fit_predictor(x, y, "minimize", seed=0)
    xt = sample_mixtures(300, 5, seed=1, exclude=x)
    assert spearman(p.predict(xt), _loss(xt)) > 0.85
    assert p.metadata["n_rows"] == 120


def test_direction_picks_the_right_end(data: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = data
    lo = fit_predictor(x, y, "minimize", seed=0)
    hi = fit_predictor(x, -y, "maximize", seed=0)
    pred = lo.predict(x)
    assert lo.best(x) == int(np.argmin(pred))
    assert hi.best(x) == int(np.argmax(hi.predict(x)))
    assert lo.best(x) == hi.best(x)
    assert lo.rank(x)[0] == lo.best(x)


def test_save_load_round_trip_is_identical(tmp_path: Path, data: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = data
    p = fit_predictor(
        x, y, "maximize", seed=3, config=PredictorConfig(n_models=3), feature_names=list("abcde")
    )
    d = p.save(tmp_path / "pred")
    assert sorted(f.name for f in d.iterdir()) == [
        "model_000.txt",
        "model_001.txt",
        "model_002.txt",
        "predictor.json",
    ]
    q = Predictor.load(d)
    assert q.direction == "maximize" and q.feature_names == list("abcde")
    assert np.array_equal(p.predict_members(x), q.predict_members(x))
    assert q.metadata["best_iterations"] == p.metadata["best_iterations"]
    models, sidecar = p.to_strings()
    assert np.array_equal(Predictor.from_strings(models, sidecar).predict(x), p.predict(x))


def test_load_missing_files_raises(tmp_path: Path, data: tuple[np.ndarray, np.ndarray]) -> None:
    with pytest.raises(ClimbInputError, match="predictor.json"):
        Predictor.load(tmp_path)
    x, y = data
    d = fit_predictor(x, y, seed=0, config=PredictorConfig(n_models=2)).save(tmp_path / "p")
    (d / "model_001.txt").unlink()
    with pytest.raises(ClimbInputError, match="model_001.txt"):
        Predictor.load(d)


def test_same_seed_same_model(data: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = data
    a = fit_predictor(x, y, seed=5, config=PredictorConfig(n_models=2))
    b = fit_predictor(x, y, seed=5, config=PredictorConfig(n_models=2))
    assert a.to_strings() == b.to_strings()


def test_ensemble_std_is_positive_and_members_differ(data: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = data
    p = fit_predictor(x, y, seed=0, config=PredictorConfig(n_models=4))
    mean, std = p.predict_std(x)
    assert np.allclose(mean, p.predict(x))
    assert std.max() > 0
    assert len(p.boosters) == 4


def test_early_stopping_holds_out_training_rows_only(
    monkeypatch: pytest.MonkeyPatch, data: tuple[np.ndarray, np.ndarray]
) -> None:
    import lightgbm as lgb

    x, y = data
    seen: list[tuple[np.ndarray, list[np.ndarray]]] = []
    real_train = lgb.train

    def spy(params, train_set, num_boost_round, valid_sets=(), callbacks=None):
        seen.append((np.asarray(train_set.data), [np.asarray(v.data) for v in valid_sets]))
        return real_train(params, train_set, num_boost_round, valid_sets=valid_sets, callbacks=callbacks)

    monkeypatch.setattr(lgb, "train", spy)
    p = fit_predictor(x, y, seed=0, config=PredictorConfig(n_models=2))
    assert len(seen) == 2
    rows = {r.tobytes() for r in x}
    for train, valids in seen:
        assert len(valids) == 1
        valid = valids[0]
        # Hold-out and training part partition the rows we passed in, nothing else.
        assert {r.tobytes() for r in valid} <= rows and {r.tobytes() for r in train} <= rows
        assert len(valid) + len(train) == len(x)
        assert not {r.tobytes() for r in valid} & {r.tobytes() for r in train}
    assert all(0 < b < 1000 for b in p.metadata["best_iterations"])


def test_tiny_history_still_fits() -> None:
    x = sample_mixtures(6, 4, seed=0)
    p = fit_predictor(x, _loss(np.hstack([x, np.zeros((6, 1))])), seed=0)
    assert p.predict(x).shape == (6,)
    assert p.metadata["best_iterations"] == [PredictorConfig().fallback_rounds]


def test_cross_validated_spearman(data: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = data
    assert cross_val_spearman(x, y, PredictorConfig(), seed=0, folds=4) > 0.8
    p = fit_predictor(x, y, seed=0, cv_folds=3)
    assert p.metadata["cv_spearman"] > 0.8


def test_bad_inputs_raise_with_value(data: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = data
    y_bad = y.copy()
    y_bad[7] = np.nan
    with pytest.raises(ClimbInputError, match="row 7 is nan"):
        fit_predictor(x, y_bad)
    with pytest.raises(ClimbInputError, match="'sideways'"):
        fit_predictor(x, y, direction="sideways")
    with pytest.raises(ClimbInputError, match=r"\[n, 5\]"):
        fit_predictor(x, y, seed=0).predict(np.ones((2, 3)) / 3)
    with pytest.raises(ClimbInputError, match="max_depth out of range: 0"):
        PredictorConfig(max_depth=0)


def test_trees_get_shallower_on_small_histories() -> None:
    from climb_dagster.core.search.predictor import lgb_params, tree_depth

    cfg = PredictorConfig()
    assert [tree_depth(cfg, n) for n in (5, 12, 24, 32, 63, 64, 10_000)] == [1, 1, 2, 3, 3, 4, 4]
    assert tree_depth(PredictorConfig(depth_rows=0), 5) == cfg.max_depth == 4
    params = lgb_params(cfg, 24, 0)
    assert params["max_depth"] == 2 and params["num_leaves"] == 4
    assert lgb_params(cfg, 10_000, 0)["num_leaves"] == cfg.num_leaves
    with pytest.raises(ClimbInputError, match="depth_rows out of range: -1"):
        PredictorConfig(depth_rows=-1)
