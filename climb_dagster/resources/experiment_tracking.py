"""The MLflow tree of an experiment, logged from stored asset values: experiment -> round -> proxy.

Each function only reads values the pipeline has already stored, and MlflowTracker is idempotent, so the
same functions serve live logging and `python -m climb_dagster.replay` after an MLflow outage.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable
from typing import Any

import polars as pl

from climb_dagster.core import schema
from climb_dagster.core.records import ExperimentRecord, FinalMixture
from climb_dagster.core.redact import redact
from climb_dagster.core.superclusters import label_key
from climb_dagster.resources.tracking import EXPERIMENT, PROXY, ROUND, MlflowTracker, TrackingUnavailable

log = logging.getLogger(__name__)


def _flat_params(record: ExperimentRecord) -> dict[str, Any]:
    exp = record.config
    params = {
        "strategy": exp.strategy,
        "rounds": ":".join(str(r) for r in exp.rounds),
        "budget": exp.budget,
        "seed": exp.seed,
        "n_candidates": exp.n_candidates,
        "target.kind": exp.target.kind,
        "target.documents_path": exp.target.documents_path,
        "target.mc_path": exp.target.mc_path,
    }
    proxy = exp.proxy.to_dict()
    for section in ("model", "train"):
        for k, v in proxy[section].items():
            params[f"proxy.{section}.{k}"] = v
    return {k: v for k, v in params.items() if v is not None}


def experiment_run(tracker: MlflowTracker, record: ExperimentRecord) -> str:
    run_id = tracker.ensure_run("experiment", {EXPERIMENT: record.name}, name=record.name)
    tracker.log(run_id, params=_flat_params(record))
    return run_id


def _round_run(tracker: MlflowTracker, record: ExperimentRecord, round_number: int) -> str:
    parent = experiment_run(tracker, record)
    name = record.name
    return tracker.ensure_run(
        "round",
        {EXPERIMENT: name, ROUND: str(round_number)},
        name=f"{name}/round-{round_number}",
        parent_run_id=parent,
    )


def track_round(
    tracker: MlflowTracker,
    record: ExperimentRecord,
    round_number: int,
    evaluations: pl.DataFrame,
    summary: dict[str, Any],
    predictor_text: str | None,
    plots: dict[str, bytes],
    labels: list[str] | None = None,
) -> str:
    """Round run with params/metrics/artifacts, one nested proxy run per evaluated mixture.

    `labels` name the weight params by super-cluster (`w_07_postgres_query_index`) instead of `w_007`."""
    run_id = _round_run(tracker, record, round_number)
    tracker.log(
        run_id,
        params={
            "round": round_number,
            "n_proxies": evaluations.height,
            "top_n_factor": record.config.top_n_factor,
        },
        metrics={k: v for k, v in summary.items() if isinstance(v, int | float)},
    )
    buf = io.StringIO()
    evaluations.write_csv(buf)
    tracker.log_artifact_bytes(run_id, f"round_{round_number}_evaluations.csv", buf.getvalue().encode())
    for name, png in plots.items():
        tracker.log_artifact_bytes(run_id, name, png, artifact_path="plots")
    if predictor_text:
        tracker.log_lightgbm(run_id, predictor_text)
    weight_cols = schema.weight_columns_of(evaluations.columns)
    for row in evaluations.iter_rows(named=True):
        proxy_run = tracker.ensure_run(
            "proxy",
            {EXPERIMENT: record.name, ROUND: str(round_number), PROXY: row[schema.PROXY_KEY]},
            name=row[schema.MIXTURE_ID],
            parent_run_id=run_id,
        )
        metrics = {
            k: row[k]
            for k in (schema.SCORE, schema.TRAIN_LOSS, schema.TOKENS, schema.WALL_S)
            if row.get(k) is not None
        }
        params = {weight_param(c, labels): round(row[c], 6) for c in weight_cols} | {
            schema.STATUS: row[schema.STATUS],
            schema.MIXTURE_ID: row[schema.MIXTURE_ID],
        }
        if row.get(schema.REASON):
            params[schema.REASON] = row[schema.REASON][:250]
        tracker.log(proxy_run, params=params, metrics=metrics)
        tracker.finish(proxy_run, "FINISHED" if row[schema.STATUS] == schema.OK else "FAILED")
    tracker.finish(run_id)
    return run_id


def weight_param(column: str, labels: list[str] | None) -> str:
    """MLflow's name for a weight column: `w_` + the super-cluster's label as an identifier, when known."""
    index = int(column.removeprefix(schema.WEIGHT_PREFIX))
    if labels is None or index >= len(labels):
        return column
    return schema.WEIGHT_PREFIX + label_key(labels[index])


def track_final(tracker: MlflowTracker, record: ExperimentRecord, final: FinalMixture) -> str:
    run_id = experiment_run(tracker, record)
    final = final.to_dict()
    metrics = {k: final[k] for k in ("predicted_score", "best_observed_score") if final.get(k) is not None}
    tracker.log(run_id, metrics=metrics)
    tracker.log_artifact_bytes(run_id, "final_mixture.json", json.dumps(final, indent=1).encode())
    tracker.finish(run_id)
    return run_id


def try_track(warn: Callable[[str], None], what: str, fn: Callable[[], Any]) -> dict[str, str]:
    """Run a tracking call; when MLflow is down, warn and return metadata that says how to replay."""
    try:
        fn()
        return {"mlflow": "logged"}
    except TrackingUnavailable as exc:
        warn(
            redact(f"{what}: {exc}. Results are stored; replay later with `python -m climb_dagster.replay`.")
        )
        return {"mlflow": "pending replay"}
