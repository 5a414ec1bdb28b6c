"""Metadata values the assets attach, built from core's plain tables and plots."""

from __future__ import annotations

import math
from typing import Any

import dagster as dg
import polars as pl

from climb_dagster.core.report.tables import column_types, table_rows
from climb_dagster.hooks import peak_rss_mib


def table(
    df: pl.DataFrame, max_rows: int = 50, decimals: int = 4, descriptions: dict[str, str] | None = None
) -> dg.TableMetadataValue:
    """A polars frame as Dagster table metadata (the UI renders it as a table), first `max_rows` rows."""
    descriptions = descriptions or {}
    columns = [
        dg.TableColumn(name, kind, description=descriptions.get(name))
        for name, kind in column_types(df).items()
    ]
    records = [dg.TableRecord(row) for row in table_rows(df, max_rows, decimals)]
    return dg.MetadataValue.table(records, schema=dg.TableSchema(columns))


def step_memory() -> dict[str, float]:
    """The step's peak resident memory so far, as metadata (see climb_dagster.hooks.step_memory)."""
    return {"peak_rss_mib": peak_rss_mib()}


def display_number(value: Any, digits: int = 4) -> Any:
    """A float rounded to `digits` significant digits for display (0.7585488020759102 -> 0.7585); other
    values as they are. The stored data keeps the raw value."""
    if isinstance(value, float) and math.isfinite(value) and value != 0:
        return float(f"{value:.{digits}g}")
    return value
