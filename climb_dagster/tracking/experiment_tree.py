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
from climb_dagster.core.report.plots import png_markdown
from climb_dagster.core.search.rounds import load_predictor
from climb_dagster.resources.tracking import (
    BEST_TARGET_SCORE,
    CONFIG_HASH,
    DIRECTION,
    EXPERIMENT,
    FINAL_OBSERVED,
    FINAL_PREDICTED,
    OOF_SPEARMAN,
    PROXY,
    PROXY_DEVICE,
    ROUND,
    STRATEGY,
    TARGET_SCORE,
    TRAIN_LOSS,
    MlflowTracker,
    TrackingUnavailable,
)

log = logging.getLogger(__name__)
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
        # Where its proxies train, as the experiment says (a run tag of the Dagster job cannot know).
        extra_tags={
            CONFIG_HASH: record.config_hash,
            PROXY_DEVICE: record.proxy.train.device,
            DIRECTION: str(record.direction),
            STRATEGY: record.config.strategy,
        },
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


def predictor_params(predictor: Any) -> dict[str, Any]:
    """The fitted predictor's settings (its PredictorConfig, as stored in its metadata), its ensemble size and
    direction: what the logged model's parameters show."""
    config = dict(predictor.metadata.get("config", {}))
    return {**config, "n_models": len(predictor.boosters), "direction": str(predictor.direction)}


def _log_predictor(
    tracker: MlflowTracker,
    run_id: str,
    model: ModelText,
    evaluations: pl.DataFrame,
    k: int,
    summary: dict[str, Any],
) -> str:
    """The round's whole ensemble as one MLflow logged model, with what it is judged by (out-of-fold Spearman,
    the rows it was fit on, the round) as metrics and its LightGBM settings as parameters; its input example:
    this round's mixtures."""
    predictor = load_predictor(model)
    example = evaluations.select(predictor.feature_names).head(EXAMPLE_ROWS).to_pandas()
    params = {"round": k, "features": len(predictor.feature_names), **predictor_params(predictor)}
    metrics = {
        OOF_SPEARMAN: summary.get("cv_spearman"),
        "rows": summary.get("n_successful"),
        "round": k,
        "predicted_best": summary.get("predicted_best"),
    }
    with tempfile.TemporaryDirectory(prefix="climb-predictor-") as tmp:
        return tracker.log_predictor(
            run_id, str(predictor.save(tmp)), example, step=k, params=params, metrics=metrics
        )


def _csv(table: pl.DataFrame) -> bytes:
    buf = io.StringIO()
    # Nested values stay out of the CSV: the curve is each proxy run's metric history, the composition its
    # composition.json artifact.
    table.select(c for c in table.columns if c not in (schema.LOSS_CURVE, schema.COMPOSITION)).write_csv(buf)
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
        {BEST_TARGET_SCORE: summary.get("best_observed_score"), OOF_SPEARMAN: summary.get("cv_spearman")},
        step=round_number,
    )
    tags = {CONFIG_HASH: record.config_hash}
    run_id = round_run(tracker, record, round_number, parent, _started(evaluations))
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
    model_id = (
        _log_predictor(tracker, run_id, predictor, evaluations, round_number, summary) if predictor else None
    )
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
        names = {schema.SCORE: TARGET_SCORE, schema.TOKENS: "tokens", schema.WALL_S: "wall_s"}
        metrics = {name: row[k] for k, name in names.items() if row.get(k) is not None}
        # The mixture is the run's parameters; its id and status are tags, so the compare view selects weights.
        params = {weight_param(c, labels): round(row[c], 6) for c in weight_cols}
        run_tags = {schema.STATUS: row[schema.STATUS], schema.MIXTURE_ID: row[schema.MIXTURE_ID]}
        if row.get(schema.REASON):
            run_tags[schema.REASON] = row[schema.REASON][:250]
        tracker.log(proxy_run, params=params, metrics=metrics, tags=run_tags)
        curve = row.get(schema.LOSS_CURVE) or []
        if not curve and row.get(schema.TRAIN_LOSS) is not None:  # runs cached before curves were kept
            curve = [(int(row.get(schema.STEPS) or 0), row[schema.TRAIN_LOSS])]
        tracker.log_metric_history(
            proxy_run, TRAIN_LOSS, [(int(step), loss) for step, loss in curve], row.get(schema.ENDED_AT)
        )
        if row.get(schema.COMPOSITION):
            # What the run trained on per (super-cluster, drop, fine cluster): what re-expresses it later.
            tracker.log_artifact_bytes(proxy_run, "composition.json", row[schema.COMPOSITION].encode())
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


