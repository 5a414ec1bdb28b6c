"""Lay out the demo: a held-out target set of one domain, and seeded subsets of the demo drops that never
contain a held-out page."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import polars as pl

from climb_dagster.core.common import schema

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


def test_path(target: Path) -> Path:
    """Where prepare_target writes the test split beside the validation split `target`."""
    return target.with_name(target.stem + "-test" + target.suffix)


def prepare_target(out: Path, domain: str, max_docs: int, seed: int = 0) -> tuple[Path, set[str]]:
    """Held-out pages of `domain`, split by title into a validation split -> `out` (the experiment's target:
    what the search sees) and a test split -> `test_path(out)` (what `bench demo-gain` reports). Returns
    (out, every held-out title); neither split ever reaches training."""
    from climb_dagster.core.targets.split import split_target

    docs = pl.concat([pl.read_parquet(f) for f in demo_drop_files()])
    split = split_target(docs, domain, heldout_fraction=0.3, test_share=0.5, seed=seed)
    for frame, path in ((split.val, out), (split.test, test_path(out))):
        if frame.height > max_docs:
            frame = frame.sample(n=max_docs, seed=seed).sort(schema.ID)
        _write(frame, path)
    return out, split.held_titles()


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
