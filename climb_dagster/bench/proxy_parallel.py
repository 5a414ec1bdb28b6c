"""Bench part: a round's proxies trained one after another with all cores as threads, against the same
proxies trained at once in single-threaded processes (what the demo's multiprocess executor and bench e2e's
workers do). Worker start-up is excluded (the pool is warmed first): the demo's forkserver and e2e's pool
pay it once per run, not per proxy."""

from __future__ import annotations

import multiprocessing as mp
import time
from dataclasses import replace
from typing import Any

import numpy as np

from climb_dagster.core.proxy.store import TokenStore
from climb_dagster.core.proxy.train import train_proxy


def _warm(_: int) -> int:
    import torch

    return torch.get_num_threads()


def _train(job: tuple[str, np.ndarray, Any, int]) -> float:

    store_path, mixture, config, seed = job
    result = train_proxy(TokenStore.open(store_path), mixture, config, seed)
    return float(result.loss_last) if result.ok else float("nan")


def bench_parallel(store: Any, config: Any, n: int, seed: int) -> dict[str, Any]:
    """`n` proxies (Dirichlet mixtures, seeds seed..seed+n-1): threads (n each, one at a time) vs processes."""

    rng = np.random.default_rng(seed)
    mixtures = rng.dirichlet(np.ones(store.n_clusters), size=n)
    threaded = replace(config, train=replace(config.train, num_threads=n))
    single = replace(config, train=replace(config.train, num_threads=1))
    t0 = time.perf_counter()
    thread_losses = [train_proxy(store, mixtures[j], threaded, seed + j).loss_last for j in range(n)]
    threads_wall = time.perf_counter() - t0
    with mp.get_context("spawn").Pool(n) as pool:
        pool.map(_warm, range(n), chunksize=1)
        t0 = time.perf_counter()
        jobs = [(str(store.path), mixtures[j], single, seed + j) for j in range(n)]
        process_losses = pool.map(_train, jobs, chunksize=1)
        processes_wall = time.perf_counter() - t0
    tokens = n * config.token_budget
    return {
        "proxies": n,
        "threads_tokens_per_s": round(tokens / threads_wall, 1),
        "processes_tokens_per_s": round(tokens / processes_wall, 1),
        "processes_vs_threads": round(threads_wall / processes_wall, 3),
        "faster": "processes" if processes_wall < threads_wall else "threads",
        # Same seeds and windows: the losses agree up to the thread count's summation order.
        "max_abs_loss_diff": float(np.max(np.abs(np.subtract(thread_losses, process_losses)))),
    }
