"""S3 faults injected between the pipeline and a real S3 endpoint (moto on 127.0.0.1): transient 5xx and
dropped connections are retried; persistent faults, a missing bucket and denied access fail clearly; no
partial or temporary object is ever left behind."""

from __future__ import annotations

import io
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from climb_dagster.assets.ingest import raw_documents
from climb_dagster.core.io import storage
from climb_dagster.deployments import build_resources
from climb_dagster.partitions import crawl_drops
from climb_dagster_tests.integration.drops import drop_parquet_bytes
from climb_dagster_tests.integration.servers import S3Endpoint
from climb_dagster_tests.reliability.faulty_s3 import FaultPlan, FaultyS3Proxy
from climb_dagster_tests.reliability.helpers import failure_text

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]
KEY = "drop-0001"


def _env(monkeypatch: pytest.MonkeyPatch, endpoint: str, bucket: str, prefix: str, storage_bucket=None):
    values = {
        "CLIMB_DEPLOYMENT": "production",
        "CLIMB_STORAGE_URL": f"s3://{storage_bucket or bucket}/{prefix}/climb",
        "CLIMB_LANDING_URL": f"s3://{bucket}/{prefix}/landing",
        "CLIMB_S3_ENDPOINT_URL": endpoint,
        "CLIMB_S3_REGION": "us-east-1",
        "MLFLOW_TRACKING_URI": "http://127.0.0.1:9",
    }
    for k, v in values.items():
        monkeypatch.setenv(k, v)


def _land(s3: S3Endpoint, name: str) -> str:
    prefix = s3.unique_prefix(name)
    s3.client().put_object(
        Bucket=s3.bucket, Key=f"{prefix}/landing/{KEY}.parquet", Body=drop_parquet_bytes(KEY)
    )
    return prefix


def _objects(s3: S3Endpoint, prefix: str) -> list[str]:
    listing = s3.client().list_objects_v2(Bucket=s3.bucket, Prefix=f"{prefix}/climb/")
    return sorted(o["Key"] for o in listing.get("Contents", []))


def _ingest(raise_on_error: bool = False) -> dg.ExecuteInProcessResult:
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(crawl_drops.name, [KEY])
    return dg.materialize(
        [raw_documents], partition_key=KEY, instance=instance, resources=build_resources("production"),
        raise_on_error=raise_on_error,
    )  # fmt: skip


