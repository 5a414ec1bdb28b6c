"""The MLflow tree of an experiment, logged from stored asset values: experiment -> round -> proxy.

Each function only reads values the pipeline has already stored, and MlflowTracker is idempotent, so the
same functions serve live logging and `python -m climb_dagster.replay` after an MLflow outage.
"""

from __future__ import annotations

import io
import json
import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import dagster as dg
import polars as pl

from climb_dagster.core.clustering.superclusters import label_key
from climb_dagster.core.common import schema
from climb_dagster.core.common.artifacts import ModelText
from climb_dagster.core.experiment.records import ExperimentRecord, FinalMixture
from climb_dagster.core.io.redact import redact
from climb_dagster.core.search.rounds import load_predictor
from climb_dagster.resources.tracking import (
    CONFIG_HASH,
    EXPERIMENT,
    PROXY,
    ROUND,
    MlflowTracker,
    TrackingUnavailable,
)

log = logging.getLogger(__name__)
LOSS_METRIC = "loss"  # a proxy's training loss per step
EXAMPLE_ROWS = 5  # mixtures in the logged predictor's input example


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
    if record.cost is not None:
        for k, v in record.cost.to_dict().items():
            params[f"cost.{k}"] = ":".join(map(str, v)) if isinstance(v, list) else v
    return {k: v for k, v in params.items() if v is not None}


def experiment_run(tracker: MlflowTracker, record: ExperimentRecord) -> str:
    run_id = tracker.ensure_run(
        "experiment",
        {EXPERIMENT: record.name},
        name=record.name,
        extra_tags={CONFIG_HASH: record.config_hash},
    )
    tracker.log(run_id, params=_flat_params(record))
    return run_id


@dataclass(frozen=True)
class Logged:
    """Where a tracked step landed in MLflow: its run, and the logged model when it logged one."""

    run_id: str
    run_url: str
    model_uri: str | None = None
    model_url: str | None = None


def _started(evaluations: pl.DataFrame) -> float | None:
    """When the round's first proxy began training (None for tables stored before times were kept)."""
    if schema.STARTED_AT not in evaluations.columns:
        return None
    first = evaluations[schema.STARTED_AT].min()
    return None if first is None else float(first)


def _log_predictor(
    tracker: MlflowTracker, run_id: str, model: ModelText, evaluations: pl.DataFrame, k: int
) -> str:
    """The round's whole ensemble as one MLflow logged model; its input example: this round's mixtures."""
    predictor = load_predictor(model)
    example = evaluations.select(predictor.feature_names).head(EXAMPLE_ROWS).to_pandas()
    with tempfile.TemporaryDirectory(prefix="climb-predictor-") as tmp:
        return tracker.log_predictor(run_id, str(predictor.save(tmp)), example, step=k)


def _csv(table: pl.DataFrame) -> bytes:
    buf = io.StringIO()
    table.select(c for c in table.columns if c != schema.LOSS_CURVE).write_csv(buf)
    return buf.getvalue().encode()


def track_round(
    tracker: MlflowTracker,
    record: ExperimentRecord,
    round_number: int,
    evaluations: pl.DataFrame,
    summary: dict[str, Any],
    predictor: ModelText | None,
    plots: dict[str, bytes],
    fit: pl.DataFrame | None = None,
    labels: list[str] | None = None,
) -> Logged:
    """Round run with params/metrics/artifacts and the predictor as a logged model, one nested proxy run
    per evaluated mixture (real start/end times, loss curve), and the round's best-so-far and out-of-fold
    Spearman as metrics at step `round_number` on the experiment's parent run.

    `labels` name the weight params by super-cluster (`w_07_postgres_query_index`) instead of `w_007`."""
    parent = experiment_run(tracker, record)
    tracker.log_step_metrics(
        parent,
        {"best_score_so_far": summary.get("best_observed_score"), "oof_spearman": summary.get("cv_spearman")},
        step=round_number,
    )
    tags = {CONFIG_HASH: record.config_hash}
    run_id = tracker.ensure_run(
        "round",
        {EXPERIMENT: record.name, ROUND: str(round_number)},
        name=f"{record.name}/round-{round_number}",
        parent_run_id=parent,
        start_time_s=_started(evaluations),
        extra_tags=tags,
    )
    tracker.log(
        run_id,
        params={
            "round": round_number,
            "n_proxies": evaluations.height,
            "top_n_factor": record.config.top_n_factor,
        },
        metrics={k: v for k, v in summary.items() if isinstance(v, int | float)},
    )
    tracker.log_artifact_bytes(run_id, f"round_{round_number}_evaluations.csv", _csv(evaluations))
    if fit is not None:
        tracker.log_artifact_bytes(run_id, f"round_{round_number}_fit.csv", _csv(fit))
    for name, png in plots.items():
        tracker.log_artifact_bytes(run_id, name, png, artifact_path="plots")
    model_id = _log_predictor(tracker, run_id, predictor, evaluations, round_number) if predictor else None
    weight_cols = schema.weight_columns_of(evaluations.columns)
    for row in evaluations.iter_rows(named=True):
        proxy_run = tracker.ensure_run(
            "proxy",
            {EXPERIMENT: record.name, ROUND: str(round_number), PROXY: row[schema.PROXY_KEY]},
            name=row[schema.MIXTURE_ID],
            parent_run_id=run_id,
            start_time_s=row.get(schema.STARTED_AT),
            extra_tags=tags,
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
        curve = row.get(schema.LOSS_CURVE) or []
        tracker.log_metric_history(
            proxy_run, LOSS_METRIC, [(int(step), loss) for step, loss in curve], row.get(schema.ENDED_AT)
        )
        tracker.finish(
            proxy_run,
            "FINISHED" if row[schema.STATUS] == schema.OK else "FAILED",
            end_time_s=row.get(schema.ENDED_AT),
        )
    tracker.finish(run_id)
    return Logged(
        run_id,
        tracker.run_url(run_id),
        None if model_id is None else f"models:/{model_id}",
        None if model_id is None else tracker.model_url(model_id),
    )


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


def try_track(
    warn: Callable[[str], None], what: str, fn: Callable[[], Any], tracker: MlflowTracker | None = None
) -> dict[str, Any]:
    """Run a tracking call; metadata that links to its MLflow run (and logged model), or, when MLflow is
    down, a warning and metadata that say how to replay.

    `fn` returns a `Logged` or a run id (then `tracker` makes its link)."""
    try:
        done = fn()
        if isinstance(done, str) and tracker is not None:
            done = Logged(done, tracker.run_url(done))
        if not isinstance(done, Logged):
            return {"mlflow": "logged"}
        meta: dict[str, Any] = {"mlflow": dg.MetadataValue.url(done.run_url)}
        if done.model_uri:
            meta["mlflow_model"] = dg.MetadataValue.text(done.model_uri)
            meta["mlflow_model_page"] = dg.MetadataValue.url(done.model_url)
        return meta
    except TrackingUnavailable as exc:
        warn(
            redact(f"{what}: {exc}. Results are stored; replay later with `python -m climb_dagster.replay`.")
        )
        return {"mlflow": "pending replay"}
