"""`storage_retention_schedule` runs `storage_retention_job` (jobs.py) daily (stopped by default, like the
other automation)."""

import dagster as dg

from climb_dagster.jobs import storage_retention_job


@dg.schedule(
    job=storage_retention_job,
    cron_schedule="30 4 * * *",
    default_status=dg.DefaultScheduleStatus.STOPPED,
)
def storage_retention_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    when = context.scheduled_execution_time
    return dg.RunRequest(run_key=f"retention@{when:%Y%m%d}" if when is not None else None)


RETENTION_SCHEDULES = [storage_retention_schedule]
