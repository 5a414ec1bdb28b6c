"""Sensors that keep the proxies' token data current, so a scheduled re-cluster ends with a fresh token index
without a manual step (the jobs are in jobs.py):
- `drop_tokens_sensor`: once a tokenizer exists, tokenizes each drop whose documents or tokenizer are newer than
  its drop_tokens (one run per drop: a new drop tokenizes only itself).
- `proxy_data_sensor`: once every drop is tokenized and assigned to the latest centroids, re-indexes the token
  store when the super-clusters or any drop's tokens are newer than the index (no tokenizing).
"""

import dagster as dg

from climb_dagster.automation.clustering import MERGED_KEY, latest_storage_id
from climb_dagster.jobs import RAW, drop_tokens_job, proxy_data_job
from climb_dagster.partitions import crawl_drops

TOKENIZER_KEY = dg.AssetKey("proxy_tokenizer")
DROP_TOKENS_KEY = dg.AssetKey("drop_tokens")
INDEX_KEY = dg.AssetKey("cluster_tokens")
ASSIGNED_KEY = dg.AssetKey("cluster_assignments")


def _by_drop(instance: dg.DagsterInstance, key: dg.AssetKey) -> dict[str, int]:
    return instance.get_latest_storage_id_by_partition(key, dg.DagsterEventType.ASSET_MATERIALIZATION)


@dg.sensor(
    job=drop_tokens_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "On by default; idle until the proxy tokenizer exists. Then one drop_tokens_job run per drop whose "
        "documents or tokenizer are newer than its tokens (a new drop tokenizes only itself)."
    ),
)
def drop_tokens_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    """Tokenize every drop that is new, re-ingested, or older than the tokenizer (one run per drop)."""
    tokenizer_id = latest_storage_id(context.instance, TOKENIZER_KEY)
    if tokenizer_id is None:
        return dg.SensorResult(skip_reason="no proxy tokenizer yet (materialize proxy_tokenizer)")
    raw = _by_drop(context.instance, dg.AssetKey(RAW))
    tokens = _by_drop(context.instance, DROP_TOKENS_KEY)
    stale = [
        key
        for key in context.instance.get_dynamic_partitions(crawl_drops.name)
        if key in raw and tokens.get(key, -1) < max(raw[key], tokenizer_id)
    ]
    if not stale:
        return dg.SensorResult(skip_reason="every ingested drop is tokenized with the latest tokenizer")
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(partition_key=key, run_key=f"{key}@{max(raw[key], tokenizer_id)}") for key in stale
        ]
    )


@dg.sensor(
    job=proxy_data_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "On by default; idle until every drop is tokenized and assigned to the latest centroids. Then one "
        "proxy_data_job run when the super-clusters or a drop's tokens are newer than the token index."
    ),
)
def proxy_data_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    """Re-index the token store after a merge or a newly tokenized drop (an index only, no tokenizing)."""
    merged_id = latest_storage_id(context.instance, MERGED_KEY)
    if merged_id is None:
        return dg.SensorResult(skip_reason="no super-clusters yet")
    drops = context.instance.get_dynamic_partitions(crawl_drops.name)
    tokens = _by_drop(context.instance, DROP_TOKENS_KEY)
    assigned = _by_drop(context.instance, ASSIGNED_KEY)
    waiting = [key for key in drops if key not in tokens or key not in assigned]
    if not drops or waiting:
        return dg.SensorResult(skip_reason=f"waiting for tokens or assignments of {len(waiting)} drops")
    newest = max(merged_id, *(tokens[key] for key in drops))
    index_id = latest_storage_id(context.instance, INDEX_KEY)
    if index_id is not None and index_id > newest:
        return dg.SensorResult(skip_reason="the token index is up to date")
    return dg.SensorResult(run_requests=[dg.RunRequest(run_key=f"index@{newest}")])


PROXY_DATA_SENSORS = [drop_tokens_sensor, proxy_data_sensor]
