"""Replay MLflow tracking from stored assets: `python -m climb_dagster.replay [--experiment NAME ...]`.

After an MLflow outage the pipeline's results are already stored; this logs them (idempotently: runs are
found by tags before being created) to the tracking server of the current deployment.
"""

from __future__ import annotations

import argparse
import json
import sys

from climb_dagster.assets.experiments import MAX_ROUNDS
from climb_dagster.core.clustering.superclusters import supercluster_labels
from climb_dagster.core.io import storage
from climb_dagster.core.report.plots import weights_bar_png
from climb_dagster.core.search import history as search_history
from climb_dagster.core.search.rounds import fit_table, load_predictor
from climb_dagster.deployments import settings
from climb_dagster.resources.io_manager import read_value
from climb_dagster.resources.tracking import MlflowTracker
from climb_dagster.tracking.experiment_tree import experiment_run, track_final, track_round


def replay_experiment(root, tracker: MlflowTracker, name: str) -> dict[str, int]:
    record = read_value(root / "experiment" / name)
    experiment_run(tracker, record)
    rounds = 0
    seen = []
    try:
        stats = read_value(root / "super_cluster_stats")
    except FileNotFoundError:
        stats = None  # weights are then named by super-cluster id alone
    for k in range(1, MAX_ROUNDS + 1):
        try:
            evals = read_value(root / f"round_{k}_proxy_evaluations" / name)
            model = read_value(root / f"round_{k}_predictor" / name)
        except FileNotFoundError:
            break
        seen.append(evals)
        if evals.height == 0:
            continue
        summary = {key: v for key, v in model.metadata.items() if key != "sidecar"}
        mixtures = search_history.table_mixtures(evals)
        labels = supercluster_labels(stats, mixtures.shape[1])
        plots = {f"round_{k}_weights.png": weights_bar_png(mixtures, f"round {k} weights", labels)}
        predictor = load_predictor(model)
        fit = fit_table(seen, predictor, predictor.predict(search_history.history(seen)[0]))
        track_round(tracker, record, k, evals, summary, model, plots, fit, labels=labels)
        rounds += 1
    try:
        track_final(tracker, record, read_value(root / "final_mixture" / name))
        final = 1
    except FileNotFoundError:
        final = 0
    return {"rounds": rounds, "final": final}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m climb_dagster.replay", description=__doc__)
    parser.add_argument(
        "--experiment", action="append", help="experiment partition key (default: all stored)"
    )
    parser.add_argument("--tracking-uri", help="override MLFLOW_TRACKING_URI of the deployment")
    args = parser.parse_args(argv)
    s = settings()
    root = storage.make_path(s["storage"], storage.s3_storage_options(s["endpoint"], s["region"]))
    tracker = MlflowTracker(
        tracking_uri=args.tracking_uri or s["mlflow"], artifact_root=s["mlflow_artifacts"]
    )
    names = args.experiment or sorted(
        p.name.removesuffix(".json") for p in (root / "experiment").iterdir() if p.name.endswith(".json")
    )
    report = {name: replay_experiment(root, tracker, name) for name in names}
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
