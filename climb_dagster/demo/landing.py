"""Lay out the demo's landing folder: seeded subsets of the committed demo drops."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from climb_dagster import schema

DATA_DIR = Path(__file__).resolve().parent / "data"


def demo_drop_files() -> list[Path]:
    files = sorted(DATA_DIR.glob("drop-*.parquet"))
    if not files:
        raise FileNotFoundError(f"no demo drops under {DATA_DIR}; rebuild with `python -m climb_dagster.demo.corpus`")
    return files


def prepare_landing(landing: Path, docs_per_drop: int | None, seed: int = 0, exclude_titles: set[str] = frozenset()) -> dict[str, int]:
    """Copy each demo drop (or a seeded sample of `docs_per_drop` documents) into `landing`.

    Documents whose title is in `exclude_titles` are held out (the target's evaluation units never reach
    training). Returns rows written per drop key.
    """
    landing.mkdir(parents=True, exist_ok=True)
    written = {}
    for i, src in enumerate(demo_drop_files()):
        df = pl.read_parquet(src)
        if exclude_titles:
            df = df.filter(~pl.col(schema.TITLE).is_in(list(exclude_titles)))
        if docs_per_drop is not None and df.height > docs_per_drop:
            df = df.sample(n=docs_per_drop, seed=seed + i, shuffle=False).sort(schema.ID)
        target = landing / src.name
        tmp = target.with_name("." + target.name + ".tmp")
        df.write_parquet(tmp, compression="zstd")
        tmp.replace(target)
        written[src.stem] = df.height
    return written
