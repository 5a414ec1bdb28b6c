"""Past runs over a new clustering (issue 24): exact when nothing changed, a split cluster's tokens follow its
documents, a removed drop or pruned cluster renormalises the rest and counts as error, the threshold excludes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.proxy.composition import (
    CELL_DROP,
    CELL_FINE,
    SUPER,
    TOKENS,
    Composition,
    run_composition,
)
from climb_dagster.core.proxy.config import ProxyConfig
from climb_dagster.core.proxy.drop_store import DropStore
from climb_dagster.core.reuse.mapping import build_cluster_map
from climb_dagster.core.reuse.reexpress import reexpress
from climb_dagster_tests.unit.proxy.test_segments import MAPPING, _drops, _segmented

MIXTURE = np.array([0.5, 0.3, 0.2])


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("reuse")
    drops = _drops()
    store = _segmented(tmp, drops, MAPPING, 3)
    comp = run_composition(store, MIXTURE, ProxyConfig.tiny(), seed=2)
    tokens = {key: DropStore.open(tmp / "drops" / key).docs(["id", "n_tokens"]) for key, _, _ in drops}
    old = {key: assigned.join(tokens[key], on="id") for key, _, assigned in drops}
    return drops, comp, old, store


def _map(lab, new: dict[str, pl.DataFrame], mapping: pl.DataFrame, n_new: int, **kw):
    drops, _, old, _ = lab
    kept = dict(zip(MAPPING["cluster"].to_list(), MAPPING["super_cluster"].to_list(), strict=True))
    return build_cluster_map(((k, old[k], new[k]) for k, _, _ in drops), mapping, n_new, old_kept=kept, **kw)


def test_unchanged_clustering_gives_back_the_nominal_weights(lab):
    drops, comp, old, _ = lab
    cmap = _map(lab, {k: a for k, _, a in drops}, MAPPING, 3)
    again = reexpress(comp, MIXTURE, cmap)
    np.testing.assert_allclose(again.weights, MIXTURE, atol=1e-12)
    assert again.gone == again.changed == again.error == 0.0 and again.usable
    # Renumbered fine clusters (a refit that finds the same clusters) change nothing either.
    renumbered = {k: a.with_columns((pl.col("cluster") + 10).alias("cluster")) for k, _, a in drops}
    moved = MAPPING.with_columns(pl.col("cluster") + 10)
    np.testing.assert_allclose(reexpress(comp, MIXTURE, _map(lab, renumbered, moved, 3)).weights, MIXTURE, atol=1e-12)


def test_weight_on_a_super_cluster_the_run_never_drew_from_comes_back_too(lab):
    """A tiny weight draws no window in a short run; the map spreads it like that super-cluster's documents."""
    drops, _, old, store = lab
    mixture = np.array([0.7, 0.2999, 0.0001])
    comp = run_composition(store, mixture, ProxyConfig.tiny(), seed=2)
    assert comp.super_tokens(3)[2] == 0
    cmap = _map(lab, {k: a for k, _, a in drops}, MAPPING, 3)
    again = reexpress(comp, mixture, cmap)
    np.testing.assert_allclose(again.weights, mixture, atol=1e-12)
    assert again.error == 0.0
    blind = build_cluster_map(((k, old[k], a) for k, _, a in drops), MAPPING, 3, old_kept=[0, 1, 2, 4, 5])
    assert reexpress(comp, mixture, blind).gone == pytest.approx(0.0001)  # old super-clusters unknown: gone


