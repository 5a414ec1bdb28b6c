"""The experiment's answer: the final mixture, and its export for training frameworks."""

# No `from __future__ import annotations`: Dagster reads annotations at decoration time.

import dagster as dg
import numpy as np
import polars as pl
from pydantic import Field

from climb_dagster.assets.checks import experiment_check
from climb_dagster.assets.experiments import MAX_ROUNDS
from climb_dagster.assets.metadata import table as table_metadata
from climb_dagster.core.clustering.superclusters import supercluster_labels
from climb_dagster.core.common import schema
from climb_dagster.core.common.configs import core_config
from climb_dagster.core.experiment.records import FinalMixture, TokenizerRef, TokenStoreRef
from climb_dagster.core.io import storage as files
from climb_dagster.core.proxy.tokens import load_tokenizer
from climb_dagster.core.report.plots import final_vs_natural_png, png_markdown
from climb_dagster.core.search import history as search_history
from climb_dagster.core.search.rounds import load_predictor
from climb_dagster.core.search.strategies import select_final
from climb_dagster.partitions import experiments
from climb_dagster.resources.io_manager import LAZY
from climb_dagster.resources.storage import ClimbStorage
from climb_dagster.resources.tracking import MlflowTracker
from climb_dagster.tracking.experiment_tree import track_final, try_track

EVAL_KEYS = [f"round_{j}_proxy_evaluations" for j in range(1, MAX_ROUNDS + 1)]
WEIGHT_SUM_TOLERANCE = 1e-6


@dg.asset(
    partitions_def=experiments,
    group_name="final",
    ins={
        "experiment": dg.AssetIn("experiment"),
        "cluster_tokens": dg.AssetIn("cluster_tokens"),
        "predictor": dg.AssetIn(f"round_{MAX_ROUNDS}_predictor"),
        "super_cluster_stats": dg.AssetIn("super_cluster_stats"),
        **{key: dg.AssetIn(key) for key in EVAL_KEYS},
    },
    kinds={"json", "mlflow"},
    check_specs=[
        dg.AssetCheckSpec(
            "final_weights_sum_to_one",
            asset="final_mixture",
            blocking=True,
            description="The final weights are finite, non-negative and sum to 1 "
            f"(within {WEIGHT_SUM_TOLERANCE:g}).",
        )
    ],
)
def final_mixture(context: dg.AssetExecutionContext, tracker: MlflowTracker, **upstream):
    """The selected mixture over super-clusters, beside the natural token-share mixture."""

    record, predictor_text = upstream["experiment"], upstream["predictor"]
    exp = record.config
    prior = upstream["cluster_tokens"].prior()
    evals = [upstream[key] for key in EVAL_KEYS]
    hm, hs, spent = search_history.history(evals)
    predictor = load_predictor(predictor_text)
    weights = select_final(exp.strategy_config(), predictor, hm, hs, exp.seed, prior=prior)
    direction = record.direction
    best_i = direction.argbest(hs)
    uniform = np.full(prior.size, 1.0 / prior.size)
    predicted = predictor.predict(np.vstack([weights, prior, uniform]))
    final = FinalMixture(
        experiment=record.name,
        strategy=exp.strategy,
        direction=str(direction),
        weights=tuple(float(w) for w in weights),
        natural=tuple(float(w) for w in prior),
        predicted_score=float(predicted[0]),
        predicted_natural_score=float(predicted[1]),
        predicted_uniform_score=float(predicted[2]),
        best_observed_score=float(hs[best_i]),
        proxies_trained=int(spent) + exp.extra_proxies,
        proxies_successful=int(hs.size),
        config_hash=record.config_hash,
        labels=tuple(supercluster_labels(upstream["super_cluster_stats"], prior.size)),
    )
    table = pl.DataFrame(
        {
            schema.SUPER_CLUSTER: list(range(prior.size)),
            "label": list(final.labels),
            "final": weights,
            "natural": prior,
        }
    )
    png = final_vs_natural_png(weights, prior, final.labels, f"{record.name}: final mixture vs natural")
    tracking = try_track(
        context.log.warning, "MLflow final mixture", lambda: track_final(tracker, record, final), tracker
    )
    yield dg.Output(
        final,
        metadata={
            "predicted_score": final.predicted_score,
            "predicted_natural_score": final.predicted_natural_score,
            "best_observed_score": final.best_observed_score,
            "proxies_trained": final.proxies_trained,
            "final_vs_natural": table_metadata(table, max_rows=1000),
            "final_plot": dg.MetadataValue.md(png_markdown(png, "final mixture vs natural")),
            **tracking,
        },
    )
    yield _weights_sum_check(weights)


def _weights_sum_check(weights: np.ndarray) -> dg.AssetCheckResult:
    total = float(weights.sum())
    ok = bool(
        np.isfinite(weights).all() and (weights >= 0).all() and abs(total - 1.0) <= WEIGHT_SUM_TOLERANCE
    )
    return dg.AssetCheckResult(
        check_name="final_weights_sum_to_one",
        passed=ok,
        metadata={"sum": total, "tolerance": WEIGHT_SUM_TOLERANCE, "min_weight": float(weights.min())},
    )


class MixtureExportConfig(dg.Config):
    """The fields of core.export.training_set.ExportConfig (validated there)."""

    token_budget: int = Field(
        default=0,
        description="Tokens of the sampled training set; 0 = as many as the kept corpus holds "
        "(the mixture re-weights it; small super-clusters repeat).",
    )
    max_repeat: float = Field(default=4.0, description="Repeat no super-cluster more than this many times.")
    fit_budget: bool = Field(
        default=True,
        description="Shrink the budget until every share holds within max_repeat (false: keep the budget; "
        "capped super-clusters then fall short of their share).",
    )
    shard_rows: int = Field(default=5_000, description="Documents per exported Parquet shard.")
    seed: int = Field(default=0, description="Seed of the document sampling.")
    share_tolerance: float = Field(
        default=0.02,
        description="mixture_meets_shares check: largest allowed |realized share - target share| of any "
        "super-cluster.",
    )
    share_severity: str = Field(
        default="error", description="What the share check reports beyond the tolerance: error or warn."
    )


