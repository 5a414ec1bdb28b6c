"""Document ids unique across crawl drops, checked in memory bounded per bucket, not by the corpus.

Each drop keeps its ids' 64-bit hashes sorted (written once, when the drop is tokenized). The check splits the
hash space into buckets sized to a memory budget and, bucket by bucket, gathers every drop's slice of that
bucket (a binary search in each sorted array, so only that slice is read), sorts it and looks for equal
neighbours. An equal hash is only a candidate: the ids behind it are read from the two drops and compared, so a
hash collision between different ids is never reported. Memory: one bucket (budget) plus one small array of
slice bounds per drop; time: every hash read once, plus a sort per bucket.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from climb_dagster.core.common.errors import ClimbInputError

# Bytes of hashes (plus drop labels) sorted at once by the check.
DEFAULT_BUCKET_BYTES = 64 * 2**20


def id_hashes(ids: Sequence[str], salt: str = "") -> np.ndarray:
    """A stable 64-bit hash of each id (blake2b), as uint64; `salt` gives an independent hash family."""
    out = np.empty(len(ids), dtype=np.uint64)
    for i, doc_id in enumerate(ids):
        out[i] = int.from_bytes(hashlib.blake2b(f"{salt}{doc_id}".encode(), digest_size=8).digest(), "little")
    return out


@dataclass(frozen=True)
class DropIds:
    """One drop as the check sees it: its key, its sorted id hashes (e.g. memory-mapped), and a way to find the
    ids behind a few hashes (only called for candidates)."""

    key: str
    hashes: np.ndarray
    ids_for: Callable[[np.ndarray], list[str]]


def check_unique_ids(drops: Sequence[DropIds], bucket_bytes: int = DEFAULT_BUCKET_BYTES) -> int:
    """Refuse an id that occurs in two drops (`ClimbInputError` naming the id and both drops, in drop order).

    Returns the number of buckets used. Each drop's ids are assumed unique within it (ingestion checks that).
    """
    drops = sorted(drops, key=lambda d: d.key)
    total = sum(int(d.hashes.shape[0]) for d in drops)
    # Each hash costs 8 bytes plus a 4-byte drop label in the bucket, about twice that while sorting.
    buckets = max(1, int(np.ceil(total * 24 / max(bucket_bytes, 1))))
    edges = [int(round(b * 2**64 / buckets)) for b in range(buckets + 1)]
    for b in range(buckets):
        lo, hi = edges[b], edges[b + 1]
        parts, labels = [], []
        for index, drop in enumerate(drops):
            h = drop.hashes
            a = int(np.searchsorted(h, np.uint64(lo), side="left")) if lo else 0
            z = int(np.searchsorted(h, np.uint64(hi), side="left")) if hi < 2**64 else int(h.shape[0])
            if z > a:
                parts.append(np.asarray(h[a:z]))
                labels.append(np.full(z - a, index, dtype=np.int32))
        if len(parts) < 2:
            continue
        values = np.concatenate(parts)
        owners = np.concatenate(labels)
        order = np.argsort(values, kind="stable")
        values, owners = values[order], owners[order]
        same = np.flatnonzero(values[1:] == values[:-1])
        for i in same.tolist():
            first, second = drops[int(owners[i])], drops[int(owners[i + 1])]
            if first.key == second.key:
                continue
            shared = set(first.ids_for(values[i : i + 1])) & set(second.ids_for(values[i : i + 1]))
            if shared:
                doc_id = sorted(shared)[0]
                raise ClimbInputError(
                    f"duplicate document id {doc_id!r} in crawl drops {first.key!r} and {second.key!r}: ids must "
                    "be unique across drops (fix or drop one of them, then rematerialize raw_documents)"
                )
    return buckets
