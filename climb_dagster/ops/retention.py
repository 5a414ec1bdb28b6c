"""Retention of intermediate step outputs: `delete_old_run_folders` deletes `<storage>/<run_id>/` folders of
runs that finished more than `max_age_days` ago (rules in core/io/retention.py), and the temporaries of
writers that were killed (core/io/storage.py `sweep_temps_below`). Run by `storage_retention_job` (jobs.py),
scheduled by `storage_retention_schedule` (automation/retention.py)."""

import time

import dagster as dg
from pydantic import Field

from climb_dagster.core.io.retention import RunState, folders_to_delete
from climb_dagster.core.io.storage import storage_errors, sweep_temps_below
from climb_dagster.resources.storage import ClimbStorage


class RetentionConfig(dg.Config):
    # Run folders serve only re-execution of that run from failure; after this many days they go.
    max_age_days: float = Field(
        default=7.0,
        description="Delete <storage>/<run_id>/ folders of runs finished more than this many days ago.",
    )
    dry_run: bool = Field(
        default=False, description="List the folders that would be deleted; delete nothing."
    )
    temp_max_age_hours: float = Field(
        default=24.0,
        description="Delete temporaries (.<name>.tmp-<hex>) on S3 older than this; local ones go as soon as "
        "their writer is gone (no lock held).",
    )


def _run_states(instance: dg.DagsterInstance, run_ids: list[str]) -> dict[str, RunState]:
    states = {}
    for rid in run_ids:
        record = instance.get_run_record_by_id(rid)
        if record is not None:
            run = record.dagster_run
            states[rid] = RunState(run.status.value, record.end_time, run.parent_run_id, run.root_run_id)
    # Unfinished runs anywhere in the instance protect the folders of their parents.
    for record in instance.get_run_records(
        dg.RunsFilter(
            statuses=[s for s in dg.DagsterRunStatus if s.value not in ("SUCCESS", "FAILURE", "CANCELED")]
        )
    ):
        run = record.dagster_run
        states.setdefault(run.run_id, RunState(run.status.value, None, run.parent_run_id, run.root_run_id))
    return states


@dg.op
def delete_old_run_folders(
    context: dg.OpExecutionContext, config: RetentionConfig, storage: ClimbStorage
) -> dict:
    """Delete the intermediate output folders of runs finished more than `max_age_days` ago."""
    root = storage.root()
    with storage_errors(root, "listing run folders under"):
        names = [p.name for p in root.iterdir() if p.is_dir()] if root.exists() else []
    states = _run_states(context.instance, names)
    doomed = folders_to_delete(names, states, time.time(), config.max_age_days)
    for name, why in doomed:
        context.log.info(f"{'would delete' if config.dry_run else 'deleting'} {root / name}: {why}")
        if not config.dry_run:
            folder = root / name
            with storage_errors(folder, "deleting run folder"):
                folder.fs.rm(folder.path, recursive=True)
    temporaries = []
    if not config.dry_run:
        with storage_errors(root, "removing abandoned temporaries under"):
            temporaries = sweep_temps_below(root, config.temp_max_age_hours * 3600.0)
    for path in temporaries:
        context.log.info(f"deleted abandoned temporary {path}")
    context.add_output_metadata(
        {
            "run_folders": len(names),
            "deleted": 0 if config.dry_run else len(doomed),
            "eligible": len(doomed),
            "temporaries_deleted": len(temporaries),
        }
    )
    return {
        "deleted": [] if config.dry_run else [n for n, _ in doomed],
        "eligible": [n for n, _ in doomed],
        "temporaries": temporaries,
    }
