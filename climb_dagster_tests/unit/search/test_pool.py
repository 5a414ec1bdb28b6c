"""Offline pools: reading RegMix-style CSVs, lookup evaluation, regret."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.search.pool import PoolLookup, read_pool, regret


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
    from climb_dagster.core.search.sampling import sample_mixtures

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


def test_composite_targets(files: dict[str, Path]) -> None:
    from climb_dagster.core.search.pool import parse_composite

    pool = read_pool([files["m1"], files["m2"]], [files["s1"], files["s2"]])
    assert parse_composite("avg=mean(*)", pool.targets) == ("avg", {"t1": 0.5, "t2": 0.5})
    assert parse_composite("w = 0.25*t1 + 0.75*t2", pool.targets) == ("w", {"t1": 0.25, "t2": 0.75})
    both = pool.with_composite(*parse_composite("w=0.25*t1+0.75*t2", pool.targets))
    assert both.targets == ("t1", "t2", "w")
    np.testing.assert_allclose(both.target_scores("w"), [1.5, 3.5, 0.75])
    with pytest.raises(ClimbInputError, match=r"\['t9'\] are not score columns"):
        parse_composite("x=mean(t1,t9)", pool.targets)
    with pytest.raises(ClimbInputError, match="weight 'a' is not a number"):
        parse_composite("x=a*t1", pool.targets)
    with pytest.raises(ClimbInputError, match="clashes"):
        pool.with_composite("t1", {"t2": 1.0})


def test_search_bench_tunes_on_one_pool_and_reports_on_another(tmp_path: Path) -> None:
    import argparse

    from climb_dagster.bench import search
    from climb_dagster.core.search.sampling import sample_mixtures

    names = ["a", "b", "c", "d"]
    paths = {}
    for split, seed in (("tune", 0), ("report", 1)):
        m = sample_mixtures(40, 4, seed=seed)
        scores = np.column_stack([3.0 - np.log(m[:, 0] + 0.01), 2.0 + m[:, 2]])
        paths[split] = (
            _write(tmp_path / f"{split}_mix.csv", names, m.tolist()),
            _write(tmp_path / f"{split}_loss.csv", ["t1", "t2"], scores.tolist()),
        )
    parser = argparse.ArgumentParser()
    search.add_arguments(parser)
    argv = ["--pool-mixtures", str(paths["report"][0]), "--pool-scores", str(paths["report"][1])]
    argv += ["--tune-mixtures", str(paths["tune"][0]), "--tune-scores", str(paths["tune"][1])]
    argv += ["--tune", "final=observed,predicted", "--tune", "models=1,2", "--budget", "10", "--seeds", "2"]
    argv += ["--composite", "avg=mean(*)", "--regmix-climb-predictor"]
    out = search.run(parser.parse_args(argv))
    tuning = out["tuning"]
    assert tuning["pool"] == 40 and len(tuning["grid"]) == 4
    assert tuning["seeds"] == [search.TUNE_SEED_SHIFT, search.TUNE_SEED_SHIFT + 1]
    best = min(tuning["grid"], key=lambda g: g["mean_regret"])
    assert tuning["chosen"] == best["setting"] and set(best["setting"]) == {"climb_final", "climb_models"}
    assert out["targets"] == 3 and set(out["strategies"]) == {
        "climb",
        "regmix",
        "random",
        "regmix_climb_predictor",
    }
    for result in out["strategies"].values():
        assert set(result["per_target"]) == {"t1", "t2", "avg"}
        assert all(r["mean_regret"] >= 0 and r["stderr_regret"] >= 0 for r in result["per_target"].values())
    args = parser.parse_args(argv)
    ablation = search._strategy("regmix_climb_predictor", 10, "minimize", args)
    assert (
        ablation.name == "regmix"
        and ablation.predictor == search._strategy("climb", 10, "minimize", args).predictor
    )
    with pytest.raises(ClimbInputError, match="--tune 'speed=1'"):
        search.run(parser.parse_args([*argv, "--tune", "speed=1"]))
