"""Issue 15, items 1 and 2: a published file is never rewritten in place, and an export is replaced whole.

Proves: republishing a folder (token store, tokenizer, proxy checkpoint) swaps files by rename, so a live
memory map keeps reading the bytes it mapped (an in-place rewrite shows it the new bytes, or SIGBUS when
the file shrinks); re-tokenizing a drop and re-indexing under a reader leaves the reader's maps intact.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import dagster as dg
import numpy as np
import pytest

from climb_dagster.core.io import publication, storage
from climb_dagster_tests.reliability.helpers import materialize_in


def _folder(path: Path, fill: int, index: str) -> Path:
    path.mkdir(parents=True)
    np.full(4096, fill, dtype=np.uint16).tofile(path / "cluster_000.bin")
    (path / "index.json").write_text(index)
    return path


def test_republished_folder_keeps_live_memory_maps_valid(tmp_path: Path):
    dest = storage.make_path(tmp_path / "store")
    storage.upload_dir(_folder(tmp_path / "v1", 1, '{"v": 1}'), dest, kind="token_store")
    live = np.memmap(tmp_path / "store" / "cluster_000.bin", dtype=np.uint16, mode="r")
    storage.upload_dir(_folder(tmp_path / "v2", 2, '{"v": 2}'), dest, kind="token_store")
    assert int(live.min()) == int(live.max()) == 1, "the published file was rewritten under the map"
    assert np.fromfile(tmp_path / "store" / "cluster_000.bin", dtype=np.uint16)[0] == 2
    assert (tmp_path / "store" / "index.json").read_text() == '{"v": 2}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store", "v1", "v2"], "temporary folder left"


def test_republish_removes_files_the_new_version_lacks(tmp_path: Path):
    dest = storage.make_path(tmp_path / "store")
    first = _folder(tmp_path / "v1", 1, "{}")
    (first / "stale.bin").write_bytes(b"x")
    storage.upload_dir(first, dest, kind="token_store")
    storage.upload_dir(_folder(tmp_path / "v2", 2, "{}"), dest, kind="token_store")
    assert sorted(p.name for p in (tmp_path / "store").iterdir()) == ["cluster_000.bin", "index.json"]


def test_retokenizing_a_drop_and_reindexing_under_a_live_reader(tiny_corpus: dict):
    """The issue's SIGBUS: a running proxy maps the drops' token files while drop_tokens and cluster_tokens are
    re-materialized. The files are replaced by rename, so the live maps keep the bytes they mapped."""
    from climb_dagster.core.proxy.drop_store import TOKENS_FILE
    from climb_dagster.core.proxy.store import TokenStore
    from climb_dagster.resources.io_manager import read_value

    ref = read_value(tiny_corpus["root"] / "cluster_tokens")
    store = TokenStore.open(ref.path)
    before = [np.array(t[np.arange(len(t))]) for t in store.tokens]
    drop = read_value(tiny_corpus["root"] / "drop_tokens" / "drop-0001")
    token_file = Path(drop.path) / TOKENS_FILE
    mapped = os.stat(token_file).st_ino
    from climb_dagster_tests.assets.bootstrap_fixture import all_assets

    assert dg.materialize(
        all_assets(),
        selection=["drop_tokens"],
        partition_key="drop-0001",
        instance=tiny_corpus["instance"],
        resources=tiny_corpus["resources"],
    ).success
    assert materialize_in(tiny_corpus, ["cluster_tokens"], None).success
    assert os.stat(token_file).st_ino != mapped, "the drop's token file was rewritten in place"
    assert all(np.array_equal(t[np.arange(len(t))], b) for t, b in zip(store.tokens, before, strict=True))
    assert TokenStore.open(ref.path).key() == store.key()


# ------------------------------------------------------------------------------ versioned export


def _export(corpus: dict, token_budget: int, raise_on_error: bool = True) -> dg.ExecuteInProcessResult:
    from climb_dagster_tests.assets.bootstrap_fixture import all_assets

    return dg.materialize(
        all_assets(),
        selection=["mixture_export"],
        partition_key="base",
        instance=corpus["instance"],
        resources=corpus["resources"],
        run_config={"ops": {"mixture_export": {"config": {"token_budget": token_budget, "shard_rows": 5}}}},
        raise_on_error=raise_on_error,
    )


def _consistent_view(root: Path) -> dict:
    """The manifest, after checking that every shard it names exists with the rows and tokens it says."""
    import polars as pl

    manifest = json.loads((root / "manifest.json").read_text())
    for shard in manifest["shards"]:
        frame = pl.read_parquet(root / shard["file"])
        assert (frame.height, int(frame["n_tokens"].sum())) == (shard["rows"], shard["tokens"]), shard
    assert sum(s["tokens"] for s in manifest["shards"]) == manifest["tokens_sampled"]
    assert json.loads((root / manifest["version_path"] / "blend.json").read_text()) == manifest["blend"]
    return manifest


@pytest.mark.slow
def test_reexport_with_a_smaller_budget_replaces_the_export_whole(clean_run: dict):
    """Issue: a smaller budget left the old train-*.parquet shards beside the new ones."""
    root = clean_run["root"] / "exports" / "base"
    first = _consistent_view(root)
    _export(clean_run, 6_000)
    second = _consistent_view(root)
    _export(clean_run, 3_000)
    third = _consistent_view(root)
    assert third["tokens_sampled"] < first["tokens_sampled"]
    # Only the current version and the one it replaced (a reader may still stream it) remain.
    assert sorted(p.name for p in (root / "versions").iterdir()) == sorted(
        [second["version"], third["version"]]
    )
    assert not list(root.glob("train-*.parquet")) and not (root / "blend.json").exists()
    named = {str(p.path) for p in publication.current_files(storage.make_path(root))}
    on_disk = {str(p) for p in (root / third["version_path"]).iterdir()}
    assert on_disk == named, "the current version holds exactly the files its manifest names"


@pytest.mark.slow
def test_crash_during_reexport_leaves_the_previous_export_consistent(
    clean_run: dict, monkeypatch: pytest.MonkeyPatch
):
    """Issue: a crash mid re-export left the old manifest describing shards that now held other data."""
    root = clean_run["root"] / "exports" / "base"
    before = _consistent_view(root)
    written = []
    real = storage.atomic_write_bytes

    def crash_after_one_shard(path, data):
        # Step outputs are written too (the export's plan, each drop's part): count only the shards.
        if path.name.startswith("train-"):
            if len(written) == 1:
                raise OSError("simulated crash while writing a shard")
            written.append(path.name)
        real(path, data)

    monkeypatch.setattr(storage, "atomic_write_bytes", crash_after_one_shard)
    assert not _export(clean_run, 20_000, raise_on_error=False).success
    assert written, "the crash was meant to happen after a shard of the new version was written"
    monkeypatch.undo()
    assert _consistent_view(root) == before
    # The next successful export removes the crashed version's debris.
    current = _consistent_view(root) if _export(clean_run, 4_000).success else None
    assert current and len(list((root / "versions").iterdir())) == 2
