"""Resource sets per deployment, chosen by one environment variable: CLIMB_DEPLOYMENT=local|production.

local (default): everything under CLIMB_HOME (default ./.climb): storage/, landing/, an MLflow sqlite store;
CLIMB_STORAGE_URL, CLIMB_LANDING_URL and MLFLOW_TRACKING_URI override each of them.
production: CLIMB_STORAGE_URL (s3://bucket/prefix), CLIMB_LANDING_URL, optional CLIMB_S3_ENDPOINT_URL
(MinIO) and CLIMB_S3_REGION, MLFLOW_TRACKING_URI. Credentials come from the environment / instance profile only.
"""

from __future__ import annotations

import os
from typing import Any

from climb_dagster.core.errors import ClimbInputError
from climb_dagster.core.redact import refuse_credentials
from climb_dagster.resources.embedding import default_embedder
from climb_dagster.resources.io_manager import ClimbIOManagerFactory
from climb_dagster.resources.landing import LandingZone
from climb_dagster.resources.storage import ClimbStorage
from climb_dagster.resources.tracking import MlflowTracker

DEPLOYMENTS = ("local", "production")


def deployment_name() -> str:
    name = os.environ.get("CLIMB_DEPLOYMENT", "local")
    if name not in DEPLOYMENTS:
        raise ClimbInputError(f"CLIMB_DEPLOYMENT={name!r} is not one of {DEPLOYMENTS}")
    return name


def climb_home() -> str:
    return os.path.abspath(os.environ.get("CLIMB_HOME", ".climb"))


def local_settings() -> dict[str, Any]:
    home = climb_home()
    return {
        # Documented for every deployment: a local run may also keep its assets elsewhere (even on S3).
        "storage": os.environ.get("CLIMB_STORAGE_URL") or os.path.join(home, "storage"),
        "landing": os.environ.get("CLIMB_LANDING_URL", os.path.join(home, "landing")),
        "endpoint": os.environ.get("CLIMB_S3_ENDPOINT_URL") or None,
        "region": os.environ.get("CLIMB_S3_REGION") or None,
        "mlflow": os.environ.get("MLFLOW_TRACKING_URI", f"sqlite:///{os.path.join(home, 'mlflow.db')}"),
    }


def production_settings() -> dict[str, Any]:
    missing = [
        v for v in ("CLIMB_STORAGE_URL", "CLIMB_LANDING_URL", "MLFLOW_TRACKING_URI") if not os.environ.get(v)
    ]
    if missing:
        raise ClimbInputError(f"CLIMB_DEPLOYMENT=production needs the environment variables {missing}")
    return {
        "storage": os.environ["CLIMB_STORAGE_URL"],
        "landing": os.environ["CLIMB_LANDING_URL"],
        "endpoint": os.environ.get("CLIMB_S3_ENDPOINT_URL") or None,
        "region": os.environ.get("CLIMB_S3_REGION") or None,
        "mlflow": os.environ["MLFLOW_TRACKING_URI"],
    }


def settings(deployment: str | None = None) -> dict[str, Any]:
    deployment = deployment or deployment_name()
    return production_settings() if deployment == "production" else local_settings()


def build_resources(deployment: str | None = None) -> dict[str, Any]:
    s = settings(deployment)
    # Refused when the code location loads, before any path derived from them reaches a log line.
    refuse_credentials(s["storage"], "CLIMB_STORAGE_URL")
    refuse_credentials(s["landing"], "CLIMB_LANDING_URL")
    refuse_credentials(s["endpoint"] or "", "CLIMB_S3_ENDPOINT_URL")
    return {
        "io_manager": ClimbIOManagerFactory(
            base_path=s["storage"], s3_endpoint_url=s["endpoint"], s3_region=s["region"]
        ),
        "landing": LandingZone(base=s["landing"], s3_endpoint_url=s["endpoint"], s3_region=s["region"]),
        "storage": ClimbStorage(base_path=s["storage"], s3_endpoint_url=s["endpoint"], s3_region=s["region"]),
        "tracker": MlflowTracker(tracking_uri=s["mlflow"]),
        "embedder": default_embedder(),
    }
