"""Resource sets per deployment, chosen by one environment variable: CLIMB_DEPLOYMENT=local|production
(read, like every variable, through core/io/settings.py).

local (default): everything under CLIMB_HOME (default ./.climb): storage/, landing/, an MLflow sqlite store;
CLIMB_STORAGE_URL, CLIMB_LANDING_URL and MLFLOW_TRACKING_URI override each of them.
production: CLIMB_STORAGE_URL (s3://bucket/prefix), CLIMB_LANDING_URL, optional CLIMB_S3_ENDPOINT_URL
(MinIO) and CLIMB_S3_REGION, MLFLOW_TRACKING_URI. Credentials come from the environment / instance profile only.
"""

from __future__ import annotations

from typing import Any

from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.io.settings import Settings
from climb_dagster.resources.embedding import default_embedder
from climb_dagster.resources.io_manager import ClimbIOManagerFactory
from climb_dagster.resources.landing import LandingZone
from climb_dagster.resources.storage import ClimbStorage
from climb_dagster.resources.tracking import MlflowTracker


def settings(deployment: str | None = None) -> dict[str, Any]:
    """Storage, landing, S3 endpoint/region and MLflow URI of a deployment (default: CLIMB_DEPLOYMENT)."""
    env = Settings.from_env()
    # Refused when the settings are read, before any path derived from them reaches a log line.
    env.refuse_credentials()
    if (deployment or env.deployment) != "production":
        return {
            "storage": env.local_storage(),
            "landing": env.local_landing(),
            "endpoint": env.s3_endpoint_url,
            "region": env.s3_region,
            "mlflow": env.local_mlflow(),
            "mlflow_artifacts": env.local_mlflow_artifacts(),
        }
    names = {"CLIMB_STORAGE_URL": env.storage_url, "CLIMB_LANDING_URL": env.landing_url}
    names["MLFLOW_TRACKING_URI"] = env.mlflow_tracking_uri
    missing = [name for name, value in names.items() if not value]
    if missing:
        raise ClimbInputError(f"CLIMB_DEPLOYMENT=production needs the environment variables {missing}")
    return {
        "storage": env.storage_url,
        "landing": env.landing_url,
        "endpoint": env.s3_endpoint_url,
        "region": env.s3_region,
        "mlflow": env.mlflow_tracking_uri,
        "mlflow_artifacts": None,  # the tracking server keeps them
    }


def build_resources(deployment: str | None = None) -> dict[str, Any]:
    s = settings(deployment)
    return {
        "io_manager": ClimbIOManagerFactory(
            base_path=s["storage"], s3_endpoint_url=s["endpoint"], s3_region=s["region"]
        ),
        "landing": LandingZone(base=s["landing"], s3_endpoint_url=s["endpoint"], s3_region=s["region"]),
        "storage": ClimbStorage(base_path=s["storage"], s3_endpoint_url=s["endpoint"], s3_region=s["region"]),
        "tracker": MlflowTracker(tracking_uri=s["mlflow"], artifact_root=s["mlflow_artifacts"]),
        "embedder": default_embedder(),
    }
