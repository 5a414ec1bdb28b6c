"""reused_evidence: earlier experiments' proxies, re-expressed over this experiment's super-clusters (issue 24).

After a scheduled re-cluster (new drops assigned, centroids refitted, super-clusters re-merged) the next
experiment's partition materializes this from what is already stored, with no manual step: every other
experiment's record and round evaluations (same target and proxy only), the token store each trained on and the
one this experiment runs on. Its metadata shows the old -> new map of each earlier store with its error; the check
`evidence_kept` warns when most of the earlier evidence could not be reused. Beside it, `frozen_block` holds
freeze-and-expand's plan (the experiment's `reuse_freeze`): after an update that only added drops, the super-clusters
it left unchanged keep the latest earlier experiment's final ratios, and every round proposes around that block.
"""

# No `from __future__ import annotations`: Dagster reads annotations at decoration time.

from pathlib import Path

import dagster as dg
import polars as pl

from climb_dagster.assets.metadata import table as table_metadata
from climb_dagster.core.common import schema
from climb_dagster.core.experiment.evidence import PastExperiment, gather_evidence
from climb_dagster.core.experiment.records import ExperimentRecord
from climb_dagster.core.io import storage as files
from climb_dagster.core.reuse.rows import ReusedRows
from climb_dagster.partitions import experiments
from climb_dagster.resources.io_manager import read_value
from climb_dagster.resources.storage import ClimbStorage
from climb_dagster.resources.tracking import MlflowTracker
from climb_dagster.tracking.experiment_tree import track_reuse, try_track

# Below this share of earlier runs reused, the check warns: most of the evidence was lost.
KEPT_WARN_SHARE = 0.5
SOURCE, ERROR = "source_experiment", "reexpression_error"
# Mixture ids of reused rows in the rounds' history, fit tables and MLflow.
REUSED_PREFIX = "reused-"
# Final mixtures whose order decides which earlier experiment is "the latest" (freeze-and-expand's ratios).
FINALS_LOOKED_AT = 1000


def reused_table(rows: ReusedRows, k: int) -> pl.DataFrame:
    """One row per reused proxy, shaped like a round's evaluations (mixture id `reused-000`, status ok, score),
    so the rounds read it as the first rows of their history: where it came from, its key, validation score,
    error, and its weights over the current super-clusters (w_000...)."""
    n = len(rows)
    base = pl.DataFrame(
        {
            schema.MIXTURE_ID: [f"{REUSED_PREFIX}{i:03d}" for i in range(n)],
            schema.STATUS: [schema.OK] * n,
            SOURCE: list(rows.sources),
            schema.PROXY_KEY: list(rows.proxy_keys),
            schema.SCORE: rows.scores.tolist(),
            ERROR: rows.errors.tolist(),
        },
        schema={
            schema.MIXTURE_ID: pl.String,
            schema.STATUS: pl.String,
            SOURCE: pl.String,
            schema.PROXY_KEY: pl.String,
            schema.SCORE: pl.Float64,
            ERROR: pl.Float64,
        },
    )
    weights = pl.DataFrame(
        rows.mixtures, schema={c: pl.Float64 for c in schema.weight_columns(k)}, orient="row"
    )
    return pl.concat([base, weights], how="horizontal")


def _latest_first(context: dg.AssetExecutionContext, names: list[str]) -> list[str]:
    """`names` by their final mixture's latest materialization, newest first; those without one after, by name."""
    records = context.instance.fetch_materializations(dg.AssetKey("final_mixture"), limit=FINALS_LOOKED_AT).records
    order: dict[str, int] = {}
    for r in records:
        if r.partition_key in names and r.partition_key not in order:
            order[r.partition_key] = len(order)
    return sorted(names, key=lambda n: (order.get(n, len(order)), n))


def _past(context: dg.AssetExecutionContext, root, name: str) -> tuple[list[PastExperiment], list[str]]:
    """Every other experiment stored under `root`, latest final first: its record, round evaluations and final
    mixture's weights; names not materialized."""
    past, missing = [], []
    others = [o for o in context.instance.get_dynamic_partitions(experiments.name) if o != name]
    for other in _latest_first(context, others):
        if other == name:
            continue
        try:
            record = read_value(root / "experiment" / other)
        except FileNotFoundError:
            missing.append(other)
            continue
        tables = []
        for k in range(1, record.config.n_rounds + 1):
            try:
                tables.append(read_value(root / f"round_{k}_proxy_evaluations" / other))
            except FileNotFoundError:
                break
        try:
            final = tuple(read_value(root / "final_mixture" / other).weights)
        except FileNotFoundError:
            final = None
        past.append(PastExperiment(other, record, tuple(tables), final))
    return past, missing


