"""The one direction type: best/worst/argbest/better/regret agree with what minimize/maximize mean."""

from __future__ import annotations

import json

import numpy as np
import pytest

from climb_dagster.core.common.direction import Direction
from climb_dagster.core.common.errors import ClimbInputError

SCORES = np.array([3.0, 1.0, 2.0, 1.0, 5.0])


def test_minimize_prefers_low_scores() -> None:
    d = Direction.MINIMIZE
    assert d.argbest(SCORES) == 1  # the first of the tied minima, like numpy
    assert (d.best(SCORES), d.worst(SCORES)) == (1.0, 5.0)
    assert d.better(1.0, 2.0) and not d.better(2.0, 1.0) and not d.better(1.0, 1.0)
    assert d.regret(2.0, SCORES) == 1.0
    assert np.array_equal(d.goodness(SCORES), -SCORES)


def test_maximize_prefers_high_scores() -> None:
    d = Direction.MAXIMIZE
    assert d.argbest(SCORES) == 4
    assert (d.best(SCORES), d.worst(SCORES)) == (5.0, 1.0)
    assert d.better(2.0, 1.0) and not d.better(1.0, 2.0)
    assert d.regret(2.0, SCORES) == 3.0
    assert np.array_equal(d.goodness(SCORES), SCORES)


def test_stored_as_the_plain_word() -> None:
    assert json.dumps({"direction": Direction.MAXIMIZE}) == '{"direction": "maximize"}'
    assert Direction.parse("minimize") is Direction.MINIMIZE


def test_unknown_direction_is_named() -> None:
    with pytest.raises(ClimbInputError, match="'lowest'"):
        Direction.parse("lowest")
