"""`storage_retention_schedule` runs `storage_retention_job` (jobs.py) daily. Stopped by default: it deletes
files, so an operator turns it on knowingly (after a dry run)."""

import dagster as dg

from climb_dagster.jobs import storage_retention_job


@dg.schedule(
    job=storage_retention_job,
    cron_schedule="30 4 * * *",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description=(
        "Off by default (it deletes files). Daily 04:30: storage_retention_job deletes <storage>/<run_id>/ "
        "folders of runs finished more than max_age_days (7) ago; launch the job once with dry_run: true to "
        "see what it would delete before turning this on."
    ),
)
def storage_retention_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    when = context.scheduled_execution_time
    return dg.RunRequest(run_key=f"retention@{when:%Y%m%d}" if when is not None else None)


RETENTION_SCHEDULES = [storage_retention_schedule]
