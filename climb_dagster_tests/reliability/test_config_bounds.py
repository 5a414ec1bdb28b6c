"""Issue 15, item 5: experiment config bounds are checked when the experiment is recorded.

Proves: a budget far beyond the corpus (`rounds: [100000]` on 4 super-clusters), beyond `max_budget`, or
beyond `n_candidates`, and a negative or huge seed, fail the `experiment` asset at once with a message naming
the field; no experiment record and no target files are written (the rounds never start).
"""

from __future__ import annotations

import time

import pytest

from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.experiment.config import MAX_SEED, ExperimentConfig
from climb_dagster.core.targets.config import TargetConfig
from climb_dagster_tests.reliability.helpers import failure_text, materialize_in


@pytest.mark.parametrize(
    ("name", "change", "needles"),
    [
        ("huge-budget", {"rounds": [100000]}, ["rounds [100000]", "exceeds max_budget=1024"]),
        (
            "beyond-corpus",
            {"rounds": [100000], "max_budget": 10**6},
            ["rounds [100000]", "64 proxies per super-cluster", "of 4 super-clusters"],
        ),
        ("over-max", {"rounds": [4, 2, 2], "max_budget": 5}, ["budget 8 proxies", "max_budget=5"]),
        ("over-candidates", {"rounds": [30, 2, 1], "n_candidates": 20}, ["n_candidates=20"]),
        ("negative-seed", {"seed": -1}, ["seed must be an integer in [0, ", "got -1"]),
        ("huge-seed", {"seed": 2**40}, [f"seed must be an integer in [0, {MAX_SEED}]", str(2**40)]),
    ],
)
def test_out_of_bounds_experiment_refused_when_recorded(tiny_corpus: dict, name: str, change: dict, needles):
    start = time.perf_counter()
    result = materialize_in(tiny_corpus, ["experiment"], name, {**tiny_corpus["spec"], **change})
    assert time.perf_counter() - start < 60
    assert not result.success
    text = failure_text(result)
    assert "ClimbInputError" in text
    for needle in needles:
        assert needle in text, text
    assert not (tiny_corpus["root"] / "experiment" / f"{name}.json").exists()
    assert not (tiny_corpus["root"] / "targets" / name).exists(), "partial target output"


def test_bounds_in_core_name_the_field():
    config = ExperimentConfig("x", TargetConfig(documents_path="t.parquet"), rounds=(6, 3, 2))
    config.check_bounds(n_super_clusters=1)
    with pytest.raises(
        ClimbInputError, match=r"rounds \[6, 3, 2\] \(budget 11 proxies\) exceeds max_budget=10"
    ):
        config.check_bounds(n_super_clusters=4, max_budget=10)
    with pytest.raises(ClimbInputError, match="seed must be an integer"):
        ExperimentConfig("x", TargetConfig(documents_path="t.parquet"), seed=MAX_SEED + 1)


def test_bounds_count_doremis_own_proxies_and_allow_six_rounds():
    """DoReMi's reference and DRO proxies (issue 14) count against max_budget; 6 rounds pass the bounds."""
    target = TargetConfig(documents_path="t.parquet")
    doremi = ExperimentConfig("d", target, strategy="doremi")
    assert doremi.rounds == (2,) and doremi.budget == 4
    doremi.check_bounds(n_super_clusters=4, max_budget=4)
    with pytest.raises(
        ClimbInputError, match=r"rounds \[2\] \+ 2 doremi proxies \(budget 4 proxies\) exceeds max_budget=3"
    ):
        doremi.check_bounds(n_super_clusters=4, max_budget=3)
    ExperimentConfig("six", target, rounds=(2, 2, 1, 1, 1, 1)).check_bounds(n_super_clusters=4)
