"""round_k_mixtures: the mixtures this round trains proxies on, with their proxy-run keys.

Round 1 is a graph: a strategy's own proxies (DoReMi's reference and DRO proxies) train in a mapped step with
the proxy steps' op tags (a GPU pod under Kubernetes), present only when the experiment's strategy has such
proxies; other rounds are one step.
"""

# No `from __future__ import annotations`: Dagster reads annotations at decoration time.

from collections.abc import Callable

import dagster as dg
import numpy as np
import polars as pl

from climb_dagster.assets.checks import unused_round
from climb_dagster.assets.metadata import table as table_metadata
from climb_dagster.core.clustering.superclusters import supercluster_labels
from climb_dagster.core.common import schema
from climb_dagster.core.common.timing import Timer
from climb_dagster.core.experiment.records import ExperimentRecord, TokenStoreRef
from climb_dagster.core.proxy.config import proxy_run_key
from climb_dagster.core.report.plots import weights_bar_png
from climb_dagster.core.report.tables import named_weights
from climb_dagster.core.reuse.unchanged import FreezePlan
from climb_dagster.core.search import history as search_history
from climb_dagster.core.search import strategies
from climb_dagster.core.search.rounds import history_for_proposal, load_predictor, weights_valid
from climb_dagster.core.targets.prepare import open_token_store
from climb_dagster.k8s import PROXY_OP_TAGS
from climb_dagster.partitions import experiments
from climb_dagster.resources.storage import ClimbStorage
from climb_dagster.resources.tracking import MlflowTracker
from climb_dagster.tracking.experiment_tree import plot_metadata


def _own_proxies_proposal(
    record: ExperimentRecord, tokens: TokenStoreRef, prior: np.ndarray, storage: ClimbStorage
) -> tuple[np.ndarray, dict]:
    """The strategy trains its own proxies here (DoReMi: cached under proxy_runs/doremi-<hash>)."""
    store = open_token_store(tokens.path, storage.options())
    train = record.config.search.own_proxies_trainer()
    return train(store, prior, record.proxy, record.seed, storage.root() / "proxy_runs", storage.options())


def _check_specs(k: int) -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec(
            "weights_valid",
            asset=f"round_{k}_mixtures",
            blocking=True,
            description="Every mixture is finite, non-negative and sums to 1 over all super-clusters.",
        ),
        dg.AssetCheckSpec(
            "budget_respected",
            asset=f"round_{k}_mixtures",
            blocking=True,
            description="The round proposes exactly the number of proxies its budget plans.",
        ),
    ]


def _propose(
    k: int, upstream: dict, own: dict | None, tracker: MlflowTracker, warn: Callable[[str], None]
):
    """Mixtures to train proxies on in round k (round 1: Dirichlet around the token shares), then the
    round's checks. `own`: what the step training the strategy's own proxies answered, when it has some."""

    record = upstream["experiment"]
    exp = record.config
    prior = upstream["cluster_tokens"].search_prior(record.proxy.model.block_size)
    if k > exp.n_rounds:
        empty = search_history.mixtures_table(k, np.zeros((0, prior.size)), [])
        yield dg.Output(empty, metadata={"active": False, "dagster/row_count": 0})
        for name in ("weights_valid", "budget_respected"):
            yield unused_round(name, k, exp.n_rounds, f"round_{k}_mixtures")
        return
    timer = Timer()
    extra: dict = {}
    if not exp.search.proposes:
        if own is None:
            raise dg.Failure(
                f"round {k}: a {exp.strategy} experiment proposes in round 1 only, after the step that "
                "trains its own proxies"
            )
        proposed, extra = np.asarray(own["weights"], dtype=np.float64), dict(own["info"])
    else:
        config = exp.strategy_config()
        reused = upstream["reused_evidence"]
        prev = [reused, *(upstream[f"round_{j}_proxy_evaluations"] for j in range(1, k))]
        hm, hs = history_for_proposal(prev, exp.target.direction)
        uses = k > 1 and exp.search.round_uses_predictor(config, k - 1)
        predictor = load_predictor(upstream["predictor"]) if uses else None
        plan = FreezePlan.from_dict(upstream["frozen_block"])
        proposed = strategies.propose_round(
            config, k - 1, hm, hs, prior, exp.seed, predictor=predictor, n_reused=reused.height, block=plan.block
        )
        extra["reused_proxies"] = reused.height
        if plan.block is not None:
            extra["frozen_superclusters"] = dg.MetadataValue.json(list(plan.block.frozen))
    keys = [proxy_run_key(m.tolist(), record.proxy, exp.seed, record.data_key()) for m in proposed]
    table = search_history.mixtures_table(k, proposed, keys)
    labels = supercluster_labels(upstream["super_cluster_stats"], prior.size)
    png = weights_bar_png(proposed, f"{record.name} round {k}: weights", labels)
    shown = named_weights(table, labels).with_columns(pl.col(schema.PROXY_KEY).str.head(12))
    yield dg.Output(
        table,
        metadata={
            "active": True,
            "dagster/row_count": table.height,
            **extra,
            "seconds": timer.rounded(3),
            "mixtures": table_metadata(
                shown, max_rows=50, decimals=3, descriptions={schema.PROXY_KEY: "first 12 characters"}
            ),
            **plot_metadata(warn, tracker, {"weights_plot": ("weights", png)}, record, k),
        },
    )
    n_reused = upstream["reused_evidence"].height if exp.search.proposes else 0
    yield from _mixture_checks(k, table, strategies.reuse_round_sizes(list(exp.rounds), n_reused)[k - 1], prior.size)


