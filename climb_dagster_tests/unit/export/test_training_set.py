import numpy as np
import polars as pl
import pytest

from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.export.training_set import blend_formats, repeat_rates, sample_documents


def test_blend_formats():
    blend = blend_formats([0.75, 0.0, 0.25], ["a", "b", "c"], ["p/a", "p/b", "p/c"])
    assert blend["weights"] == {"a": 0.75, "b": 0.0, "c": 0.25}
    assert blend["megatron_data_path"] == "0.750000 p/a 0.250000 p/c"
    assert blend["hf_interleave_datasets"] == {"datasets": ["a", "c"], "probabilities": [0.75, 0.25]}


def test_blend_refuses_bad_weights():
    with pytest.raises(ClimbInputError, match="final mixture"):
        blend_formats([0.5, 0.6], ["a", "b"], ["p", "q"])


def test_repeat_rates_and_errors():
    np.testing.assert_allclose(repeat_rates([0.5, 0.5], [100, 400], 200), [1.0, 0.25])
    with pytest.raises(ClimbInputError, match=r"super-clusters \[1\] have weight but no tokens"):
        repeat_rates([0.5, 0.5], [100, 0], 200)


def test_sample_documents_meets_rates_within_a_document_and_is_order_independent():
    rng = np.random.default_rng(0)
    docs = pl.DataFrame(
        {
            "id": [f"d{i}" for i in range(4000)],
            "super_cluster": [i % 2 for i in range(4000)],
            "n_tokens": rng.integers(1, 50, 4000),
        }
    )
    rates = np.array([1.5, 0.25])
    out = sample_documents(docs, rates, seed=7)
    got = out.group_by("super_cluster").agg(pl.col("n_tokens").sum()).sort("super_cluster")["n_tokens"]
    want = docs.group_by("super_cluster").agg(pl.col("n_tokens").sum()).sort("super_cluster")["n_tokens"]
    # Error diffusion: each super-cluster within 2.5% of its target tokens (independent draws per document
    # would miss the 12.5k-token one by 4.4%, one standard deviation, in expectation).
    target = rates * want.to_numpy()
    assert np.abs(got.to_numpy() / target - 1).max() < 0.025
    shuffled = sample_documents(docs.reverse(), rates, seed=7)
    assert sorted(out["id"].to_list()) == sorted(shuffled["id"].to_list())
    assert sorted(sample_documents(docs, rates, seed=8)["id"].to_list()) != sorted(out["id"].to_list())
    # Rate 0.25: a document is taken at most once, and long and short documents alike (no length bias).
    taken = docs.filter(pl.col("super_cluster") == 1).join(out.select("id").unique(), on="id", how="semi")
    assert abs(taken["n_tokens"].mean() - docs.filter(pl.col("super_cluster") == 1)["n_tokens"].mean()) < 1.5


def test_plan_fits_the_budget_so_every_share_holds():
    from climb_dagster.core.export.training_set import ExportConfig, plan_export

    # The demo's failure: 62.5% of the weight on a super-cluster holding a tenth of the tokens.
    plan = plan_export([0.625, 0.375], [100, 900], ExportConfig())
    assert plan.capped == () and plan.token_budget == 640
    np.testing.assert_allclose(plan.rates, [4.0, 0.375 * 640 / 900])
    starved = plan_export([0.625, 0.375], [100, 900], ExportConfig(fit_budget=False))
    assert starved.token_budget == 1000 and starved.capped == (0,)


def test_share_report_fires_on_a_starved_super_cluster():
    from climb_dagster.core.export.training_set import ExportConfig, ShareReport, share_report

    config = ExportConfig(share_tolerance=0.02)
    ok = share_report([0.6, 0.4], [605, 395], config)
    assert ok.passed and ok.max_abs_difference == pytest.approx(0.005)
    starved = share_report([0.625, 0.375], [400, 375], config)
    assert not starved.passed and starved.off_target == (0, 1)
    assert ShareReport.from_dict(starved.to_dict()) == starved
    assert starved.to_dict()["passed"] is False
    with pytest.raises(ClimbInputError, match="share_severity must be one of"):
        ExportConfig(share_severity="loud")


