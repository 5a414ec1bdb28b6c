"""Mixture -> score predictor: a regularised LightGBM model, optionally a seeded ensemble, or a Gaussian process
(`kind="gp"`, core/search/gp.py); direction-aware.

Saved as LightGBM text or GP JSON (one file per ensemble member) plus a JSON sidecar; never pickled.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from climb_dagster.core.common.direction import Direction
from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.search.gp import GaussianProcess

SIDECAR = "predictor.json"
PREDICTOR_KINDS = ("lightgbm", "gp")


def check_direction(direction: str) -> Direction:
    return Direction.parse(direction)


@dataclass(frozen=True)
class PredictorConfig:
    """LightGBM settings (paper: max_depth 4, min_data_in_leaf 5, L1 + L2) and the ensemble size.

    Each ensemble member holds out its own random `valid_fraction` of the *training* rows for early
    stopping, so members differ and together see every row. Below `min_rows_for_early_stopping`
    rows there is no hold-out and members train `fallback_rounds` rounds on bootstrap-free data.
    """

    n_models: int = 1
    # "lightgbm" (the paper's) or "gp": one Gaussian process; the LightGBM settings below are then unused.
    kind: str = "lightgbm"
    learning_rate: float = 0.05
    num_boost_round: int = 1000
    early_stopping_rounds: int = 50
    valid_fraction: float = 0.2
    min_rows_for_early_stopping: int = 16
    fallback_rounds: int = 200
    max_depth: int = 4
    num_leaves: int = 15
    min_data_in_leaf: int = 5
    # Tiny histories: at most n_train // leaf_rows_divisor rows per leaf, so trees can still split.
    leaf_rows_divisor: int = 12
    # Small histories: each level of tree depth needs twice the rows, depth = log2(n_train / depth_rows)
    # clipped to [1, max_depth] (0 = always max_depth): 24 rows -> 2, 32-63 -> 3, 64+ -> 4. Chosen for
    # the out-of-fold Spearman of small proxy histories; RegMix's train pool cannot tell 0, 2 and 4 apart
    # (within one stderr) and finds 8 worse; see docs/results-search.md, "Predictor depth".
    depth_rows: int = 4
    lambda_l1: float = 0.01
    lambda_l2: float = 0.1
    feature_fraction: float = 1.0
    num_threads: int = 1

    def __post_init__(self) -> None:
        if self.kind not in PREDICTOR_KINDS:
            raise ClimbInputError(f"PredictorConfig.kind must be one of {PREDICTOR_KINDS}, got {self.kind!r}")
        if self.kind == "gp" and self.n_models != 1:
            raise ClimbInputError(f"PredictorConfig: a Gaussian process is one model, got n_models={self.n_models}")
        checks = {
            "n_models": self.n_models >= 1,
            "learning_rate": 0 < self.learning_rate <= 1,
            "num_boost_round": self.num_boost_round >= 1,
            "early_stopping_rounds": self.early_stopping_rounds >= 1,
            "valid_fraction": 0 < self.valid_fraction < 1,
            "min_rows_for_early_stopping": self.min_rows_for_early_stopping >= 2,
            "fallback_rounds": self.fallback_rounds >= 1,
            "max_depth": self.max_depth >= 1,
            "num_leaves": self.num_leaves >= 2,
            "min_data_in_leaf": self.min_data_in_leaf >= 1,
            "leaf_rows_divisor": self.leaf_rows_divisor >= 1,
            "depth_rows": self.depth_rows >= 0,
            "lambda_l1": self.lambda_l1 >= 0,
            "lambda_l2": self.lambda_l2 >= 0,
            "feature_fraction": 0 < self.feature_fraction <= 1,
            "num_threads": self.num_threads >= 1,
        }
        for name, ok in checks.items():
            if not ok:
                raise ClimbInputError(f"PredictorConfig.{name} out of range: {getattr(self, name)!r}")


def tree_depth(config: PredictorConfig, n_train: int) -> int:
    """The depth trees may use on `n_train` rows (see PredictorConfig.depth_rows)."""
    if config.depth_rows == 0:
        return config.max_depth
    return int(np.clip(np.floor(np.log2(max(n_train, 1) / config.depth_rows)), 1, config.max_depth))


def lgb_params(config: PredictorConfig, n_train: int, seed: int) -> dict[str, Any]:
    """LightGBM parameters; for tiny n trees get shallower and min_data_in_leaf shrinks so they still split."""
    depth = tree_depth(config, n_train)
    return {
        "objective": "regression",
        "learning_rate": config.learning_rate,
        "max_depth": depth,
        "num_leaves": max(2, min(config.num_leaves, 2**depth)),
        "min_data_in_leaf": max(1, min(config.min_data_in_leaf, n_train // config.leaf_rows_divisor)),
        "min_sum_hessian_in_leaf": 0.0,
        "min_data_in_bin": 1,
        "lambda_l1": config.lambda_l1,
        "lambda_l2": config.lambda_l2,
        "feature_fraction": config.feature_fraction,
        "feature_fraction_seed": seed,
        "seed": seed,
        "deterministic": True,
        "force_col_wise": True,
        "num_threads": config.num_threads,
        "verbose": -1,
        "feature_pre_filter": False,
    }


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation (average ranks for ties); NaN when either side is constant."""
    from scipy.stats import rankdata

    ra, rb = rankdata(a), rankdata(b)
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def _check_xy(mixtures: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(mixtures, dtype=np.float64)
    y = np.asarray(scores, dtype=np.float64).reshape(-1)
    if x.ndim != 2 or x.shape[0] != y.shape[0]:
        raise ClimbInputError(f"predictor: need mixtures [n, K] and n scores, got {x.shape} and {y.shape}")
    if x.shape[0] < 2:
        raise ClimbInputError(f"predictor: need at least 2 evaluated mixtures, got {x.shape[0]}")
    bad = ~np.isfinite(y)
    if bad.any():
        i = int(np.argmax(bad))
        raise ClimbInputError(f"predictor: score of row {i} is {y[i]}, expected a finite number")
    return x, y


@dataclass
class Predictor:
    """Ensemble of LightGBM boosters; `predict` is the member mean, `predict_std` adds the spread."""

    boosters: list[Any]
    direction: str
    feature_names: list[str]
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_direction(self.direction)

    @property
    def kind(self) -> str:
        return str(self.metadata.get("config", {}).get("kind", "lightgbm"))

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    def _x(self, mixtures: np.ndarray) -> np.ndarray:
        x = np.asarray(mixtures, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ClimbInputError(f"predictor expects mixtures [n, {self.n_features}], got shape {x.shape}")
        return x

    def predict_members(self, mixtures: np.ndarray) -> np.ndarray:
        """Predictions of every member, shape [n_models, n]."""
        x = self._x(mixtures)
        threads = int(self.metadata.get("config", {}).get("num_threads", 1))
        return np.stack([b.predict(x, num_threads=threads) for b in self.boosters])

    def predict(self, mixtures: np.ndarray) -> np.ndarray:
        return self.predict_members(mixtures).mean(axis=0)

    def predict_std(self, mixtures: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(mean, std) over members; std is 0 for a single LightGBM model, a GP's posterior std."""
        if self.kind == "gp":
            x = self._x(mixtures)
            return self.boosters[0].predict(x), self.boosters[0].predict_std(x)
        p = self.predict_members(mixtures)
        return p.mean(axis=0), p.std(axis=0)

    def goodness(self, values: np.ndarray) -> np.ndarray:
        """Values turned so that larger is better whatever the direction."""
        return Direction(self.direction).goodness(values)

    def rank(self, mixtures: np.ndarray, kappa: float = 0.0) -> np.ndarray:
        """Indices best-first by predicted mean plus `kappa` ensemble std of optimism."""
        mean, std = self.predict_std(mixtures)
        acq = self.goodness(mean) + kappa * std
        return np.argsort(-acq, kind="stable")

    def best(self, mixtures: np.ndarray) -> int:
        """Index of the predicted best row: lowest loss or highest accuracy."""
        return int(self.rank(mixtures)[0])

    # -- persistence: LightGBM text + JSON sidecar -------------------------------------------------
    def to_strings(self) -> tuple[list[str], str]:
        models = [b.model_to_string() for b in self.boosters]
        sidecar = {
            "direction": self.direction,
            "feature_names": self.feature_names,
            "n_models": len(models),
            "metadata": self.metadata,
        }
        return models, json.dumps(sidecar, indent=2, sort_keys=True)

    @classmethod
    def from_strings(cls, models: list[str], sidecar: str) -> Predictor:
        meta = json.loads(sidecar)
        if meta.get("n_models") != len(models):
            raise ClimbInputError(f"predictor sidecar lists {meta.get('n_models')} models, got {len(models)}")
        if meta.get("metadata", {}).get("config", {}).get("kind") == "gp":
            boosters = [GaussianProcess.from_string(s) for s in models]
        else:
            import lightgbm as lgb

            boosters = [lgb.Booster(model_str=s) for s in models]
        return cls(boosters, meta["direction"], list(meta["feature_names"]), meta.get("metadata", {}))

    def save(self, directory: str | Path) -> Path:
        """Write model_000.txt ... and predictor.json into `directory`; returns the directory."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        models, sidecar = self.to_strings()
        for i, s in enumerate(models):
            (d / f"model_{i:03d}.txt").write_text(s)
        (d / SIDECAR).write_text(sidecar)
        return d

    @classmethod
    def load(cls, directory: str | Path) -> Predictor:
        d = Path(directory)
        if not (d / SIDECAR).exists():
            raise ClimbInputError(f"no predictor sidecar {d / SIDECAR}")
        sidecar = (d / SIDECAR).read_text()
        n = json.loads(sidecar).get("n_models", 0)
        paths = [d / f"model_{i:03d}.txt" for i in range(n)]
        missing = [str(p) for p in paths if not p.exists()]
        if missing:
            raise ClimbInputError(f"predictor model files missing: {missing}")
        return cls.from_strings([p.read_text() for p in paths], sidecar)


def _train_one(
    x: np.ndarray, y: np.ndarray, config: PredictorConfig, seed: int, names: list[str]
) -> tuple[Any, dict[str, Any]]:
    import lightgbm as lgb

    n = x.shape[0]
    rng = np.random.default_rng(seed)
    if n >= config.min_rows_for_early_stopping:
        perm = rng.permutation(n)
        n_valid = max(2, int(round(config.valid_fraction * n)))
        valid, train = perm[:n_valid], perm[n_valid:]
        params = lgb_params(config, train.size, seed)
        dtrain = lgb.Dataset(x[train], y[train], feature_name=names, free_raw_data=False, params=params)
        dvalid = lgb.Dataset(x[valid], y[valid], reference=dtrain, params=params)
        booster = lgb.train(
            params,
            dtrain,
            num_boost_round=config.num_boost_round,
            valid_sets=[dvalid],
            callbacks=[lgb.early_stopping(config.early_stopping_rounds, verbose=False)],
        )
        best = int(booster.best_iteration) or config.num_boost_round
        # Keep only the trees up to the early-stopping point so the saved text predicts the same.
        booster = lgb.Booster(model_str=booster.model_to_string(num_iteration=best))
        info = {"n_train": int(train.size), "n_valid": int(valid.size), "best_iteration": best}
    else:
        params = lgb_params(config, n, seed)
        dtrain = lgb.Dataset(x, y, feature_name=names, free_raw_data=False, params=params)
        booster = lgb.train(params, dtrain, num_boost_round=config.fallback_rounds)
        info = {"n_train": n, "n_valid": 0, "best_iteration": config.fallback_rounds}
    return booster, info


def fit_predictor(
    history_mixtures: np.ndarray,
    history_scores: np.ndarray,
    direction: str = Direction.MINIMIZE,
    seed: int = 0,
    config: PredictorConfig | None = None,
    feature_names: list[str] | None = None,
    cv_folds: int = 0,
) -> Predictor:
    """Fit the (ensemble) predictor on every evaluated mixture; early stopping never sees other data.

    With `cv_folds >= 2` the metadata also carries the out-of-fold predictions of every row
    (`cv_predictions`, in row order) and their Spearman against the scores (`cv_spearman`).
    """
    config = config or PredictorConfig()
    check_direction(direction)
    x, y = _check_xy(history_mixtures, history_scores)
    names = feature_names or [f"w_{i:03d}" for i in range(x.shape[1])]
    if len(names) != x.shape[1]:
        raise ClimbInputError(f"predictor: {len(names)} feature names for {x.shape[1]} columns")
    boosters, infos = [], []
    if config.kind == "gp":
        gp = GaussianProcess.fit(x, y)
        boosters.append(gp)
        infos.append({"best_iteration": 0, "length_scale": gp.length_scale, "noise": gp.noise})
    for i in range(config.n_models if config.kind == "lightgbm" else 0):
        b, info = _train_one(x, y, config, int(np.random.default_rng([seed, i]).integers(2**31 - 1)), names)
        boosters.append(b)
        infos.append(info)
    meta: dict[str, Any] = {
        "n_rows": int(x.shape[0]),
        "seed": int(seed),
        "config": asdict(config),
        "best_iterations": [m["best_iteration"] for m in infos],
    }
    if config.kind == "gp":
        meta["gp"] = {"length_scale": infos[0]["length_scale"], "noise": infos[0]["noise"]}
    if cv_folds >= 2:
        oof = cross_val_predictions(x, y, config, seed, cv_folds)
        meta["cv_predictions"] = [float(v) for v in oof]
        meta["cv_spearman"] = spearman(oof, y)
    return Predictor(boosters, direction, list(names), meta)


def cross_val_spearman(
    mixtures: np.ndarray, scores: np.ndarray, config: PredictorConfig, seed: int, folds: int = 5
) -> float:
    """Out-of-fold Spearman of the predictor: each fold is predicted by a model that never saw it."""
    x, y = _check_xy(mixtures, scores)
    return spearman(cross_val_predictions(x, y, config, seed, folds), y)


def cross_val_predictions(
    mixtures: np.ndarray, scores: np.ndarray, config: PredictorConfig, seed: int, folds: int = 5
) -> np.ndarray:
    """Out-of-fold prediction of every row (row order): each fold predicted by a model fitted without it."""
    x, y = _check_xy(mixtures, scores)
    folds = min(folds, x.shape[0])
    if folds < 2:
        raise ClimbInputError(f"cross-validation needs >= 2 folds, got {folds}")
    order = np.random.default_rng([seed, 7919]).permutation(x.shape[0])
    pred = np.empty_like(y)
    for f in range(folds):
        test = order[f::folds]
        train = np.setdiff1d(order, test)
        p = fit_predictor(x[train], y[train], Direction.MINIMIZE, seed + f + 1, config)
        pred[test] = p.predict(x[test])
    return pred
