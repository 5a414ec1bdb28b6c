"""The documents of kept clusters in one drop: raw documents joined with their cluster assignments and the
cluster -> super-cluster mapping (pruned clusters are absent from the mapping, so their documents drop out).
Every caller holds one drop at a time: the export exports drop by drop, the token index indexes drop by drop."""

from __future__ import annotations

import polars as pl

from climb_dagster.core.common import schema
from climb_dagster.core.common.errors import ClimbInputError


def kept_drop(docs: pl.DataFrame, assignments: pl.DataFrame, mapping: pl.DataFrame) -> pl.DataFrame:
    """id, text, super_cluster of a drop's documents in kept clusters, sorted by id:
    documents ⨝ assignments (on id) ⨝ mapping (on cluster)."""
    for frame, what, columns in (
        (docs, "documents", (schema.ID, schema.TEXT)),
        (assignments, "cluster assignments", (schema.ID, schema.CLUSTER)),
        (mapping, "super-cluster mapping", (schema.CLUSTER, schema.SUPER_CLUSTER)),
    ):
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise ClimbInputError(f"{what} lack columns {missing} (columns {frame.columns})")
    cluster = pl.col(schema.CLUSTER).cast(pl.Int64)
    return (
        docs.select(schema.ID, schema.TEXT)
        .join(assignments.select(schema.ID, cluster), on=schema.ID, how="inner")
        .join(mapping.select(cluster, schema.SUPER_CLUSTER), on=schema.CLUSTER, how="inner")
        .drop(schema.CLUSTER)
        .sort(schema.ID)
    )
