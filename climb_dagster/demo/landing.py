"""Lay out the demo: a held-out target set of one domain, and seeded subsets of the demo drops that never
contain a held-out page."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import polars as pl

from climb_dagster.core import schema

DATA_DIR = Path(__file__).resolve().parent / "data"


def demo_drop_files() -> list[Path]:
    files = sorted(DATA_DIR.glob("drop-*.parquet"))
    if not files:
        raise FileNotFoundError(
            f"no demo drops under {DATA_DIR}; rebuild with `python -m climb_dagster.demo.corpus`"
        )
    return files


def _write(df: pl.DataFrame, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    # A temporary name of its own: two demos writing the same landing folder must not share one.
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        df.write_parquet(tmp, compression="zstd")
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)


def prepare_target(out: Path, domain: str, max_docs: int, seed: int = 0) -> tuple[Path, set[str]]:
    """Held-out documents of `domain` (whole pages, split by title) -> `out`; returns (path, held-out titles)."""
    from climb_dagster.core.proxy.evaluate import split_by_title

    docs = pl.concat([pl.read_parquet(f) for f in demo_drop_files()]).filter(pl.col(schema.DOMAIN) == domain)
    if docs.height == 0:
        raise ValueError(f"demo corpus has no domain {domain!r}")
    _, heldout = split_by_title(docs.sort(schema.ID), heldout_fraction=0.15, seed=seed)
    titles = set(heldout[schema.TITLE].to_list())
    if heldout.height > max_docs:
        heldout = heldout.sample(n=max_docs, seed=seed).sort(schema.ID)
    _write(heldout, out)
    return out, titles


def prepare_landing(
    landing: Path, docs_per_drop: int | None, seed: int = 0, exclude_titles: set[str] = frozenset()
) -> dict[str, int]:
    """Copy each demo drop (or a seeded sample of `docs_per_drop` documents) into `landing`, without the
    documents whose title is held out for the target. Returns rows written per drop key."""
    written = {}
    for i, src in enumerate(demo_drop_files()):
        df = pl.read_parquet(src)
        if exclude_titles:
            df = df.filter(~pl.col(schema.TITLE).is_in(list(exclude_titles)))
        if docs_per_drop is not None and df.height > docs_per_drop:
            df = df.sample(n=docs_per_drop, seed=seed + i).sort(schema.ID)
        _write(df, landing / src.name)
        written[src.stem] = df.height
    return written
