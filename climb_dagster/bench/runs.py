"""The proxy runs of a benchmark, trained once and looked up by (mixture, seed, model size, splits).

`LabRuns` serves bench e2e: every run is scored on every target of its lab (proxies are target-independent,
so the three targets' searches share their runs), kept in memory and, given a path, in a JSONL file keyed by
the lab's fingerprint, so an interrupted protocol resumes without retraining. `ValidationLab` is the
one-target form bench demo-gain uses. Both give searches an `evaluate(mixtures) -> scores` in which a diverged
run counts as the worst score the search has seen, as in the pipeline's history.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from climb_dagster.bench.proxy_pool import ProxyPool
from climb_dagster.core.common.direction import Direction
from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.common.hashing import content_hash

Job = tuple[np.ndarray, int, str, tuple[str, ...]]


def _mixture_key(mixture: np.ndarray) -> list[float]:
    return (np.round(np.asarray(mixture, dtype=np.float64), 9) + 0.0).tolist()


def _searchable(scores: np.ndarray, seen: list[float]) -> tuple[np.ndarray, int]:
    """Scores with a diverged run's NaN replaced by the worst finite score of the search so far; the count."""
    bad = ~np.isfinite(scores)
    finite = [*seen, *scores[~bad].tolist()]
    if bad.any():
        if not finite:
            raise ClimbInputError("every proxy of the first round diverged; no score to search on")
        scores = scores.copy()
        scores[bad] = Direction.MINIMIZE.worst(np.asarray(finite))
    seen.extend(scores.tolist())
    return scores, int(bad.sum())


@contextmanager
def bench_workdir(workdir: str | None, prefix: str) -> Iterator[Path]:
    """`--workdir` (kept: an interrupted bench resumes from its runs), or a temporary folder removed after."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        work = Path(workdir) if workdir else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        yield work


@contextmanager
def lab_runs(args: Any, work: Path, seed: int, workers: int) -> Iterator[tuple[Any, LabRuns, float]]:
    """Lab `seed` built afresh under `work` (its runs are cached apart, keyed by the lab's fingerprint, so a
    rebuild reuses them), `workers` processes training on it, its run cache `runs-lab-SEED.jsonl`, and the
    seconds the build took (not the pool's start)."""
    from climb_dagster.bench.lab import build_lab

    build = work / f"lab-{seed}"
    shutil.rmtree(build, ignore_errors=True)
    t0 = time.perf_counter()
    lab, _ = build_lab(args, build, seed)
    built_s = time.perf_counter() - t0
    with ProxyPool(lab, workers) as pool:
        yield lab, LabRuns(lab, pool, work / f"runs-lab-{seed}.jsonl"), built_s


class LabRuns:
    """`scores(jobs)`: per (mixture, seed, size, splits) job, `{target:split: score, ..., "train_s": s}`.

    `pool`: a ProxyPool over the lab (None: train here). `cache_path`: a JSONL file of finished runs."""

    def __init__(self, lab: Any, pool: Any = None, cache_path: Path | None = None) -> None:
        self.lab = lab
        self.pool = pool
        self.cache_path = cache_path
        self.cache: dict[str, dict[str, float]] = {}
        self.trained = {"proxy": 0, "transfer": 0}
        self.seconds = {"proxy": 0.0, "transfer": 0.0}
        self.reused = 0
        self.failed = 0
        if cache_path is not None and cache_path.exists():
            for line in cache_path.read_text().splitlines():
                if line.strip():
                    row = json.loads(line)
                    self.cache[row["key"]] = row["scores"]

    def key(self, job: Job) -> str:
        mixture, seed, size, splits = job
        return content_hash([self.lab.fingerprint, size, int(seed), list(splits), _mixture_key(mixture)])

    def scores(self, jobs: list[Job]) -> list[dict[str, float]]:
        keys = [self.key(j) for j in jobs]
        missing: dict[str, Job] = {}
        for k, job in zip(keys, jobs, strict=True):
            if k not in self.cache and k not in missing:
                missing[k] = job
        if missing:
            todo = list(missing.values())
            if self.pool is None:
                from climb_dagster.bench.lab import proxy_scores

                got = [proxy_scores(self.lab, m, s, size, splits) for m, s, size, splits in todo]
            else:
                got = self.pool.scores(todo)
            lines = []
            for k, job, scores in zip(missing, todo, got, strict=True):
                self.cache[k] = scores
                size = job[2]
                self.trained[size] += 1
                self.seconds[size] += float(scores.get("train_s", 0.0))
                lines.append(json.dumps({"key": k, "scores": scores}))
            if self.cache_path is not None:
                with self.cache_path.open("a") as f:
                    f.write("\n".join(lines) + "\n")
        self.reused += sum(k not in missing for k in keys)
        return [self.cache[k] for k in keys]

    def evaluator(
        self, proxy_seed: int, target: str, round_seed_step: int = 0
    ) -> Callable[[np.ndarray], np.ndarray]:
        """A search's `evaluate`: proxies of `proxy_seed` scored on `target`'s validation split. With
        `round_seed_step`, call i (round i of a search) trains with `proxy_seed + i * round_seed_step`."""
        seen: list[float] = []
        calls = [0]

        def evaluate(mixtures: np.ndarray) -> np.ndarray:
            rows = np.asarray(mixtures, dtype=np.float64)
            seed = proxy_seed + calls[0] * round_seed_step
            calls[0] += 1
            got = self.scores([(m, seed, "proxy", ("val",)) for m in rows])
            scores, bad = _searchable(np.asarray([g[f"{target}:val"] for g in got]), seen)
            self.failed += bad
            return scores

        return evaluate


class ValidationLab:
    """`evaluator(proxy_seed)`: one target's scores for searches, cached by (mixture, proxy seed) across them.

    `score(mixture, proxy_seed)` trains one proxy and returns its validation score (NaN: diverged);
    `score_many(jobs)` does the same for a list of (mixture, proxy seed) at once."""

    def __init__(
        self,
        score: Callable[[np.ndarray, int], float] | None = None,
        score_many: Callable[[list[tuple[np.ndarray, int]]], list[float]] | None = None,
    ) -> None:
        if (score is None) == (score_many is None):
            raise ClimbInputError("ValidationLab needs exactly one of score and score_many")
        self.cache: dict[tuple[bytes, int], float] = {}
        self.trained = 0
        self.failed = 0
        self._score_many = score_many or (lambda jobs: [score(m, s) for m, s in jobs])

    def evaluator(self, proxy_seed: int) -> Callable[[np.ndarray], np.ndarray]:
        seen: list[float] = []

        def evaluate(mixtures: np.ndarray) -> np.ndarray:
            rows = np.asarray(mixtures, dtype=np.float64)
            keys = [(np.round(m, 9).tobytes(), proxy_seed) for m in rows]
            missing = {k: m for k, m in zip(keys, rows, strict=True) if k not in self.cache}
            if missing:
                scored = self._score_many([(m, proxy_seed) for m in missing.values()])
                self.cache.update(zip(missing, scored, strict=True))
                self.trained += len(missing)
            scores, bad = _searchable(np.asarray([self.cache[k] for k in keys]), seen)
            self.failed += bad
            return scores

        return evaluate
