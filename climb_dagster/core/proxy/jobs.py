"""A round's proxy jobs: train each (alone or in a pack) or reuse it from the proxy-run cache, score it on
the target, and the round's evaluations table."""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import polars as pl

from climb_dagster.core.common import schema
from climb_dagster.core.common.schema import weight_columns
from climb_dagster.core.io import storage
from climb_dagster.core.proxy import train
from climb_dagster.core.proxy.cache import ProxyCache
from climb_dagster.core.proxy.composition import Composition, run_composition
from climb_dagster.core.proxy.records import ProxyJob, ProxyOutcome


def run_proxy_job(
    job: ProxyJob,
    store: Any,
    proxy: Any,
    seed: int,
    evaluate: Any,
    cache: ProxyCache,
    progress: Any = None,
    storage_options: dict[str, Any] | None = None,
    free_memory: int | None = None,
) -> ProxyOutcome:
    """Train (or reuse) the proxy of one mixture and score it on the target.

    `evaluate(model) -> float` scores a trained model; `storage_options` reach a remote base checkpoint
    (`proxy.base_model`); `free_memory` replaces the device's free bytes in the check before training
    (train.train_proxy), which raises ClimbResourceError and caches nothing when the proxy would not fit.
    A finished run, failed or not, is cached under its key, so a re-execution never trains it again.
    """

    def train_one(mixtures: list[np.ndarray], dirs: list[Any]) -> list[Any]:
        # Looked up on the module at each call: the fault tests substitute train.train_proxy.
        return [
            train.train_proxy(
                store,
                mixtures[0],
                proxy,
                seed,
                out_dir=dirs[0],
                progress=progress,
                storage_options=storage_options,
                free_memory=free_memory,
            )
        ]

    (outcome,) = _run_jobs([job], cache, train_one, lambda models: [evaluate(models[0])], _composer(store, proxy, seed))
    return outcome


def _composer(store: Any, proxy: Any, seed: int) -> Callable[[np.ndarray], Composition | None]:
    return lambda mixture: run_composition(store, mixture, proxy, seed)

def run_proxy_pack_job(
    jobs: list[ProxyJob],
    store: Any,
    proxy: Any,
    seed: int,
    evaluate_many: Any,
    cache: ProxyCache,
    progress: Any = None,
    storage_options: dict[str, Any] | None = None,
    free_memory: int | None = None,
) -> list[ProxyOutcome]:
    """`run_proxy_job` for a pack of jobs: the uncached ones train together as one packed model
    (pack.py) and are scored together (`evaluate_many(models) -> scores`); each is cached under its own
    key, so a pack whose members are partly cached trains only the rest. Outcomes come in `jobs` order.
    """

    def train_packed(mixtures: list[np.ndarray], dirs: list[Any]) -> list[Any]:
        from climb_dagster.core.proxy.pack import train_pack

        seeds = [seed] * len(mixtures)
        return train_pack(
            store,
            mixtures,
            proxy,
            seeds,
            out_dirs=dirs,
            progress=progress,
            storage_options=storage_options,
            free_memory=free_memory,
        )

    return _run_jobs(jobs, cache, train_packed, evaluate_many, _composer(store, proxy, seed))


def _run_jobs(
    jobs: list[ProxyJob],
    cache: ProxyCache,
    train_models: Callable[[list[np.ndarray], list[Any]], list[Any]],
    evaluate_many: Callable[[list[Any]], list[float]],
    compose: Callable[[np.ndarray], Composition | None] = lambda mixture: None,
) -> list[ProxyOutcome]:
    """Reuse the cached jobs; train the others together (`train_models(mixtures, out_dirs)`), score the
    runs that finished, cache each outcome with its composition (`compose(mixture)`). A cached run from
    before compositions were kept gets its own computed and stored (a function of the store its key names, its
    mixture and seed), so no earlier evidence is left out of a later re-expression. Outcomes come in `jobs`
    order."""
    import tempfile
    from pathlib import Path

    outcomes: dict[int, ProxyOutcome] = {}
    todo: list[int] = []
    for i, job in enumerate(jobs):
        hit = cache.get(job.proxy_key)
        if hit is None:
            todo.append(i)
            continue
        if hit.composition is None:
            composition = compose(np.asarray(hit.weights, dtype=np.float64))
            if composition is not None:
                hit = dataclasses.replace(hit, composition=composition)
                cache.put(job.proxy_key, hit)
        outcomes[i] = dataclasses.replace(hit, mixture_id=job.mixture_id, cached=True)
    if todo:
        mixtures = [np.asarray(jobs[i].weights, dtype=np.float64) for i in todo]
        started = time.time()  # members of a pack train together: one start for all of them
        with tempfile.TemporaryDirectory(prefix="climb-proxy-") as tmp:
            dirs = [Path(tmp) / f"model-{n}" for n in range(len(todo))]
            results = train_models(mixtures, dirs)
            ok = [n for n, r in enumerate(results) if r.ok]
            scores: list[float | None] = [None] * len(todo)
            if ok:
                for n, value in zip(ok, evaluate_many([results[n].model for n in ok]), strict=True):
                    scores[n] = float(value)
            for n, i in enumerate(todo):
                key = jobs[i].proxy_key
                outcome = _finish(
                    key, results[n], scores[n], mixtures[n], dirs[n], cache, started, compose(mixtures[n])
                )
                outcomes[i] = dataclasses.replace(outcome, mixture_id=jobs[i].mixture_id, cached=False)
    return [outcomes[i] for i in range(len(jobs))]

