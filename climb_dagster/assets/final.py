"""The experiment's answer: the final mixture, and its export for training frameworks."""

# No `from __future__ import annotations`: Dagster reads annotations at decoration time.

import dagster as dg
import numpy as np
import polars as pl
from pydantic import Field

from climb_dagster.assets.checks import experiment_check
from climb_dagster.assets.experiments import MAX_ROUNDS
from climb_dagster.assets.metadata import display_number, step_memory
from climb_dagster.assets.metadata import table as table_metadata
from climb_dagster.core.clustering.superclusters import supercluster_labels
from climb_dagster.core.common import schema
from climb_dagster.core.common.configs import core_config
from climb_dagster.core.experiment.records import FinalMixture, TokenStoreRef
from climb_dagster.core.export import training_set as export
from climb_dagster.core.io import publication
from climb_dagster.core.io import storage as files
from climb_dagster.core.io.documents import kept_drop
from climb_dagster.core.proxy.drop_store import META_FILES, DropStore
from climb_dagster.core.report.plots import final_vs_natural_png
from climb_dagster.core.reuse.unchanged import FreezePlan
from climb_dagster.core.search import history as search_history
from climb_dagster.core.search.rounds import load_predictor
from climb_dagster.core.search.strategies import select_final
from climb_dagster.k8s import DROP_OP_TAGS
from climb_dagster.partitions import experiments
from climb_dagster.resources.io_manager import LAZY, read_value
from climb_dagster.resources.storage import ClimbStorage
from climb_dagster.resources.tracking import MlflowTracker
from climb_dagster.tracking.experiment_tree import plot_metadata, track_final, try_track

EVAL_KEYS = [f"round_{j}_proxy_evaluations" for j in range(1, MAX_ROUNDS + 1)]
WEIGHT_SUM_TOLERANCE = 1e-6
# The export warns (no_heavy_repetition) when a super-cluster is repeated more often than this.
DEFAULT_QUIET_REPEAT = 2.0


