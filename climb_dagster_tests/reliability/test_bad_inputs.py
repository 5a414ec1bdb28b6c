"""Bad input at the asset level: the run fails with an error naming the file/column/value at fault, and
no output object (nor a temporary one) is written."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
import pytest

from climb_dagster.assets.ingest import raw_documents
from climb_dagster.assets.targets import documents_target
from climb_dagster.core.common import schema
from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.experiment.config import ExperimentConfig
from climb_dagster.partitions import crawl_drops
from climb_dagster.resources.io_manager import read_value, write_value
from climb_dagster_tests.assets.bootstrap_fixture import all_assets
from climb_dagster_tests.reliability.helpers import (
    failure_text,
    files_under,
    fit_centroids,
    local_resources,
    materialization_meta,
    materialize_in,
)

KEY = "drop-0001"


def _ingest(home: Path, key: str = KEY, config: dict | None = None) -> dg.ExecuteInProcessResult:
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(crawl_drops.name, [key])
    return dg.materialize(
        [raw_documents],
        partition_key=key,
        instance=instance,
        resources=local_resources(home),
        run_config={"ops": {"raw_documents": {"config": config or {}}}},
        raise_on_error=False,
    )


def _assert_refused(home: Path, result: dg.ExecuteInProcessResult, *needles: str) -> str:
    assert not result.success
    text = failure_text(result)
    assert "ClimbInputError" in text
    for needle in needles:
        assert needle in text, f"{needle!r} not in failure:\n{text}"
    assert files_under(home / "storage") == [], "a refused drop must write nothing"
    return text


def _parquet(home: Path, df: pl.DataFrame, key: str = KEY) -> Path:
    path = home / "landing" / f"{key}.parquet"
    df.write_parquet(path)
    return path


def _jsonl(home: Path, lines: list[bytes], key: str = KEY) -> Path:
    path = home / "landing" / f"{key}.jsonl"
    path.write_bytes(b"\n".join(lines))
    return path


def test_text_column_missing(fresh_home: Path):
    _parquet(fresh_home, pl.DataFrame({"id": ["a", "b"], "body": ["x", "y"]}))
    result = _ingest(fresh_home)
    _assert_refused(fresh_home, result, f"{KEY}.parquet", "text column 'text' not found", "['id', 'body']")


def test_text_column_renamed_is_refused_then_configurable(fresh_home: Path):
    _parquet(fresh_home, pl.DataFrame({"id": ["a", "b"], "content": ["x y", "z"]}))
    _assert_refused(fresh_home, _ingest(fresh_home), "text column 'text' not found", "'content'")
    # A wrong configured name is named as well.
    _assert_refused(fresh_home, _ingest(fresh_home, config={"text_column": "contents"}), "'contents'")
    ok = _ingest(fresh_home, config={"text_column": "content"})
    assert ok.success
    assert read_value(fresh_home / "storage" / "raw_documents" / KEY)["text"].to_list() == ["x y", "z"]


def test_empty_and_whitespace_documents_dropped_and_counted(fresh_home: Path):
    _parquet(
        fresh_home, pl.DataFrame({"id": list("abcde"), "text": ["kept", "", "   ", "\n\t \u3000", None]})
    )
    result = _ingest(fresh_home)
    assert result.success
    meta = materialization_meta(result, "raw_documents")
    assert meta["rows_read"] == 5 and meta["rows_empty_dropped"] == 4 and meta["rows_kept"] == 1
    assert read_value(fresh_home / "storage" / "raw_documents" / KEY)["id"].to_list() == ["a"]


def test_only_empty_documents_refused(fresh_home: Path):
    _parquet(fresh_home, pl.DataFrame({"id": ["a", "b"], "text": ["", " \t\n"]}))
    _assert_refused(fresh_home, _ingest(fresh_home), f"{KEY}.parquet", "all 2 documents", "are empty")


def test_invalid_utf8_in_jsonl(fresh_home: Path):
    _jsonl(fresh_home, [b'{"id": "a", "text": "fine"}', b'{"id": "b", "text": "bad \xff\xfe bytes"}'])
    _assert_refused(fresh_home, _ingest(fresh_home), f"{KEY}.jsonl", "line 2: invalid UTF-8", "\\xff")


def test_invalid_utf8_in_parquet(fresh_home: Path):
    """A Parquet string column with invalid UTF-8 (written as binary, relabelled as string)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = fresh_home / "landing" / f"{KEY}.parquet"
    table = pa.table({"id": ["a", "b"], "text": pa.array([b"ok", b"bad \xff\xfe"], type=pa.binary())})
    pq.write_table(table, path)
    result = _ingest(fresh_home)
    # Binary is not text: refused with the column and dtype named (polars refuses to read it as String).
    _assert_refused(fresh_home, result, f"{KEY}.parquet", "'text'")