def _finish(
    key: str,
    result: Any,
    score: float | None,
    mixture: np.ndarray,
    model_dir: Any,
    cache: ProxyCache,
    started: float,
    composition: Composition | None = None,
) -> ProxyOutcome:
    """Cache a finished run (failed or not) under its key, uploading its model when it scored.

    `started`: epoch seconds when its training began; the outcome keeps it and the end of its scoring, so
    the run's real times survive a later reuse from the cache."""
    status, reason = result.status, result.reason
    if result.ok:
        if score is None or not math.isfinite(score):
            status, reason, score = schema.FAILED, f"target score is not finite ({score})", None
        else:
            storage.upload_dir(model_dir, cache.model_path(key), kind="checkpoint")
    loss = result.loss_last
    outcome = ProxyOutcome(
        proxy_key=key,
        status=status,
        reason=reason,
        score=score,
        train_loss=loss if loss is not None and math.isfinite(loss) else None,
        tokens=result.tokens,
        steps=result.steps,
        wall_s=round(result.wall_s, 3),
        tokens_per_s=round(result.tokens_per_s, 1),
        n_params=result.n_params,
        weights=mixture,
        started_at=round(started, 3),
        ended_at=round(time.time(), 3),
        loss_curve=result.loss_curve,
        composition=composition,
    )
    cache.put(key, outcome)
    return outcome


def _cell(outcome: ProxyOutcome, column: str) -> Any:
    value = getattr(outcome, column)
    if column == schema.LOSS_CURVE and value is not None:
        return [[float(step), float(loss)] for step, loss in value]
    if column == schema.COMPOSITION and value is not None:
        return json.dumps(value.to_dict(), separators=(",", ":"))
    return value


def evaluations_table(outcomes: list[ProxyOutcome], n_clusters: int) -> pl.DataFrame:
    """The round's evaluations: one row per proxy with its weights, status, reason and score."""
    columns = {
        schema.MIXTURE_ID: pl.String,
        schema.PROXY_KEY: pl.String,
        schema.STATUS: pl.String,
        schema.REASON: pl.String,
        schema.SCORE: pl.Float64,
        schema.TRAIN_LOSS: pl.Float64,
        schema.TOKENS: pl.Int64,
        schema.WALL_S: pl.Float64,
        schema.CACHED: pl.Boolean,
        schema.STARTED_AT: pl.Float64,
        schema.ENDED_AT: pl.Float64,
        # [[step, loss], ...] downsampled (ProxyResult.loss_curve); null for runs cached before it was kept.
        schema.LOSS_CURVE: pl.List(pl.List(pl.Float64)),
        # JSON of the run's Composition (what a later re-clustering re-expresses); null on a v1 store.
        schema.COMPOSITION: pl.String,
    }
    rows = sorted(outcomes, key=lambda r: r.mixture_id)
    base = pl.DataFrame([{c: _cell(r, c) for c in columns} for r in rows], schema=columns)
    weights = pl.DataFrame(
        [list(r.weights) for r in rows] if rows else np.zeros((0, n_clusters)),
        schema={c: pl.Float64 for c in weight_columns(n_clusters)},
        orient="row",
    )
    return pl.concat([base, weights], how="horizontal")
