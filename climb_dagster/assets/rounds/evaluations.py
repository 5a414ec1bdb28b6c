"""round_k_proxy_evaluations: one mapped step per proxy, or per pack of proxies trained as one batched model
when the proxy pack size is above 1 (train or reuse, then score on the target); one record per proxy."""

# No `from __future__ import annotations`: Dagster reads annotations at decoration time.

import dagster as dg
import numpy as np
import polars as pl

from climb_dagster.assets.checks import experiment_check, unused_round
from climb_dagster.assets.metadata import table as table_metadata
from climb_dagster.core.common import schema
from climb_dagster.core.experiment.records import ExperimentRecord, TokenStoreRef
from climb_dagster.core.proxy import cache as proxy_cache
from climb_dagster.core.proxy import jobs as proxy_jobs
from climb_dagster.core.proxy.config import auto_pack_size
from climb_dagster.core.proxy.records import ProxyJob, ProxyOutcome
from climb_dagster.core.search import history as search_history
from climb_dagster.core.targets.prepare import open_token_store, target_evaluator, target_pack_evaluator
from climb_dagster.k8s import PROXY_OP_TAGS
from climb_dagster.partitions import experiments
from climb_dagster.resources.storage import ClimbStorage

# Key of a mapped step that trains several proxies as one pack (its value: the members' jobs).
PACK = "pack"


def _step_jobs(value: dict) -> list[ProxyJob]:
    """The jobs of one mapped step: a proxy's job, or a pack's ({PACK: [job, ...]}), stored as JSON."""
    return [ProxyJob.from_dict(job) for job in value[PACK]] if PACK in value else [ProxyJob.from_dict(value)]


def _plan_op(k: int) -> dg.OpDefinition:
    @dg.op(name=f"round_{k}_plan_proxies", out=dg.DynamicOut(dict))
    def plan(mixtures_table: pl.DataFrame, record: ExperimentRecord):
        """One mapped step per proxy, or per pack of proxies when the pack size is above 1."""

        weights = search_history.table_mixtures(mixtures_table) if mixtures_table.height else np.zeros((0, 0))
        jobs = [
            ProxyJob(row[schema.MIXTURE_ID], row[schema.PROXY_KEY], w.tolist())
            for row, w in zip(mixtures_table.iter_rows(named=True), weights, strict=True)
        ]
        size = auto_pack_size(record.proxy)
        if size <= 1:
            for job in jobs:
                yield dg.DynamicOutput(job.to_dict(), mapping_key=job.mixture_id.replace("-", "_"))
            return
        for start in range(0, len(jobs), size):
            pack = [job.to_dict() for job in jobs[start : start + size]]
            yield dg.DynamicOutput({PACK: pack}, mapping_key=f"pack_{start // size:03d}")

    return plan


def _train_op(k: int) -> dg.OpDefinition:
    @dg.op(name=f"round_{k}_train_proxy", tags=PROXY_OP_TAGS)
    def train(
        context: dg.OpExecutionContext,
        storage: ClimbStorage,
        record: ExperimentRecord,
        tokens: TokenStoreRef,
        job: dict,
    ) -> list:
        """Train one proxy, or one pack of proxies as one batched model, on its mixture(s); runs that
        already finished are reused from the cache. One record per proxy."""
        proxy = record.proxy
        store = open_token_store(tokens.path, storage.options())
        cache = proxy_cache.ProxyCache(storage.root() / "proxy_runs", warn=context.log.warning)
        jobs = _step_jobs(job)
        name = jobs[0].mixture_id if PACK not in job else f"pack of {len(jobs)}"
        args = (record.target_spec, store.load_tokenizer(), proxy.train.num_threads, storage.options())

        def progress(step: int, total: int, loss: float) -> None:
            context.log.debug(f"{name}: step {step}/{total} loss {loss:.3f}")

        if PACK in job:
            outcomes = proxy_jobs.run_proxy_pack_job(
                jobs,
                store,
                proxy,
                record.seed,
                target_pack_evaluator(*args),
                cache,
                progress,
                storage.options(),
            )
        else:
            outcomes = [
                proxy_jobs.run_proxy_job(
                    jobs[0],
                    store,
                    proxy,
                    record.seed,
                    target_evaluator(*args),
                    cache,
                    progress,
                    storage.options(),
                )
            ]
        for outcome in outcomes:
            verb = "reused" if outcome.cached else "trained"
            context.log.info(f"{verb} proxy {outcome.mixture_id} ({outcome.status}): score {outcome.score}")
        return [outcome.to_dict() for outcome in outcomes]  # stored as JSON; `collect` reads them back

    return train