def track_reuse(
    tracker: MlflowTracker, record: ExperimentRecord, summary: dict[str, Any], freeze: dict[str, Any] | None = None
) -> str:
    """How many earlier proxies the experiment starts from, and from which experiments, on its parent run; with
    freeze-and-expand's plan (`FreezePlan.to_dict()`), the frozen super-clusters or why none."""
    run_id = experiment_run(tracker, record)
    frozen = {}
    if freeze is not None:
        block = freeze.get("block")
        frozen = {"freeze": str(freeze["reason"])[:250], "frozen_superclusters": json.dumps(block and block["frozen"])}
    tracker.log(
        run_id,
        params={
            "reused_proxies": summary["reused"],
            "reused_from": json.dumps(summary["by_experiment"], sort_keys=True)[:500],
            **frozen,
        },
        metrics={"reused_share": float(summary["reused_share"])},
    )
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
    names = {"predicted_score": FINAL_PREDICTED, "best_observed_score": FINAL_OBSERVED}
    metrics = {name: final[k] for k, name in names.items() if final.get(k) is not None}
    tracker.log(run_id, metrics=metrics)
    tracker.log_artifact_bytes(run_id, "final_mixture.json", json.dumps(final, indent=1).encode())
    tracker.finish(run_id)
    return run_id


STAGE = "climb.stage"


def round_run(
    tracker: MlflowTracker, record: ExperimentRecord, k: int, parent: str, start_time_s: float | None = None
) -> str:
    """Round k's run under the experiment's parent run (found or created; the same run whichever step of the
    round asks first)."""
    return tracker.ensure_run(
        "round",
        {EXPERIMENT: record.name, ROUND: str(k)},
        name=f"{record.name}/round-{k}",
        parent_run_id=parent,
        start_time_s=start_time_s,
        extra_tags={CONFIG_HASH: record.config_hash},
    )


def plot_runs(tracker: MlflowTracker, record: ExperimentRecord | None, round_number: int | None) -> str:
    """The run a plot belongs to: the experiment's round run, its parent run (round None), or, for the
    clustering stage (no record), one `clustering plots` run of the experiment."""
    if record is None:
        return tracker.ensure_run("plots", {STAGE: "clustering"}, name="clustering plots")
    parent = experiment_run(tracker, record)
    if round_number is None:
        return parent
    return round_run(tracker, record, round_number, parent)


def plot_metadata(
    warn: Callable[[str], None],
    tracker: MlflowTracker | None,
    plots: dict[str, tuple[str, bytes]],
    record: ExperimentRecord | None = None,
    round_number: int | None = None,
) -> dict[str, Any]:
    """Metadata that shows each plot (`key -> (alt text, png)`) on the asset page: `key`, a short markdown
    image of the PNG as the MLflow server serves it (Dagster renders short markdown inline), `key_link`, a link
    that opens it, and `key_png`, the PNG itself as markdown (behind Dagster's "Show Markdown": the plot is
    there when no MLflow server runs). Without MLflow only `key`, the PNG itself."""
    inline = {key: dg.MetadataValue.md(png_markdown(png, alt)) for key, (alt, png) in plots.items()}
    if tracker is None:
        return inline
    try:
        run_id = plot_runs(tracker, record, round_number)
        meta: dict[str, Any] = {}
        for key, (alt, png) in plots.items():
            url = tracker.log_plot(run_id, key, png)
            meta[key] = dg.MetadataValue.md(f"![{alt}]({url})")
            meta[f"{key}_link"] = dg.MetadataValue.url(url)
            meta[f"{key}_png"] = inline[key]
        return meta
    except TrackingUnavailable as exc:
        warn(redact(f"plots not sent to MLflow ({exc}); they are kept in the metadata instead"))
        return inline


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
