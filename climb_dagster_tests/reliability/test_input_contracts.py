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

import polars as pl

from climb_dagster.core.corpus import CorpusConfig, read_drop
from climb_dagster.core.storage import make_path
from climb_dagster_tests.reliability.helpers import materialization_meta
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
