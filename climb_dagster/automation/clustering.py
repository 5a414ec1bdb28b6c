"""Sensors and the schedule of the clustering stage (its jobs are in jobs.py).

- `new_drops_sensor`: each new file in the landing zone becomes a `crawl_drops` partition and one run
  of the per-drop assets for that key alone (embed + rate; + assign + profile once centroids exist).
- `recluster_schedule` (weekly) runs `refit_centroids_job` on a fresh sample over all drops (the seed
  comes from the tick's date, so a re-run of the same tick draws the same sample).
- `reassign_sensor`: after centroids change, re-assigns and re-profiles every drop.
- `merge_sensor`: once every drop's profile is newer than the centroids and something changed since
  the last merge, re-prunes and re-merges (cluster_quality -> pruned_clusters -> super_clusters).
"""

import dagster as dg

from climb_dagster.jobs import (
    RAW,
    drop_clustering_job,
    drop_embedding_job,
    merge_job,
    reassign_drop_job,
    refit_centroids_job,
)
from climb_dagster.partitions import crawl_drops
from climb_dagster.resources.landing import LandingZone

CENTROIDS_KEY = dg.AssetKey("cluster_centroids")
PROFILES_KEY = dg.AssetKey("cluster_profiles")
MERGED_KEY = dg.AssetKey("super_clusters")


def latest_storage_id(instance: dg.DagsterInstance, key: dg.AssetKey) -> int | None:
    records = instance.fetch_materializations(key, limit=1).records
    return records[0].storage_id if records else None


@dg.sensor(
    jobs=[drop_clustering_job, drop_embedding_job],
    minimum_interval_seconds=60,
    # On by default: scanning the landing zone is cheap, and a drop left there is meant to be processed.
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "On by default. Every minute: each settled file in the landing zone becomes a crawl_drops partition "
        "and one run of drop_clustering_job (drop_embedding_job before any centroids exist) for that drop; "
        "a failed drop is retried once its file changes. Files it does not pick up are named in its skip reason."
    ),
)
def new_drops_sensor(context: dg.SensorEvaluationContext, landing: LandingZone) -> dg.SensorResult:
    """Register each settled landing-zone drop as a partition and process that drop alone; retry a drop
    whose ingestion failed once its file changes; report every file it does not pick up, and why.

    The cursor maps each drop key to the fingerprint (size, mtime) of the file last requested for it.
    """
    import json

    known = set(context.instance.get_dynamic_partitions(crawl_drops.name))
    requested: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
    scan = landing.scan(known)
    for name, why in scan.ignored:
        context.log.info(f"landing file {name!r} not picked up: {why}")
    new, retry, changed = [], [], []
    ingested: set[str] | None = None
    for key, file in sorted(scan.ready.items()):
        if key not in known:
            new.append(key)
        elif requested.get(key, file.fingerprint) != file.fingerprint:
            if ingested is None:
                ingested = context.instance.get_materialized_partitions(dg.AssetKey(RAW))
            if key in ingested:
                changed.append(key)  # reported once: the cursor takes the new fingerprint below
                requested[key] = file.fingerprint
                continue
            retry.append(key)
        requested.setdefault(key, file.fingerprint)
    for key in changed:
        context.log.warning(
            f"drop {key!r}: its file changed after it was ingested; it is not re-ingested automatically "
            "(re-materialize raw_documents for this partition to use the new file)"
        )
    if not new and not retry:
        reasons = [f"no new drops ({len(known)} known)"]
        if changed:
            reasons.append(f"changed after ingestion (not re-ingested): {changed}")
        if scan.ignored:
            reasons.append(f"ignored: {scan.summary()}")
        return dg.SensorResult(skip_reason="; ".join(reasons), cursor=json.dumps(requested, sort_keys=True))
    # Without centroids a drop can only be embedded; the first refit then assigns every drop.
    has_centroids = latest_storage_id(context.instance, CENTROIDS_KEY) is not None
    job = drop_clustering_job if has_centroids else drop_embedding_job
    runs = []
    for key in [*new, *retry]:
        fingerprint = scan.ready[key].fingerprint
        requested[key] = fingerprint
        runs.append(dg.RunRequest(partition_key=key, run_key=f"{key}@{fingerprint}", job_name=job.name))
    return dg.SensorResult(
        run_requests=runs,
        dynamic_partitions_requests=[crawl_drops.build_add_request(new)] if new else [],
        cursor=json.dumps(requested, sort_keys=True),
    )


