"""Writing the token store's index over per-drop stores (the `cluster_tokens` step): each super-cluster's
documents, drop by drop in key order and in id order within a drop, as segments of the drops' token files, with a
per-super-cluster cap (see `core/proxy/segments.py` for the layout and the read side).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from climb_dagster.core.common import schema
from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.io.unique_ids import id_hashes
from climb_dagster.core.proxy.drop_store import OFFSET, DropStore
from climb_dagster.core.proxy.segments import DROP, FINE, LENGTH, START, segmented_key
from climb_dagster.core.proxy.tokens import INDEX_FILE, STORE_FORMAT_V2, load_tokenizer

# Default cap: a proxy of 1B tokens never repeats a super-cluster; the index of ~2M documents per super-cluster
# stays small (32 bytes a segment).
DEFAULT_MAX_TOKENS_PER_SUPER_CLUSTER = 2**30



@dataclass(frozen=True)
class StoreDrop:
    """One drop as the combined store sees it: its stored tokens and its documents' clusters."""

    key: str
    path: str
    store: DropStore
    # Reads id -> fine cluster of this drop's documents (its cluster_assignments); called once per pass, so only
    # one drop's assignments are in memory at a time.
    load_assignments: Callable[[], pl.DataFrame]



def _segments_file(cid: int) -> str:
    return f"segments_{cid:03d}.npy"



def _kept(drop: StoreDrop, mapping: pl.DataFrame) -> pl.DataFrame:
    """The drop's documents in kept clusters: id, n_tokens, offset, cluster, super_cluster, in id order."""
    return (
        drop.store.docs([schema.ID, schema.N_TOKENS, OFFSET])
        .join(
            drop.load_assignments().select(schema.ID, pl.col(schema.CLUSTER).cast(pl.Int64)),
            on=schema.ID,
            how="inner",
        )
        .join(mapping, on=schema.CLUSTER, how="inner")
        .sort(schema.ID)
    )



def _runs(frame: pl.DataFrame, drop_index: int) -> np.ndarray:
    """Segments [n, 4] of stored rows (in id order): adjacent documents of one fine cluster become one run."""
    offsets = frame.get_column(OFFSET).to_numpy().astype(np.int64)
    lengths = frame.get_column(schema.N_TOKENS).to_numpy().astype(np.int64)
    fine = frame.get_column(schema.CLUSTER).to_numpy().astype(np.int64)
    if offsets.size == 0:
        return np.zeros((0, 4), dtype=np.int64)
    new = np.ones(offsets.size, dtype=bool)
    new[1:] = (offsets[1:] != offsets[:-1] + lengths[:-1]) | (fine[1:] != fine[:-1])
    starts = np.flatnonzero(new)
    run_len = np.add.reduceat(lengths, starts)
    out = np.empty((starts.size, 4), dtype=np.int64)
    out[:, DROP] = drop_index
    out[:, START] = offsets[starts]
    out[:, LENGTH] = run_len
    out[:, FINE] = fine[starts]
    return out



