import dagster as dg
import polars as pl
import pytest

from climb_dagster.assets.ingest import raw_documents
from climb_dagster.partitions import crawl_drops
from climb_dagster.resources.io_manager import ClimbIOManagerFactory
from climb_dagster.resources.landing import LandingZone


def _resources(tmp_path):
    return {
        "io_manager": ClimbIOManagerFactory(base_path=str(tmp_path / "store")),
        "landing": LandingZone(base=str(tmp_path / "landing")),
    }


def test_raw_documents_materializes_one_drop(tmp_path):
    landing = tmp_path / "landing"
    landing.mkdir()
    pl.DataFrame({"id": ["a", "b", "c"], "text": ["one", " ", "three"]}).write_parquet(
        landing / "drop-0001.parquet"
    )
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(crawl_drops.name, ["drop-0001"])
    result = dg.materialize(
        [raw_documents], partition_key="drop-0001", instance=instance, resources=_resources(tmp_path)
    )
    assert result.success
    meta = result.asset_materializations_for_node("raw_documents")[0].metadata
    assert meta["dagster/row_count"].value == 2
    assert meta["rows_empty_dropped"].value == 1
    # The IO manager names the file it wrote, and no suffix-less `path` beside it.
    assert "path" not in meta
    assert meta["stored_at"].value == str(tmp_path / "store" / "raw_documents" / "drop-0001.parquet")
    (check,) = result.get_asset_check_evaluations()
    assert check.check_name == "ingest_counts" and check.passed
    assert check.metadata["documents_in"].value == 3 and check.metadata["documents_out"].value == 2
    stored = pl.read_parquet(tmp_path / "store" / "raw_documents" / "drop-0001.parquet")
    assert stored["id"].to_list() == ["a", "c"]


def test_raw_documents_bad_drop_fails_and_writes_nothing(tmp_path):
    landing = tmp_path / "landing"
    landing.mkdir()
    pl.DataFrame({"id": ["a"], "body": ["x"]}).write_parquet(landing / "drop-0001.parquet")
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(crawl_drops.name, ["drop-0001"])
    with pytest.raises(Exception, match="text column 'text' not found"):
        dg.materialize(
            [raw_documents], partition_key="drop-0001", instance=instance, resources=_resources(tmp_path)
        )
    assert not (tmp_path / "store" / "raw_documents").exists()


def test_landing_lists_valid_drops_only(tmp_path):
    landing = tmp_path / "landing"
    landing.mkdir()
    for name in [
        "drop-0002.parquet",
        "drop-0001.jsonl",
        "notes.txt",
        ".drop-0003.parquet.tmp-1",
        "bad key.parquet",
    ]:
        (landing / name).write_text("x")
    assert LandingZone(base=str(landing)).list_drops() == ["drop-0001", "drop-0002"]


def test_ingest_counts_fails_on_unbalanced_counts_and_duplicate_ids():
    from climb_dagster.assets.ingest import _ingest_counts
    from climb_dagster.core.io.corpus import DropStats

    docs = pl.DataFrame({"id": ["a", "a"], "text": ["x", "y"]})
    ok = _ingest_counts(docs, DropStats(rows_read=2, rows_kept=2))
    assert not ok.passed and ok.metadata["duplicate_ids"].value == 1
    unique = docs.with_columns(pl.Series("id", ["a", "b"]))
    assert _ingest_counts(unique, DropStats(rows_read=2, rows_kept=2)).passed
    lost = _ingest_counts(unique, DropStats(rows_read=3, rows_kept=2))
    assert not lost.passed and lost.metadata["documents_in"].value == 3
    assert not _ingest_counts(unique.head(0), DropStats()).passed, "an empty drop fails"
