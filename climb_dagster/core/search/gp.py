"""A Gaussian-process mixture -> score model: an isotropic RBF kernel on the mixture weights plus a fitted noise
term, hyperparameters by maximum marginal likelihood.

Why beside LightGBM: a search's first predictor sees ~11 proxy scores in 8 dimensions. Trees fitted on so few
rows rank unseen mixtures little better than chance, and an ensemble of them reproduces every training score, so it
cannot say which good score was a lucky proxy seed. A smooth kernel pools neighbouring mixtures' scores, and its
noise term (fitted, not assumed) shrinks each observed score toward its neighbours' (`docs/results-e2e.md`).

Saved as JSON (training rows, weights and hyperparameters); never pickled.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from climb_dagster.core.common.errors import ClimbInputError

KIND = "gp"
# Bounds of (length scale, signal variance, noise variance) on standardised scores; a length scale below 0.02 of
# the simplex or a noise below 1e-4 of the score variance would only interpolate the proxies' noise.
BOUNDS = ((0.02, 10.0), (0.05, 20.0), (1e-4, 2.0))
# Starting points of the marginal-likelihood search (length scale, noise); the best optimum wins.
STARTS = tuple((ls, sn) for ls in (0.1, 0.3, 1.0) for sn in (0.05, 0.3))
JITTER = 1e-6


def _sq_dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.maximum((a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T, 0.0)


def _rbf(d2: np.ndarray, length_scale: float, signal: float) -> np.ndarray:
    return signal * np.exp(-d2 / (2.0 * length_scale * length_scale))


def _train_kernel(d2: np.ndarray, length_scale: float, signal: float, noise: float) -> np.ndarray:
    return _rbf(d2, length_scale, signal) + (noise + JITTER) * np.eye(d2.shape[0])


def _neg_log_marginal(log_params: np.ndarray, d2: np.ndarray, y: np.ndarray) -> float:
    k = _train_kernel(d2, *np.exp(log_params))
    try:
        chol = np.linalg.cholesky(k)
    except np.linalg.LinAlgError:
        return 1e10
    alpha = np.linalg.solve(chol.T, np.linalg.solve(chol, y))
    return float(0.5 * y @ alpha + np.log(np.diag(chol)).sum())


@dataclass(frozen=True)
class GaussianProcess:
    """A fitted GP: predicts the posterior mean (and std) of the score at new mixtures."""

    x: np.ndarray
    alpha: np.ndarray
    length_scale: float
    signal: float
    noise: float
    y_mean: float
    y_scale: float

    @classmethod
    def fit(cls, x: np.ndarray, y: np.ndarray) -> GaussianProcess:
        from scipy.optimize import minimize

        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        mean, scale = float(y.mean()), float(y.std()) or 1.0
        z = (y - mean) / scale
        d2 = _sq_dist(x, x)
        bounds = [(np.log(lo), np.log(hi)) for lo, hi in BOUNDS]
        best = None
        for ls, sn in STARTS:
            r = minimize(_neg_log_marginal, np.log([ls, 1.0, sn]), (d2, z), method="L-BFGS-B", bounds=bounds)
            if best is None or r.fun < best.fun:
                best = r
        ls, sf, sn = (float(v) for v in np.exp(best.x))
        return cls(x, np.linalg.solve(_train_kernel(d2, ls, sf, sn), z), ls, sf, sn, mean, scale)

    def _k(self, x: np.ndarray) -> np.ndarray:
        return _rbf(_sq_dist(np.asarray(x, dtype=np.float64), self.x), self.length_scale, self.signal)

    def predict(self, x: np.ndarray, num_threads: int | None = None) -> np.ndarray:
        """Posterior mean score; `num_threads` is accepted for a LightGBM booster's signature and unused."""
        return self.y_mean + self.y_scale * (self._k(x) @ self.alpha)

    def predict_std(self, x: np.ndarray) -> np.ndarray:
        """Posterior std of the (noise-free) score."""
        ks = self._k(x)
        k = _train_kernel(_sq_dist(self.x, self.x), self.length_scale, self.signal, self.noise)
        var = self.signal - np.einsum("ij,ji->i", ks, np.linalg.solve(k, ks.T))
        return self.y_scale * np.sqrt(np.maximum(var, 0.0))

    def model_to_string(self) -> str:
        return json.dumps(
            {
                "kind": KIND,
                "x": self.x.tolist(),
                "alpha": self.alpha.tolist(),
                "length_scale": self.length_scale,
                "signal": self.signal,
                "noise": self.noise,
                "y_mean": self.y_mean,
                "y_scale": self.y_scale,
            }
        )

    @classmethod
    def from_string(cls, text: str) -> GaussianProcess:
        d = json.loads(text)
        if d.get("kind") != KIND:
            raise ClimbInputError(f"not a Gaussian-process model: kind {d.get('kind')!r}")
        x, alpha = np.asarray(d["x"], dtype=np.float64), np.asarray(d["alpha"], dtype=np.float64)
        if x.ndim != 2 or alpha.shape != (x.shape[0],):
            raise ClimbInputError(f"Gaussian-process model: x {x.shape} and alpha {alpha.shape} disagree")
        return cls(x, alpha, d["length_scale"], d["signal"], d["noise"], d["y_mean"], d["y_scale"])
