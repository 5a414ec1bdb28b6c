"""Issue 15, item 4: the landing sensor never loses a drop without a word.

Proves: a file still being written (modified within `settle_seconds`) is not picked up and is reported;
a drop whose ingestion failed is retried once its file changes (new run key), and a drop changed after a
successful ingestion is reported instead of silently ignored; every file the sensor does not pick up
(spaces, non-ASCII letters, other extensions, hidden temporaries) is named with its reason in the skip
reason; ambiguous keys (`k.parquet` + `k.jsonl`, keys equal up to case) are refused, naming every file.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from climb_dagster.automation.clustering import new_drops_sensor
from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.partitions import crawl_drops
from climb_dagster.resources.landing import LandingZone


def _drop(path: Path, rows: int = 3, age_s: float = 600) -> Path:
    pl.DataFrame(
        {"id": [f"{path.stem}-{i}" for i in range(rows)], "text": ["some text"] * rows}
    ).write_parquet(path)
    then = time.time() - age_s
    os.utime(path, (then, then))
    return path


def _tick(instance: dg.DagsterInstance, zone: LandingZone, cursor: str | None = None) -> dg.SensorResult:
    context = dg.build_sensor_context(instance=instance, resources={"landing": zone}, cursor=cursor)
    return new_drops_sensor(context)


@pytest.fixture
def landing(tmp_path: Path) -> tuple[Path, LandingZone, dg.DagsterInstance]:
    folder = tmp_path / "landing"
    folder.mkdir()
    return folder, LandingZone(base=str(folder), settle_seconds=60), dg.DagsterInstance.ephemeral()


def test_file_still_being_copied_waits_until_it_settles(landing):
    folder, zone, instance = landing
    _drop(folder / "drop-0001.parquet", age_s=1)
    result = _tick(instance, zone)
    assert not result.run_requests
    assert "'drop-0001.parquet': still settling" in result.skip_reason.skip_message
    _drop(folder / "drop-0001.parquet", age_s=120)
    result = _tick(instance, zone, result.cursor)
    assert [r.partition_key for r in result.run_requests] == ["drop-0001"]


def test_failed_drop_is_retried_when_its_file_changes(landing):
    folder, zone, instance = landing
    (folder / "drop-0001.parquet").write_bytes(b"PAR1 half a file")
    os.utime(folder / "drop-0001.parquet", (time.time() - 600,) * 2)
    first = _tick(instance, zone)
    assert [r.partition_key for r in first.run_requests] == ["drop-0001"]
    instance.add_dynamic_partitions(crawl_drops.name, ["drop-0001"])
    # The run failed (nothing materialized); the same file is not requested again...
    second = _tick(instance, zone, first.cursor)
    assert not second.run_requests
    # ...but once the file changes (the copy completed), it is, under a new run key.
    _drop(folder / "drop-0001.parquet", age_s=300)
    third = _tick(instance, zone, second.cursor)
    assert [r.partition_key for r in third.run_requests] == ["drop-0001"]
    assert third.run_requests[0].run_key != first.run_requests[0].run_key


def test_drop_changed_after_ingestion_is_reported(landing):
    folder, zone, instance = landing
    from climb_dagster.assets.ingest import raw_documents
    from climb_dagster_tests.reliability.helpers import local_resources

    _drop(folder / "drop-0001.parquet")
    first = _tick(instance, zone)
    instance.add_dynamic_partitions(crawl_drops.name, ["drop-0001"])
    resources = local_resources(folder.parent) | {"landing": zone}
    dg.materialize([raw_documents], partition_key="drop-0001", instance=instance, resources=resources)
    _drop(folder / "drop-0001.parquet", rows=5, age_s=300)
    result = _tick(instance, zone, first.cursor)
    assert not result.run_requests
    assert (
        "changed after ingestion" in result.skip_reason.skip_message
        and "drop-0001" in result.skip_reason.skip_message
    )


def test_every_ignored_file_is_named_with_its_reason(landing):
    folder, zone, instance = landing
    names = ["with space.parquet", "dröp.jsonl", "notes.txt", "drop.csv", ".drop-9.parquet.tmp", "ok-1.jsonl"]
    for name in names:
        (folder / name).write_bytes(b"{}")
        os.utime(folder / name, (time.time() - 600,) * 2)
    (folder / "nested").mkdir()
    instance.add_dynamic_partitions(crawl_drops.name, ["ok-1"])
    result = _tick(instance, zone)
    message = result.skip_reason.skip_message
    assert "'nested/': a folder" in message
    for name in names[:-1]:
        assert repr(name) in message, (name, message)
    assert "invalid crawl drop" in message and "not a drop" in message and "hidden or temporary" in message


@pytest.mark.parametrize(
    ("files", "known"),
    [
        (["drop-1.parquet", "drop-1.jsonl"], []),
        (["Drop-1.parquet", "drop-1.parquet"], []),
        (["DROP-1.jsonl"], ["drop-1"]),
    ],
    ids=["two-suffixes", "case", "case-of-known"],
)
def test_ambiguous_keys_are_refused_naming_every_file(landing, files: list[str], known: list[str]):
    folder, zone, instance = landing
    for name in files:
        _drop(folder / name)
    instance.add_dynamic_partitions(crawl_drops.name, known)
    result = _tick(instance, zone)
    assert not result.run_requests
    for name in files:
        assert repr(name) in result.skip_reason.skip_message
    assert (
        "ambiguous" in result.skip_reason.skip_message
        or "differs only in case" in result.skip_reason.skip_message
    )
    if len(files) == 2 and files[0].lower() != files[1].lower():
        with pytest.raises(ClimbInputError, match="ambiguous"):
            zone.path_for("drop-1")


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_s3_landing_uses_the_objects_modification_time(s3_server):
    """On S3 the pick-up rule reads LastModified from the listing: a fresh object is settling, then ready."""
    from climb_dagster_tests.integration.drops import drop_parquet_bytes

    prefix = s3_server.unique_prefix("landing-scan")
    client = s3_server.client()
    client.put_object(
        Bucket=s3_server.bucket, Key=f"{prefix}/drop-0001.parquet", Body=drop_parquet_bytes("drop-0001")
    )
    client.put_object(Bucket=s3_server.bucket, Key=f"{prefix}/DROP-0001.jsonl", Body=b"{}")
    client.put_object(
        Bucket=s3_server.bucket, Key=f"{prefix}/drop-0002.parquet", Body=drop_parquet_bytes("drop-0002")
    )
    zone = LandingZone(
        base=f"s3://{s3_server.bucket}/{prefix}", s3_endpoint_url=s3_server.url, settle_seconds=60
    )
    waiting = dict(zone.scan().ignored)
    assert "still settling" in waiting["drop-0002.parquet"]
    assert "ambiguous" in waiting["drop-0001.parquet"] and "ambiguous" in waiting["DROP-0001.jsonl"]
    assert list(zone.scan(settle_seconds=0).ready) == ["drop-0002"]
