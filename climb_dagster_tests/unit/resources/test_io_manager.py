import json

import numpy as np
import polars as pl
import pytest

from climb_dagster.core.common.artifacts import ModelText, TensorBundle
from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.experiment.config import ExperimentConfig
from climb_dagster.core.experiment.records import ExperimentRecord, FinalMixture, TokenizerRef, TokenStoreRef
from climb_dagster.core.io import storage
from climb_dagster.core.targets.config import TargetConfig
from climb_dagster.resources.io_manager import read_value, write_value


@pytest.fixture
def base(tmp_path):
    return storage.make_path(tmp_path / "store")


def test_dataframe_round_trip(base):
    df = pl.DataFrame({"id": ["a", "b"], "x": [1.5, 2.5]})
    target = write_value(base / "asset" / "p1", df)
    assert target.name == "p1.parquet"
    assert read_value(base / "asset" / "p1").equals(df)


def test_array_round_trip_is_read_only_memmap(base):
    arr = np.arange(12, dtype=np.float32).reshape(3, 4)
    write_value(base / "emb", arr)
    out = read_value(base / "emb")
    assert isinstance(out, np.memmap)
    np.testing.assert_array_equal(out, arr)
    with pytest.raises(ValueError):
        out[0, 0] = 1


def test_object_arrays_are_refused(base):
    with pytest.raises(TypeError, match="pickle"):
        write_value(base / "bad", np.array([{"a": 1}], dtype=object))


def test_json_model_text_and_tensors(base):
    write_value(base / "cfg", {"a": [1, 2], "b": "x"})
    assert read_value(base / "cfg") == {"a": [1, 2], "b": "x"}
    write_value(base / "model", ModelText(("tree0\n", "tree1\n"), {"direction": "minimize"}))
    model = read_value(base / "model")
    assert model.texts == ("tree0\n", "tree1\n") and model.metadata == {"direction": "minimize"}
    write_value(base / "w", TensorBundle({"c": np.ones((2, 2), np.float32)}, {"k": "v"}))
    bundle = read_value(base / "w")
    np.testing.assert_array_equal(bundle.tensors["c"], np.ones((2, 2)))
    assert bundle.metadata == {"k": "v"}


def _records() -> list:
    store = TokenStoreRef("/s/cluster_tokens/k1", "k1", 512, (30, 10), (3, 1))
    config = ExperimentConfig(name="e1", target=TargetConfig(documents_path="/t.parquet"), rounds=(4, 2, 2))
    spec = {
        "name": "documents_loss",
        "direction": "minimize",
        "evaluators": [{"kind": "loss", "path": "/s/targets/e1/w.npy", "weight": 1.0}],
        "fingerprint": "f00d",
    }
    final = FinalMixture("e1", "climb", "minimize", (0.75, 0.25), (0.75, 0.25), 1.0, 2.0, 3.0, 0.5, 8, 7, "h")
    tokenizer = TokenizerRef("/s/proxy_tokenizer/ab12", "ab12", 512)
    return [store, ExperimentRecord.prepare(config, store, spec), final, tokenizer]


@pytest.mark.parametrize("index", [0, 1, 2, 3])
def test_records_round_trip_as_readable_json(base, index):
    record = _records()[index]
    target = write_value(base / "rec", record)
    assert target.name == "rec.json"
    stored = json.loads(target.read_text())
    # Readable without this package: the record's own fields, plus its type.
    assert stored == {"record_type": type(record).__name__, **record.to_dict()}
    assert read_value(base / "rec") == record
    assert type(record).from_dict(json.loads(json.dumps(record.to_dict()))) == record


def test_experiment_record_keeps_the_flat_layout_and_data_key(base):
    store, record, *_ = _records()
    data = record.to_dict()
    assert data["name"] == "e1" and data["rounds"] == [4, 2, 2] and data["token_store"] == "k1"
    assert data["token_store_path"] == store.path and data["config_hash"] == record.config.content_hash()
    # The data key names the token store and the target's content, never where the files are.
    moved = ExperimentRecord.from_dict(
        {
            **data,
            "target_spec": {
                **data["target_spec"],
                "evaluators": [{**data["target_spec"]["evaluators"][0], "path": "s3://elsewhere/w.npy"}],
            },
        }
    )
    assert moved.data_key() == record.data_key() and record.data_key().startswith("k1:f00d:")
    assert record.direction == "minimize"
    np.testing.assert_allclose(store.prior(), [0.75, 0.25])