@dg.asset(
    partitions_def=experiments,
    group_name="final",
    ins={
        "experiment": dg.AssetIn("experiment"),
        "cluster_tokens": dg.AssetIn("cluster_tokens"),
        "predictor": dg.AssetIn(f"round_{MAX_ROUNDS}_predictor"),
        "reused_evidence": dg.AssetIn("reused_evidence"),
        "frozen_block": dg.AssetIn("frozen_block"),
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
    reused = upstream["reused_evidence"]
    # The predictor was fitted on the reused rows too; the answer is picked among this experiment's own proxies
    # (a reused score was measured on an earlier clustering's data; see run_search).
    hm, hs, spent = search_history.history([upstream[key] for key in EVAL_KEYS])
    predictor = load_predictor(predictor_text)
    search_prior = upstream["cluster_tokens"].search_prior(record.proxy.model.block_size)
    block = FreezePlan.from_dict(upstream["frozen_block"]).block if exp.search.proposes else None
    weights = select_final(exp.strategy_config(), predictor, hm, hs, exp.seed, prior=search_prior, block=block)
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
            "predicted_score": display_number(final.predicted_score),
            "predicted_natural_score": display_number(final.predicted_natural_score),
            "best_observed_score": display_number(final.best_observed_score),
            "proxies_trained": final.proxies_trained,
            "proxies_reused": reused.height,
            "final_vs_natural": table_metadata(table, max_rows=1000),
            **plot_metadata(
                context.log.warning, tracker, {"final_plot": ("final mixture vs natural", png)}, record
            ),
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
    max_quiet_repeat: float = Field(
        default=DEFAULT_QUIET_REPEAT,
        description="no_heavy_repetition check: warn when a super-cluster is repeated more than this many times.",
    )


# One mapped export step per crawl drop (a pod each under Kubernetes): its mapping key.
def _drop_step(drop: str) -> str:
    return "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in drop)


@dg.op(
    out={"drops": dg.DynamicOut(dict), "plan": dg.Out(dict)},
    ins={
        "raw_documents": dg.In(metadata={LAZY: True}),
        "cluster_assignments": dg.In(metadata={LAZY: True}),
        "drop_tokens": dg.In(metadata={LAZY: True}),
    },
)
def export_plan(
    context: dg.OpExecutionContext,
    config: MixtureExportConfig,
    storage: ClimbStorage,
    final_mixture: FinalMixture,
    cluster_tokens: TokenStoreRef,
    super_cluster_stats: pl.DataFrame,
    raw_documents: dict,
    cluster_assignments: dict,
    drop_tokens: dict,
):
    """The export's plan (budget, repeat rates, blend) and a new version folder; one mapped step per drop."""
    settings = core_config(export.ExportConfig, config, exclude=["max_quiet_repeat"])
    plan = export.plan_export(final_mixture.weights, cluster_tokens.tokens, settings)
    n_super = plan.weights.size
    names = [f"super_cluster_{i:03d}" for i in range(n_super)]
    prefixes = [f"{cluster_tokens.path}/cluster_{i:03d}" for i in range(n_super)]
    labels = list(final_mixture.labels) or supercluster_labels(super_cluster_stats, n_super)
    blend = export.blend_formats(plan.weights, names, prefixes, labels)
    if plan.capped:
        context.log.warning(
            f"super-clusters {list(plan.capped)} would repeat up to {plan.uncapped_max_rate:.1f}x to meet the "
            f"budget of {plan.token_budget} tokens; capped at {settings.max_repeat}x (raise max_repeat or lower "
            "token_budget)"
        )
    missing = sorted(set(cluster_assignments) - set(drop_tokens))
    if missing:
        raise dg.Failure(f"drops {missing} have no drop_tokens (their token counts): materialize drop_tokens first")
    out = storage.root() / "exports" / context.partition_key
    version = publication.new_version(out)
    yield dg.Output(
        {
            "out": str(out),
            "version": str(version),
            "settings": config.model_dump(),
            "weights": plan.weights.tolist(),
            "rates": plan.rates.tolist(),
            "token_budget": plan.token_budget,
            "capped": list(plan.capped),
            "uncapped_max_rate": plan.uncapped_max_rate,
            "blend": blend,
            "labels": labels,
            "about": {
                "experiment": context.partition_key,
                "super_clusters": super_cluster_stats.select(
                    schema.SUPER_CLUSTER, pl.exclude(schema.SUPER_CLUSTER)
                ).to_dicts(),
                "final_mixture": final_mixture.to_dict(),
            },
        },
        output_name="plan",
    )
    for drop in sorted(cluster_assignments):
        yield dg.DynamicOutput(
            {
                "drop": drop,
                "raw_documents": str(raw_documents[drop].path),
                "cluster_assignments": str(cluster_assignments[drop].path),
                "drop_tokens": str(drop_tokens[drop].path),
            },
            output_name="drops",
            mapping_key=_drop_step(drop),
        )


def _plan_of(plan: dict) -> tuple:
    settings = core_config(export.ExportConfig, plan["settings"], exclude=["max_quiet_repeat"])
    weights = np.asarray(plan["weights"], dtype=np.float64)
    return settings, export.ExportPlan(
        weights,
        np.asarray(plan["rates"], dtype=np.float64),
        int(plan["token_budget"]),
        tuple(plan["capped"]),
        float(plan["uncapped_max_rate"]),
    )


@dg.op(tags=DROP_OP_TAGS)
def export_drop(storage: ClimbStorage, plan: dict, super_clusters: pl.DataFrame, drop: dict) -> dict:
    """One drop's share of the export: its kept documents sampled at the plan's rates into Parquet shards,
    with token counts from its drop store (nothing is re-tokenized)."""
    options = storage.options()
    settings, export_plan_ = _plan_of(plan)
    read = lambda key: read_value(files.make_path(drop[key], options))  # noqa: E731
    store = read("drop_tokens")
    counts = DropStore.open(
        files.local_files_copy(files.make_path(store.path, options), META_FILES), with_tokens=False
    ).docs([schema.ID, schema.N_TOKENS])
    docs = kept_drop(read("raw_documents"), read("cluster_assignments"), super_clusters).join(
        counts, on=schema.ID, how="inner"
    )
    out = files.make_path(plan["out"], options)
    part = export.export_drop(out, files.make_path(plan["version"], options), drop["drop"], docs, export_plan_, settings)
    return part.to_dict() | {**step_memory()}


@dg.op
def export_publish(context: dg.OpExecutionContext, storage: ClimbStorage, plan: dict, parts: list) -> dict:
    """Every drop's shards under one manifest, published last (a crash before leaves the previous export)."""
    options = storage.options()
    settings, export_plan_ = _plan_of(plan)
    out = files.make_path(plan["out"], options)
    drops = [export.DropExport.from_dict(p) for p in parts]
    manifest = export.publish_export(
        out, files.make_path(plan["version"], options), drops, export_plan_, settings, plan["blend"], plan["about"]
    )
    weights = export_plan_.weights
    got = np.asarray(manifest["tokens_per_super_cluster"], dtype=np.int64)
    table = pl.DataFrame(
        {
            schema.SUPER_CLUSTER: list(range(weights.size)),
            "label": plan["labels"],
            "weight": weights,
            "target_tokens": (weights * export_plan_.token_budget).round().astype(np.int64),
            "sampled_tokens": got,
            "target_share": manifest["target_share"],
            "realized_share": manifest["realized_share"],
            "repeat_rate": export_plan_.rates,
        }
    )
    context.add_output_metadata(
        {
            "tokens_sampled": manifest["tokens_sampled"],
            "token_budget": export_plan_.token_budget,
            "max_share_difference": display_number(manifest["share_check"]["max_abs_difference"]),
            "shards": len(manifest["shards"]),
            "drops": len(drops),
            "peak_rss_mib_of_drop_steps": max((float(p.get("peak_rss_mib", 0.0)) for p in parts), default=0.0),
            "export_path": dg.MetadataValue.path(str(out)),
            "megatron_data_path": plan["blend"]["megatron_data_path"],
            # Six decimals: a weight of 0.000009 (in the Megatron blend) must not read as 0.
            "per_super_cluster": table_metadata(table, max_rows=1000, decimals=6),
        }
    )
    return {
        "path": str(out),
        "version": manifest["version"],
        "shards": [s["file"] for s in manifest["shards"]],
        "tokens_sampled": manifest["tokens_sampled"],
        "blend": plan["blend"],
        "share_check": manifest["share_check"],
        "repeat_rates": manifest["repeat_rates"],
        "weights": plan["weights"],
        "labels": plan["labels"],
        "max_quiet_repeat": plan["settings"].get("max_quiet_repeat", DEFAULT_QUIET_REPEAT),
    }


def _export_config(config: dict) -> dict:
    """The export's config (`ops: {mixture_export: {config: ...}}`) goes to its planning step."""
    return {"export_plan": {"config": config}}


@dg.graph_asset(
    partitions_def=experiments,
    group_name="final",
    ins={
        # Every crawl drop feeds every experiment's export; each drop is exported in its own step.
        "raw_documents": dg.AssetIn(partition_mapping=dg.AllPartitionMapping()),
        "cluster_assignments": dg.AssetIn(partition_mapping=dg.AllPartitionMapping()),
        "drop_tokens": dg.AssetIn(partition_mapping=dg.AllPartitionMapping()),
    },
    config=dg.ConfigMapping(config_fn=_export_config, config_schema=MixtureExportConfig.to_config_schema()),
)
def mixture_export(
    final_mixture, cluster_tokens, super_clusters, super_cluster_stats, raw_documents, cluster_assignments, drop_tokens
):
    """Blend weights (JSON, Megatron/NeMo --data-path, HF interleave) and a sampled training set at a token
    budget, as Parquet shards with a manifest (like ClimbMix): one export step per crawl drop, published once."""
    drops, plan = export_plan(
        final_mixture, cluster_tokens, super_cluster_stats, raw_documents, cluster_assignments, drop_tokens
    )
    parts = drops.map(lambda drop: export_drop(plan, super_clusters, drop))
    return export_publish(plan, parts.collect())


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


@experiment_check(asset=mixture_export)
def no_heavy_repetition(mixture_export: dict) -> dg.AssetCheckResult:
    """No super-cluster is repeated more than max_quiet_repeat times in the exported set: a proxy trained on a few
    hundred thousand tokens cannot show what repeating a small cluster 4x at 70% weight costs a larger model
    trained longer, so the export warns instead of passing it quietly."""
    rates = mixture_export.get("repeat_rates")
    if rates is None:  # an export written before repeat rates were kept
        return dg.AssetCheckResult(passed=True, metadata={"repeat_rates": "not recorded"})
    limit = float(mixture_export.get("max_quiet_repeat", DEFAULT_QUIET_REPEAT))
    weights = mixture_export.get("weights") or [None] * len(rates)
    labels = mixture_export.get("labels") or [str(i) for i in range(len(rates))]
    heavy = [
        f"{labels[i]}: repeated {rate:.1f}x at weight {weights[i]:.2f}" if weights[i] is not None else f"{i}: {rate:.1f}x"
        for i, rate in enumerate(rates)
        if rate > limit
    ]
    return dg.AssetCheckResult(
        passed=not heavy,
        severity=dg.AssetCheckSeverity.WARN,
        description=None
        if not heavy
        else f"super-clusters repeated more than {limit:g}x: {'; '.join(heavy)} (raise token supply, lower the "
        "weight, or accept the repetition knowingly)",
        metadata={
            "max_repeat_rate": display_number(max(rates, default=0.0)),
            "max_quiet_repeat": limit,
            "heavy": dg.MetadataValue.json(heavy),
        },
    )


FINAL_CHECKS = [mixture_meets_shares, no_heavy_repetition]
