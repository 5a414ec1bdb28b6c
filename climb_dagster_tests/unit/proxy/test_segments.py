"""Per-drop token stores combined by a small index (issue 22): the proxies get the same windows as from the
single-step store, a re-merge re-indexes without tokenizing, the cap bounds what proxies read, a damaged index is
refused, and the index step's memory does not grow with the number of drops."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.proxy.drop_store import DropStore, DropTokensConfig, write_drop_store
from climb_dagster.core.proxy.sampler import sample_windows
from climb_dagster.core.proxy.segment_index import StoreDrop, write_segmented_store
from climb_dagster.core.proxy.store import TokenStore, write_token_store
from climb_dagster_tests.unit.proxy_corpus import texts, tokenizer_dir

N_FINE = 6


def _drops(n_drops: int = 3, per_drop: int = 60) -> list[tuple[str, pl.DataFrame, pl.DataFrame]]:
    """(key, documents, assignments) of `n_drops` drops of licence paragraphs, ids shuffled across drops."""
    pool = texts()
    rng = np.random.default_rng(0)
    out = []
    for d in range(n_drops):
        rows = rng.choice(len(pool), per_drop, replace=False)
        ids = [f"doc-{int(r):05d}-{d}" for r in rng.permutation(rows)]
        docs = pl.DataFrame({"id": ids, "text": [pool[int(r)] for r in rows]})
        assigned = pl.DataFrame({"id": ids, "cluster": rng.integers(0, N_FINE, per_drop).astype(np.int32)})
        out.append((f"drop-{d:04d}", docs, assigned))
    return out


def _segmented(tmp: Path, drops, mapping: pl.DataFrame, n_super: int, **kw) -> TokenStore:
    parts = []
    for key, docs, assigned in drops:
        store = write_drop_store(key, docs, tokenizer_dir(), tmp / "drops" / key, kw.pop("drop_config", DropTokensConfig()))
        parts.append(StoreDrop(key, str(store.path), store, lambda a=assigned: a))
    write_segmented_store(parts, mapping, tokenizer_dir(), tmp / "index", n_super, **kw)
    return TokenStore.open(tmp / "index")


def _single_step(tmp: Path, drops, mapping: pl.DataFrame, n_super: int) -> TokenStore:
    """What cluster_tokens wrote before issue 22: drops in key order, each drop's kept documents in id order,
    grouped by super-cluster, into one file per super-cluster."""

    def batches():
        for _, docs, assigned in sorted(drops, key=lambda d: d[0]):
            joined = (
                docs.join(assigned.with_columns(pl.col("cluster").cast(pl.Int64)), on="id")
                .join(mapping, on="cluster")
                .sort("id")
            )
            for (sc,), group in joined.group_by("super_cluster", maintain_order=True):
                yield int(sc), group["text"].to_list()

    return write_token_store(batches(), tokenizer_dir(), tmp / "single", n_clusters=n_super)


MAPPING = pl.DataFrame({"cluster": [0, 1, 2, 4, 5], "super_cluster": [0, 1, 0, 2, 1]})  # cluster 3 pruned


def test_segments_give_the_single_step_stores_streams_and_windows(tmp_path: Path):
    drops = _drops()
    new = _segmented(tmp_path, drops, MAPPING, 3)
    old = _single_step(tmp_path, drops, MAPPING, 3)
    assert new.n_tokens == old.n_tokens and new.n_docs == old.n_docs and new.vocab_size == old.vocab_size
    for c in range(3):
        np.testing.assert_array_equal(new.tokens[c][np.arange(new.n_tokens[c])], np.asarray(old.tokens[c]))
    mixture = np.array([0.5, 0.3, 0.2])
    for seed in (0, 1, 7):
        np.testing.assert_array_equal(sample_windows(new, mixture, 64, 32, seed), sample_windows(old, mixture, 64, 32, seed))
    assert new.key() != old.key()  # a different layout has its own key (same windows, so the same scores)


def test_a_re_merge_re_indexes_without_touching_the_drop_stores(tmp_path: Path):
    drops = _drops()
    _segmented(tmp_path, drops, MAPPING, 3)
    token_files = sorted((tmp_path / "drops").rglob("tokens.bin"))
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in token_files}
    remerged = pl.DataFrame({"cluster": [0, 1, 2, 3, 4, 5], "super_cluster": [1, 0, 1, 0, 1, 0]})
    parts = [
        StoreDrop(key, str(tmp_path / "drops" / key), DropStore.open(tmp_path / "drops" / key), lambda a=assigned: a)
        for key, _, assigned in drops
    ]
    write_segmented_store(parts, remerged, tokenizer_dir(), tmp_path / "remerged", 2)
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in token_files} == before
    new = TokenStore.open(tmp_path / "remerged")
    old = _single_step(tmp_path / "x", drops, remerged, 2)
    for c in range(2):
        np.testing.assert_array_equal(new.tokens[c][np.arange(new.n_tokens[c])], np.asarray(old.tokens[c]))


def test_the_cap_bounds_each_super_cluster_and_keeps_the_corpus_counts(tmp_path: Path):
    drops = _drops(per_drop=120)
    full = _segmented(tmp_path / "full", drops, MAPPING, 3)
    cap = min(full.n_tokens) // 3
    capped = _segmented(tmp_path / "capped", drops, MAPPING, 3, max_tokens_per_super_cluster=cap)
    index = json.loads((tmp_path / "capped" / "index" / "index.json").read_text())
    assert index["cap"]["capped"] == [0, 1, 2]
    for c in range(3):
        assert 0.5 * cap < capped.n_tokens[c] < 1.6 * cap, (c, cap, capped.n_tokens[c])
        assert index["clusters"][str(c)]["corpus_tokens"] == full.n_tokens[c]
    # The capped stream is still made of whole documents of the full one (each ends with end-of-document).
    for c in range(3):
        stream = capped.tokens[c][np.arange(capped.n_tokens[c])]
        assert stream[-1] == capped.eod_id


def test_drop_store_keeps_a_seeded_sample_of_whole_documents_independent_of_row_order(tmp_path: Path):
    (key, docs, _), *_ = _drops(1, 80)
    full = write_drop_store(key, docs, tokenizer_dir(), tmp_path / "full")
    assert full.n_stored_docs == full.n_docs == 80 and full.n_stored_tokens == full.n_tokens
    table = full.docs()
    assert table["id"].to_list() == sorted(docs["id"].to_list())
    assert (table["offset"] >= 0).all()
    cap = full.n_tokens // 4
    part = write_drop_store(key, docs, tokenizer_dir(), tmp_path / "part", DropTokensConfig(max_stored_tokens=cap))
    shuffled = write_drop_store(
        key, docs.sample(fraction=1.0, shuffle=True, seed=3), tokenizer_dir(), tmp_path / "shuffled",
        DropTokensConfig(max_stored_tokens=cap),
    )
    assert 0 < part.n_stored_tokens <= cap and part.n_tokens == full.n_tokens
    assert part.sha256 == shuffled.sha256 and part.docs().equals(shuffled.docs())
    counts = part.docs()
    stored = counts.filter(pl.col("offset") >= 0)
    assert int(stored["n_tokens"].sum()) == part.n_stored_tokens
    # Every document is counted (the natural mixture and the export need all of them).
    assert counts["n_tokens"].to_list() == full.docs()["n_tokens"].to_list()
    other = write_drop_store(key, docs, tokenizer_dir(), tmp_path / "other", DropTokensConfig(max_stored_tokens=cap, seed=1))
    assert other.sha256 != part.sha256


def test_a_damaged_index_or_a_changed_drop_is_refused(tmp_path: Path):
    drops = _drops(2, 40)
    _segmented(tmp_path, drops, MAPPING, 3)
    seg = tmp_path / "index" / "segments_001.npy"
    good = seg.read_bytes()
    arr = np.load(seg)
    arr[0, 2] += 1
    np.save(seg, arr)
    with pytest.raises(ClimbInputError, match="segments do not match the index's sha256"):
        TokenStore.open(tmp_path / "index")
    seg.write_bytes(good)
    TokenStore.open(tmp_path / "index")
    key, docs, _ = drops[0]
    write_drop_store(key, docs.head(10), tokenizer_dir(), tmp_path / "drops" / key)
    with pytest.raises(ClimbInputError, match="rematerialize cluster_tokens"):
        TokenStore.open(tmp_path / "index")


def _index_peak(tmp: Path, n_drops: int) -> int:
    drops = _drops(n_drops, 60)
    parts = []
    for key, docs, assigned in drops:
        store = write_drop_store(key, docs, tokenizer_dir(), tmp / "drops" / key)
        parts.append(StoreDrop(key, str(store.path), store, lambda a=assigned: a))
    tracemalloc.start()
    try:
        write_segmented_store(parts, MAPPING, tokenizer_dir(), tmp / "index", 3, max_tokens_per_super_cluster=2_000)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_the_index_steps_memory_does_not_grow_with_the_number_of_drops(tmp_path: Path):
    """4x the drops at the same cap: the index step's Python/numpy allocations stay about the same."""
    few = _index_peak(tmp_path / "few", 3)
    many = _index_peak(tmp_path / "many", 12)
    assert many < 1.5 * few + 512 * 1024, (few, many)