def test_unknown_record_type_names_the_file(base):
    (base / "bad.json").parent.mkdir(parents=True, exist_ok=True)
    (base / "bad.json").write_text(json.dumps({"record_type": "Nope", "a": 1}))
    with pytest.raises(ClimbInputError, match="bad.json.*'Nope'"):
        read_value(base / "bad")


def test_incomplete_record_names_the_missing_field():
    with pytest.raises(ClimbInputError, match="'documents'"):
        TokenStoreRef.from_dict({"path": "p", "key": "k", "vocab_size": 3, "tokens": [1]})


def test_unsupported_type_names_itself(base):
    with pytest.raises(TypeError, match="set"):
        write_value(base / "x", {1, 2})


def test_missing_value(base):
    with pytest.raises(FileNotFoundError):
        read_value(base / "nothing")


def test_failed_write_leaves_nothing(base, monkeypatch):
    def boom(f, *a, **k):
        f.write(b"partial")
        raise RuntimeError("disk full")

    monkeypatch.setattr(np, "save", boom)
    with pytest.raises(RuntimeError):
        write_value(base / "emb", np.ones(3))
    assert list((base).iterdir()) == []


def test_io_manager_in_materialize(tmp_path):
    import dagster as dg

    from climb_dagster.resources.io_manager import ClimbIOManagerFactory

    @dg.asset
    def table() -> pl.DataFrame:
        return pl.DataFrame({"a": [1, 2, 3]})

    @dg.asset
    def total(table: pl.DataFrame) -> dict:
        return {"sum": int(table["a"].sum())}

    result = dg.materialize(
        [table, total], resources={"io_manager": ClimbIOManagerFactory(base_path=str(tmp_path))}
    )
    assert result.success
    assert (tmp_path / "table.parquet").exists()
    assert read_value(storage.make_path(tmp_path) / "total") == {"sum": 6}


def test_lazy_inputs_are_handles(tmp_path):
    import dagster as dg

    from climb_dagster.resources.io_manager import LAZY, ClimbIOManagerFactory, StoredValue

    parts = dg.StaticPartitionsDefinition(["a", "b"])

    @dg.asset(partitions_def=parts)
    def per_part(context) -> pl.DataFrame:
        return pl.DataFrame({"p": [context.partition_key]})

    seen = {}

    @dg.asset(ins={"per_part": dg.AssetIn(metadata={LAZY: True})})
    def fan_in(per_part: dict) -> dict:
        seen.update({k: type(v) for k, v in per_part.items()})
        return {k: v.load()["p"][0] for k, v in per_part.items()}

    resources = {"io_manager": ClimbIOManagerFactory(base_path=str(tmp_path))}
    for key in ("a", "b"):
        assert dg.materialize([per_part], partition_key=key, resources=resources).success
    assert dg.materialize([per_part, fan_in], selection=[fan_in], resources=resources).success
    assert seen == {"a": StoredValue, "b": StoredValue}
    assert read_value(storage.make_path(tmp_path) / "fan_in") == {"a": "a", "b": "b"}


def test_a_dict_stored_before_its_output_became_a_record_is_read_as_that_record(tmp_path):
    """proxy_tokenizer was a plain dict before TokenizerRef: a deployment's stored value (no record_type)
    still reaches readers that expect the record; other dict inputs stay dicts."""
    import dagster as dg

    from climb_dagster.resources.io_manager import ClimbIOManagerFactory

    write_value(storage.make_path(tmp_path) / "tok", {"path": "/s/tok", "sha256": "ab", "vocab_size": 300})
    write_value(storage.make_path(tmp_path) / "plain", {"path": "/s/tok"})
    seen = {}

    @dg.asset
    def tok() -> TokenizerRef:
        raise AssertionError("not materialized in this test")

    @dg.asset
    def plain() -> dict:
        raise AssertionError("not materialized in this test")

    @dg.asset
    def reader(tok: TokenizerRef, plain: dict) -> dict:
        seen.update(tok=tok, plain=plain)
        return {}

    resources = {"io_manager": ClimbIOManagerFactory(base_path=str(tmp_path))}
    assert dg.materialize([tok, plain, reader], selection=[reader], resources=resources).success
    assert seen == {"tok": TokenizerRef("/s/tok", "ab", 300), "plain": {"path": "/s/tok"}}
