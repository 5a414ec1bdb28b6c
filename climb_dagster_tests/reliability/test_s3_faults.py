"""S3 faults injected between the pipeline and a real S3 endpoint (moto on 127.0.0.1): transient 5xx and
dropped connections are retried; persistent faults, a missing bucket and denied access fail clearly; no
partial or temporary object is ever left behind."""

from __future__ import annotations

import io
import time
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from climb_dagster.assets.ingest import raw_documents
from climb_dagster.core import storage
from climb_dagster.partitions import crawl_drops
from climb_dagster.resources.sets import build_resources
from climb_dagster_tests.integration.conftest import S3Endpoint
from climb_dagster_tests.integration.drops import drop_parquet_bytes
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
    s3.client().put_object(Bucket=s3.bucket, Key=f"{prefix}/landing/{KEY}.parquet", Body=drop_parquet_bytes(KEY))
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


def test_persistent_503_probe(s3_server, climb_home, monkeypatch):
    prefix = _land(s3_server, "probe")
    with FaultyS3Proxy(s3_server.url, FaultPlan(kind="503", always=True)) as proxy:
        _env(monkeypatch, proxy.url, s3_server.bucket, prefix)
        t = time.monotonic()
        result = _ingest()
        print("SECONDS", time.monotonic() - t, "REQUESTS", proxy.requests)
        print("FAILURE", failure_text(result)[-3000:])
    assert False
