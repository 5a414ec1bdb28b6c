"""The documents of kept clusters, drop by drop: raw documents joined with their cluster assignments and
the cluster -> super-cluster mapping (pruned clusters are absent from the mapping, so their documents drop
out). One drop is held at a time."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol

import polars as pl

from climb_dagster.core.common import schema
from climb_dagster.core.common.errors import ClimbInputError


class Loadable(Protocol):
    """A stored value read on demand (the IO manager's lazy inputs)."""

    def load(self) -> pl.DataFrame: ...


@dataclass(frozen=True)
class KeptDrop:
    key: str
    n_documents: int  # in the drop, before the join
    # id, text, super_cluster of the documents in kept clusters, sorted by id.
    documents: pl.DataFrame


def kept_documents(
    raw_documents: Mapping[str, Loadable],
    cluster_assignments: Mapping[str, Loadable],
    mapping: pl.DataFrame,
    check_ids: bool = False,
) -> Iterator[KeptDrop]:
    """Each drop (in key order) joined: documents ⨝ assignments (on id) ⨝ mapping (on cluster).

    With `check_ids`, an id in two drops is refused on the way (each drop alone is checked at ingestion).
    """
    mapping = mapping.select(schema.CLUSTER, schema.SUPER_CLUSTER)
    first_drop: dict[str, str] = {}
    for key in sorted(raw_documents):
        docs = raw_documents[key].load().select(schema.ID, schema.TEXT)
        if check_ids:
            for doc_id in docs.get_column(schema.ID).to_list():
                seen = first_drop.setdefault(doc_id, key)
                if seen != key:
                    raise ClimbInputError(
                        f"duplicate document id {doc_id!r} in crawl drops {seen!r} and {key!r}: ids must be "
                        "unique across drops (fix or drop one of them, then rematerialize raw_documents)"
                    )
        assigned = cluster_assignments[key].load().select(schema.ID, schema.CLUSTER)
        joined = (
            docs.join(assigned, on=schema.ID, how="inner")
            .join(mapping, on=schema.CLUSTER, how="inner")
            .drop(schema.CLUSTER)
            .sort(schema.ID)
        )
        yield KeptDrop(key, docs.height, joined)


def super_cluster_texts(drops: Iterator[KeptDrop], log) -> Iterator[tuple[int, list[str]]]:
    """(super_cluster, texts) per drop and super-cluster, in id order within each group."""
    for drop in drops:
        log(f"drop {drop.key}: {drop.documents.height}/{drop.n_documents} documents in kept clusters")
        for (sc,), group in drop.documents.group_by(schema.SUPER_CLUSTER, maintain_order=True):
            yield int(sc), group.get_column(schema.TEXT).to_list()
