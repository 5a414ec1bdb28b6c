"""A proxy run's composition (issue 24): its tokens per (super-cluster, drop, fine cluster), exact against a
position-by-position count, independent of how the run trains, and stored with the run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from climb_dagster.core.proxy.composition import (
    CELL_DROP,
    CELL_FINE,
    SUPER,
    TOKENS,
    Composition,
    run_composition,
    window_tokens_per_segment,
)
from climb_dagster.core.proxy.config import ProxyConfig
from climb_dagster.core.proxy.sampler import window_plan
from climb_dagster.core.proxy.segments import DROP, FINE, LENGTH
from climb_dagster_tests.unit.proxy.test_segments import MAPPING, _drops, _segmented, _single_step


def test_window_tokens_per_segment_counts_every_position():
    rng = np.random.default_rng(0)
    for _ in range(20):
        lengths = rng.integers(1, 30, rng.integers(1, 12))
        span = int(rng.integers(1, 20))
        total = int(lengths.sum())
        if total < span:
            continue
        starts = rng.integers(0, total - span + 1, rng.integers(1, 40))
        owner = np.repeat(np.arange(lengths.size), lengths)
        brute = np.zeros(lengths.size, dtype=np.int64)
        for s in starts:
            np.add.at(brute, owner[s : s + span], 1)
        np.testing.assert_array_equal(window_tokens_per_segment(starts, span, lengths), brute)


def _config() -> ProxyConfig:
    cfg = ProxyConfig.tiny()
    return cfg


def test_run_composition_is_exact_and_reads_no_tokens(tmp_path: Path):
    store = _segmented(tmp_path, _drops(), MAPPING, 3)
    cfg = _config()
    mixture = np.array([0.5, 0.3, 0.2])
    comp = run_composition(store, mixture, cfg, seed=4)
    assert comp is not None and comp.drops == ("drop-0000", "drop-0001", "drop-0002")
    assert comp.store_key == store.key()
    span = cfg.model.block_size + 1
    assert comp.tokens == cfg.train.steps * cfg.train.batch_size * span
    # Position by position: each window token's segment names its drop and fine cluster.
    clusters, starts = window_plan(store, mixture, cfg.train.steps * cfg.train.batch_size, cfg.model.block_size, 5)
    expected: dict[tuple[int, int, int], int] = {}
    for c, s in zip(clusters.tolist(), starts.tolist(), strict=True):
        segs = store.tokens[c].segments
        owner = np.repeat(np.arange(len(segs)), segs[:, LENGTH])[s : s + span]
        for seg in owner.tolist():
            key = (c, int(segs[seg, DROP]), int(segs[seg, FINE]))
            expected[key] = expected.get(key, 0) + 1
    got = {(int(r[SUPER]), int(r[CELL_DROP]), int(r[CELL_FINE])): int(r[TOKENS]) for r in comp.cells}
    assert got == expected
    # Fine clusters stay inside their super-cluster (MAPPING: 0,2 -> 0; 1,5 -> 1; 4 -> 2; 3 pruned).
    allowed = {0: {0, 2}, 1: {1, 5}, 2: {4}}
    assert all(f in allowed[s] for s, _, f in got)
    shares = comp.super_tokens(3) / comp.tokens
    assert shares == pytest.approx(mixture, abs=0.1)  # a sample of windows, not the nominal weights


def test_composition_round_trips_and_v1_stores_have_none(tmp_path: Path):
    drops = _drops()
    store = _segmented(tmp_path, drops, MAPPING, 3)
    comp = run_composition(store, np.array([0.2, 0.3, 0.5]), _config(), seed=0)
    assert Composition.from_dict(comp.to_dict()) == comp
    assert run_composition(store, np.array([0.2, 0.3, 0.5]), _config(), seed=1) != comp
    assert run_composition(_single_step(tmp_path, drops, MAPPING, 3), np.array([0.2, 0.3, 0.5]), _config(), 0) is None
    with pytest.raises(Exception, match="malformed"):
        Composition.from_dict({"drops": ["a"]})
    with pytest.raises(Exception, match="positive tokens"):
        Composition(drops=("a",), cells=np.array([[0, 1, 0, 5]]), store_key="k")


def test_a_run_keeps_its_composition_in_the_cache_and_the_round_table(tmp_path: Path):
    import dataclasses
    import json

    from upath import UPath

    from climb_dagster.core.common import schema
    from climb_dagster.core.proxy.cache import RESULT_FILE, ProxyCache
    from climb_dagster.core.proxy.jobs import evaluations_table, run_proxy_job
    from climb_dagster.core.proxy.records import ProxyJob
    from climb_dagster_tests.unit import proxy_corpus as pc

    store = _segmented(tmp_path, _drops(), MAPPING, 3)
    cfg = ProxyConfig.tiny(pc.TINY_VOCAB)
    cache = ProxyCache(UPath(tmp_path / "runs"))
    job = ProxyJob("r1-000", "k", [0.5, 0.25, 0.25])
    outcome = run_proxy_job(job, store, cfg, 3, lambda model: 6.5, cache)
    expected = run_composition(store, np.array(job.weights), cfg, 3)
    assert outcome.composition == expected and outcome.composition.tokens > 0
    result = tmp_path / "runs" / "k" / RESULT_FILE
    assert json.loads(result.read_text())[schema.COMPOSITION] == expected.to_dict()
    table = evaluations_table([outcome], n_clusters=3)
    assert Composition.from_dict(json.loads(table[schema.COMPOSITION][0])) == expected

    # A run cached before compositions were kept gets its own when reused, stored back, nothing retrained.
    stored = json.loads(result.read_text())
    del stored[schema.COMPOSITION]
    result.write_text(json.dumps(stored))
    reused = run_proxy_job(job, store, cfg, 3, None, cache)
    assert reused == dataclasses.replace(outcome, cached=True)
    assert json.loads(result.read_text())[schema.COMPOSITION] == expected.to_dict()


def test_cache_keys_do_not_move_with_compositions(tmp_path: Path):
    """Keys written before compositions were kept still find their runs: the run key and the segmented store's
    key are what they were (values pinned from the commit before issue 24's change)."""
    from climb_dagster.core.proxy.config import proxy_run_key

    assert proxy_run_key([0.5, 0.3, 0.2], ProxyConfig.tiny(), 0, "a-store-key") == "cf6ce422f6da7f9f"
    assert proxy_run_key([0.5, 0.3, 0.2], ProxyConfig.default(), 7, "a-store-key") == "0e259ac8a26ee4bb"
    store = _segmented(tmp_path, _drops(), MAPPING, 3)
    assert store.drop_keys == ("drop-0000", "drop-0001", "drop-0002")
    assert store.key() == PINNED_STORE_KEY


PINNED_STORE_KEY = "ccb0100df2bda016"
