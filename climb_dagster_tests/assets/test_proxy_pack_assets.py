"""round_k_proxy_evaluations with a proxy pack size above 1: one mapped step per pack, one record per proxy,
caching per proxy (a pack with cached members trains only the others); and a base checkpoint
(continued pre-training) reaching every proxy of an experiment."""

from __future__ import annotations

import shutil

import dagster as dg
import pytest

from climb_dagster.assets.targets import documents_target
from climb_dagster.core.common import schema
from climb_dagster.core.io import storage
from climb_dagster.resources.io_manager import read_value
from climb_dagster_tests.assets.bootstrap_fixture import (
    TINY_EXPERIMENT,
    run_experiment,
    seed_clustered_corpus,
)

pytestmark = pytest.mark.slow


def _train_steps(result) -> list[str]:
    return sorted(
        e.step_key for e in result.all_events if e.is_step_success and "_train_proxy[" in (e.step_key or "")
    )


def _meta(result, asset: str) -> dict:
    mats = result.asset_materializations_for_node(asset)
    return {k: v.value for k, v in mats[0].metadata.items()}


def test_rounds_map_over_packs_with_one_record_per_proxy(tmp_path, monkeypatch):
    monkeypatch.setenv("CLIMB_HOME", str(tmp_path))
    monkeypatch.setenv("CLIMB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("CLIMB_DEPLOYMENT", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    target = seed_clustered_corpus(tmp_path)
    instance = dg.DagsterInstance.ephemeral()
    spec = {**TINY_EXPERIMENT, "target": documents_target(target), "proxy_pack_size": 3}
    first = run_experiment(instance, "packed", spec)
    assert first.success
    # Rounds of 4, 2 and 2 proxies: packs of (3, 1), (2) and (2).
    steps = _train_steps(first)
    assert len(steps) == 4 and all("[pack_" in s for s in steps)
    assert sum("round_1_train_proxy" in s for s in steps) == 2
    root = storage.make_path(tmp_path / "storage")
    evals = read_value(root / "round_1_proxy_evaluations" / "packed")
    assert evals.height == 4 and evals[schema.MIXTURE_ID].n_unique() == 4
    assert (evals[schema.STATUS] == schema.OK).all() and not evals[schema.CACHED].any()
    meta = _meta(first, "round_1_proxy_evaluations")
    assert meta["dagster/row_count"] == 4 and meta["reused_from_cache"] == 0

    # Forget one proxy of round 1: its pack trains only that member, the others come from the cache.
    forgotten = evals[schema.PROXY_KEY][1]
    shutil.rmtree(tmp_path / "storage" / "proxy_runs" / forgotten)
    again = run_experiment(instance, "packed", spec)
    assert again.success
    assert _meta(again, "round_1_proxy_evaluations")["reused_from_cache"] == 3
    for k in (2, 3):
        meta = _meta(again, f"round_{k}_proxy_evaluations")
        assert meta["reused_from_cache"] == meta["dagster/row_count"] == 2
    rerun = read_value(root / "round_1_proxy_evaluations" / "packed")
    retrained = rerun.filter(~rerun[schema.CACHED])
    assert retrained[schema.PROXY_KEY].to_list() == [forgotten]
    # Training it again inside a smaller pack gives the same score (CPU, fp32: packing is exact).
    before = evals.filter(evals[schema.PROXY_KEY] == forgotten)[schema.SCORE][0]
    assert retrained[schema.SCORE][0] == pytest.approx(before, rel=1e-4)


def test_base_checkpoint_reaches_every_proxy_of_an_experiment(tmp_path, monkeypatch):
    """proxy_base_model flows from the launchpad spec to each proxy's training: a base checkpoint with a NaN
    weight makes every round-1 proxy fail with the non-finite reason (a fresh init would train fine)."""
    import torch

    from climb_dagster.core.proxy.config import ProxyModelConfig
    from climb_dagster.core.proxy.model import build_model

    monkeypatch.setenv("CLIMB_HOME", str(tmp_path))
    monkeypatch.setenv("CLIMB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("CLIMB_DEPLOYMENT", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    target = seed_clustered_corpus(tmp_path)
    sizes = ProxyModelConfig(vocab_size=512, d_model=32, n_layers=1, n_heads=2, block_size=32, d_ff=96)
    base = build_model(sizes, seed=0)
    with torch.no_grad():
        base.model.layers[0].mlp.down_proj.weight[0, 0] = float("nan")
    base.save_pretrained(tmp_path / "base")
    spec = {
        **TINY_EXPERIMENT,
        "target": documents_target(target),
        "proxy_base_model": str(tmp_path / "base"),
    }
    result = run_experiment(dg.DagsterInstance.ephemeral(), "cpt", spec, raise_on_error=False)
    assert not result.success  # no proxy succeeded, so no predictor can be fitted
    evals = read_value(storage.make_path(tmp_path / "storage") / "round_1_proxy_evaluations" / "cpt")
    assert evals.height == 4 and (evals[schema.STATUS] == schema.FAILED).all()
    assert all("non-finite" in r for r in evals[schema.REASON].to_list())
