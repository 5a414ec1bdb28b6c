"""The evidence an experiment can start from: earlier experiments on the same target and proxy, their runs
re-expressed over this experiment's super-clusters (core/reuse), and the old -> new map of each store they
trained on with its error.

Both clusterings are read from the token stores the experiments trained on (`reuse.snapshot`): the previous
store's segments hold the old fine cluster of every document a past run could draw; the current store's hold the
new fine cluster and super-cluster. A document the current store does not index (pruned now, or its drop
removed) counts as gone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from climb_dagster.core.common import schema
from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.experiment.records import ExperimentRecord
from climb_dagster.core.reuse.mapping import ClusterMap, build_cluster_map
from climb_dagster.core.reuse.rows import ReusedRows, merge_rows, reuse_rows
from climb_dagster.core.reuse.snapshot import store_assignments, store_superclusters
from climb_dagster.core.reuse.unchanged import (
    RUN,
    FreezePlan,
    freeze_reason,
    reexpress_final,
    unchanged_superclusters,
)
from climb_dagster.core.search.freeze import frozen_block


@dataclass(frozen=True)
class PastExperiment:
    """An earlier experiment as stored: its record and its rounds' evaluation tables."""

    name: str
    record: ExperimentRecord
    evaluations: tuple[Any, ...]
    # Its final mixture's weights over its super-clusters, when it has one (freeze-and-expand takes its ratios).
    final: tuple[float, ...] | None = None


@dataclass(frozen=True)
class Evidence:
    """What an experiment can start from: the reused rows, per earlier experiment what happened to it, and the
    freeze-and-expand plan."""

    rows: ReusedRows
    report: list[dict[str, Any]]
    freeze: FreezePlan


def target_identity(spec: Any) -> dict[str, Any]:
    """What a target is, apart from where each experiment keeps its prepared copy of the evaluation files (their
    content is in the fingerprint)."""
    out = {k: v for k, v in dict(spec).items() if k != "evaluators"}
    out["evaluators"] = [{k: v for k, v in e.items() if k != "path"} for e in spec.get("evaluators", [])]
    return out


def comparable(current: ExperimentRecord, past: ExperimentRecord) -> str | None:
    """Why `past`'s scores cannot stand beside `current`'s (None: they can): another target (or evaluation files),
    or another proxy model or training. Another proxy seed is fine: its scores measure the same thing."""
    if past.name == current.name:
        return "the same experiment"
    if target_identity(past.target_spec) != target_identity(current.target_spec):
        return "another target (or other evaluation files)"
    if past.proxy.run_dict() != current.proxy.run_dict():
        return "another proxy model or training"
    return None


def cluster_map(
    old_store: str,
    new_store: str | dict[str, Any],
    min_overlap: float,
    resolve: Callable[[str], Path] | None = None,
) -> ClusterMap:
    """The map of `old_store`'s clustering onto `new_store`'s (a path, or its `store_assignments` already read),
    through the documents both index. `resolve` maps a store's or a drop's path to a local folder (default: as
    is)."""
    import polars as pl

    at = resolve or Path
    new = new_store if isinstance(new_store, dict) else dict(store_assignments(at(new_store), resolve))
    frames = list(new.values())
    mapping = (
        pl.concat(frames).select(schema.CLUSTER, schema.SUPER_CLUSTER).unique().sort(schema.CLUSTER)
        if frames
        else pl.DataFrame(schema={schema.CLUSTER: pl.Int64, schema.SUPER_CLUSTER: pl.Int64})
    )
    n_new = int(mapping[schema.SUPER_CLUSTER].max()) + 1 if mapping.height else 0
    empty = pl.DataFrame(schema={schema.ID: pl.String, schema.CLUSTER: pl.Int64})
    old = list(store_assignments(at(old_store), resolve))
    kept = {
        int(c): int(sc)
        for _, f in old
        for c, sc in f.select(schema.CLUSTER, schema.SUPER_CLUSTER).unique().iter_rows()
    }
    return build_cluster_map(
        ((key, frame, new.get(key, empty)) for key, frame in old), mapping, n_new, min_overlap, old_kept=kept
    )


def gather_evidence(
    current: ExperimentRecord,
    past: Iterable[PastExperiment],
    max_error: float,
    min_overlap: float,
    resolve: Callable[[str], Path] | None = None,
    freeze: bool = False,
) -> Evidence:
    """The reused rows over `current`'s super-clusters, and per earlier experiment what happened to it: skipped
    (why) or mapped (its store's map summary and how many of its runs were reused). One map per earlier store.

    `freeze`: also plan freeze-and-expand from the first of `past` (pass them latest first) that has a final
    mixture and was mapped: the super-clusters its update left unchanged keep that final's ratios."""
    past = list(past)
    maps: dict[str, ClusterMap | str] = {}
    parts: list[ReusedRows] = []
    report: list[dict[str, Any]] = []
    current_assignments: dict[str, Any] | None = None  # the current store, read once for every earlier one
    for p in past:
        why = comparable(current, p.record)
        if why is not None:
            report.append({"experiment": p.name, "skipped": why})
            continue
        old = p.record.token_store_path
        if old not in maps:
            try:
                if current_assignments is None:
                    at = (resolve or Path)(current.token_store_path)
                    current_assignments = dict(store_assignments(at, resolve))
                maps[old] = cluster_map(old, current_assignments, min_overlap, resolve)
            except (ClimbInputError, OSError) as exc:
                # Its store was removed by retention, or is a single-file store without fine clusters: said, not
                # fatal to this experiment (and not tried again for the next experiment on that store).
                maps[old] = f"its token store cannot be mapped ({exc})"[:300]
        if isinstance(maps[old], str):
            report.append({"experiment": p.name, "skipped": maps[old]})
            continue
        tables = [(p.name, t) for t in p.evaluations if t is not None and t.height]
        rows = reuse_rows(tables, maps[old], max_error)
        parts.append(rows)
        report.append(
            {
                "experiment": p.name,
                "old_store": p.record.token_store[:12],
                "reused": len(rows),
                "excluded": rows.excluded,
                **maps[old].summary(),
            }
        )
    k = store_superclusters((resolve or Path)(current.token_store_path))
    plan = FreezePlan("off (the experiment's reuse_freeze)")
    if freeze:
        plan = _freeze_plan(current, past, maps)
    return Evidence(merge_rows(parts, k, max_error), report, plan)


def _freeze_plan(
    current: ExperimentRecord, past: Iterable[PastExperiment], maps: dict[str, ClusterMap | str]
) -> FreezePlan:
    """The block from the latest comparable, mapped earlier experiment with a final mixture, or why there is none."""
    source = next(
        (
            p
            for p in past
            if p.final is not None
            and comparable(current, p.record) is None
            and isinstance(maps.get(p.record.token_store_path), ClusterMap)
        ),
        None,
    )
    if source is None:
        return FreezePlan("not run: no earlier experiment on this target and proxy has a final mixture to freeze")
    cmap = maps[source.record.token_store_path]
    assert isinstance(cmap, ClusterMap)
    unchanged = unchanged_superclusters(cmap)
    reason = freeze_reason(cmap, unchanged)
    if reason != RUN:
        return FreezePlan(reason, source=source.name)
    ratios_from = reexpress_final(np.asarray(source.final), cmap)
    kept = ", ".join(str(i) for i in np.flatnonzero(unchanged))
    return FreezePlan(
        f"run: super-clusters {kept} unchanged since {source.name}; they keep its final mixture's ratios",
        frozen_block(ratios_from, unchanged),
        source.name,
    )
