"""Device sizing and sharding rules of core/embedding/sizing.py and sharded.py, on given memory figures (no GPU needed)."""

from __future__ import annotations

import numpy as np
import pytest

from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.embedding.sharded import ShardedEmbedder
from climb_dagster.core.embedding.sizing import (
    BUDGET_QUANTUM,
    EncoderShape,
    batch_cap,
    device_list,
    rows_per_chunk,
    shard_ranges,
    token_budget_from_memory,
)

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


class _FakeEmbedder:
    """Writes [text as float, its device index] rows and reports progress once at the end."""

    def __init__(self, index: int) -> None:
        self.index, self.device, self.dimension = index, f"cuda:{index}", 2
        self.spec = self.precision = self.max_length = self.token_budget = self.max_batch_size = None
        self.seen = 0

    def embed(self, texts, progress=None, out=None):  # noqa: ANN001, ANN201
        from climb_dagster.core.embedding.encoder import EmbedProgress

        self.seen = len(texts)
        out[:] = np.array([[float(t), float(self.index)] for t in texts], dtype=np.float32).reshape(-1, 2)
        if progress is not None:
            progress(EmbedProgress(len(texts), len(texts), 10 * len(texts), 1.0 + self.index))
        return out


def test_sharded_embedder_fills_each_shard_in_place_in_order_and_sums_progress() -> None:
    texts = [str(i) for i in range(11)]
    fakes = [_FakeEmbedder(i) for i in range(3)]
    sharded = ShardedEmbedder(fakes)
    out = np.full((11, 2), np.nan, dtype=np.float32)
    reports: list = []
    assert sharded.embed(texts, progress=reports.append, out=out) is out
    np.testing.assert_array_equal(out[:, 0], np.arange(11))
    assert sorted(f.seen for f in fakes) == [3, 4, 4] and list(out[:4, 1]) == [0, 0, 0, 0]
    last = reports[-1]
    assert (last.docs_done, last.docs_total, last.tokens_done, last.elapsed_s) == (11, 11, 110, 3.0)
    assert sharded.device == "cuda:0,cuda:1,cuda:2" and sharded.dimension == 2
    assert ShardedEmbedder(fakes).embed([]).shape == (0, 2)


def test_device_list_names_every_gpu_of_a_multi_gpu_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from climb_dagster.core.embedding.encoder import EmbedderConfig

    assert device_list("cuda") is None and device_list("cpu") is None and device_list("cuda:1") is None
    assert device_list("cuda:0,cuda:2") == ["cuda:0", "cuda:2"]
    with pytest.raises(ClimbInputError, match="listed twice"):
        device_list("cuda:0,cuda:0")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert device_list("cuda:all") == ["cuda:0", "cuda:1"]
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    with pytest.raises(ClimbInputError, match="no CUDA device"):
        device_list("cuda:all")
    assert EmbedderConfig(device="cuda:all").device == "cuda:all"
    assert EmbedderConfig(device="cuda:0,cuda:1").device == "cuda:0,cuda:1"
    with pytest.raises(ClimbInputError, match="cuda:all"):
        EmbedderConfig(device="cuda:0,cpu")
