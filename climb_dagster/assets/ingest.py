"""Ingestion: one crawl drop file -> a validated documents table."""

# No `from __future__ import annotations` in asset modules: Dagster resolves Config/resource parameters
# from real annotations at decoration time.

import dagster as dg
import polars as pl
from pydantic import Field

from climb_dagster.core.common import schema
from climb_dagster.core.common.configs import core_config
from climb_dagster.core.common.timing import Timer
from climb_dagster.core.io.corpus import CorpusConfig, DropStats, read_drop
from climb_dagster.core.io.storage import storage_errors
from climb_dagster.partitions import crawl_drops
from climb_dagster.resources.landing import LandingZone


class RawDocumentsConfig(dg.Config):
    text_column: str = Field(
        default=schema.TEXT, description="Column of the drop that holds the document text."
    )
    id_column: str | None = Field(
        default=schema.ID, description="Column of document ids; null derives ids as '<drop>-<row>'."
    )
    title_column: str | None = Field(
        default=schema.TITLE, description="Column of document titles (shown in cluster profiles); null: none."
    )
    max_chars: int = Field(
        default=100_000, description="A longer document is truncated to this many characters."
    )
    # Refuse a drop whose decompressed data exceeds this (checked while streaming; see CorpusConfig).
    max_drop_bytes: int = Field(
        default=CorpusConfig.max_drop_bytes,
        description="Refuse a drop whose decompressed data exceeds this many bytes (checked while streaming).",
    )


@dg.asset(
    partitions_def=crawl_drops,
    group_name="ingest",
    kinds={"polars", "parquet"},
    check_specs=[
        dg.AssetCheckSpec(
            "ingest_counts",
            asset="raw_documents",
            blocking=True,
            description="Documents in = documents kept + empty ones dropped, the drop is not empty, and ids "
            "are present and unique.",
        )
    ],
)
def raw_documents(context: dg.AssetExecutionContext, config: RawDocumentsConfig, landing: LandingZone):
    """One crawl drop, schema-checked, with empty documents dropped and oversized ones truncated."""
    key = context.partition_key
    timer = Timer()
    corpus_config = core_config(CorpusConfig, config)
    root = landing.root()
    with storage_errors(root / key, f"reading crawl drop {key!r} from the landing zone at"):
        path = landing.path_for(key)
        docs, stats = read_drop(path, key, corpus_config)
    if stats.rows_empty:
        context.log.warning(f"drop {key}: dropped {stats.rows_empty} empty documents")
    if stats.rows_truncated:
        context.log.warning(
            f"drop {key}: truncated {stats.rows_truncated} documents to {config.max_chars} chars"
        )
    yield dg.Output(
        docs,
        metadata={
            "dagster/row_count": docs.height,
            "source_file": dg.MetadataValue.path(str(path)),
            **stats.as_dict(),
            "mean_chars": float(docs[schema.TEXT].str.len_chars().mean()),
            "seconds": round(timer.seconds, 3),
        },
    )
    yield _ingest_counts(docs, stats)


def _ingest_counts(docs: pl.DataFrame, stats: DropStats) -> dg.AssetCheckResult:
    ids = docs.get_column(schema.ID) if schema.ID in docs.columns else pl.Series([], dtype=pl.String)
    duplicates = ids.len() - ids.n_unique()
    balanced = stats.rows_read == stats.rows_kept + stats.rows_empty and stats.rows_kept == docs.height
    return dg.AssetCheckResult(
        check_name="ingest_counts",
        passed=balanced
        and docs.height > 0
        and ids.len() == docs.height
        and ids.null_count() == 0
        and duplicates == 0,
        metadata={
            "documents_in": stats.rows_read,
            "documents_out": docs.height,
            "empty_dropped": stats.rows_empty,
            "null_ids": ids.null_count(),
            "duplicate_ids": duplicates,
        },
    )
