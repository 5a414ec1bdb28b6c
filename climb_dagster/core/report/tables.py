"""Small tables for the UI: column types and JSON-safe rows of a polars frame.

Dagster renders these as real tables (`assets/metadata.py` builds its TableMetadataValue from them; core stays
free of Dagster). Markdown tables were wrapped by polars at its display width and came out as fragments.
"""

from __future__ import annotations

import math
from typing import Any

import polars as pl

from climb_dagster.core.common.schema import weight_column

# Dagster's column types (TableColumn.type) for polars dtypes; anything else is shown as text.
_TYPES = {"int": pl.selectors.integer(), "float": pl.selectors.float(), "bool": pl.selectors.boolean()}


def column_types(df: pl.DataFrame) -> dict[str, str]:
    """Column name -> "int" | "float" | "bool" | "string", in column order."""
    types = dict.fromkeys(df.columns, "string")
    for name, selector in _TYPES.items():
        for column in df.select(selector).columns:
            types[column] = name
    return types


def _cell(value: Any, decimals: int) -> str | int | float | bool | None:
    if isinstance(value, float):
        return round(value, decimals) if math.isfinite(value) else str(value)
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    if value is None or isinstance(value, str | int | bool):
        return value
    return str(value)


def table_rows(df: pl.DataFrame, max_rows: int = 50, decimals: int = 4) -> list[dict[str, Any]]:
    """The first `max_rows` rows as dicts of str/int/float/bool/None (floats rounded, lists joined)."""
    return [
        {k: _cell(v, decimals) for k, v in row.items()} for row in df.head(max_rows).iter_rows(named=True)
    ]


def named_weights(df: pl.DataFrame, labels: list[str]) -> pl.DataFrame:
    """The weight columns (w_000, ...) renamed to the super-clusters' labels, for display."""

    return df.rename(
        {weight_column(i): label for i, label in enumerate(labels) if weight_column(i) in df.columns}
    )