@dg.multi_asset(
    partitions_def=experiments,
    group_name="experiments",
    outs={
        "reused_evidence": dg.AssetOut(
            kinds={"polars"},
            description="Earlier experiments' proxies on the same target and proxy, re-expressed over this "
            "experiment's super-clusters, with their error; empty when the experiment's `reuse` is off.",
        ),
        "frozen_block": dg.AssetOut(
            description="Freeze-and-expand's plan: the unchanged super-clusters and the ratios they keep (from the "
            "latest earlier experiment's final mixture), or why it does not run.",
        ),
    },
    check_specs=[
        dg.AssetCheckSpec(
            "evidence_kept",
            asset="reused_evidence",
            description=f"Warns when less than {KEPT_WARN_SHARE:.0%} of the earlier experiments' runs could be "
            "reused (clusters changed or gone beyond the thresholds).",
        )
    ],
)
def reused_evidence(
    context: dg.AssetExecutionContext,
    storage: ClimbStorage,
    tracker: MlflowTracker,
    experiment: ExperimentRecord,
):
    """Earlier experiments' proxies re-expressed over this experiment's super-clusters, and the freeze plan."""
    exp = experiment.config
    options = storage.options()

    def local(ref: str) -> Path:
        return files.local_dir_copy(files.make_path(ref, options), kind="token_store")

    # A strategy that trains its own proxies (DoReMi) does not search from a history: nothing to reuse.
    on = exp.reuse and exp.search.proposes
    past, missing = _past(context, storage.root(), context.partition_key) if on else ([], [])
    evidence = gather_evidence(
        experiment, past, exp.reuse_max_error, exp.reuse_min_overlap, resolve=local, freeze=on and exp.reuse_freeze
    )
    rows, report, plan = evidence.rows, evidence.report, evidence.freeze
    k = rows.mixtures.shape[1]
    summary = rows.summary()
    mapped = [r for r in report if "skipped" not in r]
    maps = pl.DataFrame(
        [
            {
                "experiment": r["experiment"],
                "old store": r["old_store"],
                "reused": r["reused"],
                "gone share": r["gone_share"],
                "changed share": r["changed_share"],
                "changed fine clusters": r["changed_fine_clusters"],
                "new super-clusters": r["new_superclusters"],
            }
            for r in mapped
        ]
    )
    metadata = {
        "reuse": on,
        "reused_proxies": summary["reused"],
        "earlier_runs": summary["past_runs"],
        "reused_share": round(summary["reused_share"], 4),
        "by_experiment": dg.MetadataValue.json(summary["by_experiment"]),
        "excluded": dg.MetadataValue.json(summary["excluded"]),
        "skipped_experiments": dg.MetadataValue.json(
            {r["experiment"]: r["skipped"] for r in report if "skipped" in r}
            | {m: "not materialized" for m in missing}
        ),
        "max_error": exp.reuse_max_error,
        "min_overlap": exp.reuse_min_overlap,
        "dagster/row_count": len(rows),
    }
    if maps.height:
        metadata["map"] = table_metadata(maps, decimals=3)
    if on:
        freeze = plan.to_dict() if exp.reuse_freeze else None
        metadata |= try_track(
            context.log.warning,
            "MLflow reuse",
            lambda: track_reuse(tracker, experiment, summary, freeze),
            tracker,
        )
    yield dg.Output(reused_table(rows, k), output_name="reused_evidence", metadata=metadata)
    block = plan.block
    yield dg.Output(
        plan.to_dict(),
        output_name="frozen_block",
        metadata={
            "runs": plan.runs,
            "reason": plan.reason,
            "source_experiment": plan.source or "",
            **(
                {"frozen": dg.MetadataValue.json(list(block.frozen)), "ratios": dg.MetadataValue.json(list(block.ratios))}
                if block is not None
                else {}
            ),
        },
    )
    lost = summary["past_runs"] > 0 and summary["reused_share"] < KEPT_WARN_SHARE
    yield dg.AssetCheckResult(
        asset_key="reused_evidence",
        check_name="evidence_kept",
        passed=not lost,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "reused_share": round(summary["reused_share"], 4),
            "earlier_runs": summary["past_runs"],
            "excluded": dg.MetadataValue.json(summary["excluded"]),
        },
        description=(
            f"{summary['reused']} of {summary['past_runs']} earlier runs reused"
            + (": most of the evidence was lost (see the map's gone and changed shares)" if lost else "")
        ),
    )
