import gzip
import json

import polars as pl
import pytest

from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.io import storage
from climb_dagster.core.io.corpus import CorpusConfig, drop_key_of, find_drop_file, read_drop


def _parquet(tmp_path, df, name="drop-0001.parquet"):
    path = tmp_path / name
    df.write_parquet(path)
    return storage.make_path(path)


def _jsonl(tmp_path, lines, name="drop-0001.jsonl"):
    path = tmp_path / name
    path.write_bytes(b"\n".join(lines))
    return storage.make_path(path)


DOCS = pl.DataFrame(
    {"id": ["a", "b", "c"], "text": ["hello world", "second doc", "third one"], "domain": ["x", "y", "x"]}
)


def test_reads_parquet_and_fills_title_source(tmp_path):
    docs, stats = read_drop(_parquet(tmp_path, DOCS), "drop-0001")
    assert docs.columns == ["id", "text", "title", "source", "domain"]
    assert docs["title"].to_list() == ["a", "b", "c"]
    assert docs["source"].unique().to_list() == ["drop-0001"]
    assert stats.rows_kept == 3 and stats.format == "parquet"


def test_reads_jsonl_and_gzip(tmp_path):
    lines = [json.dumps({"id": i, "text": f"doc {i}"}).encode() for i in range(4)]
    docs, _ = read_drop(_jsonl(tmp_path, lines), "d")
    assert docs["id"].to_list() == ["0", "1", "2", "3"]
    gz = tmp_path / "d2.jsonl.gz"
    gz.write_bytes(gzip.compress(b"\n".join(lines)))
    docs2, _ = read_drop(storage.make_path(gz), "d2")
    assert docs2.height == 4


def test_missing_text_column_names_columns(tmp_path):
    with pytest.raises(ClimbInputError, match=r"text column 'text' not found; columns are \['id', 'body'\]"):
        read_drop(_parquet(tmp_path, pl.DataFrame({"id": ["a"], "body": ["x"]})), "d")


def test_renamed_text_column_is_configurable(tmp_path):
    df = pl.DataFrame({"id": ["a"], "content": ["x y"]})
    docs, _ = read_drop(_parquet(tmp_path, df), "d", CorpusConfig(text_column="content"))
    assert docs["text"].to_list() == ["x y"]


def test_empty_and_whitespace_documents_dropped_and_counted(tmp_path):
    df = pl.DataFrame({"id": ["a", "b", "c", "d"], "text": ["ok", "", "  \n\t ", None]})
    docs, stats = read_drop(_parquet(tmp_path, df), "d")
    assert docs["id"].to_list() == ["a"]
    assert stats.rows_empty == 3


def test_all_empty_is_an_error(tmp_path):
    with pytest.raises(ClimbInputError, match="all 2 documents .* are empty"):
        read_drop(_parquet(tmp_path, pl.DataFrame({"id": ["a", "b"], "text": ["", " "]})), "d")


def test_duplicate_ids_named(tmp_path):
    df = pl.DataFrame({"id": ["a", "b", "a"], "text": ["1", "2", "3"]})
    with pytest.raises(ClimbInputError, match=r"duplicate id 'a' in column 'id' \(rows \[0, 2\]\)"):
        read_drop(_parquet(tmp_path, df), "d")


def test_zero_rows(tmp_path):
    df = pl.DataFrame({"id": [], "text": []}, schema={"id": pl.String, "text": pl.String})
    with pytest.raises(ClimbInputError, match="zero rows"):
        read_drop(_parquet(tmp_path, df), "drop-0009")


def test_corrupt_parquet_names_file(tmp_path):
    path = _parquet(tmp_path, DOCS)
    data = (tmp_path / "drop-0001.parquet").read_bytes()
    (tmp_path / "drop-0001.parquet").write_bytes(data[: len(data) // 2])
    with pytest.raises(ClimbInputError, match="drop-0001.parquet: not a readable Parquet file"):
        read_drop(path, "drop-0001")


def test_broken_jsonl_line_named(tmp_path):
    lines = [b'{"id": "a", "text": "x"}', b'{"id": "b", "text": ', b'{"id": "c", "text": "z"}']
    with pytest.raises(ClimbInputError, match="line 2: broken JSON"):
        read_drop(_jsonl(tmp_path, lines), "d")


def test_invalid_utf8_named(tmp_path):
    lines = [b'{"id": "a", "text": "x"}', b'{"id": "b", "text": "bad \xff\xfe bytes"}']
    with pytest.raises(ClimbInputError, match="line 2: invalid UTF-8"):
        read_drop(_jsonl(tmp_path, lines), "d")


def test_huge_document_truncated(tmp_path):
    big = "word " * 2_000_000  # 10 MB
    df = pl.DataFrame({"id": ["big", "small"], "text": [big, "tiny"]})
    docs, stats = read_drop(_parquet(tmp_path, df), "d", CorpusConfig(max_chars=50_000))
    assert stats.rows_truncated == 1
    assert docs["text"].str.len_chars().max() == 50_000


def test_non_string_text_column(tmp_path):
    with pytest.raises(ClimbInputError, match="column 'text' must hold strings, found dtype Int64"):
        read_drop(_parquet(tmp_path, pl.DataFrame({"id": ["a"], "text": [3]})), "d")


def test_derived_ids(tmp_path):
    docs, _ = read_drop(
        _parquet(tmp_path, pl.DataFrame({"text": ["a", "b"]})), "dx", CorpusConfig(id_column=None)
    )
    assert docs["id"].to_list() == ["dx-0", "dx-1"]


def test_find_drop_file_and_keys(tmp_path):
    _parquet(tmp_path, DOCS, "drop-0002.parquet")
    assert find_drop_file(storage.make_path(tmp_path), "drop-0002").name == "drop-0002.parquet"
    with pytest.raises(ClimbInputError, match="crawl drop 'drop-0003' not found"):
        find_drop_file(storage.make_path(tmp_path), "drop-0003")
    assert drop_key_of("drop-1.jsonl.gz") == "drop-1"
    assert drop_key_of(".drop-1.parquet.tmp") is None
    assert drop_key_of("README.md") is None
