from __future__ import annotations

import math

import numpy as np
import pytest

from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.proxy.sampler import sample_windows, validate_mixture, window_plan
from climb_dagster_tests.unit import proxy_corpus as pc


def test_plan_follows_mixture_and_never_draws_zero_weight() -> None:
    store = pc.store()
    clusters, starts = window_plan(store, [0.7, 0.0, 0.3], 20_000, 32, seed=0)
    counts = np.bincount(clusters, minlength=3) / clusters.size
    assert counts[1] == 0.0
    assert abs(counts[0] - 0.7) < 0.02 and abs(counts[2] - 0.3) < 0.02
    for c in (0, 2):
        s = starts[clusters == c]
        assert s.min() >= 0 and s.max() <= store.n_tokens[c] - 33


def test_windows_are_deterministic_and_match_the_memmaps() -> None:
    store = pc.store()
    a = sample_windows(store, [0.2, 0.5, 0.3], 64, 32, seed=7)
    b = sample_windows(store, [0.2, 0.5, 0.3], 64, 32, seed=7)
    c = sample_windows(store, [0.2, 0.5, 0.3], 64, 32, seed=8)
    assert a.shape == (64, 33) and a.dtype == np.int64
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    clusters, starts = window_plan(store, [0.2, 0.5, 0.3], 64, 32, seed=7)
    for i in range(64):
        np.testing.assert_array_equal(a[i], store.tokens[clusters[i]][starts[i] : starts[i] + 33])


def test_one_hot_mixture_reads_one_cluster() -> None:
    store = pc.store()
    clusters, _ = window_plan(store, [0.0, 1.0, 0.0], 100, 16, seed=1)
    assert set(clusters.tolist()) == {1}


@pytest.mark.parametrize(
    ("mixture", "message"),
    [
        ([0.5, 0.5], r"shape \(2,\)"),
        ([[0.5, 0.5, 0.0]], "shape"),
        ([0.5, math.nan, 0.5], "non-finite"),
        ([0.6, -0.1, 0.5], "negative"),
        ([0.3, 0.3, 0.3], "sum to 0.9"),
        (["a", "b", "c"], "not a vector"),
    ],
)
def test_bad_mixtures_are_rejected(mixture: object, message: str) -> None:
    with pytest.raises(ClimbInputError, match=message):
        sample_windows(pc.store(), mixture, 4, 8, seed=0)  # type: ignore[arg-type]


def test_mixture_tolerance_is_1e_6() -> None:
    validate_mixture([0.5, 0.5 + 5e-7], 2)
    with pytest.raises(ClimbInputError):
        validate_mixture([0.5, 0.5 + 5e-6], 2)


def test_weight_on_a_cluster_too_small_for_a_window(tmp_path) -> None:
    from climb_dagster.core.proxy.store import write_token_store

    s = write_token_store([(0, ["tiny"]), (1, ["word " * 400])], pc.tokenizer_dir(), tmp_path / "s")
    sample_windows(s, [0.0, 1.0], 4, 16, seed=0)
    with pytest.raises(ClimbInputError, match=r"super-clusters \[0\]"):
        sample_windows(s, [0.5, 0.5], 4, 16, seed=0)
    with pytest.raises(ClimbInputError, match="n_windows"):
        sample_windows(s, [0.0, 1.0], 0, 16, seed=0)