def test_a_split_cluster_distributes_the_runs_tokens_by_its_documents(lab):
    drops, comp, old, _ = lab
    # Old fine cluster 4 (super-cluster 2) splits: every other of its documents moves to new fine 6, super 3.
    new = {}
    for k, _, a in drops:
        in4 = a.filter(pl.col("cluster") == 4)["id"].sort().to_list()
        movers = set(in4[::2])
        new[k] = a.with_columns(
            pl.when(pl.col("id").is_in(list(movers))).then(6).otherwise(pl.col("cluster")).alias("cluster")
        )
    mapping = pl.concat([MAPPING, pl.DataFrame({"cluster": [6], "super_cluster": [3]})])
    got = reexpress(comp, MIXTURE, _map(lab, new, mapping, 4, min_overlap=0.99), max_error=0.1)
    # By hand: each drop's cell of cluster 4 sends the token share of its moved documents to super-cluster 3.
    cells = comp.cells[(comp.cells[:, SUPER] == 2) & (comp.cells[:, CELL_FINE] == 4)]
    run_in_2 = comp.cells[comp.cells[:, SUPER] == 2, TOKENS].sum()
    to3 = 0.0
    for d, t in zip(cells[:, CELL_DROP].tolist(), cells[:, TOKENS].tolist(), strict=True):
        key = comp.drops[d]
        o = old[key].filter(pl.col("cluster") == 4)
        moved = o.filter(pl.col("id").is_in(new[key].filter(pl.col("cluster") == 6)["id"].to_list()))
        to3 += MIXTURE[2] * t / run_in_2 * moved["n_tokens"].sum() / o["n_tokens"].sum()
    assert got.weights[3] == pytest.approx(to3, rel=1e-9) and 0 < to3 < MIXTURE[2]
    assert got.weights[:2] == pytest.approx(MIXTURE[:2], rel=1e-9)
    assert got.weights[2] == pytest.approx(MIXTURE[2] - to3, rel=1e-9)
    # Cluster 4 is now split about in half: below min_overlap, so its whole weight counts as error.
    assert got.changed == pytest.approx(MIXTURE[2]) and got.gone == 0.0 and not got.usable
    assert reexpress(comp, MIXTURE, _map(lab, new, mapping, 4, min_overlap=0.4)).changed == 0.0


def test_a_removed_drop_or_pruned_cluster_renormalises_and_counts_as_gone(lab):
    drops, comp, old, _ = lab
    gone_key = drops[2][0]
    new = {k: (a.head(0) if k == gone_key else a) for k, _, a in drops}
    got = reexpress(comp, MIXTURE, _map(lab, new, MAPPING, 3), max_error=0.5)
    d2 = comp.drops.index(gone_key)
    per_super = comp.super_tokens(3)
    lost = sum(MIXTURE[s] * t / per_super[s] for s, d, _, t in comp.cells.tolist() if d == d2)
    assert got.gone == pytest.approx(lost) and 0.1 < lost < 0.6
    assert got.weights.sum() == pytest.approx(1.0) and got.error == pytest.approx(lost)
    assert got.usable == (lost <= 0.5)
    # Pruning new super-cluster 2's only fine cluster: its weight is gone, the rest renormalises exactly.
    cmap = _map(lab, {k: a for k, _, a in drops}, MAPPING.filter(pl.col("cluster") != 4), 3)
    pruned = reexpress(comp, MIXTURE, cmap, max_error=0.25)
    assert pruned.gone == pytest.approx(MIXTURE[2]) and pruned.usable
    np.testing.assert_allclose(pruned.weights, [0.5 / 0.8, 0.3 / 0.8, 0.0], atol=1e-12)
    assert not reexpress(comp, MIXTURE, cmap, max_error=0.1).usable


def test_the_map_refuses_what_it_cannot_read_and_sums_up(lab):
    drops, comp, old, _ = lab
    cmap = _map(lab, {k: a for k, _, a in drops}, MAPPING, 3)
    s = cmap.summary()
    # Old fine cluster 3 was pruned before: no run trained on it, so the map leaves its documents out.
    assert s["gone_share"] == 0.0 and s["changed_share"] == 0.0 and s["old_fine_clusters"] == 5
    assert s["old_tokens"] == sum(old[k].filter(pl.col("cluster") != 3)["n_tokens"].sum() for k in old)
    everything = build_cluster_map(((k, old[k], a) for k, _, a in drops), MAPPING, 3).summary()
    assert everything["old_fine_clusters"] == 6 and everything["gone_share"] > 0
    with pytest.raises(ClimbInputError, match="lack columns"):
        build_cluster_map([("drop-0000", old["drop-0000"].drop("n_tokens"), old["drop-0000"])], MAPPING, 3)
    with pytest.raises(ClimbInputError, match="outside 0..2"):
        build_cluster_map([], MAPPING.with_columns(pl.lit(5).alias("super_cluster")), 3)
    with pytest.raises(ClimbInputError, match="min_overlap"):
        build_cluster_map([], MAPPING, 3, min_overlap=0)
    # A map of other drops: every token of the run is gone, nothing usable.
    other = build_cluster_map([("drop-x", old["drop-0000"], old["drop-0000"])], MAPPING, 3)
    nothing = reexpress(comp, MIXTURE, other)
    assert nothing.gone == pytest.approx(1.0) and not nothing.usable and nothing.weights.sum() == 0


