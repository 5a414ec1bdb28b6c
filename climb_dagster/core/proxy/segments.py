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
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.common.hashing import content_hash
from climb_dagster.core.proxy.drop_store import DropStore
from climb_dagster.core.proxy.tokens import INDEX_FILE

# Columns of a segments array.
DROP, START, LENGTH, FINE = 0, 1, 2, 3



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
