"""`python -m climb_dagster.demo --compare`: the demo's search beside random search and RegMix at the same proxy
budget, each an experiment partition of its own (`demo`, `demo-random`, `demo-regmix`) with its MLflow parent
run, and each final mixture retrained with fresh seeds and scored on the test split the search never saw.

The test score goes to each parent run as `final_test_target_score`, so MLflow's runs table of the experiment
compares the strategies in one view (README "MLflow")."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from climb_dagster.core.io.corpus import CorpusConfig, read_drop
from climb_dagster.core.io.storage import make_path
from climb_dagster.core.proxy.train import train_proxy
from climb_dagster.core.targets.evaluators import build_eval_windows
from climb_dagster.core.targets.prepare import open_token_store
from climb_dagster.core.targets.score import evaluate_target
from climb_dagster.core.targets.spec import TargetSpec
from climb_dagster.demo.landing import test_path
from climb_dagster.resources.io_manager import read_value
from climb_dagster.resources.tracking import FINAL_TEST, MlflowTracker
from climb_dagster.tracking.experiment_tree import experiment_run, try_track

COMPARED = ("random", "regmix")
# Fresh proxy seeds for the test retrains: never a search's own.
TEST_SEED_OFFSET = 10_000


def experiment_names(first: str, strategy: str) -> dict[str, str]:
    """Strategy -> experiment partition: the demo's own name for its strategy, `<name>-<strategy>` for the rest."""
    return {strategy: first, **{s: f"{first}-{s}" for s in COMPARED if s != strategy}}


def final_test_score(root: Any, experiment: str, seeds: int, options: dict | None = None) -> float:
    """The experiment's final mixture retrained with `seeds` fresh seeds and scored on the demo's test split
    (`<target>-test.parquet` beside the searched target): the mean."""
    record = read_value(root / "experiment" / experiment)
    final = read_value(root / "final_mixture" / experiment)
    store = open_token_store(record.token_store_path, options)
    proxy = record.proxy
    test_docs = test_path(Path(record.config.target.documents_path))
    with tempfile.TemporaryDirectory(prefix="climb-compare-") as tmp:
        frame, _ = read_drop(make_path(str(test_docs), options), "test", CorpusConfig(id_column=None))
        windows = build_eval_windows(
            frame["text"].to_list(),
            store.path,
            Path(tmp) / "test_windows.npy",
            proxy.model.block_size,
            record.config.target.max_eval_windows,
        )
        test = TargetSpec.loss(windows, "test_loss")
        scores = []
        for i in range(seeds):
            result = train_proxy(store, np.asarray(final.weights), proxy, record.seed + TEST_SEED_OFFSET + i)
            ok = result.ok
            scores.append(float(evaluate_target(result.model, test, num_threads=proxy.train.num_threads)) if ok else np.nan)
    return float(np.nanmean(scores))


def log_test_score(tracker: MlflowTracker, root: Any, experiment: str, score: float, warn) -> dict[str, Any]:
    """The test score on the experiment's MLflow parent run (where the runs table compares strategies)."""
    record = read_value(root / "experiment" / experiment)

    def log() -> str:
        run_id = experiment_run(tracker, record)
        tracker.log(run_id, metrics={FINAL_TEST: score})
        return run_id

    return try_track(warn, f"MLflow test score of {experiment}", log, tracker)


def comparison_rows(root: Any, names: dict[str, str], test: dict[str, float]) -> list[dict[str, Any]]:
    rows = []
    for strategy, experiment in names.items():
        final = read_value(root / "final_mixture" / experiment)
        rows.append(
            {
                "strategy": strategy,
                "experiment": experiment,
                "proxies_trained": final.proxies_trained,
                "best_observed_validation": final.best_observed_score,
                "final_test": test[strategy],
            }
        )
    return rows


def print_comparison(rows: list[dict[str, Any]], direction: str, seeds: int, runs_url: str) -> None:
    print(f"\n[demo] strategies at equal budget ({direction}; test: final mixture retrained with {seeds} fresh seeds):")
    print(f"{'strategy':<10}  {'experiment':<14}  {'proxies':>7}  {'best validation':>15}  {'final test':>10}")
    for r in rows:
        print(
            f"{r['strategy']:<10}  {r['experiment']:<14}  {r['proxies_trained']:>7}  "
            f"{r['best_observed_validation']:>15.4f}  {r['final_test']:>10.4f}"
        )
    print(f"  MLflow runs table (one parent run per strategy, column {FINAL_TEST}): {runs_url}")