@dg.asset(
    partitions_def=experiments,
    group_name="final",
    ins={
        # Every crawl drop feeds every experiment's export.
        "raw_documents": dg.AssetIn(metadata={LAZY: True}, partition_mapping=dg.AllPartitionMapping()),
        "cluster_assignments": dg.AssetIn(metadata={LAZY: True}, partition_mapping=dg.AllPartitionMapping()),
    },
    kinds={"parquet", "json"},
)
def mixture_export(
    context: dg.AssetExecutionContext,
    config: MixtureExportConfig,
    storage: ClimbStorage,
    final_mixture: FinalMixture,
    cluster_tokens: TokenStoreRef,
    proxy_tokenizer: TokenizerRef,
    super_clusters: pl.DataFrame,
    super_cluster_stats: pl.DataFrame,
    raw_documents: dict,
    cluster_assignments: dict,
) -> dg.Output[dict]:
    """Blend weights (JSON, Megatron/NeMo --data-path, HF interleave) and a sampled training set
    at a token budget, as Parquet shards with a manifest (like ClimbMix)."""
    from climb_dagster.core.export import training_set as export
    from climb_dagster.core.io.documents import kept_documents

    name = context.partition_key
    settings = core_config(export.ExportConfig, config)
    plan = export.plan_export(final_mixture.weights, cluster_tokens.tokens, settings)
    weights, n_super = plan.weights, plan.weights.size
    names = [f"super_cluster_{i:03d}" for i in range(n_super)]
    prefixes = [f"{cluster_tokens.path}/cluster_{i:03d}" for i in range(n_super)]
    labels = list(final_mixture.labels) or supercluster_labels(super_cluster_stats, n_super)
    blend = export.blend_formats(weights, names, prefixes, labels)
    if plan.capped:
        context.log.warning(
            f"super-clusters {list(plan.capped)} would repeat up to {plan.uncapped_max_rate:.1f}x to meet the "
            f"budget of {plan.token_budget} tokens; capped at {settings.max_repeat}x (raise max_repeat or lower "
            "token_budget)"
        )
    tokenizer_path = files.make_path(proxy_tokenizer.path, storage.options())
    tokenizer = load_tokenizer(files.local_dir_copy(tokenizer_path, kind="tokenizer"))
    out = storage.root() / "exports" / name
    drops = kept_documents(raw_documents, cluster_assignments, super_clusters)
    about = {
        "experiment": name,
        "super_clusters": super_cluster_stats.select(
            schema.SUPER_CLUSTER, pl.exclude(schema.SUPER_CLUSTER)
        ).to_dicts(),
        "final_mixture": final_mixture.to_dict(),
    }
    manifest = export.write_export(out, (d.documents for d in drops), tokenizer, plan, settings, blend, about)
    got = np.asarray(manifest["tokens_per_super_cluster"], dtype=np.int64)
    table = pl.DataFrame(
        {
            schema.SUPER_CLUSTER: list(range(n_super)),
            "label": labels,
            "weight": weights,
            "target_tokens": (weights * plan.token_budget).round().astype(np.int64),
            "sampled_tokens": got,
            "target_share": manifest["target_share"],
            "realized_share": manifest["realized_share"],
            "repeat_rate": plan.rates,
        }
    )
    return dg.Output(
        {
            "path": str(out),
            "version": manifest["version"],
            "shards": [s["file"] for s in manifest["shards"]],
            "tokens_sampled": manifest["tokens_sampled"],
            "blend": blend,
            "share_check": manifest["share_check"],
        },
        metadata={
            "tokens_sampled": manifest["tokens_sampled"],
            "token_budget": plan.token_budget,
            "max_share_difference": manifest["share_check"]["max_abs_difference"],
            "shards": len(manifest["shards"]),
            "export_path": dg.MetadataValue.path(str(out)),
            "megatron_data_path": blend["megatron_data_path"],
            "per_super_cluster": table_metadata(table, max_rows=1000),
        },
    )


@experiment_check(asset=mixture_export)
def mixture_meets_shares(mixture_export: dict) -> dg.AssetCheckResult:
    """The export's realized token share per super-cluster is within the tolerance of the mixture's."""
    from climb_dagster.core.export.training_set import ShareReport

    report = ShareReport.from_dict(mixture_export["share_check"])
    severity = dg.AssetCheckSeverity.WARN if report.severity == "warn" else dg.AssetCheckSeverity.ERROR
    table = pl.DataFrame(
        {
            schema.SUPER_CLUSTER: list(range(len(report.target))),
            "target_share": list(report.target),
            "realized_share": list(report.realized),
        }
    )
    labels = list(mixture_export.get("blend", {}).get("labels", {}).values())
    if len(labels) == table.height:
        table = table.insert_column(1, pl.Series("label", labels))
    return dg.AssetCheckResult(
        passed=report.passed,
        severity=severity,
        metadata={
            "max_abs_difference": round(report.max_abs_difference, 6),
            "tolerance": report.tolerance,
            "off_target": dg.MetadataValue.json(list(report.off_target)),
            "shares": table_metadata(table, max_rows=1000, decimals=6),
        },
    )


FINAL_CHECKS = [mixture_meets_shares]