@dg.sensor(
    job=reassign_drop_job,
    minimum_interval_seconds=60,
    # On by default: it acts only after centroids change (a refit someone launched), and finishes that refit.
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "On by default; idle until the centroids change. Then one reassign_drop_job run per drop whose "
        "assignment predates the new centroids (re-assign + re-profile; no re-embedding)."
    ),
)
def reassign_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    """After new centroids, re-assign every drop whose assignment predates them (one run per drop)."""
    centroids_id = latest_storage_id(context.instance, CENTROIDS_KEY)
    if centroids_id is None:
        return dg.SensorResult(skip_reason="no centroids yet")
    latest = context.instance.get_latest_storage_id_by_partition(
        dg.AssetKey("cluster_assignments"), dg.DagsterEventType.ASSET_MATERIALIZATION
    )
    stale = [
        key
        for key in context.instance.get_dynamic_partitions(crawl_drops.name)
        if latest.get(key, -1) < centroids_id
    ]
    if not stale:
        return dg.SensorResult(skip_reason="every drop is assigned to the latest centroids")
    return dg.SensorResult(
        run_requests=[dg.RunRequest(partition_key=key, run_key=f"{key}@{centroids_id}") for key in stale]
    )


@dg.sensor(
    job=merge_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "On by default; idle until every drop is profiled against the latest centroids and a profile is newer "
        "than the last merge. Then one merge_clusters_job run: re-rate, prune and merge into super-clusters."
    ),
)
def merge_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    """Re-prune and re-merge once every drop is profiled against the latest centroids."""
    centroids_id = latest_storage_id(context.instance, CENTROIDS_KEY)
    if centroids_id is None:
        return dg.SensorResult(skip_reason="no centroids yet")
    drops = context.instance.get_dynamic_partitions(crawl_drops.name)
    latest = context.instance.get_latest_storage_id_by_partition(
        PROFILES_KEY, dg.DagsterEventType.ASSET_MATERIALIZATION
    )
    waiting = [key for key in drops if latest.get(key, -1) < centroids_id]
    if not drops or waiting:
        return dg.SensorResult(skip_reason=f"waiting for profiles of {len(waiting)} drops")
    newest = max(latest[key] for key in drops)
    merged_id = latest_storage_id(context.instance, MERGED_KEY)
    if merged_id is not None and merged_id > newest:
        return dg.SensorResult(skip_reason="super-clusters are up to date")
    return dg.SensorResult(run_requests=[dg.RunRequest(run_key=f"merge@{newest}")])


@dg.schedule(
    job=refit_centroids_job,
    cron_schedule="0 3 * * 0",
    # Off by default: a refit is a k-means over a sample of every drop and renumbers the clusters, so the
    # super-clusters (the features experiments' mixtures are over) change after it.
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description=(
        "Off by default (expensive; renumbers clusters, so super-clusters and new experiments' features change). "
        "Sundays 03:00: refit_centroids_job on a fresh sample over all drops, seeded by the date; reassign_sensor "
        "and merge_sensor carry the rest. Turn it on once drops arrive regularly."
    ),
)
def recluster_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    """Weekly refit of the centroids; reassign_sensor and merge_sensor carry the rest."""
    when = context.scheduled_execution_time
    seed = int(when.strftime("%Y%m%d")) if when is not None else 0
    return dg.RunRequest(
        run_key=f"recluster@{seed}",
        run_config={"ops": {"cluster_centroids": {"config": {"seed": seed}}}},
    )


CLUSTERING_SENSORS = [new_drops_sensor, reassign_sensor, merge_sensor]
CLUSTERING_SCHEDULES = [recluster_schedule]
