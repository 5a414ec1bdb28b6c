"""System test: the production resource set against a real S3 endpoint (moto's server on 127.0.0.1).

Extend it to later stages by adding their assets to `materialize_drops` and their stored keys to the
read-back checks: every asset value lands at `<CLIMB_STORAGE_URL>/<asset key>/<partition>.<ext>`.
"""

from __future__ import annotations

import io
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from climb_dagster.assets.ingest import raw_documents
from climb_dagster.deployments import build_resources
from climb_dagster.partitions import crawl_drops
from climb_dagster_tests.integration.drops import DROP_KEYS, drop_parquet_bytes
from climb_dagster_tests.integration.servers import S3Endpoint

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def _production_env(s3: S3Endpoint, prefix: str) -> dict[str, str]:
    return {
        "CLIMB_DEPLOYMENT": "production",
        "CLIMB_STORAGE_URL": f"s3://{s3.bucket}/{prefix}/climb",
        "CLIMB_LANDING_URL": f"s3://{s3.bucket}/{prefix}/landing",
        "CLIMB_S3_ENDPOINT_URL": s3.url,
        "CLIMB_S3_REGION": s3.region,
        # Not contacted by these assets; production settings require it.
        "MLFLOW_TRACKING_URI": "http://127.0.0.1:9/unused",
    }


def materialize_drops(resources: dict, keys=DROP_KEYS) -> list[dg.ExecuteInProcessResult]:
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(crawl_drops.name, list(keys))
    results = []
    for key in keys:
        result = dg.materialize([raw_documents], partition_key=key, instance=instance, resources=resources)
        assert result.success, key
        results.append(result)
    return results


@pytest.fixture
def landed_drops(s3_server: S3Endpoint) -> str:
    """A fresh prefix whose landing/ holds the two drops, uploaded the way a crawler would."""
    prefix = s3_server.unique_prefix("ingest")
    client = s3_server.client()
    for key in DROP_KEYS:
        client.put_object(
            Bucket=s3_server.bucket, Key=f"{prefix}/landing/{key}.parquet", Body=drop_parquet_bytes(key)
        )
    return prefix


def _read_s3_parquet(s3: S3Endpoint, key: str) -> pl.DataFrame:
    body = s3.client().get_object(Bucket=s3.bucket, Key=key)["Body"].read()
    return pl.read_parquet(io.BytesIO(body))


def test_raw_documents_on_s3_match_a_local_run(
    s3_server: S3Endpoint, landed_drops: str, climb_home: Path, monkeypatch: pytest.MonkeyPatch
):
    prefix = landed_drops
    for name, value in _production_env(s3_server, prefix).items():
        monkeypatch.setenv(name, value)
    resources = build_resources("production")
    assert resources["landing"].list_drops() == list(DROP_KEYS)

    results = materialize_drops(resources)
    stored_at = [
        r.asset_materializations_for_node("raw_documents")[0].metadata["stored_at"].value for r in results
    ]
    assert stored_at == [
        f"s3://{s3_server.bucket}/{prefix}/climb/raw_documents/{k}.parquet" for k in DROP_KEYS
    ]

    # The same drops through the local resource set.
    for name in _production_env(s3_server, prefix):
        monkeypatch.delenv(name)
    local_landing = climb_home / "landing"
    local_landing.mkdir(parents=True)
    for key in DROP_KEYS:
        (local_landing / f"{key}.parquet").write_bytes(drop_parquet_bytes(key))
    local = build_resources("local")
    materialize_drops(local)

    # Read back as a user would from a notebook: plain boto3 + polars, no project code.
    listing = s3_server.client().list_objects_v2(Bucket=s3_server.bucket, Prefix=f"{prefix}/climb/")
    keys = sorted(obj["Key"] for obj in listing.get("Contents", []))
    # Atomic writes leave no temporary objects behind.
    assert keys == [f"{prefix}/climb/raw_documents/{k}.parquet" for k in DROP_KEYS]
    for key in DROP_KEYS:
        remote = _read_s3_parquet(s3_server, f"{prefix}/climb/raw_documents/{key}.parquet")
        local_df = pl.read_parquet(climb_home / "storage" / "raw_documents" / f"{key}.parquet")
        assert remote.height == 11  # 12 rows, one empty dropped
        assert remote["id"].to_list() == local_df["id"].to_list()
        assert_frame_equal(remote, local_df)


