"""Pieces of one bootstrapping round that the assets call: mixture tables, history, the proxy-run cache."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import polars as pl

from climb_dagster.core.common import schema
from climb_dagster.core.common.schema import weight_columns
from climb_dagster.core.io import storage
from climb_dagster.core.proxy import train
from climb_dagster.core.proxy.cache import ProxyCache


def run_proxy_job(
    job: dict[str, Any],
    store: Any,
    proxy: Any,
    seed: int,
    evaluate: Any,
    cache: ProxyCache,
    progress: Any = None,
    storage_options: dict[str, Any] | None = None,
    free_memory: int | None = None,
) -> dict[str, Any]:
    """Train (or reuse) the proxy of one mixture and score it on the target.

    `job` holds mixture_id, proxy_key and weights; `evaluate(model) -> float` scores a trained model;
    `storage_options` reach a remote base checkpoint (`proxy.base_model`); `free_memory` replaces the
    device's free bytes in the check before training (train.train_proxy), which raises ClimbResourceError
    and caches nothing when the proxy would not fit.
    A finished run, failed or not, is cached under its key, so a re-execution never trains it again.
    Returns the record stored in the cache plus `cached: bool`.
    """
    import tempfile
    from pathlib import Path


    key = job[schema.PROXY_KEY]
    hit = cache.get(key)
    if hit is not None:
        return {**hit, schema.MIXTURE_ID: job[schema.MIXTURE_ID], schema.CACHED: True}
    mixture = np.asarray(job[schema.WEIGHTS], dtype=np.float64)
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="climb-proxy-") as tmp:
        model_dir = Path(tmp) / "model"
        result = train.train_proxy(
            store,
            mixture,
            proxy,
            seed,
            out_dir=model_dir,
            progress=progress,
            storage_options=storage_options,
            free_memory=free_memory,
        )
        score = float(evaluate(result.model)) if result.ok else None
        record = _finish(key, result, score, mixture, model_dir, cache, started)
    return {**record, schema.MIXTURE_ID: job[schema.MIXTURE_ID], schema.CACHED: False}



def run_proxy_pack_job(
    jobs: list[dict[str, Any]],
    store: Any,
    proxy: Any,
    seed: int,
    evaluate_many: Any,
    cache: ProxyCache,
    progress: Any = None,
    storage_options: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """`run_proxy_job` for a pack of jobs: the uncached ones train together as one packed model
    (pack.py) and are scored together (`evaluate_many(models) -> scores`); each is cached under its own
    key, so a pack whose members are partly cached trains only the rest. Records come in `jobs` order.
    """
    import tempfile
    from pathlib import Path

    from climb_dagster.core.proxy.pack import train_pack

    records: list[dict[str, Any] | None] = []
    todo: list[int] = []
    for i, job in enumerate(jobs):
        hit = cache.get(job[schema.PROXY_KEY])
        records.append(
            None if hit is None else {**hit, schema.MIXTURE_ID: job[schema.MIXTURE_ID], schema.CACHED: True}
        )
        if hit is None:
            todo.append(i)
    if todo:
        mixtures = [np.asarray(jobs[i][schema.WEIGHTS], dtype=np.float64) for i in todo]
        started = time.time()  # the members train together: one start for all of them
        with tempfile.TemporaryDirectory(prefix="climb-pack-") as tmp:
            dirs = [Path(tmp) / f"model-{n}" for n in range(len(todo))]
            results = train_pack(
                store,
                mixtures,
                proxy,
                [seed] * len(todo),
                out_dirs=dirs,
                progress=progress,
                storage_options=storage_options,
            )
            ok = [n for n, r in enumerate(results) if r.ok]
            scores: list[float | None] = [None] * len(todo)
            if ok:
                for n, value in zip(ok, evaluate_many([results[n].model for n in ok]), strict=True):
                    scores[n] = float(value)
            for n, i in enumerate(todo):
                record = _finish(
                    jobs[i][schema.PROXY_KEY], results[n], scores[n], mixtures[n], dirs[n], cache, started
                )
                records[i] = {**record, schema.MIXTURE_ID: jobs[i][schema.MIXTURE_ID], schema.CACHED: False}
    return [r for r in records if r is not None]



def _finish(
    key: str,
    result: Any,
    score: float | None,
    mixture: np.ndarray,
    model_dir: Any,
    cache: ProxyCache,
    started: float,
) -> dict:
    """Cache a finished run (failed or not) under its key, uploading its model when it scored; return its record.

    `started`: epoch seconds when its training began; the record keeps it and the end of its scoring, so
    the run's real times survive a later reuse from the cache."""
    import math

    status, reason = result.status, result.reason
    if result.ok:
        if score is None or not math.isfinite(score):
            status, reason, score = schema.FAILED, f"target score is not finite ({score})", None
        else:
            storage.upload_dir(model_dir, cache.model_path(key))
    record = {
        schema.PROXY_KEY: key,
        schema.STATUS: status,
        schema.REASON: reason,
        schema.SCORE: score,
        schema.TRAIN_LOSS: result.loss_last
        if result.loss_last is not None and math.isfinite(result.loss_last)
        else None,
        schema.TOKENS: result.tokens,
        schema.STEPS: result.steps,
        schema.WALL_S: round(result.wall_s, 3),
        schema.TOKENS_PER_S: round(result.tokens_per_s, 1),
        schema.N_PARAMS: result.n_params,
        schema.WEIGHTS: [float(w) for w in mixture],
        schema.STARTED_AT: round(started, 3),
        schema.ENDED_AT: round(time.time(), 3),
        schema.LOSS_CURVE: [[int(step), float(loss)] for step, loss in result.loss_curve],
    }
    cache.put(key, record)
    return record



def _cell(record: dict[str, Any], column: str) -> Any:
    value = record.get(column)
    if column == schema.LOSS_CURVE and value is not None:
        return [[float(step), float(loss)] for step, loss in value]  # JSON keeps steps as integers
    return value



def evaluations_table(records: list[dict[str, Any]], n_clusters: int) -> pl.DataFrame:
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
    }
    rows = sorted(records, key=lambda r: r[schema.MIXTURE_ID])
    base = pl.DataFrame([{c: _cell(r, c) for c in columns} for r in rows], schema=columns)
    weights = pl.DataFrame(
        [r[schema.WEIGHTS] for r in rows] if rows else np.zeros((0, n_clusters)),
        schema={c: pl.Float64 for c in weight_columns(n_clusters)},
        orient="row",
    )
    return pl.concat([base, weights], how="horizontal")
