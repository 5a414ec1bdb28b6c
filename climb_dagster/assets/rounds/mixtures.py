"""round_k_mixtures: the mixtures this round trains proxies on, with their proxy-run keys."""

# No `from __future__ import annotations`: Dagster reads annotations at decoration time.

import dagster as dg
import numpy as np
import polars as pl

from climb_dagster.assets.metadata import table as table_metadata
from climb_dagster.core import bootstrap, schema
from climb_dagster.core.plots import png_markdown, weights_bar_png
from climb_dagster.core.records import ExperimentRecord, TokenStoreRef
from climb_dagster.core.rounds import history_for_proposal, load_predictor, weights_valid
from climb_dagster.core.superclusters import supercluster_labels
from climb_dagster.core.tables import named_weights
from climb_dagster.core.timing import Timer
from climb_dagster.partitions import experiments
from climb_dagster.resources.storage import ClimbStorage


def _doremi_proposal(
    record: ExperimentRecord, tokens: TokenStoreRef, prior: np.ndarray, storage: ClimbStorage
) -> tuple[np.ndarray, dict]:
    """DoReMi trains its reference and DRO proxies here (cached under proxy_runs/doremi-<hash>)."""
    from climb_dagster.core.proxy.doremi import doremi_round
    from climb_dagster.core.target_eval import open_token_store

    store = open_token_store(tokens.path, storage.options())
    return doremi_round(
        store, prior, record.proxy, record.seed, storage.root() / "proxy_runs", storage.options()
    )


def mixtures_asset(k: int) -> dg.AssetsDefinition:
    prev_evals = [f"round_{j}_proxy_evaluations" for j in range(1, k)]
    ins = {
        "experiment": dg.AssetIn("experiment"),
        "cluster_tokens": dg.AssetIn("cluster_tokens"),
        # For the super-clusters' names in the table and plot.
        "super_cluster_stats": dg.AssetIn("super_cluster_stats"),
    }
    ins |= {name: dg.AssetIn(name) for name in prev_evals}
    if k > 1:
        ins["predictor"] = dg.AssetIn(f"round_{k - 1}_predictor")

    @dg.asset(
        name=f"round_{k}_mixtures",
        partitions_def=experiments,
        group_name=f"round_{k}",
        ins=ins,
        kinds={"parquet"},
        check_specs=[
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
        ],
    )
    def mixtures(context: dg.AssetExecutionContext, storage: ClimbStorage, **upstream):
        """Mixtures to train proxies on in this round (round 1: Dirichlet around the token shares)."""
        from climb_dagster.core.hashing import proxy_run_key
        from climb_dagster.core.search.strategies import propose_round

        record = upstream["experiment"]
        exp = record.config
        prior = upstream["cluster_tokens"].prior()
        if k > exp.n_rounds:
            empty = bootstrap.mixtures_table(k, np.zeros((0, prior.size)), [])
            yield dg.Output(empty, metadata={"active": False, "dagster/row_count": 0})
            yield from _mixture_checks(empty, 0, prior.size)
            return
        hm, hs = history_for_proposal([upstream[n] for n in prev_evals], exp.target.direction)
        predictor = load_predictor(upstream["predictor"]) if k > 1 and exp.strategy == "climb" else None
        timer = Timer()
        extra: dict = {}
        if exp.strategy == "doremi":
            proposed, extra = _doremi_proposal(record, upstream["cluster_tokens"], prior, storage)
        else:
            proposed = propose_round(
                exp.strategy_config(), k - 1, hm, hs, prior, exp.seed, predictor=predictor
            )
        keys = [proxy_run_key(m.tolist(), record.proxy, exp.seed, record.data_key()) for m in proposed]
        table = bootstrap.mixtures_table(k, proposed, keys)
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
                "weights_plot": dg.MetadataValue.md(png_markdown(png, "weights")),
            },
        )
        yield from _mixture_checks(table, exp.rounds[k - 1], prior.size)

    return mixtures


def _mixture_checks(table: pl.DataFrame, planned: int, n_clusters: int):
    """weights_valid: finite, >= 0, rows sum to 1 over all super-clusters; budget_respected: row count."""
    valid, seen = weights_valid(table, n_clusters)
    yield dg.AssetCheckResult(check_name="weights_valid", passed=valid, metadata=seen)
    yield dg.AssetCheckResult(
        check_name="budget_respected",
        passed=table.height == planned,
        metadata={"rows": table.height, "planned": planned},
    )
