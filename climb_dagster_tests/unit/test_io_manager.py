import numpy as np
import polars as pl
import pytest

from climb_dagster.core import storage
from climb_dagster.core.artifacts import ModelText, TensorBundle
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
