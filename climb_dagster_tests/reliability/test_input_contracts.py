"""Issue 15, items 7, 8 and 9: input contracts of crawl drops and target files.

Proves: fine data is accepted (an unused extra column whose type changes between rows, a dictionary-encoded
text column, a UTF-8 byte-order mark); broken data is refused with ClimbInputError naming the user's file
and nothing is written (a truncated .jsonl.gz); a drop whose decompressed size passes max_drop_bytes is
refused while streaming, with memory bounded by the limit rather than by the inflated size.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from climb_dagster.core.io.corpus import CorpusConfig, read_drop
from climb_dagster.core.io.storage import make_path
from climb_dagster_tests.reliability.helpers import failure_text, materialization_meta, materialize_in
from climb_dagster_tests.reliability.test_bad_inputs import KEY, _assert_refused, _ingest, _jsonl, _parquet


def _rows(n: int = 3) -> list[dict]:
    return [{"id": f"d{i}", "text": f"document number {i} about tables"} for i in range(n)]


def test_unused_extra_column_changing_type_between_rows_is_accepted(fresh_home: Path):
    rows = _rows()
    rows[0]["meta"], rows[1]["meta"], rows[2]["meta"] = 1, "one", {"nested": [1]}
    _jsonl(fresh_home, [json.dumps(r).encode() for r in rows])
    result = _ingest(fresh_home)
    assert result.success and materialization_meta(result, "raw_documents")["rows_kept"] == 3


def test_used_column_changing_type_is_refused_by_name(fresh_home: Path):
    rows = _rows()
    rows[1]["text"] = 17
    path = _jsonl(fresh_home, [json.dumps(r).encode() for r in rows])
    _assert_refused(fresh_home, _ingest(fresh_home), str(path), "'text'")


def test_dictionary_encoded_text_column_is_accepted(fresh_home: Path):
    frame = pl.DataFrame(_rows()).with_columns(pl.col("text").cast(pl.Categorical))
    path = _parquet(fresh_home, frame)
    assert pl.read_parquet(path).schema["text"] == pl.Categorical  # the file really is dictionary-typed
    result = _ingest(fresh_home)
    assert result.success and materialization_meta(result, "raw_documents")["rows_kept"] == 3


def test_utf8_byte_order_mark_is_accepted(fresh_home: Path):
    lines = [json.dumps(r).encode() for r in _rows()]
    lines[0] = b"\xef\xbb\xbf" + lines[0]
    _jsonl(fresh_home, lines)
    assert _ingest(fresh_home).success


def test_truncated_jsonl_gz_is_refused_naming_the_file(fresh_home: Path):
    data = gzip.compress(b"\n".join(json.dumps(r).encode() for r in _rows(200)))
    path = fresh_home / "landing" / f"{KEY}.jsonl.gz"
    path.write_bytes(data[: len(data) // 2])
    _assert_refused(fresh_home, _ingest(fresh_home), str(path), "truncated gzip")


def test_gzip_bomb_refused_while_streaming_with_bounded_memory(fresh_home: Path):
    """A 1000x-inflating gzip: refused at the configured limit; peak memory stays near the limit."""
    import tracemalloc

    line = json.dumps({"id": "x", "text": "a" * 1_000_000}).encode()
    path = fresh_home / "landing" / f"{KEY}.jsonl.gz"
    with gzip.open(path, "wb") as f:
        for i in range(64):  # 64 MB inflated from ~64 kB
            f.write(line.replace(b'"x"', f'"x{i}"'.encode()) + b"\n")
    assert path.stat().st_size < 200_000
    limit = 8_000_000
    tracemalloc.start()
    try:
        read_drop(make_path(path), KEY, CorpusConfig(max_drop_bytes=limit))
    except Exception as exc:  # noqa: BLE001 - the type is asserted below
        error = exc
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert type(error).__name__ == "ClimbInputError"
    assert str(path) in str(error) and "max_drop_bytes" in str(error)
    assert peak < 4 * limit, f"peak {peak} bytes for a limit of {limit}"
    # The limit is the asset's config: the same drop within a raised limit is read.
    result = _ingest(fresh_home, config={"max_drop_bytes": 100_000_000})
    assert result.success


def test_gzip_bomb_refused_by_the_asset_and_nothing_written(fresh_home: Path):
    path = fresh_home / "landing" / f"{KEY}.jsonl.gz"
    with gzip.open(path, "wb") as f:
        f.write(b"\n".join(json.dumps(r).encode() for r in _rows(2000)))
    _assert_refused(
        fresh_home, _ingest(fresh_home, config={"max_drop_bytes": 10_000}), str(path), "max_drop_bytes"
    )


def test_parquet_over_the_decompressed_limit_is_refused(fresh_home: Path):
    path = _parquet(fresh_home, pl.DataFrame(_rows(2000)))
    _assert_refused(
        fresh_home, _ingest(fresh_home, config={"max_drop_bytes": 1_000}), str(path), "max_drop_bytes"
    )


# ------------------------------------------------------------------------------ target files

MC_OK = b'{"context": "SELECT", "choices": [" a", " b"], "gold": 0}'


@pytest.mark.parametrize(
    ("case", "content", "needle"),
    [
        ("not-object", MC_OK + b"\n[1, 2, 3]", ":2: expected a JSON object, got list"),
        (
            "bad-utf8",
            MC_OK + b'\n{"context": "\xff\xfe", "choices": [" a", " b"], "gold": 0}',
            ":2: invalid UTF-8",
        ),
        (
            "gold-range",
            b'{"context": "x", "choices": [" a", " b"], "gold": 2}',
            ":1: 'gold' must be an index",
        ),
        ("directory", None, "is a directory"),
    ],
)
def test_bad_multiple_choice_target_names_the_users_file_and_writes_nothing(
    tiny_corpus: dict, tmp_path: Path, case: str, content: bytes | None, needle: str
):
    """Combined target: the documents target is valid, so before the fix it was written before the MC
    file was checked and stayed behind; the message named a temporary copy."""
    mc = tmp_path / "user-mc.jsonl"
    if content is None:
        mc.mkdir()
    else:
        mc.write_bytes(content)
    documents = tiny_corpus["spec"]["target"]["documents_loss"]["documents_path"]
    spec = {**tiny_corpus["spec"], "target": {"combined": {"documents_path": documents, "mc_path": str(mc)}}}
    name = f"mc-{case}"
    result = materialize_in(tiny_corpus, ["experiment"], name, spec)
    assert not result.success
    text = failure_text(result)
    assert "ClimbInputError" in text and str(mc) in text and needle in text, text
    assert not (tiny_corpus["root"] / "targets" / name).exists(), "debris of the documents target"
    assert not (tiny_corpus["root"] / "experiment" / f"{name}.json").exists()


# ------------------------------------------------------------------------------ stored state


def test_corrupt_proxy_cache_entry_is_a_named_cache_miss(tmp_path: Path):
    """Decision (documented in ProxyCache.get): a result.json that does not parse is a cache miss, reported
    with its path; the proxy is retrained and the entry replaced, so a rerun heals instead of failing."""
    from climb_dagster.core.proxy.cache import ProxyCache
    from climb_dagster.core.proxy.records import ProxyOutcome

    warnings: list[str] = []
    cache = ProxyCache(make_path(tmp_path), warn=warnings.append)
    for key, data in {"torn": b'{"status": "ok", "sco', "binary": b"\xff\x00", "list": b"[1]"}.items():
        (tmp_path / key).mkdir()
        (tmp_path / key / "result.json").write_bytes(data)
        assert cache.get(key) is None
        assert str(tmp_path / key / "result.json") in warnings[-1]
    # JSON that parses but is no outcome (a hand edit that dropped fields) is a named miss too.
    (tmp_path / "partial").mkdir()
    (tmp_path / "partial" / "result.json").write_text('{"status": "ok", "score": 1.5}')
    assert cache.get("partial") is None and "missing 'proxy_key'" in warnings[-1]
    assert str(tmp_path / "partial" / "result.json") in warnings[-1]
    outcome = ProxyOutcome("torn", "ok", "", 1.5, 3.0, 100, 2, 0.5, 200.0, 1000, (0.5, 0.5))
    cache.put("torn", outcome)
    assert cache.get("torn") == outcome


@pytest.mark.parametrize("entry", ["../outside.bin", "/etc/hostname", "sub/cluster_000.bin", "link.bin"])
def test_token_store_index_pointing_outside_the_store_is_refused(tmp_path: Path, entry: str):
    from climb_dagster.core.common.errors import ClimbInputError
    from climb_dagster.core.proxy.store import TokenStore
    from climb_dagster.core.proxy.tokens import INDEX_FILE, STORE_FORMAT

    store = tmp_path / "store"
    store.mkdir()
    outside = tmp_path / "outside.bin"
    np.arange(8, dtype=np.uint16).tofile(outside)
    (store / "link.bin").symlink_to(outside)
    index = {
        "format": STORE_FORMAT, "vocab_size": 400, "dtype": "uint16", "eod_id": 0, "tokenizer_sha256": "x",
        "clusters": {"0": {"file": entry, "n_tokens": 8, "n_docs": 1, "dtype": "uint16", "sha256": "y"}},
    }  # fmt: skip
    (store / INDEX_FILE).write_text(json.dumps(index))
    with pytest.raises(ClimbInputError, match="super-cluster 0") as info:
        TokenStore.open(store)
    assert str(store / INDEX_FILE) in str(info.value)
