"""round_k_predictor: the LightGBM predictor fitted on every proxy evaluated so far."""

# No `from __future__ import annotations`: Dagster reads annotations at decoration time.

import dagster as dg

from climb_dagster.assets.checks import unused_round
from climb_dagster.assets.metadata import display_number
from climb_dagster.core.clustering.superclusters import supercluster_labels
from climb_dagster.core.common.artifacts import ModelText
from climb_dagster.core.common.timing import Timer
from climb_dagster.core.report.plots import predicted_vs_actual_png, weights_bar_png
from climb_dagster.core.search import history as search_history
from climb_dagster.core.search.predictor import fit_predictor
from climb_dagster.core.search.rounds import (
    OOF_PREDICTED,
    cv_folds,
    fit_table,
    oof_spearman_check,
    predictor_summary,
    unexplained_scores,
)
from climb_dagster.core.search.strategies import round_seed
from climb_dagster.partitions import experiments
from climb_dagster.resources.tracking import MlflowTracker
from climb_dagster.tracking.experiment_tree import plot_metadata, track_round, try_track

OOF_CHECK = "oof_spearman_positive"
OOF_CHECK_DESCRIPTION = (
    "Warns when the predictor ranks held-out proxies no better than chance: the Spearman correlation of "
    "its out-of-fold predictions (each proxy predicted by a model fitted without it) with the observed "
    "scores is <= 0 or undefined. The next round then ranks candidates on noise; consider more proxies "
    "per round. Passes, saying so, when fewer than 4 proxies scored (no cross-validation)."
)


def predictor_asset(k: int) -> dg.AssetsDefinition:
    # super_cluster_stats: the super-clusters' names for the plots and MLflow.
    ins = {
        "experiment": dg.AssetIn("experiment"),
        "super_cluster_stats": dg.AssetIn("super_cluster_stats"),
        "reused_evidence": dg.AssetIn("reused_evidence"),
    }
    ins |= {
        f"round_{j}_proxy_evaluations": dg.AssetIn(f"round_{j}_proxy_evaluations") for j in range(1, k + 1)
    }

    @dg.asset(
        name=f"round_{k}_predictor",
        partitions_def=experiments,
        group_name=f"round_{k}",
        ins=ins,
        kinds={"lightgbm", "mlflow"},
        check_specs=[
            dg.AssetCheckSpec(
                "evaluations_scores_finite",
                asset=f"round_{k}_predictor",
                blocking=True,
                description="Every evaluation the predictor fits on has a finite score or is marked failed.",
            ),
            dg.AssetCheckSpec(
                OOF_CHECK,
                asset=f"round_{k}_predictor",
                description=OOF_CHECK_DESCRIPTION,
            ),
        ],
    )
    def predictor(context: dg.AssetExecutionContext, tracker: MlflowTracker, **upstream):
        """LightGBM predictor fitted on every proxy evaluated so far (LightGBM text + CV Spearman)."""

        record = upstream["experiment"]
        strategy = record.config.strategy_config()
        reused = upstream["reused_evidence"]
        # Reused rows first (mixture ids `reused-...` in the fit table); they are not this experiment's spend.
        evals = [reused, *(upstream[f"round_{j}_proxy_evaluations"] for j in range(1, k + 1))]
        bad = unexplained_scores(evals)
        if bad:
            yield dg.AssetCheckResult(
                check_name="evaluations_scores_finite", passed=False, metadata={"rows": ", ".join(bad)}
            )
            raise dg.Failure(f"round {k}: evaluations with a non-finite score not marked failed: {bad}")
        hm, hs, spent = search_history.history(evals)
        spent -= reused.height
        if hs.size < 2:
            raise dg.Failure(
                f"round {k} of {record.name}: only {hs.size} successful proxies; cannot fit a predictor"
            )
        timer = Timer()
        # The same predictor config and seed as the search's own round (run_search), so both agree.
        fitted = fit_predictor(
            hm,
            hs,
            record.direction,
            round_seed(record.seed, k),
            strategy.predictor,
            cv_folds=cv_folds(hs.size),
        )
        texts, sidecar = fitted.to_strings()
        summary, in_sample = predictor_summary(fitted, hm, hs, spent, record.direction)
        summary["n_reused"] = reused.height
        fit = fit_table(evals, fitted, in_sample)
        oof = fitted.metadata.get("cv_predictions")
        oof_passed, oof_seen = oof_spearman_check(fitted)
        seen = oof_seen["oof_spearman"]
        title = f"{record.name} round {k}: out-of-fold Spearman " + (
            f"{seen:.2f}" if isinstance(seen, float) else "undefined"
        )
        scatter = predicted_vs_actual_png(
            in_sample,
            hs,
            title if oof is not None else f"{record.name} round {k}: in-sample fit only",
            out_of_fold=None if oof is None else fit[OOF_PREDICTED].to_numpy(),
        )
        model = ModelText(tuple(texts), {"sidecar": sidecar, **summary})
        this_round = evals[-1]
        tracking = {}
        if this_round.height > 0:
            mixtures = search_history.table_mixtures(this_round)
            labels = supercluster_labels(upstream["super_cluster_stats"], mixtures.shape[1])
            bars = weights_bar_png(mixtures, f"round {k} weights", labels)
            plots = {f"round_{k}_weights.png": bars}
            tracking = try_track(
                context.log.warning,
                f"MLflow round {k}",
                lambda: track_round(tracker, record, k, this_round, summary, model, plots, fit, labels=labels),
            )
        scatter_plot = {"predicted_vs_observed": ("predicted vs observed", scatter)}
        used = k <= record.config.n_rounds  # an unused pass-through round gets no MLflow run
        shown = plot_metadata(context.log.warning, tracker if used else None, scatter_plot, record, k)
        yield dg.Output(
            model,
            metadata={
                **{key: display_number(v) for key, v in summary.items() if v is not None},
                "fit_seconds": timer.rounded(3),
                **shown,
                **tracking,
            },
        )
        if k > record.config.n_rounds:
            yield unused_round("evaluations_scores_finite", k, record.config.n_rounds)
            yield unused_round(OOF_CHECK, k, record.config.n_rounds)
            return
        yield dg.AssetCheckResult(check_name="evaluations_scores_finite", passed=True)
        yield dg.AssetCheckResult(
            check_name=OOF_CHECK,
            passed=oof_passed,
            severity=dg.AssetCheckSeverity.WARN,
            metadata=oof_seen,
            description=None if oof_passed else "the predictor ranks held-out proxies no better than chance",
        )

    return predictor