def write_segmented_store(
    drops: Sequence[StoreDrop],
    mapping: pl.DataFrame,
    tokenizer_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    n_clusters: int,
    max_tokens_per_super_cluster: int = DEFAULT_MAX_TOKENS_PER_SUPER_CLUSTER,
    seed: int = 0,
    log: Callable[[str], None] = lambda message: None,
) -> TokenStoreIndex:
    """Index the kept documents of `drops` (in key order) per super-cluster (`mapping`: cluster -> super_cluster).

    Two passes over the drops, one drop in memory at a time: the first counts each super-cluster's corpus and
    stored tokens (to size the cap), the second writes the segments. Written whole or not at all.
    """
    if isinstance(n_clusters, bool) or not isinstance(n_clusters, int) or n_clusters <= 0:
        raise ClimbInputError(f"n_clusters must be a positive integer, got {n_clusters!r}")
    if max_tokens_per_super_cluster < 1:
        raise ClimbInputError(f"max_tokens_per_super_cluster must be >= 1, got {max_tokens_per_super_cluster}")
    drops = sorted(drops, key=lambda d: d.key)
    if not drops:
        raise ClimbInputError("no drops to index: the token store needs at least one tokenized drop")
    first = drops[0].store
    for d in drops[1:]:
        if d.store.tokenizer_sha256 != first.tokenizer_sha256:
            raise ClimbInputError(
                f"drop stores were tokenized with different tokenizers: {first.drop!r} "
                f"({first.tokenizer_sha256[:12]}) and {d.key!r} ({d.store.tokenizer_sha256[:12]}); "
                "rematerialize drop_tokens for every drop"
            )
    mapping = mapping.select(
        pl.col(schema.CLUSTER).cast(pl.Int64), pl.col(schema.SUPER_CLUSTER).cast(pl.Int64)
    )
    corpus_tokens = np.zeros(n_clusters, dtype=np.int64)
    corpus_docs = np.zeros(n_clusters, dtype=np.int64)
    stored = np.zeros(n_clusters, dtype=np.int64)
    for d in drops:
        kept = _kept(d, mapping)
        sc = kept.get_column(schema.SUPER_CLUSTER).to_numpy()
        if sc.size and (sc.min() < 0 or sc.max() >= n_clusters):
            raise ClimbInputError(f"super-cluster ids of drop {d.key!r} outside 0..{n_clusters - 1}")
        n_tok = kept.get_column(schema.N_TOKENS).to_numpy()
        is_stored = kept.get_column(OFFSET).to_numpy() >= 0
        np.add.at(corpus_tokens, sc, n_tok)
        np.add.at(corpus_docs, sc, 1)
        np.add.at(stored, sc[is_stored], n_tok[is_stored])
        log(f"drop {d.key}: {kept.height}/{d.store.n_docs} documents in kept clusters")
    # A super-cluster over the cap keeps documents whose uniform hash draw is below cap/stored (about the cap).
    keep_rate = np.minimum(1.0, max_tokens_per_super_cluster / np.maximum(stored, 1))
    capped = np.flatnonzero(keep_rate < 1.0).tolist()

    out = Path(out_dir)
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    parts: list[list[np.ndarray]] = [[] for _ in range(n_clusters)]
    docs_in = np.zeros(n_clusters, dtype=np.int64)
    for index, d in enumerate(drops):
        kept = _kept(d, mapping).filter(pl.col(OFFSET) >= 0)
        if capped:
            sc = kept.get_column(schema.SUPER_CLUSTER).to_numpy()
            u = id_hashes(kept.get_column(schema.ID).to_list(), salt=f"cap:{seed}:").astype(np.float64) / 2**64
            kept = kept.filter(pl.Series(u < keep_rate[sc]))
        for (cid,), group in kept.group_by(schema.SUPER_CLUSTER, maintain_order=True):
            parts[int(cid)].append(_runs(group, index))
            docs_in[int(cid)] += group.height
    clusters: dict[str, dict[str, Any]] = {}
    digests = []
    for cid in range(n_clusters):
        segs = np.concatenate(parts[cid]) if parts[cid] else np.zeros((0, 4), dtype=np.int64)
        parts[cid] = []
        file = _segments_file(cid)
        np.save(tmp / file, segs)
        digest = hashlib.sha256(segs.tobytes()).hexdigest()
        digests.append(digest)
        clusters[str(cid)] = {
            "segments": file,
            "n_tokens": int(segs[:, LENGTH].sum()),
            "n_docs": int(docs_in[cid]),
            "sha256": digest,
            "corpus_tokens": int(corpus_tokens[cid]),
            "corpus_docs": int(corpus_docs[cid]),
        }
    load_tokenizer(tokenizer_dir).save_pretrained(str(tmp))
    index = {
        "format": STORE_FORMAT_V2,
        "vocab_size": first.vocab_size,
        "dtype": first.dtype.name,
        "eod_id": first.eod_id,
        "tokenizer_sha256": first.tokenizer_sha256,
        "drops": [
            {"key": d.key, "path": d.path, "sha256": d.store.sha256, "n_stored_tokens": d.store.n_stored_tokens}
            for d in drops
        ],
        "clusters": clusters,
        "cap": {"max_tokens_per_super_cluster": int(max_tokens_per_super_cluster), "seed": seed, "capped": capped},
    }
    (tmp / INDEX_FILE).write_text(json.dumps(index, indent=1, sort_keys=True))
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return TokenStoreIndex.read(out)



@dataclass(frozen=True)
class TokenStoreIndex:
    """What a v2 index says, without opening the drops: counts for the TokenStoreRef and the asset's table."""

    path: Path
    vocab_size: int
    n_tokens: tuple[int, ...]
    n_docs: tuple[int, ...]
    corpus_tokens: tuple[int, ...]
    corpus_docs: tuple[int, ...]
    capped: tuple[int, ...]
    key: str

    @classmethod
    def read(cls, path: Path) -> TokenStoreIndex:
        index = json.loads((path / INDEX_FILE).read_text())
        clusters = [index["clusters"][str(c)] for c in range(len(index["clusters"]))]
        return cls(
            path=path,
            vocab_size=int(index["vocab_size"]),
            n_tokens=tuple(int(c["n_tokens"]) for c in clusters),
            n_docs=tuple(int(c["n_docs"]) for c in clusters),
            corpus_tokens=tuple(int(c["corpus_tokens"]) for c in clusters),
            corpus_docs=tuple(int(c["corpus_docs"]) for c in clusters),
            capped=tuple(int(c) for c in index["cap"]["capped"]),
            key=segmented_key(index),
        )
