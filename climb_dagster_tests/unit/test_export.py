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
