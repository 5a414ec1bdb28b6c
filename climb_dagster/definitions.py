"""The code location: assets, checks, jobs, sensors and the resource set of this deployment."""

import dagster as dg

from climb_dagster.assets.clustering import CLUSTERING_ASSETS, CLUSTERING_CHECKS
from climb_dagster.assets.experiments import experiment
from climb_dagster.assets.final import FINAL_CHECKS, final_mixture, mixture_export
from climb_dagster.assets.ingest import raw_documents
from climb_dagster.assets.reuse import reused_evidence
from climb_dagster.assets.rounds import ROUND_ASSETS, ROUND_CHECKS
from climb_dagster.assets.tokens import TOKEN_ASSETS
from climb_dagster.automation.clustering import CLUSTERING_SCHEDULES, CLUSTERING_SENSORS
from climb_dagster.automation.proxy_data import PROXY_DATA_SENSORS
from climb_dagster.automation.retention import RETENTION_SCHEDULES
from climb_dagster.deployments import build_resources
from climb_dagster.jobs import JOBS

defs = dg.Definitions(
    assets=[
        raw_documents,
        *CLUSTERING_ASSETS,
        *TOKEN_ASSETS,
        experiment,
        reused_evidence,
        *ROUND_ASSETS,
        final_mixture,
        mixture_export,
    ],
    asset_checks=[*CLUSTERING_CHECKS, *ROUND_CHECKS, *FINAL_CHECKS],
    jobs=JOBS,
    sensors=[*CLUSTERING_SENSORS, *PROXY_DATA_SENSORS],
    schedules=[*CLUSTERING_SCHEDULES, *RETENTION_SCHEDULES],
    resources=build_resources(),
)