@pytest.fixture
def few_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Persistent faults: 2 attempts instead of the production 9 (1 + 8 retries) keep these tests short."""
    import functools

    monkeypatch.setattr(
        storage, "s3_storage_options", functools.partial(storage.s3_storage_options, max_attempts=1)
    )


def _no_temp_objects(s3: S3Endpoint, prefix: str) -> None:
    listing = s3.client().list_objects_v2(Bucket=s3.bucket, Prefix=f"{prefix}/")
    leftovers = [o["Key"] for o in listing.get("Contents", []) if ".tmp-" in o["Key"]]
    assert leftovers == []


@pytest.mark.parametrize("kind", ["503", "drop"])
def test_transient_faults_are_retried(s3_server: S3Endpoint, climb_home: Path, monkeypatch, kind: str):
    prefix = _land(s3_server, f"transient-{kind}")
    with FaultyS3Proxy(s3_server.url, FaultPlan(kind=kind, fail_first=3)) as proxy:
        _env(monkeypatch, proxy.url, s3_server.bucket, prefix)
        result = _ingest()
        assert result.success, failure_text(result)
        assert proxy.faults == 3 and proxy.requests > 3
    assert _objects(s3_server, prefix) == [f"{prefix}/climb/raw_documents/{KEY}.parquet"]
    body = s3_server.client().get_object(Bucket=s3_server.bucket, Key=_objects(s3_server, prefix)[0])["Body"]
    assert pl.read_parquet(io.BytesIO(body.read())).height == 11
    _no_temp_objects(s3_server, prefix)


def test_random_faults_on_every_request_kind(s3_server: S3Endpoint, climb_home: Path, monkeypatch):
    """A seeded 30 % of requests (reads, writes, copies, deletes) fail with 503, at most 6 in all."""
    prefix = _land(s3_server, "random")
    plan = FaultPlan(kind="503", fraction=0.3, max_faults=6, seed=3)
    with FaultyS3Proxy(s3_server.url, plan) as proxy:
        _env(monkeypatch, proxy.url, s3_server.bucket, prefix)
        result = _ingest()
        assert result.success, failure_text(result)
        assert proxy.faults >= 1
    assert _objects(s3_server, prefix) == [f"{prefix}/climb/raw_documents/{KEY}.parquet"]
    _no_temp_objects(s3_server, prefix)


@pytest.mark.parametrize("kind", ["503", "drop"])
def test_persistent_fault_fails_clearly(
    s3_server: S3Endpoint, climb_home: Path, monkeypatch, few_retries, kind: str
):
    prefix = _land(s3_server, f"persistent-{kind}")
    with FaultyS3Proxy(s3_server.url, FaultPlan(kind=kind, always=True)) as proxy:
        _env(monkeypatch, proxy.url, s3_server.bucket, prefix)
        result = _ingest()
        assert proxy.requests >= 2, "the client retried before giving up"
    assert not result.success
    text = failure_text(result)
    assert "StorageError" in text and f"reading crawl drop '{KEY}'" in text
    assert f"bucket '{s3_server.bucket}'" in text and f"endpoint {proxy.url}" in text
    assert _objects(s3_server, prefix) == []


def test_persistent_write_fault_leaves_no_partial_object(
    s3_server: S3Endpoint, climb_home: Path, monkeypatch, few_retries
):
    """Reads pass, every PUT fails: the landing file is read, the output write fails with a clear
    message, and neither the final nor a temporary object exists."""
    prefix = _land(s3_server, "write-503")
    with FaultyS3Proxy(s3_server.url, FaultPlan(kind="503", always=True, methods=("PUT", "POST"))) as proxy:
        _env(monkeypatch, proxy.url, s3_server.bucket, prefix)
        result = _ingest()
    assert not result.success
    text = failure_text(result)
    assert (
        "writing asset value" in text
        and f"s3://{s3_server.bucket}/{prefix}/climb/raw_documents/{KEY}" in text
    )
    assert f"endpoint {proxy.url}" in text
    assert _objects(s3_server, prefix) == []
    _no_temp_objects(s3_server, prefix)


def test_access_denied_fails_clearly(s3_server: S3Endpoint, climb_home: Path, monkeypatch):
    prefix = _land(s3_server, "denied")
    with FaultyS3Proxy(s3_server.url, FaultPlan(kind="deny", always=True)) as proxy:
        _env(monkeypatch, proxy.url, s3_server.bucket, prefix)
        result = _ingest()
        # Not retried like a 503 (1 + 8 attempts per request): s3fs only probes a few ways.
        assert proxy.requests < 9, "access denied is not retried"
    assert not result.success
    text = failure_text(result)
    assert "StorageError" in text and f"bucket '{s3_server.bucket}'" in text
    assert "PermissionError" in text or "Access Denied" in text or "AccessDenied" in text
    assert _objects(s3_server, prefix) == []


def test_write_access_denied_leaves_nothing(s3_server: S3Endpoint, climb_home: Path, monkeypatch):
    prefix = _land(s3_server, "denied-write")
    with FaultyS3Proxy(s3_server.url, FaultPlan(kind="deny", always=True, methods=("PUT", "POST"))) as proxy:
        _env(monkeypatch, proxy.url, s3_server.bucket, prefix)
        result = _ingest()
    assert not result.success
    text = failure_text(result)
    assert "writing asset value" in text and f"bucket '{s3_server.bucket}'" in text
    assert _objects(s3_server, prefix) == []
    _no_temp_objects(s3_server, prefix)


def test_storage_bucket_that_does_not_exist(s3_server: S3Endpoint, climb_home: Path, monkeypatch):
    prefix = _land(s3_server, "nobucket")
    _env(monkeypatch, s3_server.url, s3_server.bucket, prefix, storage_bucket="climb-no-such-bucket")
    result = _ingest()
    assert not result.success
    text = failure_text(result)
    assert "writing asset value" in text and "bucket 'climb-no-such-bucket'" in text
    assert f"endpoint {s3_server.url}" in text and "NoSuchBucket" in text or "does not exist" in text
    buckets = [b["Name"] for b in s3_server.client().list_buckets()["Buckets"]]
    assert "climb-no-such-bucket" not in buckets, "the pipeline must never create a bucket"


def test_landing_bucket_that_does_not_exist(s3_server: S3Endpoint, climb_home: Path, monkeypatch):
    _env(monkeypatch, s3_server.url, "climb-no-such-landing", "x")
    result = _ingest()
    assert not result.success
    text = failure_text(result)
    assert "s3://climb-no-such-landing/x/landing" in text


@pytest.mark.parametrize("where", ["local", "s3"])
def test_write_failing_midway_leaves_no_final_and_no_temp_object(
    s3_server: S3Endpoint, tmp_path: Path, where: str
):
    if where == "local":
        base = storage.make_path(tmp_path / "store")
    else:
        prefix = s3_server.unique_prefix("midway")
        base = storage.make_path(
            f"s3://{s3_server.bucket}/{prefix}", storage.s3_storage_options(s3_server.url, s3_server.region)
        )
    target = base / "raw_documents" / "drop-0001.parquet"

    def half_then_fail(f) -> None:
        f.write(b"x" * 6_000_000)  # more than one multipart chunk on S3
        raise RuntimeError("disk full (injected)")

    with pytest.raises(RuntimeError, match="injected"):
        storage.atomic_write(target, half_then_fail)
    assert not target.exists()
    if where == "local":
        assert [p.name for p in (tmp_path / "store").rglob("*") if p.is_file()] == []
    else:
        assert _objects_under(s3_server, prefix) == []
    # A complete write after the failure is visible whole.
    storage.atomic_write_bytes(target, b"complete")
    assert target.read_bytes() == b"complete"


def _objects_under(s3: S3Endpoint, prefix: str) -> list[str]:
    listing = s3.client().list_objects_v2(Bucket=s3.bucket, Prefix=f"{prefix}/")
    return sorted(o["Key"] for o in listing.get("Contents", []))