class _Stored:
    """A lazily loaded stored frame, as the IO manager's LAZY inputs hand them over."""

    def __init__(self, frame: pl.DataFrame) -> None:
        self.frame, self.loads = frame, 0

    def load(self) -> pl.DataFrame:
        self.loads += 1
        return self.frame


def _drops():
    raw = {
        "drop-0002": _Stored(pl.DataFrame({"id": ["e", "d"], "text": ["five five", "four"]})),
        "drop-0001": _Stored(pl.DataFrame({"id": ["c", "a", "b"], "text": ["three", "one", "two two"]})),
    }
    assigned = {
        "drop-0001": _Stored(pl.DataFrame({"id": ["a", "b", "c"], "cluster": [0, 1, 2]})),
        "drop-0002": _Stored(pl.DataFrame({"id": ["d", "e"], "cluster": [2, 0]})),
    }
    # Cluster 1 was pruned: absent from the mapping.
    mapping = pl.DataFrame({"cluster": [0, 2], "super_cluster": [1, 0]})
    return raw, assigned, mapping


def test_kept_drop_joins_documents_assignments_and_mapping_in_id_order():
    from climb_dagster.core.io.documents import kept_drop

    raw, assigned, mapping = _drops()
    kept = kept_drop(raw["drop-0001"].load(), assigned["drop-0001"].load(), mapping)
    assert kept.columns == ["id", "text", "super_cluster"]
    assert kept.rows() == [("a", "one", 1), ("c", "three", 0)]
    assert kept_drop(raw["drop-0002"].load(), assigned["drop-0002"].load(), mapping).rows() == [
        ("d", "four", 0),
        ("e", "five five", 1),
    ]
    with pytest.raises(ClimbInputError, match=r"cluster assignments lack columns \['cluster'\]"):
        kept_drop(raw["drop-0001"].load(), pl.DataFrame({"id": ["a"]}), mapping)


def _export_docs(tmp_path):
    """Each drop's kept documents with their token counts, as the export's per-drop steps see them."""
    from climb_dagster.core.export.training_set import token_counts
    from climb_dagster.core.io.documents import kept_drop
    from climb_dagster.core.proxy.tokens import load_tokenizer, train_tokenizer

    tokenizer = load_tokenizer(
        train_tokenizer(["one two three four five"] * 4, tmp_path / "tok", vocab_size=300)
    )
    raw, assigned, mapping = _drops()
    out = []
    for key in sorted(raw):
        docs = kept_drop(raw[key].load(), assigned[key].load(), mapping)
        counts = token_counts(tokenizer, docs["text"].to_list())
        out.append((key, docs.with_columns(pl.Series("n_tokens", counts, dtype=pl.Int64))))
    return out


def test_write_export_shards_blend_and_manifest(tmp_path):
    import json

    from climb_dagster.core.export.training_set import ExportConfig, plan_export, write_export
    from climb_dagster.core.io import storage

    config = ExportConfig(shard_rows=2, seed=3)
    plan = plan_export([0.5, 0.5], [10, 10], config)
    assert plan.token_budget == 20 and plan.capped == ()
    out = storage.make_path(tmp_path / "export")
    blend = blend_formats(plan.weights, ["a", "b"], ["p/a", "p/b"])
    about = {"experiment": "e", "super_clusters": [], "final_mixture": {"weights": [0.5, 0.5]}}
    manifest = write_export(out, _export_docs(tmp_path), plan, config, blend, about)
    assert json.loads((out / "manifest.json").read_text()) == manifest
    assert json.loads((out / manifest["version_path"] / "blend.json").read_text()) == blend
    assert [p.name for p in (out / "versions").iterdir()] == [manifest["version"]]
    assert manifest["drops"] == ["drop-0001", "drop-0002"]
    shards = [pl.read_parquet(tmp_path / "export" / s["file"]) for s in manifest["shards"]]
    # Each drop writes its own shards (parallel steps); the manifest lists them in drop order.
    assert all("train-drop-000" in s["file"] for s in manifest["shards"])
    assert sum(s.height for s in shards) == sum(s["rows"] for s in manifest["shards"])
    assert all(s.height <= 2 for s in shards) and manifest["tokens_sampled"] == sum(
        int(s["n_tokens"].sum()) for s in shards
    )
    assert (
        manifest["experiment"] == "e"
        and manifest["seed"] == 3
        and manifest["final_mixture"] == about["final_mixture"]
    )


