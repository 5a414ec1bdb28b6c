"""Paired differences against a textbook t-table case."""

from __future__ import annotations

import math

import pytest

from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.report.stats import paired_difference


def test_interval_matches_the_t_table():
    # Differences 1..5: mean 3, sd sqrt(2.5), se sqrt(0.5); t(0.975, df=4) = 2.776 (every t table).
    a = [11.0, 12.0, 13.0, 14.0, 15.0]
    b = [10.0] * 5
    d = paired_difference(a, b)
    assert d.n == 5 and d.df == 4 and d.mean == 3.0
    assert d.t_critical == pytest.approx(2.7764, abs=1e-4)
    half = 2.7764451 * math.sqrt(0.5)
    assert d.low == pytest.approx(3.0 - half, abs=1e-5) and d.high == pytest.approx(3.0 + half, abs=1e-5)
    # t = 3 / sqrt(0.5) = 4.243 with 4 df: two-sided p = 0.0132.
    assert d.p_value == pytest.approx(0.01324, abs=1e-4)
    assert d.excludes_zero
    # Minimizing, a is worse everywhere: climb (a) wins none of the cells.
    assert d.win_rate == 0.0
    assert paired_difference(b, a).win_rate == 1.0


def test_a_wide_interval_and_ties():
    d = paired_difference([1.0, 2.0, 3.0], [2.0, 2.0, 2.0], direction="maximize")
    assert d.mean == 0.0 and d.low < 0 < d.high and not d.excludes_zero
    # One better, one tie, one worse (maximizing): 0.5 + 0.5 / 3.
    assert d.win_rate == pytest.approx(0.5)
    assert d.to_dict()["df"] == 2


@pytest.mark.parametrize(
    ("a", "b", "message"),
    [
        ([1.0], [2.0], "at least 2"),
        ([1.0, 2.0], [1.0], "equal"),
        ([1.0, float("nan")], [1.0, 2.0], "non-finite"),
    ],
)
def test_refusals_name_the_problem(a, b, message):
    with pytest.raises(ClimbInputError, match=message):
        paired_difference(a, b)


def test_cells_to_exclude_zero_against_the_t_table():
    from climb_dagster.core.report.stats import cells_to_exclude_zero

    # mean = sd: n = 6 gives t(5) / sqrt(6) = 2.571 / 2.449 = 1.05 (not yet), n = 7 gives 2.447 / 2.646 = 0.925.
    assert cells_to_exclude_zero(1.0, 1.0) == 7
    assert cells_to_exclude_zero(-1.0, 1.0) == 7
    # A tenth of the sd needs about (1.96 / 0.1)^2 = 384 cells, a little more for t.
    assert 385 <= cells_to_exclude_zero(0.1, 1.0) <= 390
    assert cells_to_exclude_zero(0.0, 1.0) is None
    assert cells_to_exclude_zero(1e-4, 1.0, limit=1000) is None
    assert cells_to_exclude_zero(0.5, 0.0) == 2
    with pytest.raises(ClimbInputError, match="finite"):
        cells_to_exclude_zero(float("nan"), 1.0)
