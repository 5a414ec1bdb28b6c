"""Seed noise against the spread between mixtures, and how a small model's ranking carries to a larger one."""

from __future__ import annotations

import numpy as np
import pytest

from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.report.noise import rank_transfer, seed_noise


def test_seed_noise_separates_the_mixtures_spread_from_the_seeds():
    rng = np.random.default_rng(0)
    truth = np.linspace(0.0, 1.0, 40)
    quiet = truth[:, None] + rng.normal(0.0, 0.01, size=(40, 4))
    loud = truth[:, None] + rng.normal(0.0, 1.0, size=(40, 4))
    q, lo = seed_noise(quiet), seed_noise(loud)
    assert q.seed_std == pytest.approx(0.01, rel=0.2) and lo.seed_std == pytest.approx(1.0, rel=0.2)
    assert q.reliability > 0.99 and q.seed_rank > 0.95
    assert lo.reliability < 0.3 and lo.seed_rank < 0.5
    # Between-mixture variance of linspace(0, 1, 40) is ~0.085: reliability ~ 0.085 / (0.085 + 1).
    assert lo.reliability == pytest.approx(0.085 / 1.085, abs=0.08)


def test_rank_transfer_on_known_cases():
    small = np.array([[1.0, 1.1], [2.0, 2.1], [3.0, 3.1], [4.0, 4.1]])
    same = rank_transfer(small, small * 2)
    assert same.mean_rank == pytest.approx(1.0) and same.one_seed_rank == pytest.approx(1.0)
    assert same.best_regret == 0.0
    reverse = rank_transfer(small, -small)
    assert reverse.mean_rank == pytest.approx(-1.0)
    # The small model's best (row 0) is the large model's worst: regret = -1.05 - (-4.05).
    assert reverse.best_regret == pytest.approx(3.0)


def test_bad_score_tables_are_refused_with_their_place():
    with pytest.raises(ClimbInputError, match=r"mixture 1, seed 0 is nan"):
        seed_noise(np.array([[1.0, 1.0], [np.nan, 1.0], [2.0, 2.0]]))
    with pytest.raises(ClimbInputError, match=">= 2 seeds"):
        seed_noise(np.ones((5, 1)))
    with pytest.raises(ClimbInputError, match="3 small-model mixtures but 4"):
        rank_transfer(np.ones((3, 2)), np.ones((4, 2)))