def test_drops_export_independently_and_publish_combines_them(tmp_path):
    """Per-drop steps may run in any order (or be retried): the published manifest is the same."""
    from climb_dagster.core.export.training_set import (
        DropExport,
        ExportConfig,
        export_drop,
        plan_export,
        publish_export,
    )
    from climb_dagster.core.io import publication, storage

    config = ExportConfig(shard_rows=1, seed=3)
    plan = plan_export([0.5, 0.5], [10, 10], config)
    blend = blend_formats(plan.weights, ["a", "b"], ["p/a", "p/b"])
    about = {"experiment": "e", "super_clusters": [], "final_mixture": {}}
    manifests = []
    for order in (1, -1):
        out = storage.make_path(tmp_path / f"export{order}")
        version = publication.new_version(out)
        parts = [export_drop(out, version, key, docs, plan, config) for key, docs in _export_docs(tmp_path)[::order]]
        again = DropExport.from_dict(parts[0].to_dict())
        assert again == parts[0]
        manifests.append(publish_export(out, version, parts, plan, config, blend, about))
    def shards(manifest: dict) -> list:  # the version folder's name differs, the contents do not
        return [{**s, "file": s["file"].rsplit("/", 1)[1]} for s in manifest["shards"]]

    assert shards(manifests[0]) == shards(manifests[1])
    assert manifests[0]["tokens_per_super_cluster"] == manifests[1]["tokens_per_super_cluster"]


def test_export_plan_caps_repeats_and_config_is_checked():
    from climb_dagster.core.export.training_set import ExportConfig, plan_export

    plan = plan_export(
        [0.9, 0.1], [10, 1000], ExportConfig(token_budget=1000, max_repeat=4.0, fit_budget=False)
    )
    assert plan.capped == (0,) and plan.uncapped_max_rate == 90.0
    np.testing.assert_allclose(plan.rates, [4.0, 0.1])
    with pytest.raises(ClimbInputError, match="shard_rows must be >= 1, got 0"):
        ExportConfig(shard_rows=0)


def test_mixture_export_check_fails_or_warns_on_a_starved_super_cluster():
    import dagster as dg

    from climb_dagster.assets.final import mixture_meets_shares
    from climb_dagster.core.export.training_set import ExportConfig, share_report

    starved = share_report([0.625, 0.375], [360, 640], ExportConfig()).to_dict()
    result = mixture_meets_shares(mixture_export={"share_check": starved})
    assert not result.passed and result.severity == dg.AssetCheckSeverity.ERROR
    assert result.metadata["off_target"].value == [0, 1]
    warned = share_report([0.625, 0.375], [360, 640], ExportConfig(share_severity="warn")).to_dict()
    result = mixture_meets_shares(mixture_export={"share_check": warned})
    assert not result.passed and result.severity == dg.AssetCheckSeverity.WARN
    met = share_report([0.625, 0.375], [626, 374], ExportConfig()).to_dict()
    assert mixture_meets_shares(mixture_export={"share_check": met}).passed


def test_an_export_with_a_fixed_budget_starves_and_the_check_fires(tmp_path):
    from climb_dagster.assets.final import mixture_meets_shares
    from climb_dagster.core.export.training_set import ExportConfig, plan_export, write_export
    from climb_dagster.core.io import storage

    about = {"experiment": "e", "super_clusters": [], "final_mixture": {}}
    manifests = {}
    for fit in (True, False):
        config = ExportConfig(max_repeat=1.0, fit_budget=fit)
        # Super-cluster 1 holds under half of the tokens but is weighted 0.9: at most one pass each.
        plan = plan_export([0.1, 0.9], [5, 4], config)
        blend = blend_formats(plan.weights, ["a", "b"], ["p/a", "p/b"])
        out = storage.make_path(tmp_path / f"export-{fit}")
        manifests[fit] = write_export(out, _export_docs(tmp_path), plan, config, blend, about)
    starved = manifests[False]
    assert starved["target_share"] == [0.1, 0.9] and starved["realized_share"][1] < 0.8
    assert not mixture_meets_shares(mixture_export={"share_check": starved["share_check"]}).passed
    assert manifests[True]["token_budget"] < starved["token_budget"]
