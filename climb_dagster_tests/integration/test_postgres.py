"""System test: Dagster instances from infra/*.yaml on a real PostgreSQL server.

Extend it to later stages by materializing their assets with `postgres_instance` and checking their
events the same way (event_logs rows per asset key and partition).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from climb_dagster.assets.ingest import raw_documents
from climb_dagster.assets.targets import documents_target
from climb_dagster.deployments import build_resources
from climb_dagster.partitions import crawl_drops
from climb_dagster_tests.assets.bootstrap_fixture import (
    TINY_EXPERIMENT,
    run_experiment,
    seed_clustered_corpus,
)
from climb_dagster_tests.integration.drops import DROP_KEYS, drop_parquet_bytes
from climb_dagster_tests.integration.instance_config import (
    PRODUCTION_PLACEHOLDER_ENV,
    local_postgres_instance_dir,
    production_instance_dir,
)
from climb_dagster_tests.integration.servers import MlflowServer, Postgres
from climb_dagster_tests.paths import REPO_ROOT

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


@pytest.fixture
def pg_env(postgres_server: Postgres, pg_database: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = postgres_server.dagster_env(pg_database)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def landed_local_drops(climb_home: Path) -> Path:
    landing = climb_home / "landing"
    landing.mkdir(parents=True)
    for key in DROP_KEYS:
        (landing / f"{key}.parquet").write_bytes(drop_parquet_bytes(key))
    return landing


@pytest.fixture
def postgres_instance(tmp_path: Path, pg_env: dict[str, str]) -> Iterator[dg.DagsterInstance]:
    instance = dg.DagsterInstance.from_config(str(local_postgres_instance_dir(tmp_path / "pg_dagster_home")))
    try:
        yield instance
    finally:
        instance.dispose()


def _query(pg: Postgres, dbname: str, sql: str, params: tuple = ()) -> list[tuple]:
    conn = pg.connect(dbname)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall()
    finally:
        conn.close()


def test_materialization_run_and_events_are_in_postgres(
    postgres_instance: dg.DagsterInstance,
    landed_local_drops: Path,
    postgres_server: Postgres,
    pg_database: str,
):
    from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage

    assert isinstance(postgres_instance.run_storage, PostgresRunStorage)
    assert isinstance(postgres_instance.event_log_storage, PostgresEventLogStorage)
    postgres_instance.add_dynamic_partitions(crawl_drops.name, list(DROP_KEYS))
    resources = build_resources("local")
    run_ids = []
    for key in DROP_KEYS:
        result = dg.materialize(
            [raw_documents], partition_key=key, instance=postgres_instance, resources=resources
        )
        assert result.success
        run_ids.append(result.run_id)

    # Straight from the database, as an operator would look.
    runs = _query(postgres_server, pg_database, "SELECT run_id, status, partition FROM runs ORDER BY id")
    assert [(r[0], r[1]) for r in runs] == [(rid, "SUCCESS") for rid in run_ids]
    assert [r[2] for r in runs] == list(DROP_KEYS)
    for run_id, key in zip(run_ids, DROP_KEYS, strict=True):
        events = _query(
            postgres_server,
            pg_database,
            "SELECT dagster_event_type, asset_key, partition FROM event_logs WHERE run_id = %s ORDER BY id",
            (run_id,),
        )
        types = [e[0] for e in events]
        # Run-level events keep their legacy names in the table (PIPELINE_SUCCESS = RUN_SUCCESS).
        assert "STEP_SUCCESS" in types and {"RUN_SUCCESS", "PIPELINE_SUCCESS"} & set(types)
        materializations = [e for e in events if e[0] == "ASSET_MATERIALIZATION"]
        assert len(materializations) == 1
        assert json.loads(materializations[0][1]) == ["raw_documents"]
        assert materializations[0][2] == key
    partitions = _query(
        postgres_server,
        pg_database,
        "SELECT partition FROM dynamic_partitions WHERE partitions_def_name = %s ORDER BY partition",
        (crawl_drops.name,),
    )
    assert [p[0] for p in partitions] == list(DROP_KEYS)

    # And through Dagster's API on a second instance (another process would see the same).
    other = dg.DagsterInstance.from_config(str(Path(postgres_instance.root_directory)))
    try:
        latest = other.get_latest_materialization_event(dg.AssetKey("raw_documents"))
        assert latest is not None and latest.run_id == run_ids[-1]
        meta = latest.asset_materialization.metadata
        assert meta["dagster/row_count"].value == 11
    finally:
        other.dispose()


def test_cli_run_in_subprocesses_writes_to_postgres(
    tmp_path: Path,
    pg_env: dict[str, str],
    landed_local_drops: Path,
    climb_home: Path,
    postgres_server: Postgres,
    pg_database: str,
):
    """`dagster asset materialize` (multiprocess executor: the step runs in a child process) with
    DAGSTER_HOME on PostgreSQL, the way run workers in separate pods share one instance."""
    home = local_postgres_instance_dir(tmp_path / "pg_dagster_home")
    instance = dg.DagsterInstance.from_config(str(home))
    try:
        instance.add_dynamic_partitions(crawl_drops.name, [DROP_KEYS[1]])
    finally:
        instance.dispose()
    env = {**os.environ, **pg_env, "DAGSTER_HOME": str(home), "CLIMB_HOME": str(climb_home)}
    env.pop("CLIMB_DEPLOYMENT", None)
    cmd = [
        sys.executable, "-m", "dagster", "asset", "materialize", "-m", "climb_dagster.definitions",
        "--select", "raw_documents", "--partition", DROP_KEYS[1],
    ]  # fmt: skip
    result = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    runs = _query(postgres_server, pg_database, "SELECT run_id, status, partition FROM runs")
    assert len(runs) == 1 and runs[0][1] == "SUCCESS" and runs[0][2] == DROP_KEYS[1]
    steps = _query(
        postgres_server,
        pg_database,
        "SELECT count(*) FROM event_logs WHERE run_id = %s AND dagster_event_type = 'STEP_WORKER_STARTED'",
        (runs[0][0],),
    )
    assert steps[0][0] == 1, "the step should have run in its own worker process"
    assert (climb_home / "storage" / "raw_documents" / f"{DROP_KEYS[1]}.parquet").exists()


def test_production_instance_config_loads_on_postgres(
    tmp_path: Path, pg_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
):
    """infra/dagster.yaml as a whole: Postgres storage (tables created), K8sRunLauncher (dummy kubeconfig,
    no cluster contacted), QueuedRunCoordinator with its limits, S3 compute logs."""
    from dagster._core.run_coordinator import QueuedRunCoordinator
    from dagster_aws.s3.compute_log_manager import S3ComputeLogManager
    from dagster_k8s import K8sRunLauncher

    for name, value in PRODUCTION_PLACEHOLDER_ENV.items():
        monkeypatch.setenv(name, value)
    instance = dg.DagsterInstance.from_config(str(production_instance_dir(tmp_path / "prod_home")))
    try:
        assert isinstance(instance.run_launcher, K8sRunLauncher)
        assert instance.run_launcher.job_namespace == "climb"
        assert "climb-s3" in instance.run_launcher.env_secrets
        assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
        limits = {
            (t["key"], json.dumps(t.get("value"))): t["limit"]
            for t in instance.run_coordinator.get_run_queue_config().tag_concurrency_limits
        }
        assert limits[("climb/accelerator", '"gpu"')] == 2
        assert isinstance(instance.compute_log_manager, S3ComputeLogManager)
        assert instance.get_runs() == []  # storage reachable, schema created
    finally:
        instance.dispose()


@pytest.mark.slow
def test_bootstrapping_run_events_are_in_postgres(
    postgres_instance: dg.DagsterInstance,
    climb_home: Path,
    postgres_server: Postgres,
    pg_database: str,
    mlflow_server: MlflowServer,
    monkeypatch: pytest.MonkeyPatch,
):
    """One experiment (proxy data + 3 rounds + final) materialized on the Postgres instance: the mapped
    proxy-training steps of round_1_proxy_evaluations and its materialization are rows in event_logs."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)
    name = f"pg-{uuid.uuid4().hex[:8]}"
    target = seed_clustered_corpus(climb_home)
    result = run_experiment(postgres_instance, name, {**TINY_EXPERIMENT, "target": documents_target(target)})
    assert result.success

    runs = _query(
        postgres_server,
        pg_database,
        "SELECT run_id, status, partition FROM runs WHERE run_id = %s",
        (result.run_id,),
    )
    assert runs == [(result.run_id, "SUCCESS", name)]
    events = _query(
        postgres_server,
        pg_database,
        "SELECT dagster_event_type, step_key, asset_key, partition FROM event_logs "
        "WHERE run_id = %s AND step_key LIKE 'round_1_proxy_evaluations.%%' ORDER BY id",
        (result.run_id,),
    )
    succeeded = {e[1] for e in events if e[0] == "STEP_SUCCESS"}
    trains = {f"round_1_proxy_evaluations.round_1_train_proxy[r1_{i:03d}]" for i in range(4)}
    assert (
        trains
        | {
            "round_1_proxy_evaluations.round_1_plan_proxies",
            "round_1_proxy_evaluations.round_1_collect_proxies",
        }
        == succeeded
    )
    materialized = [e for e in events if e[0] == "ASSET_MATERIALIZATION"]
    assert [(json.loads(e[2]), e[3]) for e in materialized] == [(["round_1_proxy_evaluations"], name)]
    # Read back through Dagster's API from a second instance on the same database.
    other = dg.DagsterInstance.from_config(str(Path(postgres_instance.root_directory)))
    try:

        def latest(asset: str):
            found = other.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[name]), limit=1
            ).records
            assert len(found) == 1, asset
            return found[0]

        evals = latest("round_1_proxy_evaluations")
        assert evals.run_id == result.run_id
        assert evals.asset_materialization.metadata["dagster/row_count"].value == 4
        assert latest("final_mixture").run_id == result.run_id
    finally:
        other.dispose()
