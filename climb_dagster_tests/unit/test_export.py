import numpy as np
import polars as pl
import pytest

from climb_dagster.core.errors import ClimbInputError
from climb_dagster.core.export import blend_formats, repeat_rates, sample_documents


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


def test_sample_documents_meets_rates_and_is_order_independent():
    docs = pl.DataFrame({"id": [f"d{i}" for i in range(4000)], "super_cluster": [i % 2 for i in range(4000)]})
    rates = np.array([1.5, 0.25])
    out = sample_documents(docs, rates, seed=7)
    counts = out["super_cluster"].value_counts().sort("super_cluster")["count"].to_list()
    assert abs(counts[0] - 3000) < 100 and abs(counts[1] - 500) < 60
    shuffled = sample_documents(docs.reverse(), rates, seed=7)
    assert sorted(out["id"].to_list()) == sorted(shuffled["id"].to_list())
    assert sorted(sample_documents(docs, rates, seed=8)["id"].to_list()) != sorted(out["id"].to_list())


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


def test_kept_documents_joins_each_drop_once_in_key_and_id_order():
    from climb_dagster.core.documents import kept_documents, super_cluster_texts

    raw, assigned, mapping = _drops()
    drops = list(kept_documents(raw, assigned, mapping))
    assert [d.key for d in drops] == ["drop-0001", "drop-0002"]
    assert [d.n_documents for d in drops] == [3, 2]
    assert drops[0].documents.columns == ["id", "text", "super_cluster"]
    assert drops[0].documents.rows() == [("a", "one", 1), ("c", "three", 0)]
    assert drops[1].documents.rows() == [("d", "four", 0), ("e", "five five", 1)]
    assert all(s.loads == 1 for s in [*raw.values(), *assigned.values()])
    logged: list[str] = []
    texts = list(super_cluster_texts(kept_documents(raw, assigned, mapping), logged.append))
    assert texts == [(1, ["one"]), (0, ["three"]), (0, ["four"]), (1, ["five five"])]
    assert logged == [
        "drop drop-0001: 2/3 documents in kept clusters",
        "drop drop-0002: 2/2 documents in kept clusters",
    ]


def test_kept_documents_refuses_an_id_in_two_drops_when_asked():
    from climb_dagster.core.documents import kept_documents

    raw, assigned, mapping = _drops()
    raw["drop-0002"] = _Stored(pl.DataFrame({"id": ["e", "a"], "text": ["x", "y"]}))
    assert len(list(kept_documents(raw, assigned, mapping))) == 2
    with pytest.raises(
        ClimbInputError, match="duplicate document id 'a' in crawl drops 'drop-0001' and 'drop-0002'"
    ):
        list(kept_documents(raw, assigned, mapping, check_ids=True))


def test_write_export_shards_blend_and_manifest(tmp_path):
    import json

    from climb_dagster.core import storage
    from climb_dagster.core.documents import kept_documents
    from climb_dagster.core.export import ExportConfig, plan_export, write_export
    from climb_dagster.core.proxy.tokens import load_tokenizer, train_tokenizer

    tokenizer = load_tokenizer(
        train_tokenizer(["one two three four five"] * 4, tmp_path / "tok", vocab_size=300)
    )
    raw, assigned, mapping = _drops()
    config = ExportConfig(shard_rows=2, seed=3)
    plan = plan_export([0.5, 0.5], [10, 10], config)
    assert plan.token_budget == 20 and plan.capped == ()
    out = storage.make_path(tmp_path / "export")
    blend = blend_formats(plan.weights, ["a", "b"], ["p/a", "p/b"])
    about = {"experiment": "e", "super_clusters": [], "final_mixture": {"weights": [0.5, 0.5]}}
    docs = (d.documents for d in kept_documents(raw, assigned, mapping))
    manifest = write_export(out, docs, tokenizer, plan, config, blend, about)
    assert json.loads((out / "manifest.json").read_text()) == manifest
    assert json.loads((out / manifest["version_path"] / "blend.json").read_text()) == blend
    assert [p.name for p in (out / "versions").iterdir()] == [manifest["version"]]
    shards = [pl.read_parquet(tmp_path / "export" / s["file"]) for s in manifest["shards"]]
    assert sum(s.height for s in shards) == sum(s["rows"] for s in manifest["shards"])
    assert all(s.height <= 2 for s in shards) and manifest["tokens_sampled"] == sum(
        int(s["n_tokens"].sum()) for s in shards
    )
    assert (
        manifest["experiment"] == "e"
        and manifest["seed"] == 3
        and manifest["final_mixture"] == about["final_mixture"]
    )


def test_export_plan_caps_repeats_and_config_is_checked():
    from climb_dagster.core.export import ExportConfig, plan_export

    plan = plan_export([0.9, 0.1], [10, 1000], ExportConfig(token_budget=1000, max_repeat=4.0))
    assert plan.capped == (0,) and plan.uncapped_max_rate == 90.0
    np.testing.assert_allclose(plan.rates, [4.0, 0.1])
    with pytest.raises(ClimbInputError, match="shard_rows must be >= 1, got 0"):
        ExportConfig(shard_rows=0)