def test_rematerializing_a_drop_overwrites_in_place(
    s3_server: S3Endpoint, landed_drops: str, climb_home: Path, monkeypatch: pytest.MonkeyPatch
):
    for name, value in _production_env(s3_server, landed_drops).items():
        monkeypatch.setenv(name, value)
    resources = build_resources("production")
    materialize_drops(resources, keys=DROP_KEYS[:1])
    materialize_drops(resources, keys=DROP_KEYS[:1])
    listing = s3_server.client().list_objects_v2(Bucket=s3_server.bucket, Prefix=f"{landed_drops}/climb/")
    assert [o["Key"] for o in listing["Contents"]] == [
        f"{landed_drops}/climb/raw_documents/{DROP_KEYS[0]}.parquet"
    ]


def test_atomic_write_to_a_key_with_glob_characters(s3_server: S3Endpoint):
    """Dagster stores a mapped op's output under its step key, e.g. `round_1_train_proxy[r1_000]`:
    the rename onto the final key must not read `[...]` as a glob pattern (s3fs mv/rm do)."""
    from climb_dagster.core.io import storage

    prefix = s3_server.unique_prefix("glob")
    root = storage.make_path(
        f"s3://{s3_server.bucket}/{prefix}", storage.s3_storage_options(s3_server.url, s3_server.region)
    )
    target = root / "run-1" / "round_1_proxy_evaluations.round_1_train_proxy[r1_000]" / "result.json"
    storage.atomic_write_text(target, '{"ok": true}')
    storage.atomic_write_text(target, '{"ok": 2}')  # overwrite in place
    listing = s3_server.client().list_objects_v2(Bucket=s3_server.bucket, Prefix=f"{prefix}/")
    assert [o["Key"] for o in listing["Contents"]] == [
        f"{prefix}/run-1/round_1_proxy_evaluations.round_1_train_proxy[r1_000]/result.json"
    ]
    assert target.read_text() == '{"ok": 2}'


def test_folder_copies_on_s3_are_capped_and_abandoned_temporaries_swept(
    s3_server: S3Endpoint, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Issue 28, item 2, against a real S3 endpoint: the cap and containment checks list the prefix, a copy
    into the local cache lands whole, and the retention sweep removes temporary keys by age only."""
    from climb_dagster.core.common.errors import ClimbInputError
    from climb_dagster.core.io import storage

    monkeypatch.setenv("CLIMB_CACHE_DIR", str(tmp_path / "cache"))
    prefix = s3_server.unique_prefix("copies")
    client = s3_server.client()
    for name in ("config.json", "model.safetensors", "sub/notes.txt"):
        client.put_object(Bucket=s3_server.bucket, Key=f"{prefix}/ckpt/{name}", Body=b"x" * 10)
    temp = f"{prefix}/climb/targets/{storage.temp_name('heldout_windows.npy')}"
    client.put_object(Bucket=s3_server.bucket, Key=temp, Body=b"partial")
    whole = f"{prefix}/climb/targets/heldout_windows.npy"
    client.put_object(Bucket=s3_server.bucket, Key=whole, Body=b"whole")
    options = storage.s3_storage_options(s3_server.url, s3_server.region)
    ckpt = storage.make_path(f"s3://{s3_server.bucket}/{prefix}/ckpt", options)
    assert storage.check_copy_source(ckpt, "checkpoint") == storage.FolderSize(3, 30)
    local = storage.local_dir_copy(ckpt, kind="checkpoint")
    assert sorted(p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file()) == [
        ".complete", "config.json", "model.safetensors", "sub/notes.txt"
    ]  # fmt: skip
    monkeypatch.setenv("CLIMB_COPY_CAPS", "checkpoint=1:2")
    with pytest.raises(ClimbInputError, match="holds more than the cap of a checkpoint copy"):
        storage.check_copy_source(ckpt, "checkpoint")
    root = storage.make_path(f"s3://{s3_server.bucket}/{prefix}/climb", options)
    with pytest.raises(ClimbInputError, match="holds the storage root"):
        storage.check_copy_source(storage.make_path(f"s3://{s3_server.bucket}/{prefix}", options), "checkpoint",
                                  storage_root=root)  # fmt: skip
    assert storage.sweep_temps_below(root, max_age_s=3600) == []
    assert storage.sweep_temps_below(root, max_age_s=0) == [f"{s3_server.bucket}/{temp}"]
    listed = client.list_objects_v2(Bucket=s3_server.bucket, Prefix=f"{prefix}/climb")["Contents"]
    assert [o["Key"] for o in listed] == [f"{prefix}/climb/targets/heldout_windows.npy"]