def test_reuse_rows_keeps_finished_certain_runs_once_and_counts_the_rest(lab):
    import json

    from climb_dagster.core.common import schema
    from climb_dagster.core.reuse.rows import DUPLICATE, FAILED, NO_COMPOSITION, TOO_UNCERTAIN, reuse_rows

    drops, comp, old, _ = lab
    gone_key = drops[2][0]
    cmap = _map(lab, {k: (a.head(0) if k == gone_key else a) for k, _, a in drops}, MAPPING, 3)
    lost = reexpress(comp, MIXTURE, cmap).gone
    small = Composition(comp.drops, comp.cells[comp.cells[:, CELL_DROP] != comp.drops.index(gone_key)], comp.store_key)
    as_json = lambda c: json.dumps(c.to_dict())  # noqa: E731

    def table(rows):
        return pl.DataFrame(
            [
                {
                    schema.PROXY_KEY: k,
                    schema.STATUS: st,
                    schema.SCORE: sc,
                    schema.COMPOSITION: c,
                    **{f"w_{i:03d}": float(w) for i, w in enumerate(MIXTURE)},
                }
                for k, st, sc, c in rows
            ],
            schema_overrides={schema.COMPOSITION: pl.String, schema.SCORE: pl.Float64},
        )

    first = table([("a", "ok", 6.0, as_json(small)), ("b", "ok", 6.1, as_json(comp)), ("c", "failed", None, None)])
    second = table([("a", "ok", 6.0, as_json(small)), ("d", "ok", 5.9, None)])
    rows = reuse_rows([("exp-1", first), ("exp-2", second)], cmap, max_error=min(0.5, lost / 2))
    assert rows.proxy_keys == ("a",) and rows.sources == ("exp-1",) and rows.errors.tolist() == [0.0]
    assert rows.excluded == {TOO_UNCERTAIN: 1, FAILED: 1, DUPLICATE: 1, NO_COMPOSITION: 1}
    s = rows.summary()
    assert s["reused"] == 1 and s["past_runs"] == 4 and s["by_experiment"] == {"exp-1": 1}
    assert rows.mixtures.shape == (1, 3) and rows.mixtures.sum() == pytest.approx(1.0)


def test_the_old_clustering_reads_back_from_its_store(tmp_path: Path):
    """After a re-cluster the old assignments are gone; the old store's segments give back each indexed
    document's fine cluster and super-cluster, and a map built from them equals one built from the originals."""
    from climb_dagster.core.reuse.snapshot import store_assignments

    drops = _drops()
    store = _segmented(tmp_path, drops, MAPPING, 3)
    back = dict(store_assignments(store.path))
    assert list(back) == [k for k, _, _ in drops]
    supers = dict(zip(MAPPING["cluster"].to_list(), MAPPING["super_cluster"].to_list(), strict=True))
    for key, _, assigned in drops:
        kept = assigned.filter(pl.col("cluster").is_in(list(supers))).sort("id")
        got = back[key].sort("id")
        assert got["id"].to_list() == kept["id"].to_list()  # the pruned cluster's documents are not indexed
        assert got["cluster"].to_list() == kept["cluster"].cast(pl.Int64).to_list()
        assert got["super_cluster"].to_list() == [supers[c] for c in kept["cluster"].to_list()]
    comp = run_composition(store, MIXTURE, ProxyConfig.tiny(), seed=2)
    new = {k: a for k, _, a in drops}
    from_store = build_cluster_map(((k, back[k], new[k]) for k in back), MAPPING, 3)
    np.testing.assert_allclose(reexpress(comp, MIXTURE, from_store).weights, MIXTURE, atol=1e-12)
    with pytest.raises(ClimbInputError, match="not a segmented store"):
        from climb_dagster.core.proxy.store import write_token_store
        from climb_dagster_tests.unit.proxy_corpus import tokenizer_dir

        v1 = write_token_store(iter([(0, ["a b c"])]), tokenizer_dir(), tmp_path / "v1", n_clusters=1)
        list(store_assignments(v1.path))
