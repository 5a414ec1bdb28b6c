"""Two tiny crawl drops shared by the system tests (deterministic; one empty document per drop)."""

from __future__ import annotations

import io

import polars as pl

DROP_KEYS = ("drop-0001", "drop-0002")


def drop_frame(key: str, rows: int = 12) -> pl.DataFrame:
    texts = [f"{key} document {i}: " + ("words " * (i + 1)).strip() for i in range(rows)]
    texts[3] = "   "  # dropped by raw_documents as empty
    return pl.DataFrame(
        {
            "id": [f"{key}-doc-{i:03d}" for i in range(rows)],
            "text": texts,
            "title": [f"Title {i}" for i in range(rows)],
            "domain": ["news" if i % 2 else "code" for i in range(rows)],
        }
    )


def drop_parquet_bytes(key: str) -> bytes:
    buf = io.BytesIO()
    drop_frame(key).write_parquet(buf)
    return buf.getvalue()
