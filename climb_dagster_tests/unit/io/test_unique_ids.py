"""The cross-drop duplicate-id check (core/io/unique_ids.py): the same clear error as before, in memory bounded
by its bucket budget, and a 64-bit hash collision between different ids is never reported."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.io.unique_ids import DropIds, check_unique_ids, id_hashes


def _drop(key: str, ids: list[str]) -> DropIds:
    hashes = id_hashes(ids)
    order = np.argsort(hashes)
    sorted_ids, sorted_hashes = [ids[i] for i in order], hashes[order]

    def ids_for(wanted: np.ndarray) -> list[str]:
        keep = set(wanted.tolist())
        return [i for i, h in zip(sorted_ids, sorted_hashes.tolist(), strict=True) if h in keep]

    return DropIds(key, sorted_hashes, ids_for)


def test_unique_ids_pass_and_a_shared_id_is_named_with_both_drops_in_key_order():
    drops = [_drop(f"drop-{d:04d}", [f"{d}-{i}" for i in range(500)]) for d in range(4)]
    assert check_unique_ids(drops) == 1
    clash = _drop("drop-0000", ["0-1", "x"])
    with pytest.raises(ClimbInputError, match="duplicate document id '3-7' in crawl drops 'drop-0001' and 'drop-0003'"):
        check_unique_ids([drops[3], _drop("drop-0001", ["3-7", "y"]), drops[0]])
    # Found whatever the number of buckets (64 bytes: one bucket per few ids).
    for budget in (64, 10**9):
        with pytest.raises(ClimbInputError, match="id '0-1' in crawl drops 'drop-0000' and 'drop-9999'"):
            check_unique_ids([drops[0], DropIds("drop-9999", clash.hashes, clash.ids_for)], bucket_bytes=budget)


def test_a_hash_collision_between_different_ids_is_not_a_duplicate():
    forged = np.array([42], dtype=np.uint64)
    a = DropIds("drop-a", forged, lambda h: ["alpha"])
    b = DropIds("drop-b", forged, lambda h: ["beta"])
    check_unique_ids([a, b])
    with pytest.raises(ClimbInputError, match="'same'"):
        check_unique_ids([DropIds("drop-a", forged, lambda h: ["same"]), DropIds("drop-b", forged, lambda h: ["same"])])


def test_the_hash_is_stable_and_salted():
    assert id_hashes(["doc-1"]).tolist() == id_hashes(["doc-1"]).tolist()
    assert id_hashes(["doc-1"]).tolist() != id_hashes(["doc-1"], salt="x").tolist()
    # blake2b-64 of b"doc-1", little-endian: fixed across machines and versions (drop stores keep these).
    assert int(id_hashes(["doc-1"])[0]) == int.from_bytes(
        __import__("hashlib").blake2b(b"doc-1", digest_size=8).digest(), "little"
    )


def _peak(n_drops: int, per_drop: int, budget: int) -> tuple[int, int]:
    drops = [
        DropIds(f"drop-{d:04d}", np.sort(np.random.default_rng(d).integers(0, 2**63, per_drop, dtype=np.uint64)), lambda h: [])
        for d in range(n_drops)
    ]
    tracemalloc.start()
    try:
        buckets = check_unique_ids(drops, bucket_bytes=budget)
        return tracemalloc.get_traced_memory()[1], buckets
    finally:
        tracemalloc.stop()


def test_memory_is_bounded_by_the_bucket_budget_not_the_number_of_drops():
    """16x the drops, same budget: the check's own allocations stay about the same (more buckets instead)."""
    budget = 2 * 2**20
    few, few_buckets = _peak(4, 50_000, budget)
    many, many_buckets = _peak(64, 50_000, budget)
    assert many_buckets > 8 * few_buckets
    assert many < 1.5 * few + 2**20, (few, many)
    assert many < 3 * budget
