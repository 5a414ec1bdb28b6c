"""A search that starts from reused evidence (issue 24): round 0 proposes fewer and where evidence is thin, the
reused rows are marked, and freeze-and-expand keeps the unchanged super-clusters' ratios in every proxy."""

from __future__ import annotations

import numpy as np
import pytest

from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.search.freeze import FrozenBlock, frozen_block, run_frozen_search
from climb_dagster.core.search.predictor import fit_predictor
from climb_dagster.core.search.strategies import (
    StrategyConfig,
    propose_round,
    reuse_round_sizes,
    run_search,
    select_final,
)
from climb_dagster.core.search.strategies.draws import maximin

K = 5
TARGET = np.array([0.05, 0.4, 0.05, 0.3, 0.2])


def _loss(x: np.ndarray) -> np.ndarray:
    return np.abs(np.atleast_2d(x) - TARGET).sum(axis=1)


def test_reused_rows_replace_round_zero_proposals_down_to_a_floor():
    assert reuse_round_sizes([8, 4, 2], 0) == [8, 4, 2]
    assert reuse_round_sizes([8, 4, 2], 3) == [5, 4, 2]
    assert reuse_round_sizes([8, 4, 2], 30) == [2, 4, 2]  # a quarter of round 0 is always new
    with pytest.raises(ClimbInputError):
        reuse_round_sizes([8], -1)


def test_maximin_fills_around_fixed_evidence():
    rng = np.random.default_rng(0)
    cands = rng.dirichlet(np.ones(K), 400)
    fixed = cands[:50]
    picked = maximin(cands, 6, np.random.default_rng(1), fixed=fixed)
    dist = lambda rows: np.abs(rows[:, None, :] - fixed[None]).sum(axis=2).min(axis=1)  # noqa: E731
    first = dist(cands).argmax()
    assert picked[0] == first and not set(picked.tolist()) & set(range(50))
    plain = maximin(cands, 6, np.random.default_rng(1))
    assert dist(cands[picked]).mean() > dist(cands[plain]).mean()


def test_a_search_from_reused_evidence_trains_fewer_and_marks_them():
    config = StrategyConfig("climb", budget=16, ratios=(2.0, 1.0, 1.0), initial_design="maximin")
    prior = np.full(K, 1.0 / K)
    rng = np.random.default_rng(3)
    old = rng.dirichlet(np.ones(K), 6)
    calls: list[int] = []

    def evaluate(x):
        calls.append(len(x))
        return _loss(x)

    res = run_search(config, evaluate, prior=prior, seed=0, reused=(old, _loss(old)))
    assert calls == [2, 4, 4] and res.n_reused == 6 and res.n_trained == 10  # round 0: 8 - 6
    assert res.rounds[:6].tolist() == [-1] * 6 and np.array_equal(res.mixtures[:6], old)
    own = res.mixtures[res.rounds >= 0]
    assert np.abs(own - res.final_mixture).sum(axis=1).min() < 1e-12  # the answer is one of its own proxies
    # Even when a reused row scores best (its score came from other data), it is not the answer.
    lucky = run_search(config, evaluate, prior=prior, seed=0, reused=(old, np.full(6, -1.0)))
    assert np.abs(old - lucky.final_mixture).sum(axis=1).min() > 1e-9
    scratch = run_search(config, lambda x: _loss(x), prior=prior, seed=0)
    assert scratch.n_trained == 16 and scratch.n_reused == 0
    with pytest.raises(ClimbInputError, match="score of row 1"):
        run_search(config, evaluate, prior=prior, reused=(old[:2], np.array([1.0, np.nan])))


def test_freeze_and_expand_keeps_the_blocks_ratios_in_every_proxy():
    block = frozen_block(np.array([0.1, 0.3, 0.2, 0.2, 0.2]), np.array([False, True, True, False, True]))
    assert block.frozen == (1, 2, 4) and block.ratios == pytest.approx((3 / 7, 2 / 7, 2 / 7))
    x = np.array([[0.2, 0.5, 0.3]])
    np.testing.assert_allclose(block.expand(x), [[0.2, 0.3 * 3 / 7, 0.3 * 2 / 7, 0.5, 0.3 * 2 / 7]])
    np.testing.assert_allclose(block.reduce(block.expand(x)), x)
    seen: list[np.ndarray] = []

    def evaluate(full):
        seen.append(full)
        return _loss(full)

    config = StrategyConfig("climb", budget=12, ratios=(2.0, 1.0), initial_design="maximin")
    old = np.random.default_rng(5).dirichlet(np.ones(K), 4)
    res = run_frozen_search(config, evaluate, block, np.full(K, 0.2), seed=1, reused=(old, _loss(old)))
    rows = np.vstack(seen)
    inner = rows[:, [1, 2, 4]] / rows[:, [1, 2, 4]].sum(axis=1, keepdims=True)
    np.testing.assert_allclose(inner, np.tile(block.ratios, (len(rows), 1)), atol=1e-9)
    assert res.mixtures.shape[1] == K and res.final_mixture.shape == (K,)
    assert res.final_mixture.sum() == pytest.approx(1.0) and res.n_reused == 4
    with pytest.raises(ClimbInputError, match="nothing is left"):
        FrozenBlock((0, 1), (0.5, 0.5), 2)
    with pytest.raises(ClimbInputError, match="distinct"):
        FrozenBlock((0,), (1.0,), 3)


def test_freeze_and_expand_with_one_free_super_cluster_still_finds_candidates():
    """One free super-cluster + the block: a 2-dimensional search, whose distinct candidates are few."""
    block = frozen_block(np.array([0.1, 0.3, 0.2, 0.2, 0.2]), np.array([False, True, True, True, True]))
    config = StrategyConfig("climb", budget=6, ratios=(2.0, 1.0), initial_design="maximin", n_candidates=20_000)
    res = run_frozen_search(config, _loss, block, np.full(K, 0.2), seed=0)
    assert res.mixtures.shape == (6, K) and res.n_trained == 6


def test_a_frozen_round_ranks_reduced_candidates_with_a_predictor_of_full_mixtures():
    """As the pipeline runs it: each round's predictor is fitted on full mixtures (reused rows whose block was
    mixed otherwise included); the round and a predicted final pick keep the block's ratios."""
    block = frozen_block(np.array([0.1, 0.3, 0.2, 0.2, 0.2]), np.array([False, True, True, False, True]))
    hm = np.random.default_rng(2).dirichlet(np.ones(K), 12)
    hs = _loss(hm)
    config = StrategyConfig("climb", budget=16, ratios=(12.0, 4.0), initial_design="maximin", final="predicted")
    pred = fit_predictor(hm, hs, config.direction, 0, config.predictor)
    prior = np.full(K, 0.2)
    rows = propose_round(config, 1, hm, hs, prior, seed=0, predictor=pred, block=block)
    final = select_final(config, pred, hm, hs, seed=0, prior=prior, block=block)
    for x in (rows, final[None, :]):
        inner = x[:, [1, 2, 4]] / x[:, [1, 2, 4]].sum(axis=1, keepdims=True)
        np.testing.assert_allclose(inner, np.tile(block.ratios, (len(x), 1)), atol=1e-9)
    assert rows.shape == (4, K) and np.allclose(rows.sum(axis=1), 1.0)
    with pytest.raises(ClimbInputError, match="candidate pool"):
        propose_round(config, 1, hm, hs, prior, seed=0, candidates=hm, predictor=pred, block=block)
