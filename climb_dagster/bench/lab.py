"""The shared lab of the end-to-end benchmarks: a sampled corpus split into train / validation / test by
title, clustered and tokenized once, and the proxies every search trains and scores on it.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from climb_dagster.bench.cluster import sample_demo
from climb_dagster.core.clustering.kmeans import KMeansConfig
from climb_dagster.core.common import schema
from climb_dagster.core.common.direction import Direction
from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.proxy.config import ProxyConfig
from climb_dagster.core.proxy.store import write_token_store
from climb_dagster.core.proxy.tokens import train_tokenizer
from climb_dagster.core.proxy.train import train_proxy
from climb_dagster.core.targets.evaluators import build_eval_windows
from climb_dagster.core.targets.spec import TargetSpec


@dataclass(frozen=True)
class Lab:
    """What every search of one e2e run shares: the token store, the proxy recipe and the two targets."""

    store: Any
    proxy: Any
    val: Any
    test: Any
    n_superclusters: int
    docs: dict[str, int]
    val_windows: Path
    test_windows: Path


def build_lab(args: argparse.Namespace, work: Path) -> tuple[Lab, Any]:
    """Corpus -> target split -> clustering -> token store and validation/test windows. Returns the lab
    and the split (for the leak checks)."""
    from climb_dagster.bench.cluster import _embed
    from climb_dagster.core.clustering.stage import cluster_documents
    from climb_dagster.core.clustering.superclusters import MergeConfig
    from climb_dagster.core.quality.pruning import PruneConfig
    from climb_dagster.core.targets.split import split_target

    docs = sample_demo(Path(args.data), args.docs, args.seed)
    split = split_target(docs, args.target_domain, args.heldout_fraction, seed=args.seed)
    train = split.train
    emb, _, _, _ = _embed(train, args)
    stage = cluster_documents(
        train,
        emb,
        KMeansConfig(n_clusters=args.k, seed=args.seed),
        PruneConfig(),
        MergeConfig(max_superclusters=args.max_superclusters)
        if args.superclusters is None
        else MergeConfig(n_superclusters=args.superclusters),
    )
    kept = train.filter(pl.Series(stage.kept)).with_columns(
        pl.Series(schema.SUPER_CLUSTER, stage.super_cluster[stage.kept])
    )
    proxy = ProxyConfig.tiny() if args.proxy == "tiny" else ProxyConfig.default()
    if args.steps is not None:
        proxy = replace(proxy, train=replace(proxy.train, steps=args.steps))
    tok_dir = train_tokenizer(
        kept[schema.TEXT].to_list(), work / "tokenizer", proxy.model.vocab_size, args.seed
    )
    batches = (
        (int(sc), group[schema.TEXT].to_list())
        for (sc,), group in kept.sort(schema.ID).group_by(schema.SUPER_CLUSTER, maintain_order=True)
    )
    store = write_token_store(batches, tok_dir, work / "store", n_clusters=stage.n_superclusters)
    block = proxy.model.block_size
    windows = {}
    for name, frame in (("val", split.val), ("test", split.test)):
        path = work / f"{name}_windows.npy"
        build_eval_windows(frame[schema.TEXT].to_list(), tok_dir, path, block, args.max_eval_windows)
        windows[name] = path
    lab = Lab(
        store=store,
        proxy=proxy,
        val=TargetSpec.loss(windows["val"], "val_loss"),
        test=TargetSpec.loss(windows["test"], "test_loss"),
        n_superclusters=stage.n_superclusters,
        docs={
            "sampled": docs.height,
            "train": train.height,
            "kept": kept.height,
            "val": split.val.height,
            "test": split.test.height,
        },
        val_windows=windows["val"],
        test_windows=windows["test"],
    )
    return lab, split


def proxy_scores(lab: Lab, mixture: np.ndarray, seed: int, targets: list[Any]) -> list[float]:
    """Train one proxy on `mixture` and score it on each target (NaN when the run diverged)."""
    from climb_dagster.core.targets.score import evaluate_target

    result = train_proxy(lab.store, mixture, lab.proxy, seed)
    if not result.ok:
        return [float("nan")] * len(targets)
    return [float(evaluate_target(result.model, t, num_threads=lab.proxy.train.num_threads)) for t in targets]


class ValidationLab:
    """`evaluate(mixtures) -> validation scores` for searches, with one cache across strategies (random and
    RegMix draw the same first round from the same seed) keyed by (mixture, proxy seed).

    `score(mixture, proxy_seed)` trains one proxy and returns its validation score (NaN: diverged);
    `score_many(jobs)` does the same for a list of (mixture, proxy seed) at once (a round's new proxies,
    trained in parallel by a `ProxyPool`)."""

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

    @classmethod
    def of(cls, lab: Lab, pool: Any = None) -> ValidationLab:
        if pool is None:
            return cls(lambda m, s: proxy_scores(lab, m, s, [lab.val])[0])
        return cls(score_many=lambda jobs: [r[0] for r in pool.scores([(m, s, ("val",)) for m, s in jobs])])

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
            scores = np.asarray([self.cache[k] for k in keys])
            bad = ~np.isfinite(scores)
            self.failed += int(bad.sum())
            finite = [*seen, *scores[~bad].tolist()]
            if bad.any():
                if not finite:
                    raise ClimbInputError("every proxy of the first round diverged; no score to search on")
                # A diverged proxy counts as the worst score seen, as in the pipeline's history.
                scores[bad] = Direction.MINIMIZE.worst(np.asarray(finite))
            seen.extend(scores.tolist())
            return scores

        return evaluate
