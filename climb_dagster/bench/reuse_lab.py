"""bench reuse's labs: the e2e lab's corpus, split and targets, clustered before and after an update, each with
a segmented token store (per-drop token files + segments naming drop and fine cluster, as the pipeline writes),
so every proxy run has a composition, and the map of the old clustering onto the new one.

Updates (`UPDATES`): `add_drop`: the sample is cut into `N_DROPS` pseudo-drops by a hash of the id (a crawl drop
is a fraction of the corpus, not a second corpus); the old clustering never saw the last one; the new one assigns
it to the old centroids, then prunes and merges again. `refit`: the same documents as before the update (the
last drop still left out), centroids fitted again with another seed, pruned and merged again.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from climb_dagster.bench.lab import (
    REUSE_RUN_CODE,
    Lab,
    _references,
    lab_corpus,
    lab_fingerprint,
    lab_targets,
    merge_config,
    run_code_hash,
)
from climb_dagster.bench.proxy_sizes import on_device, proxy_config, train_device, transfer_config
from climb_dagster.core.clustering.kmeans import KMeansConfig
from climb_dagster.core.common import schema
from climb_dagster.core.io.unique_ids import id_hashes
from climb_dagster.core.proxy.drop_store import write_drop_store
from climb_dagster.core.proxy.segment_index import StoreDrop, write_segmented_store
from climb_dagster.core.proxy.store import TokenStore
from climb_dagster.core.proxy.tokens import train_tokenizer
from climb_dagster.core.reuse.mapping import ClusterMap, build_cluster_map
from climb_dagster.core.reuse.unchanged import freeze_reason, unchanged_superclusters

N_DROPS = 4
UPDATES = ("add_drop", "refit")
REFIT_SEED_OFFSET = 7919


@dataclass(frozen=True)
class ReuseLab:
    """One update of one lab: the lab before and after, the old -> new map, and which new super-clusters the
    update left unchanged (freeze-and-expand's block)."""

    kind: str
    old: Lab
    new: Lab
    cmap: ClusterMap
    unchanged: np.ndarray
    facts: dict[str, Any]


def pseudo_drops(docs: pl.DataFrame, n: int = N_DROPS) -> pl.DataFrame:
    h = id_hashes(docs[schema.ID].to_list(), salt="bench-reuse-drop:")
    return docs.with_columns(pl.Series(schema.DROP, [f"drop-{int(x) % n:02d}" for x in h]))


def _mapping(stage: Any) -> pl.DataFrame:
    kept = stage.kept
    pairs = pl.DataFrame(
        {
            schema.CLUSTER: stage.cluster[kept].astype(np.int64),
            schema.SUPER_CLUSTER: stage.super_cluster[kept],
        }
    )
    return pairs.unique().sort(schema.CLUSTER)


def _store(
    work: Path, docs: pl.DataFrame, stage: Any, drop_stores: dict[str, Any], tok_dir: Any, keys: list[str]
) -> TokenStore:
    assigned = docs.select(schema.ID, schema.DROP).with_columns(pl.Series(schema.CLUSTER, stage.cluster))
    parts = [
        StoreDrop(
            k,
            str(drop_stores[k].path),
            drop_stores[k],
            lambda k=k: assigned.filter(pl.col(schema.DROP) == k).select(schema.ID, schema.CLUSTER),
        )
        for k in keys
    ]
    write_segmented_store(parts, _mapping(stage), tok_dir, work, stage.n_superclusters)
    return TokenStore.open(work)


def freeze_plan(kind: str, cmap: ClusterMap, unchanged: np.ndarray) -> str:
    """Whether freeze-and-expand runs on this update ("run"), or why not: the pipeline's rule
    (`core/reuse/unchanged.freeze_reason`), on the updates that add a drop."""
    if kind != "add_drop":
        return "not run: freeze-and-expand is for updates that only add drops"
    return freeze_reason(cmap, unchanged)


def build_reuse_labs(args: argparse.Namespace, work: Path, seed: int) -> dict[str, ReuseLab]:
    """The old lab and, per update of `args.updates`, the new lab and the map between them."""
    from climb_dagster.bench.cluster import _embed
    from climb_dagster.core.clustering.stage import cluster_documents
    from climb_dagster.core.quality.pruning import PruneConfig

    work.mkdir(parents=True, exist_ok=True)
    defs, split, train = lab_corpus(args, seed)
    train = pseudo_drops(train)
    emb, _, _, _ = _embed(train, args)
    keys = sorted(set(train[schema.DROP].to_list()))
    old_rows = (train[schema.DROP] != keys[-1]).to_numpy()
    kmeans, prune, merge = KMeansConfig(n_clusters=args.k, seed=seed), PruneConfig(), merge_config(args)
    old_docs = train.filter(pl.Series(old_rows))
    old_stage = cluster_documents(old_docs, emb[old_rows], kmeans, prune, merge)
    device = train_device(args.device)
    proxy = on_device(proxy_config(args.proxy, args.steps), device)
    transfer = transfer_config(proxy, args.transfer_width, args.transfer_depth, args.transfer_tokens)
    old_kept = old_docs.filter(pl.Series(old_stage.kept))
    tok_dir = train_tokenizer(
        old_kept[schema.TEXT].to_list(), work / "tokenizer", proxy.model.vocab_size, seed
    )
    targets = lab_targets(args, defs, split, work, tok_dir, proxy, seed, train[schema.TEXT].to_list())
    drop_stores = {
        k: write_drop_store(
            k,
            train.filter(pl.col(schema.DROP) == k).select(schema.ID, schema.TEXT),
            tok_dir,
            work / "drops" / k,
        )
        for k in keys
    }
    n_tokens = pl.concat([drop_stores[k].docs([schema.ID, schema.N_TOKENS]) for k in keys])

    def lab(store: TokenStore, stage: Any, docs: pl.DataFrame, tag: str) -> Lab:
        kept = docs.filter(pl.Series(stage.kept)).with_columns(
            pl.Series(schema.SUPER_CLUSTER, stage.super_cluster[stage.kept])
        )
        return Lab(
            seed=seed,
            store=store,
            proxy=proxy,
            transfer=transfer,
            targets=targets,
            tokenizer_dir=Path(tok_dir),
            n_superclusters=stage.n_superclusters,
            docs={"train": docs.height, "kept": kept.height},
            references=_references(kept, stage.n_superclusters, store, defs),
            fingerprint=lab_fingerprint(args, seed, device, reuse=tag, reuse_code=run_code_hash(REUSE_RUN_CODE)),
        )

    old = lab(
        _store(work / "old", old_docs, old_stage, drop_stores, tok_dir, keys[:-1]), old_stage, old_docs, "old"
    )
    old_frame = old_docs.select(schema.ID, schema.DROP).with_columns(
        pl.Series(schema.CLUSTER, old_stage.cluster)
    )
    old_frame = old_frame.join(n_tokens, on=schema.ID)
    old_map = _mapping(old_stage)
    old_super_of_fine = dict(
        zip(old_map[schema.CLUSTER].to_list(), old_map[schema.SUPER_CLUSTER].to_list(), strict=True)
    )
    out = {}
    for kind in args.updates.split(","):
        if kind == "add_drop":
            docs, new_keys = train, keys
            stage = cluster_documents(docs, emb, kmeans, prune, merge, centroids=old_stage.centroids)
        elif kind == "refit":
            # The same documents as before: only the centroids change.
            docs, new_keys = old_docs, keys[:-1]
            refit = KMeansConfig(n_clusters=args.k, seed=seed + REFIT_SEED_OFFSET)
            stage = cluster_documents(docs, emb[old_rows], refit, prune, merge)
        else:
            raise ValueError(f"--updates: unknown update {kind!r}; choose from {UPDATES}")
        new = lab(_store(work / kind, docs, stage, drop_stores, tok_dir, new_keys), stage, docs, kind)
        new_frame = docs.select(schema.ID, schema.DROP).with_columns(
            pl.Series(schema.CLUSTER, stage.cluster)
        )
        cmap = build_cluster_map(
            (
                (k, old_frame.filter(pl.col(schema.DROP) == k), new_frame.filter(pl.col(schema.DROP) == k))
                for k in keys[:-1]
            ),
            _mapping(stage),
            stage.n_superclusters,
            min_overlap=args.min_overlap,
            old_kept=old_super_of_fine,
        )
        unchanged = unchanged_superclusters(cmap)
        facts = {
            "freeze": freeze_plan(kind, cmap, unchanged),
            "old_superclusters": old_stage.n_superclusters,
            "new_superclusters": stage.n_superclusters,
            "old_docs": old_docs.height,
            "new_docs": docs.height,
            "unchanged_superclusters": int(unchanged.sum()),
            "map": cmap.summary(),
        }
        out[kind] = ReuseLab(kind, old, new, cmap, unchanged, facts)
    return out
