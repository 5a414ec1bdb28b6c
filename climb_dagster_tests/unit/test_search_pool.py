"""Offline pools: reading RegMix-style CSVs, lookup evaluation, regret."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from climb_dagster.core.errors import ClimbInputError
from climb_dagster.core.search import PoolLookup, read_pool, regret


def _write(path: Path, header: list[str], rows: list[list[float]]) -> Path:
    lines = [",".join(["index", *header])] + [
        ",".join([str(i + 1), *map(str, r)]) for i, r in enumerate(rows)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    return {
        "m1": _write(tmp_path / "train_mixture.csv", ["a", "b", "c"], [[0.5, 0.5, 0.0], [0.2, 0.3, 0.501]]),
        "s1": _write(tmp_path / "train_loss.csv", ["t1", "t2"], [[3.0, 1.0], [2.0, 4.0]]),
        "m2": _write(tmp_path / "test_mixture.csv", ["a", "b", "c"], [[0.0, 0.0, 1.0]]),
        "s2": _write(tmp_path / "test_loss.csv", ["t1", "t2"], [[1.5, 0.5]]),
    }


def test_read_pool_concatenates_and_renormalises(files: dict[str, Path]) -> None:
    pool = read_pool([files["m1"], files["m2"]], [files["s1"], files["s2"]])
    assert pool.size == 3 and pool.domains == ("a", "b", "c") and pool.targets == ("t1", "t2")
    assert np.allclose(pool.mixtures.sum(axis=1), 1.0, atol=1e-12)
    assert pool.target_scores("t2").tolist() == [1.0, 4.0, 0.5]
    with pytest.raises(ClimbInputError, match="'t3'"):
        pool.target_scores("t3")


def test_read_pool_errors_name_the_file(files: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ClimbInputError, match="as many mixture files"):
        read_pool([files["m1"]], [])
    with pytest.raises(ClimbInputError, match="has 2 rows but .*test_loss.csv has 1"):
        read_pool([files["m1"]], [files["s2"]])
    bad = _write(tmp_path / "bad.csv", ["a", "b", "c"], [[0.5, 0.6, 0.0], [0.2, 0.3, 0.5]])
    with pytest.raises(ClimbInputError, match=r"bad.csv: row 0 weights sum to 1.1"):
        read_pool([bad], [files["s1"]])
    other = _write(tmp_path / "other.csv", ["a", "b", "x"], [[0.0, 0.0, 1.0]])
    with pytest.raises(ClimbInputError, match="other.csv: weight columns"):
        read_pool([files["m1"], other], [files["s1"], files["s2"]])
    with pytest.raises(ClimbInputError, match="not found"):
        read_pool([tmp_path / "nope.csv"], [files["s1"]])


def test_lookup_and_regret(files: dict[str, Path]) -> None:
    pool = read_pool([files["m1"], files["m2"]], [files["s1"], files["s2"]])
    y = pool.target_scores("t1")
    lookup = PoolLookup(pool.mixtures, y)
    assert lookup(pool.mixtures[[2, 0]]).tolist() == [1.5, 3.0]
    assert lookup.n_evaluated == 2
    with pytest.raises(ClimbInputError, match="not in the pool"):
        lookup(np.array([[1.0, 0.0, 0.0]]))
    assert regret(2.0, y) == pytest.approx(0.5)
    assert regret(2.0, y, "maximize") == pytest.approx(1.0)
    assert regret(3.0, y, "maximize") == 0.0


def test_search_bench_on_a_tiny_pool_both_directions(tmp_path: Path) -> None:
    """The bench reads paired CSVs, runs every strategy, and --maximize mirrors minimisation."""
    import argparse

    from climb_dagster.bench import search
    from climb_dagster.core.search import sample_mixtures

    m = sample_mixtures(60, 4, seed=0)
    loss = 3.0 - np.log(m[:, 0] + 0.01) + m[:, 2]
    names = ["a", "b", "c", "d"]
    mix = _write(tmp_path / "mix.csv", names, m.tolist())
    lo = _write(tmp_path / "loss.csv", ["t"], loss[:, None].tolist())
    hi = _write(tmp_path / "acc.csv", ["t"], (-loss)[:, None].tolist())

    def bench(scores: Path, *extra: str) -> dict:
        parser = argparse.ArgumentParser()
        search.add_arguments(parser)
        argv = ["--pool-mixtures", str(mix), "--pool-scores", str(scores), "--budget", "14", "--seeds", "2"]
        return search.run(parser.parse_args(argv + ["--climb-models", "2", *extra]))

    a, b = bench(lo), bench(hi, "--maximize")
    assert a["pool"] == 60 and a["targets"] == 1 and a["budget"] == 14
    assert set(a["strategies"]) == {"climb", "regmix", "random"}
    for name in a["strategies"]:
        assert a["strategies"][name]["mean_regret"] >= 0
        assert a["strategies"][name]["mean_regret"] == pytest.approx(
            b["strategies"][name]["mean_regret"], abs=1e-5
        )
    with pytest.raises(ClimbInputError, match="'greedy'"):
        bench(lo, "--strategies", "greedy")
