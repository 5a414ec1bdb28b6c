"""Read and validate one crawl drop (Parquet or JSONL, local or s3://) into a clean documents frame."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field

import polars as pl
from upath import UPath

from climb_dagster.core.common import schema
from climb_dagster.core.common.errors import ClimbInputError

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
    # Bound on a drop's decompressed size (JSONL after gunzip, Parquet's uncompressed column data): a small
    # gzip that inflates 1000x is refused while streaming instead of exhausting memory.
    max_drop_bytes: int = 4 * 2**30

    def __post_init__(self) -> None:
        if not self.text_column:
            raise ClimbInputError("text_column must be a non-empty column name")
        if self.max_chars < 1:
            raise ClimbInputError(f"max_chars must be >= 1, got {self.max_chars}")
        if self.max_drop_bytes < 1:
            raise ClimbInputError(f"max_drop_bytes must be >= 1, got {self.max_drop_bytes}")

    def columns(self) -> tuple[str, ...]:
        """The columns the pipeline reads; every other column of a drop is ignored, whatever its type."""
        named = (self.text_column, self.id_column, self.title_column, self.source_column, *self.passthrough)
        return tuple(dict.fromkeys(c for c in named if c))


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
    """The file of drop `key` under a landing location: `<base>/<key>.parquet` or `.jsonl[.gz]`; two files
    for one key are refused as ambiguous rather than one of them being read."""
    found = [base / f"{key}{suffix}" for suffix in DROP_SUFFIXES if (base / f"{key}{suffix}").exists()]
    if len(found) > 1:
        raise ClimbInputError(
            f"crawl drop {key!r} is ambiguous under {base}: {[p.name for p in found]} all name it; keep one"
        )
    if found:
        return found[0]
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


def _too_big(path: UPath, size: int, limit: int) -> ClimbInputError:
    return ClimbInputError(
        f"{path}: more than {limit} bytes of decompressed data ({size} read so far); the limit is "
        "max_drop_bytes of raw_documents (split the drop, or raise the limit if the memory allows)"
    )


def _read_parquet(path: UPath, config: CorpusConfig) -> tuple[pl.DataFrame, list[str]]:
    import pyarrow.parquet as pq

    # Read the bytes outside the try: a storage failure (503, access denied) is not a corrupt file.
    data = path.read_bytes()
    try:
        meta = pq.ParquetFile(io.BytesIO(data)).metadata
        size = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
        names = list(meta.schema.names)
    except Exception as exc:  # arrow raises several types for damaged files
        raise ClimbInputError(f"{path}: not a readable Parquet file (truncated or corrupt?): {exc}") from exc
    if size > config.max_drop_bytes:
        raise _too_big(path, size, config.max_drop_bytes)
    wanted = [c for c in config.columns() if c in names]
    try:
        # Only the columns the pipeline reads: an unused column never costs memory or refuses the drop.
        return pl.read_parquet(io.BytesIO(data), columns=wanted), names
    except Exception as exc:  # polars/arrow raise several types for damaged files
        raise ClimbInputError(f"{path}: not a readable Parquet file (truncated or corrupt?): {exc}") from exc


def _lines(path: UPath, limit: int):
    """(line number, bytes) of a JSONL file, gunzipped on the fly, never more than `limit` bytes in all."""
    import gzip
    import zlib

    seen = 0
    with path.open("rb") as raw:
        stream = gzip.GzipFile(fileobj=raw, mode="rb") if path.name.endswith(".gz") else raw
        lineno = 0
        try:
            while True:
                # Bounded reads: a single 'line' of gigabytes cannot slip past the limit either.
                line = stream.readline(limit - seen + 1)
                if not line:
                    return
                seen += len(line)
                if seen > limit:
                    raise _too_big(path, seen, limit)
                if not line.endswith(b"\n"):
                    rest = stream.readline(limit - seen + 1)
                    while rest:
                        line += rest
                        seen += len(rest)
                        if seen > limit:
                            raise _too_big(path, seen, limit)
                        if line.endswith(b"\n"):
                            break
                        rest = stream.readline(limit - seen + 1)
                lineno += 1
                yield lineno, line
        except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
            where = f"after line {lineno}" if lineno else "at the start"
            raise ClimbInputError(f"{path}: corrupt or truncated gzip stream {where}: {exc}") from exc


def _read_jsonl(path: UPath, config: CorpusConfig) -> tuple[pl.DataFrame, list[str]]:
    """Stream the lines, keeping only the columns the pipeline reads (one list per column); also return
    every column name seen, for error messages."""
    wanted = config.columns()
    values: dict[str, list] = {c: [] for c in wanted}
    present: set[str] = set()
    names: dict[str, None] = {}
    rows = 0
    for lineno, line in _lines(path, config.max_drop_bytes):
        if lineno == 1:
            line = line.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte-order mark (Windows editors)
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
        if len(names) < 1000:
            names.update(dict.fromkeys(record))
        for column in wanted:
            value = record.get(column)
            if column in record:
                present.add(column)
            values[column].append(value)
        rows += 1
    if not rows:
        return pl.DataFrame(), list(names)
    columns = {}
    for column in (c for c in wanted if c in present):
        try:
            columns[column] = pl.Series(column, values[column], strict=True)
        except Exception as exc:
            kinds = sorted({type(v).__name__ for v in values[column] if v is not None})
            raise ClimbInputError(
                f"{path}: column {column!r} mixes value types {kinds} across rows ({exc})"
            ) from exc
    # A frame of `rows` rows even when no wanted column is present (the caller names what is missing).
    frame = pl.DataFrame(columns) if columns else pl.DataFrame({"__row": [None] * rows}).drop("__row")
    return frame, list(names)


def _as_string(df: pl.DataFrame, column: str, path: UPath) -> pl.Series:
    series = df.get_column(column)
    if series.dtype == pl.String:
        return series
    if isinstance(series.dtype, pl.Categorical | pl.Enum):
        # Dictionary-encoded text (pandas categoricals, Arrow dictionaries): the same strings.
        return series.cast(pl.String)
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
        df, names = _read_parquet(path, config)
    elif any(path.name.endswith(s) for s in (".jsonl", ".jsonl.gz", ".ndjson")):
        stats.format = "jsonl"
        df, names = _read_jsonl(path, config)
    else:
        raise ClimbInputError(f"{path}: unsupported drop format (expected one of {', '.join(DROP_SUFFIXES)})")

    stats.rows_read = df.height
    if df.height == 0:
        raise ClimbInputError(f"{path}: drop {drop_key!r} has zero rows")
    if config.text_column not in df.columns:
        raise ClimbInputError(
            f"{path}: text column {config.text_column!r} not found; columns are {names} "
            "(set text_column in the raw_documents config if the crawl names it differently)"
        )
    text = _as_string(df, config.text_column, path)

    if config.id_column is None:
        ids = pl.Series(schema.ID, [f"{drop_key}-{i}" for i in range(df.height)], dtype=pl.String)
    elif config.id_column not in df.columns:
        raise ClimbInputError(
            f"{path}: id column {config.id_column!r} not found; columns are {names} "
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