def test_single_ten_megabyte_document_is_truncated(fresh_home: Path):
    big = "word " * 2_000_000  # 10 MB in one document
    _parquet(fresh_home, pl.DataFrame({"id": ["big", "small"], "text": [big, "tiny doc"]}))
    result = _ingest(fresh_home, config={"max_chars": 100_000})
    assert result.success
    meta = materialization_meta(result, "raw_documents")
    assert meta["rows_truncated"] == 1 and meta["rows_kept"] == 2
    docs = read_value(fresh_home / "storage" / "raw_documents" / KEY)
    assert docs["text"].str.len_chars().to_list() == [100_000, 8]


def test_duplicate_ids_within_a_drop(fresh_home: Path):
    _parquet(fresh_home, pl.DataFrame({"id": ["a", "b", "a"], "text": ["1", "2", "3"]}))
    _assert_refused(fresh_home, _ingest(fresh_home), f"{KEY}.parquet", "duplicate id 'a'", "rows [0, 2]")


def test_truncated_parquet(fresh_home: Path):
    path = _parquet(fresh_home, pl.DataFrame({"id": ["a", "b"], "text": ["x" * 1000, "y" * 1000]}))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    _assert_refused(fresh_home, _ingest(fresh_home), f"{KEY}.parquet", "not a readable Parquet file")


def test_garbage_parquet(fresh_home: Path):
    (fresh_home / "landing" / f"{KEY}.parquet").write_bytes(b"PAR1" + b"\x00garbage" * 100)
    _assert_refused(fresh_home, _ingest(fresh_home), f"{KEY}.parquet", "not a readable Parquet file")


def test_jsonl_with_a_broken_line(fresh_home: Path):
    _jsonl(
        fresh_home,
        [b'{"id": "a", "text": "x"}', b'{"id": "b", "text": "y"}', b'{"id": "c", "text": ', b"{}"],
    )
    _assert_refused(fresh_home, _ingest(fresh_home), f"{KEY}.jsonl", "line 3: broken JSON")


def test_drop_with_zero_rows(fresh_home: Path):
    _parquet(fresh_home, pl.DataFrame(schema={"id": pl.String, "text": pl.String}))
    _assert_refused(fresh_home, _ingest(fresh_home), f"{KEY}.parquet", f"drop {KEY!r} has zero rows")
    (fresh_home / "landing" / f"{KEY}.parquet").unlink()
    _jsonl(fresh_home, [b"", b"  "])
    _assert_refused(fresh_home, _ingest(fresh_home), f"{KEY}.jsonl", "zero rows")


# ----------------------------------------------------------------------------- corpus-wide checks


def _ids_frame(ids: list[str]) -> pl.DataFrame:
    return pl.DataFrame(
        {schema.ID: ids, schema.TEXT: [f"text of {i}" for i in ids], schema.TITLE: ids, schema.SOURCE: "s"}
    )


