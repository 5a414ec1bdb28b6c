"""The old clustering, read back from the token store an experiment trained on.

After a re-cluster the cluster assignments are overwritten, but the segmented store of the old clustering stays
(its index is content-addressed, and the drops' token files do not depend on the clustering). Its segments are
runs of adjacent documents of one fine cluster inside one drop's token file, so each indexed document's old fine
cluster and super-cluster follow from its offset: exactly the documents a past run could have drawn from, which
is all a re-expression needs. No separate snapshot is written.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from climb_dagster.core.common import schema
from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.proxy.drop_store import OFFSET, DropStore
from climb_dagster.core.proxy.segments import DROP, FINE, LENGTH, START
from climb_dagster.core.proxy.tokens import INDEX_FILE


def store_assignments(
    index_dir: str | Path, resolve: Callable[[str], Path] | None = None
) -> Iterator[tuple[str, Any]]:
    """Per drop of the store (key order): its indexed documents' id, cluster (old fine), super_cluster and
    n_tokens. `resolve` maps a drop store's path to a local folder (default: as is)."""
    import polars as pl

    path = Path(index_dir)
    index = json.loads((path / INDEX_FILE).read_text())
    if index.get("format") != "climb-tokens-v2":
        raise ClimbInputError(f"{path / INDEX_FILE}: not a segmented store; it keeps no fine clusters to map")
    resolve = resolve or Path
    per_super = [
        np.load(path / index["clusters"][str(c)]["segments"], allow_pickle=False)
        for c in range(len(index["clusters"]))
    ]
    for d, entry in enumerate(index["drops"]):
        rows = [
            np.column_stack([s[s[:, DROP] == d], np.full(int((s[:, DROP] == d).sum()), c)])
            for c, s in enumerate(per_super)
        ]
        segs = np.concatenate(rows) if rows else np.zeros((0, 5), dtype=np.int64)
        segs = segs[np.argsort(segs[:, START], kind="stable")]
        docs = DropStore.open(resolve(str(entry["path"]))).docs([schema.ID, schema.N_TOKENS, OFFSET])
        offsets = docs[OFFSET].to_numpy().astype(np.int64)
        at = np.searchsorted(segs[:, START], offsets, side="right") - 1
        inside = (offsets >= 0) & (at >= 0)
        inside[inside] = offsets[inside] < segs[at[inside], START] + segs[at[inside], LENGTH]
        yield (
            str(entry["key"]),
            docs.filter(pl.Series(inside))
            .select(schema.ID, schema.N_TOKENS)
            .with_columns(
                pl.Series(schema.CLUSTER, segs[at[inside], FINE]),
                pl.Series(schema.SUPER_CLUSTER, segs[at[inside], 4]),
            ),
        )


def store_superclusters(index_dir: str | Path) -> int:
    """How many super-clusters a segmented (or single-file) store indexes."""
    return len(json.loads((Path(index_dir) / INDEX_FILE).read_text())["clusters"])
