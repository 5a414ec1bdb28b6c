"""Mixture sampling and validation on the simplex."""

from __future__ import annotations

import numpy as np
import pytest

from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.search.sampling import (
    SamplingConfig,
    dedup_mixtures,
    sample_mixtures,
    validate_mixtures,
)

PRIOR = np.array([0.4, 0.3, 0.1, 0.1, 0.05, 0.05])


def test_samples_are_valid_mixtures_of_the_asked_size() -> None:
    m = sample_mixtures(500, PRIOR, seed=0)
    assert m.shape == (500, PRIOR.size)
    validate_mixtures(m)
    assert np.allclose(m.sum(axis=1), 1.0, atol=1e-9)


def test_int_prior_means_uniform_over_k() -> None:
    m = sample_mixtures(2000, 5, seed=1, config=SamplingConfig(concentrations=(100.0,)))
    assert np.allclose(m.mean(axis=0), 0.2, atol=0.01)


def test_cap_bounds_every_weight() -> None:
    cfg = SamplingConfig(cap=0.3)
    m = sample_mixtures(1000, PRIOR, seed=2, config=cfg)
    assert m.max() <= 0.3 + 1e-9
    validate_mixtures(m)


def test_min_weight_zeroes_small_weights() -> None:
    cfg = SamplingConfig(min_weight=0.05)
    m = sample_mixtures(1000, PRIOR, seed=3, config=cfg)
    nz = m[m > 0]
    assert nz.min() >= 0.05
    assert (m == 0).any()
    validate_mixtures(m)


def test_low_concentration_gives_sparse_mixtures() -> None:
    sparse = sample_mixtures(1000, 20, seed=4, config=SamplingConfig(concentrations=(0.05,)))
    dense = sample_mixtures(1000, 20, seed=4, config=SamplingConfig(concentrations=(20.0,)))
    share_sparse = (sparse > 0.01).sum(axis=1).mean()
    share_dense = (dense > 0.01).sum(axis=1).mean()
    assert share_sparse < 5 < share_dense


def test_same_seed_same_mixtures_other_seed_differs() -> None:
    a = sample_mixtures(300, PRIOR, seed=7)
    b = sample_mixtures(300, PRIOR, seed=7)
    c = sample_mixtures(300, PRIOR, seed=8)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_dedup_drops_near_identical_rows_and_excluded_ones() -> None:
    m = np.array([[0.5, 0.5, 0.0], [0.50001, 0.49999, 0.0], [0.2, 0.3, 0.5], [0.1, 0.1, 0.8]])
    out = dedup_mixtures(m, decimals=3, exclude=np.array([[0.1, 0.1, 0.8]]))
    assert out.tolist() == [[0.5, 0.5, 0.0], [0.2, 0.3, 0.5]]


def test_samples_have_no_near_duplicates_and_avoid_exclude() -> None:
    # Sparse draws over 3 clusters collide often: dedup must still deliver distinct rows.
    cfg = SamplingConfig(concentrations=(0.05,), dedup_decimals=2)
    ex = sample_mixtures(20, 3, seed=0, config=cfg)
    m = sample_mixtures(200, 3, seed=1, config=cfg, exclude=ex)
    keys = {tuple(r) for r in np.round(m, 2)}
    assert len(keys) == 200
    assert not keys & {tuple(r) for r in np.round(ex, 2)}


def test_impossible_request_raises_with_counts() -> None:
    with pytest.raises(ClimbInputError, match="distinct mixtures"):
        sample_mixtures(100, 2, seed=0, config=SamplingConfig(dedup_decimals=1))


def test_large_candidate_set_is_vectorised() -> None:
    m = sample_mixtures(100_000, 20, seed=0)
    assert m.shape == (100_000, 20)


@pytest.mark.parametrize(
    ("rows", "pattern"),
    [
        ([[0.5, 0.6, -0.1]], r"row 0 column 2 has negative weight -0.1"),
        ([[0.5, 0.5, 0.0], [0.5, np.nan, 0.5]], r"row 1 column 1 has non-finite weight nan"),
        ([[0.5, 0.5, 0.0], [0.3, 0.3, 0.3]], r"row 1 weights sum to 0.8999"),
    ],
)
def test_validation_names_row_and_value(rows: list[list[float]], pattern: str) -> None:
    with pytest.raises(ClimbInputError, match=pattern):
        validate_mixtures(np.array(rows), source="mix.csv")


def test_validation_checks_shape_and_width() -> None:
    with pytest.raises(ClimbInputError, match="2-D"):
        validate_mixtures(np.array([0.5, 0.5]))
    with pytest.raises(ClimbInputError, match="expected 3 weight columns, got 2"):
        validate_mixtures(np.array([[0.5, 0.5]]), n_clusters=3)


@pytest.mark.parametrize(
    ("kwargs", "value"),
    [
        ({"concentrations": (0.0,)}, "0.0"),
        ({"cap": 1.5}, "1.5"),
        ({"min_weight": -0.1}, "-0.1"),
        ({"cap": 0.1, "min_weight": 0.2}, "0.2"),
        ({"dedup_decimals": 0}, "0"),
    ],
)
def test_bad_sampling_config_names_value(kwargs: dict, value: str) -> None:
    with pytest.raises(ClimbInputError, match=value):
        SamplingConfig(**kwargs)


def test_bad_prior_raises() -> None:
    with pytest.raises(ClimbInputError, match="prior"):
        sample_mixtures(3, np.array([0.5, 0.6]), seed=0)