def test_duplicate_ids_across_drops_refused_by_cluster_tokens(tmp_path: Path):
    """Each drop is valid alone (and tokenizes alone); cluster_tokens (which indexes every drop) refuses the
    shared id with a check bounded per bucket, naming both drops."""
    home = tmp_path / "climb"
    root = home / "storage"
    from climb_dagster.core.io import storage

    base = storage.make_path(root)
    drops = {"drop-0001": ["a", "b", "c"], "drop-0002": ["d", "b", "e"]}
    for key, ids in drops.items():
        write_value(base / "raw_documents" / key, _ids_frame(ids))
        write_value(
            base / "cluster_assignments" / key,
            pl.DataFrame({schema.ID: ids, schema.CLUSTER: [0] * 3, schema.DISTANCE: [0.1] * 3}),
        )
    write_value(base / "super_clusters", pl.DataFrame({schema.CLUSTER: [0], schema.SUPER_CLUSTER: [0]}))
    write_value(base / "super_cluster_stats", pl.DataFrame({schema.SUPER_CLUSTER: [0]}))
    from climb_dagster.core.proxy.tokens import train_tokenizer

    # Each drop is tokenized in its own step (valid alone); the index step checks ids across drops.
    tok = train_tokenizer(
        ["some text to learn a few merges from"] * 4, tmp_path / "tokenizer", vocab_size=300
    )
    write_value(base / "proxy_tokenizer", {"path": str(tok), "sha256": "x", "vocab_size": 300})
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(crawl_drops.name, list(drops))
    for key in drops:
        assert dg.materialize(
            all_assets(), selection=["drop_tokens"], partition_key=key, instance=instance, resources=local_resources(home)
        ).success
    before = files_under(root)
    result = dg.materialize(
        all_assets(),
        selection=["cluster_tokens"],
        instance=instance,
        resources=local_resources(home),
        raise_on_error=False,
    )
    assert not result.success
    text = failure_text(result)
    assert "duplicate document id 'b'" in text and "'drop-0001'" in text and "'drop-0002'" in text
    assert files_under(root) == before, "nothing of cluster_tokens may be written"


def test_k_init_larger_than_document_count(tmp_path: Path):
    home = tmp_path / "climb"
    from climb_dagster.core.io import storage

    base = storage.make_path(home / "storage")
    rng = np.random.default_rng(0)
    for key in ("drop-0001", "drop-0002"):
        write_value(base / "document_embeddings" / key, rng.standard_normal((5, 8)).astype(np.float32))
    result = fit_centroids(home, n_clusters=50)
    assert not result.success
    assert "n_docs=10 is smaller than n_clusters (K_init)=50" in failure_text(result)
    assert not any(f.startswith("cluster_centroids") for f in files_under(home / "storage"))


def test_every_cluster_pruned(tmp_path: Path):
    from climb_dagster.core.io import storage
    from climb_dagster.core.quality.pruning import N_DOCS, QUALITY_MEAN

    home = tmp_path / "climb"
    base = storage.make_path(home / "storage")
    write_value(
        base / "cluster_quality",
        pl.DataFrame({schema.CLUSTER: [0, 1, 2], N_DOCS: [10, 5, 0], QUALITY_MEAN: [2.1, 1.5, None]}),
    )
    result = dg.materialize(
        all_assets(),
        selection=["pruned_clusters"],
        instance=dg.DagsterInstance.ephemeral(),
        resources=local_resources(home),
        run_config={"ops": {"pruned_clusters": {"config": {"threshold": 3.0}}}},
        raise_on_error=False,
    )
    assert not result.success
    text = failure_text(result)
    assert "quality threshold 3.0 would prune every cluster" in text and "2.1" in text
    assert not any(f.startswith("pruned_clusters") for f in files_under(home / "storage"))


# ------------------------------------------------------------------------- experiments and rounds


def _stored(corpus: dict, asset: str, partition: str) -> list[str]:
    return [f for f in files_under(corpus["root"] / asset) if f.split(".")[0] == partition]


@pytest.mark.parametrize(
    ("bad", "needle"),
    [
        ([[-0.1, 0.6, 0.3, 0.2]], "round 1: row 0 column 0 has negative weight -0.1"),
        ([[0.5, float("nan"), 0.25, 0.25]], "mixture weights must be finite, got [0.5, nan"),
        ([[0.4, 0.4, 0.4, 0.4]], "round 1: row 0 weights sum to 1.6"),
    ],
    ids=["negative", "nan", "sum"],
)
def test_bad_mixture_weights_refused(tiny_corpus: dict, monkeypatch: pytest.MonkeyPatch, bad, needle):
    import climb_dagster.core.search.strategies as strategies

    monkeypatch.setattr(strategies, "propose_round", lambda *a, **k: np.asarray(bad, dtype=np.float64))
    result = materialize_in(tiny_corpus, ["round_1_mixtures"], "base")
    assert not result.success
    assert needle in failure_text(result)
    assert _stored(tiny_corpus, "round_1_mixtures", "base") == []


