"""The token store as a small index over per-drop stores: each super-cluster a list of segments.

A super-cluster's token stream is the stored documents of its fine clusters, drop by drop (drop keys in order),
each drop's documents in id order: exactly the stream the single-step store wrote (one file per super-cluster),
so a proxy draws the same windows from it. The stream is never copied: a segment names a run of tokens inside one
drop's `tokens.bin` (`core/proxy/drop_store.py`), and windows are gathered across segments. A re-merge of
super-clusters or a new drop rewrites only this index; a centroid refit or re-prune too (the drops' tokens do not
depend on the clustering).

Layout of an index directory (`climb-tokens-v2`; `TokenStore.open` reads it beside the v1 single-file stores):
    index.json          {"format", "vocab_size", "dtype", "eod_id", "tokenizer_sha256",
                         "drops": [{"key", "path", "sha256", "n_stored_tokens"}],
                         "clusters": {"0": {"segments", "n_tokens", "n_docs", "sha256",
                                            "corpus_tokens", "corpus_docs"}, ...},
                         "cap": {"max_tokens_per_super_cluster", "capped": [...]}}
    segments_000.npy    int64 [n, 4]: drop index, offset in that drop's tokens.bin, length, fine cluster
    tokenizer files     (copied from the tokenizer, so the index is self-contained for evaluation)

Per-super-cluster cap: when the stored documents of a super-cluster hold more than `max_tokens_per_super_cluster`
tokens, a seeded uniform sample of them (by a hash of the id, independent of the drops' order) is indexed, about
the cap's worth; `corpus_tokens` keeps the whole kept corpus's count (the natural mixture, the export's budget).
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
from climb_dagster.core.common.hashing import content_hash
from climb_dagster.core.io.unique_ids import id_hashes
from climb_dagster.core.proxy.drop_store import OFFSET, DropStore
from climb_dagster.core.proxy.tokens import INDEX_FILE, STORE_FORMAT_V2, load_tokenizer

# Columns of a segments array.
DROP, START, LENGTH, FINE = 0, 1, 2, 3
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


def segmented_key(index: dict[str, Any]) -> str:
    """Content key of a v2 store: its tokenizer, its drops' token files and every super-cluster's segments."""
    return content_hash(
        {
            "tok": index["tokenizer_sha256"],
            "drops": [d["sha256"] for d in index["drops"]],
            "clusters": [index["clusters"][str(c)]["sha256"] for c in range(len(index["clusters"]))],
        }
    )


class SegmentedTokens:
    """A super-cluster's token stream read through its segments: `len()`, `.size`, and `stream[positions]` for
    an integer array of positions (any shape), gathered from the drops' memory-mapped token files."""

    def __init__(self, drops: Sequence[np.ndarray], segments: np.ndarray, dtype: np.dtype) -> None:
        self.drops = list(drops)
        self.segments = np.asarray(segments, dtype=np.int64).reshape(-1, 4)
        self.dtype = np.dtype(dtype)
        self.ends = np.cumsum(self.segments[:, LENGTH])
        self.size = int(self.ends[-1]) if self.ends.size else 0

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, positions: Any) -> np.ndarray:
        pos = np.asarray(positions, dtype=np.int64)
        flat = pos.reshape(-1)
        if flat.size and (flat.min() < 0 or flat.max() >= self.size):
            raise IndexError(f"token position out of range 0..{self.size - 1}")
        seg = np.searchsorted(self.ends, flat, side="right")
        local = flat - (self.ends[seg] - self.segments[seg, LENGTH]) + self.segments[seg, START]
        drop = self.segments[seg, DROP]
        out = np.empty(flat.size, dtype=self.dtype)
        for d in np.unique(drop).tolist():
            rows = np.flatnonzero(drop == d)
            out[rows] = self.drops[d][local[rows]]
        return out.reshape(pos.shape)


def open_segmented(
    path: Path, index: dict[str, Any], resolve: Callable[[str], Path] | None = None
) -> tuple[list[SegmentedTokens], list[int], list[int], list[str]]:
    """The streams of a v2 store (`resolve` maps a drop store's path to a local folder; default: as is)."""
    resolve = resolve or Path
    dtype = np.dtype(index["dtype"])
    arrays = []
    for entry in index["drops"]:
        store = DropStore.open(resolve(str(entry["path"])))
        if store.sha256 != entry["sha256"]:
            raise ClimbInputError(
                f"{path / INDEX_FILE}: drop {entry['key']!r} at {entry['path']} holds tokens {store.sha256[:12]}, "
                f"the index was built on {str(entry['sha256'])[:12]}; rematerialize cluster_tokens"
            )
        arrays.append(store.tokens())
    streams, n_tokens, n_docs, digests = [], [], [], []
    n = len(index["clusters"])
    for cid in range(n):
        entry = index["clusters"][str(cid)]
        name = str(entry["segments"])
        if Path(name).name != name or name in (".", ".."):
            raise ClimbInputError(f"{path / INDEX_FILE}: super-cluster {cid} names segments {name!r} outside the store")
        segs = np.load(path / name, allow_pickle=False)
        if hashlib.sha256(np.ascontiguousarray(segs).tobytes()).hexdigest() != entry["sha256"]:
            raise ClimbInputError(f"{path / name}: segments do not match the index's sha256 (a damaged copy)")
        if segs.size and (segs[:, DROP].max() >= len(arrays) or segs[:, DROP].min() < 0):
            raise ClimbInputError(f"{path / name}: a segment names a drop outside the index's {len(arrays)} drops")
        stream = SegmentedTokens(arrays, segs, dtype)
        if stream.size != int(entry["n_tokens"]):
            raise ClimbInputError(f"{path / name}: {stream.size} tokens, index says {entry['n_tokens']}")
        ends = segs[:, START] + segs[:, LENGTH]
        for d in np.unique(segs[:, DROP]).tolist() if segs.size else []:
            if ends[segs[:, DROP] == d].max() > arrays[d].size:
                raise ClimbInputError(f"{path / name}: a segment runs past the end of drop {index['drops'][d]['key']!r}")
        streams.append(stream)
        n_tokens.append(stream.size)
        n_docs.append(int(entry["n_docs"]))
        digests.append(str(entry["sha256"]))
    return streams, n_tokens, n_docs, digests
