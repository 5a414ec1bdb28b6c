"""Proxies of one benchmark trained in parallel worker processes, one torch thread each.

A ~1M-parameter proxy gains far less than 2x from a second intra-op thread (its matrices are small), so
k independent proxies in k single-threaded processes use k cores best (the demo's parallel rounds measure
the same). Workers are spawned, not forked: the parent has already run the embedding model's thread pools,
and an OpenMP runtime does not survive a fork. Each worker reopens the token store from its path once.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from typing import Any

import numpy as np

from climb_dagster.core.proxy.store import TokenStore

# The lab of this worker process (set once by `_init`).
_LAB: Any = None


def _init(lab: Any) -> None:

    global _LAB
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    _LAB = replace(lab, store=TokenStore.open(lab.store))


def _lab_scores(lab: Any, job: tuple[np.ndarray, int, str, tuple[str, ...]]) -> dict[str, float]:
    """One model of `lab` (size "proxy" or "transfer") trained on the job's mixture and seed, scored on every
    target's splits the job names."""
    from climb_dagster.bench.lab import proxy_scores

    mixture, seed, size, splits = job
    return proxy_scores(lab, mixture, seed, size, splits)


def _score(job: tuple[np.ndarray, int, str, tuple[str, ...]]) -> dict[str, float]:
    return _lab_scores(_LAB, job)


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


class ProxyPool:
    """`scores(jobs)`: per (mixture, seed, size, splits) job, the model's scores (`lab.proxy_scores`), in order.

    `workers=1` trains in this process (no pool); otherwise the jobs of one call run `workers` at a time.
    Use as a context manager so the workers are stopped.
    """

    def __init__(self, lab: Any, workers: int = 1) -> None:
        self.lab = lab
        self.workers = max(1, int(workers))
        self._pool: Any = None

    def __enter__(self) -> ProxyPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def scores(self, jobs: list[tuple[np.ndarray, int, str, tuple[str, ...]]]) -> list[dict[str, float]]:
        if self.workers == 1 or len(jobs) <= 1:
            return [_lab_scores(self.lab, job) for job in jobs]
        if self._pool is None:
            portable = replace(self.lab, store=self.lab.store.path)
            # An executor, not multiprocessing.Pool: a worker that dies (or fails to start) raises
            # BrokenProcessPool here instead of hanging the benchmark.
            self._pool = ProcessPoolExecutor(
                self.workers, mp_context=mp.get_context("spawn"), initializer=_init, initargs=(portable,)
            )
        return list(self._pool.map(_score, jobs))
