"""Issue 15, items 1 and 2: a published file is never rewritten in place, and an export is replaced whole.

Proves: republishing a folder (token store, tokenizer, proxy checkpoint) swaps files by rename, so a live
memory map keeps reading the bytes it mapped (an in-place rewrite shows it the new bytes, or SIGBUS when
the file shrinks); re-materializing `cluster_tokens` under a reader leaves the reader's maps intact.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from climb_dagster.core import storage
from climb_dagster_tests.reliability.conftest import materialize_in


def _folder(path: Path, fill: int, index: str) -> Path:
    path.mkdir(parents=True)
    np.full(4096, fill, dtype=np.uint16).tofile(path / "cluster_000.bin")
    (path / "index.json").write_text(index)
    return path


def test_republished_folder_keeps_live_memory_maps_valid(tmp_path: Path):
    dest = storage.make_path(tmp_path / "store")
    storage.upload_dir(_folder(tmp_path / "v1", 1, '{"v": 1}'), dest)
    live = np.memmap(tmp_path / "store" / "cluster_000.bin", dtype=np.uint16, mode="r")
    storage.upload_dir(_folder(tmp_path / "v2", 2, '{"v": 2}'), dest)
    assert int(live.min()) == int(live.max()) == 1, "the published file was rewritten under the map"
    assert np.fromfile(tmp_path / "store" / "cluster_000.bin", dtype=np.uint16)[0] == 2
    assert (tmp_path / "store" / "index.json").read_text() == '{"v": 2}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store", "v1", "v2"], "temporary folder left"


def test_republish_removes_files_the_new_version_lacks(tmp_path: Path):
    dest = storage.make_path(tmp_path / "store")
    first = _folder(tmp_path / "v1", 1, "{}")
    (first / "stale.bin").write_bytes(b"x")
    storage.upload_dir(first, dest)
    storage.upload_dir(_folder(tmp_path / "v2", 2, "{}"), dest)
    assert sorted(p.name for p in (tmp_path / "store").iterdir()) == ["cluster_000.bin", "index.json"]


def test_rematerializing_cluster_tokens_under_a_live_reader(tiny_corpus: dict):
    """The issue's SIGBUS: a running proxy maps the token files while cluster_tokens is re-materialized."""
    from climb_dagster.core.proxy.tokens import TokenStore

    stores = [p for p in (tiny_corpus["root"] / "cluster_tokens").iterdir() if not p.name.startswith(".")]
    store = TokenStore.open(stores[0])
    before = [np.array(t) for t in store.tokens]
    mapped = [os.stat(stores[0] / f"cluster_{i:03d}.bin").st_ino for i in range(store.n_clusters)]
    result = materialize_in(tiny_corpus, ["cluster_tokens"], None)
    assert result.success
    after = [os.stat(stores[0] / f"cluster_{i:03d}.bin").st_ino for i in range(store.n_clusters)]
    assert all(a != b for a, b in zip(mapped, after, strict=True)), "token files rewritten in place"
    assert all(np.array_equal(t, b) for t, b in zip(store.tokens, before, strict=True))
    assert TokenStore.open(stores[0]).sha256 == store.sha256
