"""Read and validate one crawl drop (Parquet or JSONL, local or s3://) into a clean documents frame."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field

import polars as pl
from upath import UPath

from climb_dagster.core import schema
from climb_dagster.core.errors import ClimbInputError

DROP_SUFFIXES = (".parquet", ".jsonl", ".jsonl.gz", ".ndjson")


@dataclass(frozen=True)
class CorpusConfig:
    """How to read a drop. `id_column=None` derives ids as '<drop>-<row>' for crawls without ids."""

    text_column: str = schema.TEXT
    id_column: str | None = schema.ID
    title_column: str | None = schema.TITLE
    source_column: str | None = schema.SOURCE
    # A document longer than this is truncated (a single 10 MB page would otherwise dominate tokenization).
    max_chars: int = 100_000
    # Other columns carried through untouched (the demo's `domain` label is never read by the pipeline).
    passthrough: tuple[str, ...] = (schema.DOMAIN,)

    def __post_init__(self) -> None:
        if not self.text_column:
            raise ClimbInputError("text_column must be a non-empty column name")
        if self.max_chars < 1:
            raise ClimbInputError(f"max_chars must be >= 1, got {self.max_chars}")


@dataclass
class DropStats:
    rows_read: int = 0
    rows_empty: int = 0
    rows_truncated: int = 0
    rows_kept: int = 0
    format: str = ""
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, int | str]:
        return {
            "rows_read": self.rows_read,
            "rows_empty_dropped": self.rows_empty,
            "rows_truncated": self.rows_truncated,
            "rows_kept": self.rows_kept,
            "format": self.format,
        }


def find_drop_file(base: UPath, key: str) -> UPath:
    """The file of drop `key` under a landing location: `<base>/<key>.parquet` or `.jsonl` (first found)."""
    for suffix in DROP_SUFFIXES:
        candidate = base / f"{key}{suffix}"
        if candidate.exists():
            return candidate
    raise ClimbInputError(
        f"crawl drop {key!r} not found under {base}: expected one of "
        + ", ".join(f"{key}{s}" for s in DROP_SUFFIXES)
    )


def drop_key_of(name: str) -> str | None:
    """The drop key of a landing file name, or None when the file is not a drop."""
    for suffix in DROP_SUFFIXES:
        if name.endswith(suffix) and not name.startswith("."):
            return name[: -len(suffix)]
    return None


def _read_parquet(path: UPath) -> pl.DataFrame:
    # Read the bytes outside the try: a storage failure (503, access denied) is not a corrupt file.
    data = path.read_bytes()
    try:
        return pl.read_parquet(io.BytesIO(data))
    except Exception as exc:  # polars/arrow raise several types for damaged files
        raise ClimbInputError(f"{path}: not a readable Parquet file (truncated or corrupt?): {exc}") from exc


def _read_jsonl(path: UPath) -> pl.DataFrame:
    import gzip

    raw = path.read_bytes()
    if path.name.endswith(".gz"):
        try:
            raw = gzip.decompress(raw)
        except OSError as exc:
            raise ClimbInputError(f"{path}: corrupt gzip stream: {exc}") from exc
    rows = []
    for lineno, line in enumerate(raw.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ClimbInputError(
                f"{path}: line {lineno}: invalid UTF-8 at byte {exc.start} ({line[exc.start : exc.start + 4]!r})"
            ) from exc
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ClimbInputError(
                f"{path}: line {lineno}: broken JSON ({exc.msg} at column {exc.colno})"
            ) from exc
        if not isinstance(record, dict):
            raise ClimbInputError(
                f"{path}: line {lineno}: expected a JSON object, got {type(record).__name__}"
            )
        rows.append(record)
    if not rows:
        return pl.DataFrame()
    try:
        return pl.DataFrame(rows, infer_schema_length=None)
    except Exception as exc:
        raise ClimbInputError(f"{path}: rows do not share one schema: {exc}") from exc


def _as_string(df: pl.DataFrame, column: str, path: UPath) -> pl.Series:
    series = df.get_column(column)
    if series.dtype == pl.String:
        return series
    if series.dtype == pl.Null:
        return series.cast(pl.String)
    if column == schema.ID and series.dtype.is_integer():
        return series.cast(pl.String)
    raise ClimbInputError(f"{path}: column {column!r} must hold strings, found dtype {series.dtype}")


def read_drop(
    path: UPath, drop_key: str, config: CorpusConfig = CorpusConfig()
) -> tuple[pl.DataFrame, DropStats]:
    """Read one drop file and return (documents, stats).

    Output columns: id, text, title, source (+ passthrough columns present in the file).
    Raises ClimbInputError naming the file, column, row or value for every refusal.
    """
    stats = DropStats()
    if path.name.endswith(".parquet"):
        stats.format = "parquet"
        df = _read_parquet(path)
    elif any(path.name.endswith(s) for s in (".jsonl", ".jsonl.gz", ".ndjson")):
        stats.format = "jsonl"
        df = _read_jsonl(path)
    else:
        raise ClimbInputError(f"{path}: unsupported drop format (expected one of {', '.join(DROP_SUFFIXES)})")

    stats.rows_read = df.height
    if df.height == 0:
        raise ClimbInputError(f"{path}: drop {drop_key!r} has zero rows")
    if config.text_column not in df.columns:
        raise ClimbInputError(
            f"{path}: text column {config.text_column!r} not found; columns are {df.columns} "
            "(set text_column in the raw_documents config if the crawl names it differently)"
        )
    text = _as_string(df, config.text_column, path)

    if config.id_column is None:
        ids = pl.Series(schema.ID, [f"{drop_key}-{i}" for i in range(df.height)], dtype=pl.String)
    elif config.id_column not in df.columns:
        raise ClimbInputError(
            f"{path}: id column {config.id_column!r} not found; columns are {df.columns} "
            "(set id_column: null to derive ids from the drop key and row number)"
        )
    else:
        ids = _as_string(df, config.id_column, path)
        if ids.null_count():
            row = int(ids.is_null().arg_true()[0])
            raise ClimbInputError(f"{path}: column {config.id_column!r} has a null id at row {row}")
        dup = ids.is_duplicated()
        if dup.any():
            rows = dup.arg_true().to_list()[:5]
            raise ClimbInputError(
                f"{path}: duplicate id {ids[rows[0]]!r} in column {config.id_column!r} (rows {rows})"
            )

    def optional(column: str | None, fallback: pl.Series) -> pl.Series:
        if column and column in df.columns:
            return _as_string(df, column, path).fill_null(fallback)
        return fallback

    out = pl.DataFrame(
        {
            schema.ID: ids,
            schema.TEXT: text,
            schema.TITLE: optional(config.title_column, ids),
            schema.SOURCE: optional(config.source_column, pl.Series([drop_key] * df.height, dtype=pl.String)),
        }
    )
    for column in config.passthrough:
        if column in df.columns and column not in out.columns:
            out = out.with_columns(df.get_column(column).alias(column))

    empty = out[schema.TEXT].is_null() | (out[schema.TEXT].str.strip_chars().str.len_chars() == 0)
    stats.rows_empty = int(empty.sum())
    out = out.filter(~empty)
    if out.height == 0:
        raise ClimbInputError(f"{path}: all {stats.rows_read} documents of drop {drop_key!r} are empty")

    too_long = out[schema.TEXT].str.len_chars() > config.max_chars
    stats.rows_truncated = int(too_long.sum())
    if stats.rows_truncated:
        out = out.with_columns(pl.col(schema.TEXT).str.slice(0, config.max_chars))
    stats.rows_kept = out.height
    return out, stats
