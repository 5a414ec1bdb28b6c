"""Seeded samples of the demo corpus, read with pyarrow alone.

`bench embed` must run on GPU machines that have torch, transformers and pyarrow but neither polars nor
dagster, so the sample is drawn here; `bench cluster` and `bench e2e` take the same rows as a polars frame.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from climb_dagster.core.common import schema
from climb_dagster.core.common.errors import ClimbInputError

if TYPE_CHECKING:
    import pyarrow as pa

DEMO_DATA = Path(__file__).resolve().parents[1] / "demo" / "data"


def sample_table(data: Path, n_docs: int, seed: int) -> pa.Table:
    """`n_docs` documents drawn uniformly over all drops (0: every document), in drop/row order, with
    the drop's file stem in a `drop` column."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = sorted(Path(data).glob("drop-*.parquet"))
    if not files:
        raise ClimbInputError(f"{data}: no drop-*.parquet files")
    tables = []
    for f in files:
        table = pq.read_table(f)
        tables.append(table.append_column(schema.DROP, pa.array([f.stem] * table.num_rows, pa.string())))
    docs = pa.concat_tables(tables, promote_options="default")
    if schema.DOMAIN not in docs.column_names:
        raise ClimbInputError(f"{data}: the drops have no {schema.DOMAIN!r} column to score against")
    if n_docs < 0 or n_docs > docs.num_rows:
        raise ClimbInputError(f"--docs {n_docs}: the demo corpus has {docs.num_rows} documents (0 takes all)")
    if n_docs == 0:
        return docs
    idx = np.sort(np.random.default_rng(seed).choice(docs.num_rows, size=n_docs, replace=False))
    return docs.take(idx)
