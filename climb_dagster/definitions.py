"""The code location: assets, checks, jobs, sensors and the resource set of this deployment."""

import dagster as dg

from climb_dagster.assets.ingest import raw_documents
from climb_dagster.resources.sets import build_resources

defs = dg.Definitions(
    assets=[raw_documents],
    resources=build_resources(),
)
