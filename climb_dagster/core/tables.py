"""Markdown rendering of small tables for Dagster metadata."""

from __future__ import annotations

import polars as pl


def markdown_table(df: pl.DataFrame, max_rows: int = 50, decimals: int = 4) -> str:
    """A GitHub-markdown table of the first `max_rows` rows, floats rounded."""
    df = df.head(max_rows).with_columns(pl.selectors.float().round(decimals))
    with pl.Config(
        tbl_formatting="MARKDOWN",
        tbl_hide_column_data_types=True,
        tbl_hide_dataframe_shape=True,
        tbl_rows=max_rows,
        tbl_cols=-1,
        fmt_str_lengths=80,
    ):
        return str(df)