def _own_proxies_jobs_op(k: int) -> dg.OpDefinition:
    @dg.op(name=f"round_{k}_own_proxies_jobs", out=dg.DynamicOut(str))
    def jobs(record: ExperimentRecord):
        """One mapped step when the experiment's strategy trains proxies of its own, none otherwise (no pod,
        no GPU)."""
        exp = record.config
        if exp.search.own_proxies_step and k <= exp.n_rounds:
            yield dg.DynamicOutput(exp.strategy, mapping_key=exp.strategy)

    return jobs


def _own_proxies_op(k: int) -> dg.OpDefinition:
    @dg.op(name=f"round_{k}_train_own_proxies", tags=PROXY_OP_TAGS)
    def train(storage: ClimbStorage, record: ExperimentRecord, tokens: TokenStoreRef, job: str) -> dict:
        """The strategy's own proxies (DoReMi: reference and DRO, cached under proxy_runs/doremi-<hash>):
        the mixtures its round evaluates, its answer first (DoReMi: its averaged weights and the natural
        mixture)."""
        prior = tokens.search_prior(record.proxy.model.block_size)
        proposed, info = _own_proxies_proposal(record, tokens, prior, storage)
        return {"weights": proposed.tolist(), "info": info}

    return train


def _propose_op(k: int) -> dg.OpDefinition:
    @dg.op(
        name=f"round_{k}_propose_mixtures",
        out={"result": dg.Out(pl.DataFrame)}
        # The round's checks: each is satisfied by the AssetCheckResult `_propose` yields for it.
        | {spec.get_python_identifier(): dg.Out(dg.Nothing) for spec in _check_specs(k)},
    )
    def propose(
        context: dg.OpExecutionContext,
        tracker: MlflowTracker,
        experiment: ExperimentRecord,
        cluster_tokens: TokenStoreRef,
        super_cluster_stats,
        reused_evidence: pl.DataFrame,
        frozen_block: dict,
        own: list,
    ):
        """The round's mixtures: the strategy's answer from its own proxies when that step ran."""
        upstream = {
            "experiment": experiment,
            "cluster_tokens": cluster_tokens,
            "super_cluster_stats": super_cluster_stats,
            "reused_evidence": reused_evidence,
            "frozen_block": frozen_block,
        }
        yield from _propose(k, upstream, own[0] if own else None, tracker, context.log.warning)

    return propose


def mixtures_asset(k: int) -> dg.AssetsDefinition:
    if k == 1:
        return _first_mixtures_asset()
    prev_evals = [f"round_{j}_proxy_evaluations" for j in range(1, k)]
    ins = {
        "experiment": dg.AssetIn("experiment"),
        "cluster_tokens": dg.AssetIn("cluster_tokens"),
        # For the super-clusters' names in the table and plot.
        "super_cluster_stats": dg.AssetIn("super_cluster_stats"),
        "predictor": dg.AssetIn(f"round_{k - 1}_predictor"),
        # Earlier experiments' proxies over these super-clusters: the first rows of the history.
        "reused_evidence": dg.AssetIn("reused_evidence"),
        "frozen_block": dg.AssetIn("frozen_block"),
    }
    ins |= {name: dg.AssetIn(name) for name in prev_evals}

    @dg.asset(
        name=f"round_{k}_mixtures",
        partitions_def=experiments,
        group_name=f"round_{k}",
        ins=ins,
        kinds={"parquet"},
        check_specs=_check_specs(k),
    )
    def mixtures(context: dg.AssetExecutionContext, tracker: MlflowTracker, **upstream):
        """Mixtures to train proxies on in this round, proposed from the predictor of the round before."""
        yield from _propose(k, upstream, None, tracker, context.log.warning)

    return mixtures


def _first_mixtures_asset() -> dg.AssetsDefinition:
    jobs, train, propose = _own_proxies_jobs_op(1), _own_proxies_op(1), _propose_op(1)

    @dg.graph_asset(
        name="round_1_mixtures",
        partitions_def=experiments,
        group_name="round_1",
        ins={
            "experiment": dg.AssetIn("experiment"),
            "cluster_tokens": dg.AssetIn("cluster_tokens"),
            "super_cluster_stats": dg.AssetIn("super_cluster_stats"),
            "reused_evidence": dg.AssetIn("reused_evidence"),
            "frozen_block": dg.AssetIn("frozen_block"),
        },
        kinds={"parquet"},
        check_specs=_check_specs(1),
    )
    def round_1_mixtures(experiment, cluster_tokens, super_cluster_stats, reused_evidence, frozen_block):
        """Mixtures to train proxies on in round 1: Dirichlet around the token shares, or the answer of a
        strategy that trains its own proxies in their own mapped step (DoReMi's, beside the natural
        mixture)."""
        own = jobs(experiment).map(lambda job: train(experiment, cluster_tokens, job))
        outs = propose(experiment, cluster_tokens, super_cluster_stats, reused_evidence, frozen_block, own.collect())
        return dict(zip(propose.output_dict, outs, strict=True))

    return round_1_mixtures


def _mixture_checks(k: int, table: pl.DataFrame, planned: int, n_clusters: int):
    """weights_valid: finite, >= 0, rows sum to 1 over all super-clusters; budget_respected: row count."""
    valid, seen = weights_valid(table, n_clusters)
    asset = f"round_{k}_mixtures"
    yield dg.AssetCheckResult(asset_key=asset, check_name="weights_valid", passed=valid, metadata=seen)
    yield dg.AssetCheckResult(
        asset_key=asset,
        check_name="budget_respected",
        passed=table.height == planned,
        metadata={"rows": table.height, "planned": planned},
    )