@pytest.mark.parametrize(
    ("name", "change", "needles"),
    [
        ("zero-round", {"rounds": [2, 0, 1]}, ["rounds must be positive integers", "(2, 0, 1)"]),
        ("seven-rounds", {"rounds": [1] * 7}, ["asks for 7 rounds", "defines 6"]),
        ("bad-strategy", {"strategy": "grid"}, ["unknown strategy 'grid'"]),
    ],
)
def test_bad_experiment_config_refused(tiny_corpus: dict, name: str, change: dict, needles: list[str]):
    result = materialize_in(tiny_corpus, ["experiment"], name, {**tiny_corpus["spec"], **change})
    assert not result.success
    text = failure_text(result)
    for needle in needles:
        assert needle in text, text
    assert _stored(tiny_corpus, "experiment", name) == []


def test_unknown_target_kind_refused_by_the_config_schema(tiny_corpus: dict):
    """The target's kind is a selector of the experiment config: an unknown one never starts a run."""
    spec = {**tiny_corpus["spec"], "target": {"perplexity": {"documents_path": "t.parquet"}}}
    with pytest.raises(dg.DagsterInvalidConfigError, match="perplexity"):
        materialize_in(tiny_corpus, ["experiment"], "unknown-target", spec)
    assert _stored(tiny_corpus, "experiment", "unknown-target") == []


def test_budget_smaller_than_rounds_refused():
    data = {"name": "small", "target": {"documents_path": "t.parquet"}, "budget": 2, "ratios": [4, 2, 1]}
    with pytest.raises(ClimbInputError, match="budget 2 is smaller than the number of rounds 3"):
        ExperimentConfig.from_dict(data)


@pytest.mark.parametrize("case", ["missing", "empty_file", "empty_rows", "missing_mc"])
def test_target_evaluation_set_missing_or_empty(tiny_corpus: dict, tmp_path: Path, case: str):
    spec = dict(tiny_corpus["spec"])
    path = tmp_path / "target.parquet"
    if case == "missing":
        spec["target"] = documents_target(path)
        needle = f"target evaluation set not found: {path}"
    elif case == "empty_file":
        path.write_bytes(b"")
        spec["target"] = documents_target(path)
        needle = f"target evaluation set is empty: {path}"
    elif case == "empty_rows":
        pl.DataFrame(schema={"text": pl.String}).write_parquet(path)
        spec["target"] = documents_target(path)
        needle = "zero rows"
    else:
        spec["target"] = {"mc_accuracy": {"mc_path": str(tmp_path / "mc.jsonl")}}
        needle = f"target evaluation set not found: {tmp_path / 'mc.jsonl'}"
    name = f"target-{case.replace('_', '-')}"
    result = materialize_in(tiny_corpus, ["experiment"], name, spec)
    assert not result.success
    text = failure_text(result)
    assert needle in text, text
    assert _stored(tiny_corpus, "experiment", name) == []
    assert not (tiny_corpus["root"] / "targets" / name).exists()


@pytest.mark.parametrize("key", ["../evil", "a/b", "..", "bad\x01key", "new\nline"])
def test_bad_experiment_partition_key_refused(tiny_corpus: dict, key: str):
    """Dagster accepts these dynamic keys; the asset and the IO manager refuse them as storage paths."""
    before = files_under(tiny_corpus["home"])
    result = materialize_in(tiny_corpus, ["experiment"], key)
    assert not result.success
    assert "invalid experiment name" in failure_text(result) or "invalid partition key" in failure_text(
        result
    )
    assert files_under(tiny_corpus["home"]) == before


def test_experiment_record_is_json(tiny_corpus: dict):
    """Sanity for the fixture the tests above refuse against: a valid experiment is stored."""
    record = json.loads((tiny_corpus["root"] / "experiment" / "base.json").read_text())
    assert record["name"] == "base" and record["rounds"] == [4, 2, 2]
