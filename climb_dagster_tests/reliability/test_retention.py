"""Issue 15, retention: `storage_retention_job` deletes `<storage>/<run_id>/` folders of finished runs older
than `max_age_days`, and nothing else.

Proves, on real run folders written by the ClimbIOManager: a recent finished run is kept at the default age;
with the age reached, the finished run's folder goes while a running run's folder, the folder of the parent
of a running re-execution, a folder of a run unknown to the instance and every asset folder stay.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import dagster as dg

from climb_dagster.core.io.retention import RunState, folders_to_delete
from climb_dagster.jobs import storage_retention_job
from climb_dagster.resources.io_manager import ClimbIOManagerFactory
from climb_dagster.resources.storage import ClimbStorage


@dg.op
def make_numbers() -> dict:
    return {"numbers": [1, 2, 3]}


@dg.op
def add_up(numbers: dict) -> dict:
    return {"total": sum(numbers["numbers"])}


@dg.job
def two_steps():
    add_up(make_numbers())


def _retention(instance: dg.DagsterInstance, root: Path, max_age_days: float) -> dict:
    result = storage_retention_job.execute_in_process(
        instance=instance,
        resources={"storage": ClimbStorage(base_path=str(root))},
        run_config={"ops": {"delete_old_run_folders": {"config": {"max_age_days": max_age_days}}}},
    )
    return result.output_for_node("delete_old_run_folders")


def _started_run(instance: dg.DagsterInstance, root: Path, parent: str | None = None) -> str:
    run_id = str(uuid.uuid4())
    instance.add_run(
        dg.DagsterRun(
            job_name="two_steps", run_id=run_id, status=dg.DagsterRunStatus.STARTED,
            parent_run_id=parent, root_run_id=parent,
        )
    )  # fmt: skip
    (root / run_id / "add_up").mkdir(parents=True)
    (root / run_id / "add_up" / "result.json").write_text("{}")
    return run_id


def test_retention_job_deletes_only_old_finished_run_folders(tmp_path: Path):
    root = tmp_path / "storage"
    (root / "raw_documents").mkdir(parents=True)
    (root / "raw_documents" / "drop-0001.parquet").write_bytes(b"asset")
    instance = dg.DagsterInstance.ephemeral()
    io = {"io_manager": ClimbIOManagerFactory(base_path=str(root))}
    finished = two_steps.execute_in_process(instance=instance, resources=io).run_id
    parent = two_steps.execute_in_process(instance=instance, resources=io).run_id
    assert (root / finished / "make_numbers").is_dir(), "the IO manager writes step outputs under <run_id>/"
    running = _started_run(instance, root)
    reexecution = _started_run(instance, root, parent=parent)
    unknown = str(uuid.uuid4())
    (root / unknown).mkdir()

    assert _retention(instance, root, max_age_days=7)["eligible"] == []
    out = _retention(instance, root, max_age_days=0)
    assert out["deleted"] == [finished]
    assert not (root / finished).exists()
    for kept in (running, reexecution, parent, unknown):
        assert (root / kept).is_dir(), kept
    assert (root / "raw_documents" / "drop-0001.parquet").read_bytes() == b"asset"


def test_retention_rules_in_core():
    now = time.time()
    day = 86400.0
    a, b, c, d = (str(uuid.UUID(int=i)) for i in range(1, 5))
    runs = {
        a: RunState("SUCCESS", now - 10 * day),
        b: RunState("FAILURE", now - 2 * day),
        c: RunState("CANCELED", now - 30 * day),
        d: RunState("STARTED", None, parent_run_id=c, root_run_id=c),
    }
    doomed = folders_to_delete([a, b, c, d, "exports", "proxy_runs"], runs, now, max_age_days=7)
    assert [name for name, _ in doomed] == [a]
    assert "success 10.0 days ago" in doomed[0][1]