def _collect_op(k: int) -> dg.OpDefinition:
    @dg.op(name=f"round_{k}_collect_proxies")
    def collect(context: dg.OpExecutionContext, tokens: TokenStoreRef, results: list) -> pl.DataFrame:
        # One list per mapped step (proxy or pack).
        outcomes = [ProxyOutcome.from_dict(r) for step in results for r in step]
        table = proxy_jobs.evaluations_table(outcomes, tokens.n_clusters)
        failed = table.filter(pl.col(schema.STATUS) != schema.OK)
        for row in failed.iter_rows(named=True):
            context.log.warning(
                f"proxy {row[schema.MIXTURE_ID]} failed and is excluded: {row[schema.REASON]}"
            )
        context.add_output_metadata(
            {
                "dagster/row_count": table.height,
                "failed": failed.height,
                "reused_from_cache": int(table[schema.CACHED].sum()) if table.height else 0,
                "train_seconds": float(table[schema.WALL_S].sum()) if table.height else 0.0,
                "evaluations": table_metadata(
                    table.select(
                        schema.MIXTURE_ID, schema.STATUS, schema.SCORE, schema.TRAIN_LOSS, schema.CACHED
                    ),
                    max_rows=200,
                ),
            }
        )
        return table

    return collect


def evaluations_asset(k: int) -> dg.AssetsDefinition:
    plan, train, collect = _plan_op(k), _train_op(k), _collect_op(k)

    @dg.graph_asset(
        name=f"round_{k}_proxy_evaluations",
        partitions_def=experiments,
        group_name=f"round_{k}",
        ins={
            "mixtures_table": dg.AssetIn(f"round_{k}_mixtures"),
            "record": dg.AssetIn("experiment"),
            "tokens": dg.AssetIn("cluster_tokens"),
        },
    )
    def evaluations(mixtures_table, record, tokens):
        """Proxy LM trained on each mixture and scored on the target (one step per proxy or per pack)."""
        results = plan(mixtures_table, record).map(lambda job: train(record, tokens, job))
        return collect(tokens, results.collect())

    return evaluations


def failed_proxies_check(k: int) -> dg.AssetChecksDefinition:
    @experiment_check(
        asset=f"round_{k}_proxy_evaluations",
        name="no_failed_proxies",
        additional_ins={"experiment": dg.AssetIn("experiment")},
    )
    def no_failed_proxies(evaluations: pl.DataFrame, experiment: ExperimentRecord) -> dg.AssetCheckResult:
        """No proxy of the round failed (diverged, errored); warns with the count, errs when none succeeded."""
        if k > experiment.config.n_rounds:
            return unused_round("no_failed_proxies", k, experiment.config.n_rounds)
        failed = evaluations.filter(pl.col(schema.STATUS) != schema.OK)
        succeeded = evaluations.height - failed.height
        return dg.AssetCheckResult(
            passed=failed.height == 0,
            severity=dg.AssetCheckSeverity.WARN
            if succeeded > 0 or evaluations.height == 0
            else dg.AssetCheckSeverity.ERROR,
            metadata={
                "failed": failed.height,
                "succeeded": succeeded,
                "failed_mixtures": dg.MetadataValue.json(failed.get_column(schema.MIXTURE_ID).to_list()),
            },
        )

    return no_failed_proxies
