"""The strategy registry: a strategy defined here, in one class, runs in `run_search`, the experiment config,
`bench search` and the round-1 Dagster asset once registered, and is gone once unregistered."""

from __future__ import annotations

import argparse
from pathlib import Path

import dagster as dg
import numpy as np
import pytest

from climb_dagster.core.common.direction import Direction
from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.experiment.config import ExperimentConfig
from climb_dagster.core.search.strategies import (
    Round,
    SearchStrategy,
    StrategyConfig,
    proposing_strategies,
    register_strategy,
    registered_strategies,
    run_search,
    strategy_summaries,
    unregister_strategy,
)
from climb_dagster.core.targets.config import TargetConfig

TOY = "greedy_uniform"
K = 4
AIM = np.array([0.7, 0.1, 0.1, 0.1])


class GreedyUniform(SearchStrategy):
    """Round 0: the uniform mixture and the corners; each later round steps from the uniform mixture towards
    the best one observed. In pool mode: the nearest pool rows not evaluated yet."""

    name = TOY
    summary = "uniform and corners, then towards the best (test toy)"
    iterative = True

    def default_config(self, budget: int, direction: str) -> StrategyConfig:
        return StrategyConfig(self.name, budget, ratios=(1.0, 1.0), direction=direction, final="observed")

    def check(self, config: StrategyConfig) -> None:
        if config.final != "observed":
            raise ClimbInputError(f"{TOY} has no predictor; final must be 'observed', got {config.final!r}")

    def propose(self, r: Round) -> np.ndarray:
        k = r.prior.size
        uniform = np.full(k, 1.0 / k)
        if r.index == 0:
            if r.size > k + 1:
                raise ClimbInputError(f"{TOY}: round 0 holds at most {k + 1} mixtures, got {r.size}")
            wanted = np.vstack([uniform, np.eye(k)])[: r.size]
        else:
            best = r.mixtures[Direction(r.config.direction).argbest(r.scores)]
            t = np.linspace(0.25, 0.75, r.size)[:, None]
            wanted = t * best + (1 - t) * uniform
        return wanted if r.pool is None else _nearest_rows(r.pool, wanted)


