"""Device sizing and sharding rules of core/embedding_gpu.py, on given memory figures (no GPU needed)."""

from __future__ import annotations

import numpy as np
import pytest

from climb_dagster.core.embedding_gpu import (
    BUDGET_QUANTUM,
    EncoderShape,
    batch_cap,
    embed_sharded,
    rows_per_chunk,
    shard_ranges,
    token_budget_from_memory,
)
from climb_dagster.core.errors import ClimbInputError

MINILM = EncoderShape(hidden=384, intermediate=1536, heads=12, layers=6)
STELLA = EncoderShape(hidden=1024, intermediate=4096, heads=16, layers=24)
GIB = 1 << 30


def test_token_budget_grows_with_free_memory_and_shrinks_with_model_size() -> None:
    small = token_budget_from_memory(8 * GIB, MINILM, 256, 2)
    large = token_budget_from_memory(120 * GIB, MINILM, 256, 2)
    assert large > 10 * small and large % BUDGET_QUANTUM == 0
    assert token_budget_from_memory(120 * GIB, STELLA, 512, 2) < large
    assert token_budget_from_memory(120 * GIB, MINILM, 256, 4) < large  # fp32 values are twice as wide
    # Half of 120 GiB over (4*384 + 2*1536 + 12*256) * 2 bytes per token.
    assert large == (60 * GIB // ((4 * 384 + 2 * 1536 + 12 * 256) * 2)) // BUDGET_QUANTUM * BUDGET_QUANTUM
    assert token_budget_from_memory(0, MINILM, 256, 2) == BUDGET_QUANTUM
    with pytest.raises(ClimbInputError, match="fraction"):
        token_budget_from_memory(GIB, MINILM, 256, 2, fraction=0)


def test_batch_cap_and_assignment_chunks_follow_the_budget() -> None:
    assert batch_cap(131072) == 4096 and batch_cap(8) == 1
    assert rows_per_chunk(80 * GIB, 384, 1000) > rows_per_chunk(4 * GIB, 384, 1000)
    assert rows_per_chunk(4 * GIB, 384, 1000) == GIB // (4 * 1384)
    assert rows_per_chunk(0, 384, 1000) == 1024 and rows_per_chunk(1 << 50, 384, 10) == 1 << 22


@pytest.mark.parametrize(("n", "parts"), [(10, 3), (3, 8), (0, 2), (1000, 4)])
def test_shards_cover_every_row_once_in_order(n: int, parts: int) -> None:
    ranges = shard_ranges(n, parts)
    covered = np.concatenate([np.arange(a, b) for a, b in ranges]) if ranges else np.arange(0)
    np.testing.assert_array_equal(covered, np.arange(n))
    assert len(ranges) <= parts and all(b > a for a, b in ranges)
    if ranges:
        sizes = [b - a for a, b in ranges]
        assert max(sizes) - min(sizes) <= 1


def test_embed_sharded_restores_order_across_devices() -> None:
    texts = [str(i) for i in range(11)]
    seen: dict[str, int] = {}

    def embed_on(device: str, shard: list[str]) -> np.ndarray:
        seen[device] = len(shard)
        return np.array([[float(t), float(device[-1])] for t in shard], dtype=np.float32).reshape(-1, 2)

    out = embed_sharded(texts, ["cuda:0", "cuda:1", "cuda:2"], embed_on)
    np.testing.assert_array_equal(out[:, 0], np.arange(11))
    assert sorted(seen.values()) == [3, 4, 4] and list(out[:4, 1]) == [0, 0, 0, 0]
