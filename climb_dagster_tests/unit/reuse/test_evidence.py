"""An experiment's evidence from earlier ones (issue 24): same target and proxy only, each earlier store mapped
onto the current one through the documents both index, a shared run counted once, skips said with their reason."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from climb_dagster.core.common import schema
from climb_dagster.core.experiment import evidence
from climb_dagster.core.experiment.config import ExperimentConfig
from climb_dagster.core.experiment.records import ExperimentRecord
from climb_dagster.core.proxy.composition import run_composition
from climb_dagster.core.proxy.config import ProxyConfig
from climb_dagster.core.reuse.rows import DUPLICATE
from climb_dagster.core.reuse.unchanged import FreezePlan
from climb_dagster.core.targets.config import TargetConfig
from climb_dagster_tests.unit.proxy.test_segments import MAPPING, _drops, _segmented

SPEC = {
    "name": "documents_loss",
    "direction": "minimize",
    "fingerprint": "abc",
    "evaluators": [{"kind": "loss", "path": "/storage/targets/first/heldout.npy", "weight": 1.0}],
}


def _record(name: str, store, spec=SPEC, proxy: ProxyConfig | None = None, seed: int = 0) -> ExperimentRecord:
    config = ExperimentConfig(
        name,
        TargetConfig(documents_path="/t.parquet"),
        rounds=(4, 2),
        proxy=proxy or ProxyConfig.tiny(),
        seed=seed,
    )
    return ExperimentRecord(config, store.key(), str(store.path), dict(spec), "h")


def _evaluations(store, record: ExperimentRecord, mixtures: np.ndarray, prefix: str) -> pl.DataFrame:
    rows = []
    for i, m in enumerate(mixtures):
        comp = run_composition(store, m, record.proxy, record.seed)
        rows.append(
            {
                schema.PROXY_KEY: f"{prefix}{i}",
                schema.STATUS: schema.OK,
                schema.SCORE: 6.0 + i / 10,
                schema.COMPOSITION: json.dumps(comp.to_dict()),
                **{schema.weight_column(j): float(w) for j, w in enumerate(m)},
            }
        )
    return pl.DataFrame(rows)


PastExperiment = evidence.PastExperiment


def gather_evidence(*args, **kwargs):
    got = evidence.gather_evidence(*args, **kwargs)
    return got.rows, got.report


def test_earlier_experiments_on_the_same_target_become_rows_over_the_new_clustering(tmp_path: Path):
    drops = _drops()
    old_store = _segmented(tmp_path / "old", drops, MAPPING, 3)
    # The re-cluster: fine cluster 4 (super 2) splits by documents; the new mapping adds super-cluster 3.
    split = []
    for key, docs, a in drops:
        movers = set(a.filter(pl.col("cluster") == 4)["id"].sort().to_list()[::2])
        split.append(
            (
                key,
                docs,
                a.with_columns(
                    pl.when(pl.col("id").is_in(list(movers)))
                    .then(6)
                    .otherwise(pl.col("cluster"))
                    .alias("cluster")
                ),
            )
        )
    new_mapping = pl.concat([MAPPING, pl.DataFrame({"cluster": [6], "super_cluster": [3]})])
    new_store = _segmented(tmp_path / "new", split, new_mapping, 4)
    current = _record("now", new_store)
    mixtures = np.array([[0.5, 0.3, 0.2], [0.2, 0.2, 0.6], [1 / 3, 1 / 3, 1 / 3]])
    first = _record("first", old_store)
    tables = (
        _evaluations(old_store, first, mixtures[:2], "k"),
        _evaluations(old_store, first, mixtures[2:], "m"),
    )
    again = _record(
        "again", old_store, seed=5
    )  # another proxy seed: comparable; one run shared via the cache
    past = [
        PastExperiment("first", first, tables),
        PastExperiment("again", again, (_evaluations(old_store, again, mixtures[:1], "k"),)),
        PastExperiment(
            "other-target", _record("other-target", old_store, {**SPEC, "fingerprint": "x"}), tables
        ),
        PastExperiment(
            "bigger-proxy", _record("bigger-proxy", old_store, proxy=ProxyConfig.default()), tables
        ),
        PastExperiment("now", current, tables),
    ]
    rows, report = gather_evidence(current, past, max_error=1.0, min_overlap=0.7)
    assert rows.proxy_keys == ("k0", "k1", "m0")
    assert rows.sources == ("first", "first", "first") and rows.excluded == {DUPLICATE: 1}
    assert rows.mixtures.shape == (3, 4) and np.allclose(rows.mixtures.sum(axis=1), 1.0)
    # Super-clusters 0 and 1 did not change: their weights come back as they were.
    np.testing.assert_allclose(rows.mixtures[:, :2], mixtures[:, :2], atol=1e-12)
    assert (rows.mixtures[:, 3] > 0).all() and rows.scores.tolist() == [6.0, 6.1, 6.0]
    skipped = {r["experiment"]: r["skipped"] for r in report if "skipped" in r}
    assert skipped == {
        "other-target": "another target (or other evaluation files)",
        "bigger-proxy": "another proxy model or training",
        "now": "the same experiment",
    }
    mapped = [r for r in report if "skipped" not in r]
    assert [r["experiment"] for r in mapped] == ["first", "again"] and mapped[0]["gone_share"] == 0.0
    assert mapped[0]["changed_fine_clusters"] == 1 and mapped[0]["reused"] == 3
    strict, _ = gather_evidence(current, past[:1], max_error=0.05, min_overlap=0.7)
    assert len(strict) < 3 and strict.excluded.get("error above threshold", 0) >= 1
    none, report = gather_evidence(current, past[2:4], max_error=1.0, min_overlap=0.7)
    assert len(none) == 0 and none.mixtures.shape == (0, 4) and len(report) == 2


def test_a_removed_drop_counts_as_gone(tmp_path: Path):
    drops = _drops()
    old_store = _segmented(tmp_path / "old", drops, MAPPING, 3)
    new_store = _segmented(tmp_path / "new", drops[:2], MAPPING, 3)
    first = _record("first", old_store)
    table = _evaluations(old_store, first, np.array([[0.5, 0.3, 0.2]]), "k")
    rows, report = gather_evidence(
        _record("now", new_store), [PastExperiment("first", first, (table,))], 1.0, 0.7
    )
    assert 0.2 < report[0]["gone_share"] < 0.5 and len(rows) == 1
    assert rows.errors[0] == pytest.approx(report[0]["gone_share"], abs=0.1)


def test_an_earlier_store_that_is_gone_is_skipped_with_the_reason(tmp_path: Path):
    import shutil

    drops = _drops()
    old_store = _segmented(tmp_path / "old", drops, MAPPING, 3)
    new_store = _segmented(tmp_path / "new", drops, MAPPING, 3)
    first = _record("first", old_store)
    table = _evaluations(old_store, first, np.array([[0.5, 0.3, 0.2]]), "k")
    shutil.rmtree(old_store.path)  # retention removed it
    rows, report = gather_evidence(_record("now", new_store), [PastExperiment("first", first, (table,))], 1.0, 0.7)
    assert len(rows) == 0 and report[0]["skipped"].startswith("its token store cannot be mapped")


def test_freeze_plan_after_an_added_drop_and_a_re_merge_keeps_the_unchanged_super_clusters_ratios(tmp_path: Path):
    drops = _drops()
    old_store = _segmented(tmp_path / "old", drops[:2], MAPPING, 3)
    # A drop is added (its documents join the same fine clusters) and the re-merge renumbers super-clusters 0 and
    # 2 and splits super-cluster 1 ({1, 5}) in two.
    remerged = pl.DataFrame({"cluster": [0, 1, 2, 4, 5], "super_cluster": [2, 1, 2, 0, 3]})
    new_store = _segmented(tmp_path / "new", drops, remerged, 4)
    first = _record("first", old_store)
    table = _evaluations(old_store, first, np.array([[0.5, 0.3, 0.2], [0.2, 0.2, 0.6]]), "k")
    past = [PastExperiment("first", first, (table,), final=(0.5, 0.2, 0.3))]
    got = evidence.gather_evidence(_record("now", new_store), past, 1.0, 0.7, freeze=True)
    plan = got.freeze
    assert plan.runs and plan.source == "first" and "super-clusters 0, 2 unchanged" in plan.reason
    assert plan.block.frozen == (0, 2) and plan.block.k == 4
    # Old super-cluster 2 (0.3) is new 0, old 0 (0.5) is new 2.
    assert plan.block.ratios == pytest.approx((0.3 / 0.8, 0.5 / 0.8))
    assert FreezePlan.from_dict(json.loads(json.dumps(plan.to_dict()))) == plan
    off = evidence.gather_evidence(_record("now", new_store), past, 1.0, 0.7)
    assert not off.freeze.runs and off.freeze.reason.startswith("off")
    no_final = evidence.gather_evidence(_record("now", new_store), [PastExperiment("first", first, (table,))], 1.0, 0.7, freeze=True)
    assert not no_final.freeze.runs and "final mixture" in no_final.freeze.reason


def test_freeze_plan_is_not_run_after_a_refit_that_moved_documents(tmp_path: Path):
    drops = _drops()
    old_store = _segmented(tmp_path / "old", drops, MAPPING, 3)
    moved = [(key, docs, a.with_columns(pl.when(pl.col("cluster") == 4).then(1).otherwise(pl.col("cluster")).alias("cluster"))) for key, docs, a in drops[:1]] + drops[1:]
    new_store = _segmented(tmp_path / "new", moved, MAPPING, 3)
    first = _record("first", old_store)
    table = _evaluations(old_store, first, np.array([[0.5, 0.3, 0.2]]), "k")
    got = evidence.gather_evidence(
        _record("now", new_store), [PastExperiment("first", first, (table,), final=(0.4, 0.3, 0.3))], 1.0, 0.7, freeze=True
    )
    assert not got.freeze.runs and got.freeze.reason.startswith("not run: the update did more than add drops")