def _nearest_rows(pool: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    free = np.ones(pool.shape[0], dtype=bool)
    rows = []
    for w in wanted:
        dist = np.where(free, np.abs(pool - w).sum(axis=1), np.inf)
        rows.append(int(np.argmin(dist)))
        free[rows[-1]] = False
    return pool[rows]


def _distance(m: np.ndarray) -> np.ndarray:
    return np.abs(m - AIM).sum(axis=1)


@pytest.fixture
def toy():
    register_strategy(GreedyUniform)
    yield
    unregister_strategy(TOY)


def test_registered_strategy_runs_a_whole_search(toy) -> None:
    assert TOY in registered_strategies() and TOY in proposing_strategies()
    assert f"{TOY}: uniform and corners" in strategy_summaries()
    calls = []

    def evaluate(m: np.ndarray) -> np.ndarray:
        calls.append(m.copy())
        return _distance(m)

    res = run_search(TOY, evaluate, budget=8, prior=K, seed=0)
    assert len(calls) == 2 and res.rounds.tolist() == [0] * 4 + [1] * 4 and res.predictors == []
    np.testing.assert_array_equal(res.mixtures[:4], np.vstack([np.full(K, 0.25), np.eye(K)[:3]]))
    best = res.mixtures[:4][np.argmin(res.scores[:4])]
    t = np.linspace(0.25, 0.75, 4)[:, None]
    np.testing.assert_allclose(res.mixtures[4:], t * best + (1 - t) * 0.25)
    np.testing.assert_array_equal(res.final_mixture, res.mixtures[np.argmin(res.scores)])
    with pytest.raises(ClimbInputError, match="final must be 'observed'"):
        StrategyConfig(TOY, 8, ratios=(1.0, 1.0), final="predicted")


def test_registered_strategy_is_an_experiment_strategy(toy) -> None:
    target = TargetConfig(documents_path="t.parquet")
    exp = ExperimentConfig("toy", target, strategy=TOY, rounds=(4, 2, 2))
    cfg = exp.strategy_config()
    assert exp.rounds == (4, 2, 2) and exp.budget == 8 and exp.extra_proxies == 0
    assert cfg.name == TOY and cfg.round_sizes() == [4, 2, 2] and cfg.n_candidates == exp.n_candidates


def test_registered_strategy_runs_in_the_pool_benchmark(toy, tmp_path: Path) -> None:
    from climb_dagster.bench import search
    from climb_dagster.core.search.sampling import sample_mixtures

    m = sample_mixtures(50, K, seed=0)
    mix, loss = tmp_path / "mix.csv", tmp_path / "loss.csv"
    mix.write_text("index,a,b,c,d\n" + "".join(f"{i},{','.join(map(str, r))}\n" for i, r in enumerate(m)))
    loss.write_text("index,t\n" + "".join(f"{i},{v}\n" for i, v in enumerate(_distance(m))))
    parser = argparse.ArgumentParser()
    search.add_arguments(parser)
    argv = ["--pool-mixtures", str(mix), "--pool-scores", str(loss), "--budget", "8", "--seeds", "2"]
    out = search.run(parser.parse_args([*argv, "--strategies", TOY]))
    assert set(out["strategies"]) == {TOY} and out["strategies"][TOY]["mean_regret"] >= 0


def test_unregistered_strategy_is_refused() -> None:
    assert TOY not in registered_strategies()
    with pytest.raises(ClimbInputError, match=f"got '{TOY}'"):
        StrategyConfig(TOY, 8)
    with pytest.raises(ClimbInputError, match=f"unknown strategy '{TOY}'"):
        ExperimentConfig("toy", TargetConfig(documents_path="t.parquet"), strategy=TOY)


@pytest.mark.slow
def test_registered_strategy_proposes_round_1_in_the_pipeline(toy, tmp_path: Path, monkeypatch) -> None:
    """The experiment and round_1_mixtures assets on the tiny clustered corpus (4 super-clusters)."""
    from climb_dagster.assets.targets import documents_target
    from climb_dagster.core.search.history import table_mixtures
    from climb_dagster.partitions import experiments
    from climb_dagster.resources.io_manager import read_value
    from climb_dagster_tests.assets.bootstrap_fixture import (
        TINY_EXPERIMENT,
        all_assets,
        materialize_proxy_data,
        seed_clustered_corpus,
    )
    from climb_dagster_tests.reliability.helpers import experiment_run_config, local_resources

    monkeypatch.setenv("CLIMB_CACHE_DIR", str(tmp_path / "cache"))
    target = seed_clustered_corpus(tmp_path)
    instance = dg.DagsterInstance.ephemeral()
    resources = local_resources(tmp_path)
    materialize_proxy_data(instance, resources)
    instance.add_dynamic_partitions(experiments.name, ["toy"])
    spec = {**TINY_EXPERIMENT, "strategy": TOY, "rounds": [4, 2], "target": documents_target(target)}
    result = dg.materialize(
        all_assets(),
        selection=["experiment", "reused_evidence", "frozen_block", "round_1_mixtures"],
        partition_key="toy",
        instance=instance,
        resources=resources,
        run_config=experiment_run_config(spec, ["experiment"]),
    )
    assert result.success
    steps = {e.step_key for e in result.all_events if e.is_step_success}
    assert not [s for s in steps if "own_proxies" in s and "jobs" not in s]
    record = read_value(tmp_path / "storage" / "experiment" / "toy")
    assert record.config.strategy == TOY and record.config.rounds == (4, 2)
    table = read_value(tmp_path / "storage" / "round_1_mixtures" / "toy")
    np.testing.assert_array_equal(table_mixtures(table), np.vstack([np.full(K, 0.25), np.eye(K)[:3]]))
