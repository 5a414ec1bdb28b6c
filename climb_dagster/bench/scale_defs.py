"""The code location as `bench scale` runs it: the same assets, jobs and resources, with the hashing stand-in for
the embedding model. Step processes rebuild a job from here by name (`build_reconstructable_job`)."""

import functools

import dagster as dg

from climb_dagster.bench.hashing_embedder import HashingEmbedderResource
from climb_dagster.definitions import defs


@functools.cache
def bench_defs() -> dg.Definitions:
    return dg.Definitions(
        assets=defs.assets,
        asset_checks=defs.asset_checks,
        jobs=defs.jobs,
        resources={**defs.resources, "embedder": HashingEmbedderResource()},
    )


def job(name: str) -> dg.JobDefinition:
    return bench_defs().resolve_job_def(name)
