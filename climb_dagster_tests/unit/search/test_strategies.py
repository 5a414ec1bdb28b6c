"""Search strategies: budgets, no re-evaluation, determinism, round-level API, pool mode."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.search.pool import PoolLookup
from climb_dagster.core.search.predictor import PredictorConfig, fit_predictor
from climb_dagster.core.search.sampling import sample_mixtures
from climb_dagster.core.search.strategies import (
    StrategyConfig,
    budget_split,
    propose_round,
    run_search,
    select_final,
)

K = 6
FAST = PredictorConfig(n_models=2, learning_rate=0.2, early_stopping_rounds=10)


def _loss(m: np.ndarray) -> np.ndarray:
    return 3.0 - 0.5 * np.log(m[:, 0] + 0.01) + 2.0 * m[:, 3] + 0.3 * m[:, 5]


class Counter:
    """evaluate() that records every mixture it is asked to score."""

    def __init__(self, fn=_loss) -> None:
        self.calls: list[np.ndarray] = []
        self.fn = fn

    def __call__(self, m: np.ndarray) -> np.ndarray:
        self.calls.append(m.copy())
        return self.fn(m)

    @property
    def all(self) -> np.ndarray:
        return np.vstack(self.calls)


def _cfg(name: str = "climb", budget: int = 28, **kw) -> StrategyConfig:
    kw.setdefault("final", "observed")
    return StrategyConfig(name, budget, n_candidates=2000, predictor=FAST, **kw)


@pytest.mark.parametrize(
    ("total", "ratios", "expected"),
    [
        (56, (4, 2, 1), [32, 16, 8]),
        (112, (4, 2, 1), [64, 32, 16]),
        (3, (4, 2, 1), [1, 1, 1]),
        (10, (1, 1, 10), [1, 1, 8]),
        (7, (1,), [7]),
        (20, (1, 1, 1), [7, 7, 6]),
    ],
)
def test_budget_split(total: int, ratios: tuple, expected: list[int]) -> None:
    assert budget_split(total, ratios) == expected


def test_budget_split_errors() -> None:
    with pytest.raises(ClimbInputError, match="budget 2 is smaller than the number of rounds 3"):
        budget_split(2, (4, 2, 1))
    with pytest.raises(ClimbInputError, match=r"\[1, -1\]"):
        budget_split(10, [1, -1])
    with pytest.raises(ClimbInputError, match="budget 2"):
        StrategyConfig("climb", budget=2)


@pytest.mark.parametrize("name", ["climb", "regmix", "random"])
def test_sampling_mode_respects_budget_and_never_repeats(name: str) -> None:
    ev = Counter()
    cfg = _cfg(name, final="observed" if name != "regmix" else "predicted")
    res = run_search(cfg, ev, prior=K, seed=0)
    assert ev.all.shape == (28, K)
    assert len(ev.calls) == cfg.n_rounds
    assert len({r.tobytes() for r in np.round(ev.all, 3)}) == 28
    assert np.array_equal(res.mixtures, ev.all)
    assert res.rounds.tolist() == sum(([r] * n for r, n in enumerate(cfg.round_sizes())), [])
    assert res.final_mixture.shape == (K,) and abs(res.final_mixture.sum() - 1) < 1e-9


@pytest.mark.parametrize("name", ["climb", "regmix", "random"])
def test_pool_mode_uses_pool_rows_only(name: str) -> None:
    pool = sample_mixtures(200, K, seed=11)
    lookup = PoolLookup(pool, _loss(pool))
    cfg = _cfg(name, budget=40, final="observed" if name != "regmix" else "predicted")
    res = run_search(cfg, lookup, seed=1, candidates=pool)
    assert lookup.n_evaluated == 40
    assert len({r.tobytes() for r in res.mixtures}) == 40
    keys = {r.tobytes() for r in pool}
    assert all(r.tobytes() in keys for r in res.mixtures)
    assert res.final_mixture.tobytes() in keys


def test_deterministic_by_seed() -> None:
    a = run_search(_cfg(), Counter(), prior=K, seed=3)
    b = run_search(_cfg(), Counter(), prior=K, seed=3)
    c = run_search(_cfg(), Counter(), prior=K, seed=4)
    assert np.array_equal(a.mixtures, b.mixtures) and np.array_equal(a.final_mixture, b.final_mixture)
    assert not np.array_equal(a.mixtures, c.mixtures)


def test_round_level_api_resumes_to_the_same_search() -> None:
    """Rounds run one at a time from saved history (as the pipeline does) equal run_search."""
    cfg = _cfg(final="predicted")
    full = run_search(cfg, _loss, prior=K, seed=9)
    hm, hs = np.empty((0, K)), np.empty(0)
    for r in range(cfg.n_rounds):
        # A fresh copy of the history, as if reloaded from storage in another process.
        new = propose_round(cfg, r, hm.copy(), hs.copy(), K, seed=9)
        hm, hs = np.vstack([hm, new]), np.concatenate([hs, _loss(new)])
    assert np.array_equal(hm, full.mixtures)
    pred = fit_predictor(
        hm, hs, cfg.direction, seed=full.predictors[-1].metadata["seed"], config=cfg.predictor
    )
    assert np.array_equal(select_final(cfg, pred, hm, hs, seed=9, prior=K), full.final_mixture)


def test_climb_rounds_exploit_the_predictor() -> None:
    res = run_search(_cfg(budget=56, exploit_fraction=1.0), Counter(), prior=K, seed=0)
    first, last = res.scores[res.rounds == 0], res.scores[res.rounds == 2]
    assert last.mean() < first.mean()


def test_maximize_direction() -> None:
    res = run_search(_cfg(direction="maximize"), lambda m: -_loss(m), prior=K, seed=0)
    assert res.scores[res.best_observed] == res.scores.max()
    assert np.array_equal(res.final_mixture, res.mixtures[res.best_observed])


def test_climb_beats_random_on_a_pool() -> None:
    pool = sample_mixtures(400, K, seed=5)
    y = _loss(pool)
    regrets = {"climb": [], "random": []}
    for seed in range(4):
        for name in regrets:
            res = run_search(_cfg(name, budget=28), PoolLookup(pool, y), seed=seed, candidates=pool)
            regrets[name].append(_loss(res.final_mixture[None])[0] - y.min())
    assert np.mean(regrets["climb"]) < np.mean(regrets["random"])


def test_final_picks() -> None:
    pool = sample_mixtures(300, K, seed=2)
    y = _loss(pool)
    for final in ("predicted", "top_k_mean", "trusted", "observed"):
        cfg = _cfg(budget=30, final=final, top_k=5)
        res = run_search(cfg, PoolLookup(pool, y), seed=0, candidates=pool)
        assert res.final_mixture.tobytes() in {r.tobytes() for r in pool}
    # Sampling mode: the top-k mean need not be a sampled row but is a mixture.
    res = run_search(_cfg("regmix", final="top_k_mean", top_k=10), _loss, prior=K, seed=0)
    assert abs(res.final_mixture.sum() - 1) < 1e-9


def test_errors_name_the_value() -> None:
    with pytest.raises(ClimbInputError, match="'greedy'"):
        StrategyConfig("greedy")
    with pytest.raises(ClimbInputError, match="'predicted'"):
        StrategyConfig("random", final="predicted")
    with pytest.raises(ClimbInputError, match="exploit_fraction out of range: 1.5"):
        StrategyConfig(exploit_fraction=1.5)
    with pytest.raises(ClimbInputError, match="returned 2 scores for 16 mixtures in round 0"):
        run_search(_cfg(), lambda m: np.zeros(2), prior=K, seed=0)
    with pytest.raises(ClimbInputError, match="score inf for mixture 0"):
        run_search(_cfg(), lambda m: np.full(len(m), np.inf), prior=K, seed=0)
    with pytest.raises(ClimbInputError, match="expects 16 evaluated mixtures in history, got 0"):
        propose_round(_cfg(), 1, None, None, K, seed=0)
    with pytest.raises(ClimbInputError, match="only 10 candidates"):
        run_search(_cfg(), _loss, seed=0, candidates=sample_mixtures(10, K, seed=0))
    bad = np.full((16, K), 1 / K)
    bad[3, 0] = -0.5
    with pytest.raises(ClimbInputError, match="row 3 column 0 has negative weight -0.5"):
        propose_round(_cfg(), 1, bad, np.zeros(16), K, seed=0)


def test_config_is_frozen() -> None:
    cfg = _cfg()
    with pytest.raises(AttributeError):
        cfg.budget = 3  # type: ignore[misc]
    assert replace(cfg, budget=3).round_sizes() == [1, 1, 1]


def test_maximin_design_spreads_round_zero() -> None:
    pool = sample_mixtures(300, K, seed=4)

    def min_gap(m: np.ndarray) -> float:
        d = np.abs(m[:, None, :] - m[None, :, :]).sum(axis=2)
        return float(d[np.triu_indices(len(m), 1)].min())

    spread = propose_round(_cfg(initial_design="maximin"), 0, None, None, K, seed=0, candidates=pool)
    plain = propose_round(_cfg(), 0, None, None, K, seed=0, candidates=pool)
    assert spread.shape == plain.shape == (16, K)
    assert min_gap(spread) > min_gap(plain)
    # Sampling mode draws its own candidates; still valid, distinct and seeded.
    a = propose_round(_cfg(initial_design="maximin"), 0, None, None, K, seed=1)
    b = propose_round(_cfg(initial_design="maximin"), 0, None, None, K, seed=1)
    assert np.array_equal(a, b) and len({r.tobytes() for r in a}) == 16
    with pytest.raises(ClimbInputError, match="'lhs'"):
        _cfg(initial_design="lhs")


@pytest.mark.parametrize(("name", "budget"), [("climb", 3), ("climb", 4), ("regmix", 1), ("regmix", 2)])
def test_tiny_budgets_fall_back_instead_of_failing(name: str, budget: int) -> None:
    # One evaluated mixture cannot train a predictor: later rounds and the final pick fall back.
    ev = Counter()
    res = run_search(_cfg(name, budget=budget, final="predicted"), ev, prior=K, seed=0)
    assert ev.all.shape == (budget, K)
    assert res.config.final == "predicted"
    assert res.final_mixture.shape == (K,)


def test_reevaluated_best_undoes_a_lucky_draw():
    from climb_dagster.core.search.strategies import reevaluated_best

    hm = np.array([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0], [0.2, 0.8]])
    # Row 0 was lucky once (1.0); its second draw is 3.0. Row 1 is truly 1.5 both times.
    hs = np.array([1.0, 1.5, 2.0, 4.0])
    truth = {0: 3.0, 1: 1.5, 2: 2.0, 3: 4.0}
    asked = []

    def again(m):
        asked.append(m.copy())
        return np.array([truth[int(np.flatnonzero((hm == row).all(axis=1))[0])] for row in m])

    pick, second = reevaluated_best(hm, hs, again, top=3, direction="minimize")
    np.testing.assert_array_equal(pick, hm[1])
    assert second.tolist() == [3.0, 1.5, 2.0] and asked[0].shape == (3, 2)
    # Maximizing, the same scores flip: the best three are rows 3, 2, 1.
    pick, _ = reevaluated_best(hm, hs, again, top=3, direction="maximize")
    np.testing.assert_array_equal(pick, hm[3])
    with pytest.raises(ClimbInputError, match="top must be >= 1"):
        reevaluated_best(hm, hs, again, top=0, direction="minimize")


def test_local_candidates_sit_near_the_best_mixtures_so_far() -> None:
    from climb_dagster.core.search.strategies import Round

    rng = np.random.default_rng(0)
    mixtures = sample_mixtures(12, K, rng)
    scores = _loss(mixtures)
    cfg = _cfg(local_fraction=0.5, local_top=3)
    r = Round(cfg, 1, 4, mixtures, scores, np.full(K, 1 / K), 0, np.random.default_rng(1))
    cands = r.candidates()
    assert cands.shape == (2000, K) and np.allclose(cands.sum(axis=1), 1.0)
    best = mixtures[np.argsort(scores)[:3]]
    nearest = np.abs(cands[:, None, :] - best[None, :, :]).sum(axis=2).min(axis=1)
    # The local half lies close to one of the 3 best; the prior half mostly does not.
    assert np.median(nearest[1000:]) < 0.35 < np.median(nearest[:1000])
    # None repeats an evaluated mixture, and without history (round 0) every candidate comes from the prior.
    assert not (np.abs(cands[:, None, :] - mixtures[None]).sum(axis=2) < 1e-3).any()
    empty = Round(cfg, 0, 4, np.empty((0, K)), np.empty(0), np.full(K, 1 / K), 0, np.random.default_rng(1))
    assert empty.candidates().shape == (2000, K)
    with pytest.raises(ClimbInputError, match="local_fraction"):
        _cfg(local_fraction=1.5)


def test_local_candidates_keep_the_sampling_constraints() -> None:
    from climb_dagster.core.search.sampling import SamplingConfig
    from climb_dagster.core.search.strategies import Round

    mixtures = sample_mixtures(12, K, 0, SamplingConfig(cap=0.5))
    cfg = _cfg(local_fraction=1.0, sampling=SamplingConfig(cap=0.5))
    r = Round(cfg, 1, 4, mixtures, _loss(mixtures), np.full(K, 1 / K), 0, np.random.default_rng(1))
    assert r.candidates().max() <= 0.5 + 1e-9
