"""The experiment's answer: the final mixture, and its export for training frameworks."""

# No `from __future__ import annotations`: Dagster reads annotations at decoration time.

import dagster as dg
import numpy as np
import polars as pl

from climb_dagster.assets.experiments import MAX_ROUNDS
from climb_dagster.assets.rounds import load_predictor, prior_of, record_direction
from climb_dagster.core import bootstrap
from climb_dagster.core.experiment import ExperimentConfig
from climb_dagster.core.round_plots import png_markdown, weights_bar_png
from climb_dagster.partitions import experiments
from climb_dagster.resources.experiment_tracking import track_final, try_track
from climb_dagster.resources.tracking import MlflowTracker

EVAL_KEYS = [f"round_{j}_proxy_evaluations" for j in range(1, MAX_ROUNDS + 1)]


def experiment_config(record: dict) -> ExperimentConfig:
    return ExperimentConfig.from_dict({k: v for k, v in record.items() if k not in ("token_store", "config_hash")})


@dg.asset(
    partitions_def=experiments,
    group_name="final",
    ins={
        "experiment": dg.AssetIn("experiment"),
        "cluster_tokens": dg.AssetIn("cluster_tokens"),
        "predictor": dg.AssetIn(f"round_{MAX_ROUNDS}_predictor"),
        **{key: dg.AssetIn(key) for key in EVAL_KEYS},
    },
    kinds={"json", "mlflow"},
)
def final_mixture(context: dg.AssetExecutionContext, tracker: MlflowTracker, **upstream) -> dg.Output[dict]:
    """The selected mixture over super-clusters, beside the natural token-share mixture."""
    from climb_dagster.core.search.strategies import select_final

    record, predictor_text = upstream["experiment"], upstream["predictor"]
    exp = experiment_config(record)
    prior = prior_of(upstream["cluster_tokens"])
    evals = [upstream[key] for key in EVAL_KEYS]
    hm, hs, spent = bootstrap.history(evals)
    predictor = load_predictor(predictor_text)
    weights = select_final(exp.strategy_config(), predictor, hm, hs, exp.seed, prior=prior)
    direction = record_direction(record)
    best_i = int(np.argmin(hs) if direction == "minimize" else np.argmax(hs))
    uniform = np.full(prior.size, 1.0 / prior.size)
    predicted = predictor.predict(np.vstack([weights, prior, uniform]))
    final = {
        "experiment": record["name"],
        "strategy": record["strategy"],
        "direction": direction,
        "weights": [float(w) for w in weights],
        "natural": [float(w) for w in prior],
        "predicted_score": float(predicted[0]),
        "predicted_natural_score": float(predicted[1]),
        "predicted_uniform_score": float(predicted[2]),
        "best_observed_score": float(hs[best_i]),
        "proxies_trained": int(spent),
        "proxies_successful": int(hs.size),
        "config_hash": record["config_hash"],
    }
    table = pl.DataFrame(
        {"super_cluster": list(range(prior.size)), "final": weights.round(4), "natural": prior.round(4)}
    )
    png = weights_bar_png(np.vstack([weights]), f"{record['name']}: final mixture")
    tracking = try_track(context.log.warning, "MLflow final mixture", lambda: track_final(tracker, record, final))
    return dg.Output(
        final,
        metadata={
            "predicted_score": final["predicted_score"],
            "predicted_natural_score": final["predicted_natural_score"],
            "best_observed_score": final["best_observed_score"],
            "proxies_trained": final["proxies_trained"],
            "final_vs_natural": dg.MetadataValue.md(table.to_pandas().to_markdown(index=False)),
            "final_plot": dg.MetadataValue.md(png_markdown(png, "final mixture")),
            **tracking,
        },
    )

