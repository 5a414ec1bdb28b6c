"""What the UI shows: super-cluster labels, tables for Dagster's table metadata, the final-vs-natural plot."""

from __future__ import annotations

import io

import numpy as np
import polars as pl
import pytest

from climb_dagster.assets.metadata import table
from climb_dagster.core.clustering.kmeans import nonfinite_rows
from climb_dagster.core.clustering.superclusters import label_key, supercluster_label, supercluster_labels
from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.experiment.records import FinalMixture
from climb_dagster.core.export.training_set import blend_formats
from climb_dagster.core.report.plots import final_vs_natural_png, weights_bar_png
from climb_dagster.core.report.tables import column_types, named_weights, table_rows
from climb_dagster.tracking.experiment_tree import weight_param

STATS = pl.DataFrame(
    {
        "super_cluster": [1, 0, 2],
        "top_terms": [["postgres", "query", "index", "vacuum"], ["psalm", "lord"], []],
    }
)


def test_labels_are_id_prefixed_top_terms_stable_and_unique():
    labels = supercluster_labels(STATS, 4)
    assert labels == ["00 psalm\u00b7lord", "01 postgres\u00b7query\u00b7index", "02", "03"]
    assert labels == supercluster_labels(STATS.reverse(), 4), "row order does not matter"
    same_terms = pl.DataFrame({"super_cluster": [0, 1], "top_terms": [["a", "b"], ["a", "b"]]})
    assert len(set(supercluster_labels(same_terms, 2))) == 2
    assert supercluster_labels(STATS, 120)[7] == "007", "ids are padded to the widest"
    assert supercluster_label(3, "lexicon") == "03 lexicon"
    assert supercluster_labels(None, 2) == ["00", "01"]


def test_label_key_and_mlflow_weight_param_names():
    labels = supercluster_labels(STATS, 3)
    assert label_key(labels[1]) == "01_postgres_query_index"
    assert weight_param("w_001", labels) == "w_01_postgres_query_index"
    assert weight_param("w_001", None) == "w_001"
    assert weight_param("w_005", labels) == "w_005", "an id past the labels keeps its column name"


def test_tables_have_typed_columns_and_plain_cells():
    df = pl.DataFrame(
        {"id": [1, 2], "w": [0.123456, float("nan")], "terms": [["a", "b"], []], "ok": [True, False]}
    )
    assert column_types(df) == {"id": "int", "w": "float", "terms": "string", "ok": "bool"}
    assert table_rows(df, decimals=3) == [
        {"id": 1, "w": 0.123, "terms": "a, b", "ok": True},
        {"id": 2, "w": "nan", "terms": "", "ok": False},
    ]
    assert len(table_rows(df, max_rows=1)) == 1
    value = table(df, descriptions={"w": "weight"})
    assert [c.name for c in value.schema.columns] == df.columns
    assert value.schema.columns[1].description == "weight" and value.records[0].data["terms"] == "a, b"


def test_named_weights_renames_weight_columns_only():
    df = pl.DataFrame({"mixture_id": ["r1-000"], "w_000": [0.25], "w_001": [0.75]})
    assert named_weights(df, ["00 a", "01 b"]).columns == ["mixture_id", "00 a", "01 b"]


def _png_size(png: bytes) -> tuple[int, int]:
    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        return image.size


def test_final_vs_natural_plot_and_labelled_weights():
    labels = supercluster_labels(STATS, 3)
    png = final_vs_natural_png([0.5, 0.3, 0.2], [0.2, 0.3, 0.5], labels, "final")
    assert png.startswith(b"\x89PNG") and _png_size(png)[0] >= 500
    bars = weights_bar_png(np.array([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]]), "round 1", labels)
    assert bars.startswith(b"\x89PNG")
    with pytest.raises(ClimbInputError, match="2 labels for 3"):
        weights_bar_png(np.ones((1, 3)) / 3, "x", labels[:2])
    with pytest.raises(ClimbInputError, match="must be equal"):
        final_vs_natural_png([1.0], [0.5, 0.5], None, "x")


def test_blend_json_carries_labels_beside_the_ids():
    blend = blend_formats([0.75, 0.25], ["a", "b"], ["p/a", "p/b"], labels=["00 x", "01 y"])
    assert blend["weights"] == {"a": 0.75, "b": 0.25}
    assert blend["labels"] == {"a": "00 x", "b": "01 y"}
    assert "labels" not in blend_formats([1.0], ["a"], ["p/a"])
    with pytest.raises(ClimbInputError, match="1 labels for 2"):
        blend_formats([0.5, 0.5], ["a", "b"], ["p", "q"], labels=["00 x"])


def test_final_mixture_labels_round_trip_and_older_files_still_read():
    args = ("e1", "climb", "minimize", (0.75, 0.25), (0.5, 0.5), 1.0, 2.0, 3.0, 0.5, 8, 7, "h")
    final = FinalMixture(*args, labels=("00 x", "01 y"))
    assert FinalMixture.from_dict(final.to_dict()) == final
    older = {k: v for k, v in final.to_dict().items() if k != "labels"}
    assert FinalMixture.from_dict(older).labels == ()
    with pytest.raises(ClimbInputError, match="1 labels, 2 weights"):
        FinalMixture(*args, labels=("00 x",))


def test_nonfinite_rows_counts_rows_chunk_by_chunk():
    x = np.zeros((7, 3), dtype=np.float32)
    x[1, 2], x[5, 0], x[5, 1] = np.nan, np.inf, -np.inf
    assert nonfinite_rows(x, chunk_rows=2) == 2
    assert nonfinite_rows(np.zeros((0, 3))) == 0


def test_demo_prints_the_final_mixture_by_label(capsys):
    from climb_dagster.demo.run import _print_final

    args = ("e1", "climb", "minimize", (0.75, 0.25), (0.5, 0.5), 1.0, 2.0, 3.0, 0.5, 8, 7, "h")
    _print_final(FinalMixture(*args), STATS)
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split() == ["00", "psalm\u00b7lord", "0.750", "0.500"]
    assert lines[2].startswith("01 postgres\u00b7query\u00b7index")


def test_failed_proxies_check_warns_with_the_count_and_fails_when_none_succeeded():
    import dagster as dg

    from climb_dagster.assets.rounds.evaluations import failed_proxies_check
    from climb_dagster.core.experiment.config import ExperimentConfig
    from climb_dagster.core.experiment.records import ExperimentRecord
    from climb_dagster.core.targets.config import TargetConfig

    config = ExperimentConfig("t", TargetConfig(documents_path="/t.parquet"), rounds=(4, 2, 1))
    three_rounds = ExperimentRecord(config, "store", "/s/tokens", {}, "h")
    check = failed_proxies_check(1)
    evals = pl.DataFrame({"mixture_id": ["r1-000", "r1-001", "r1-002"], "status": ["ok", "diverged", "ok"]})
    some = check(evaluations=evals, experiment=three_rounds)
    assert not some.passed and some.severity == dg.AssetCheckSeverity.WARN
    assert some.metadata["failed"].value == 1 and some.metadata["failed_mixtures"].value == ["r1-001"]
    none = check(evaluations=evals.with_columns(pl.lit("diverged").alias("status")), experiment=three_rounds)
    assert not none.passed and none.severity == dg.AssetCheckSeverity.ERROR
    assert check(evaluations=evals.filter(pl.col("status") == "ok"), experiment=three_rounds).passed
    assert check(evaluations=evals.head(0), experiment=three_rounds).passed, "a round with no proxies passes"
    unused = failed_proxies_check(4)(evaluations=evals.head(0), experiment=three_rounds)
    assert not unused.passed and unused.severity == dg.AssetCheckSeverity.WARN, "round 4 of 3: visibly skipped"


def test_final_weights_sum_check():
    from climb_dagster.assets.final import WEIGHT_SUM_TOLERANCE, _weights_sum_check

    assert _weights_sum_check(np.array([0.25, 0.75])).passed
    assert not _weights_sum_check(np.array([0.25, 0.75 + 10 * WEIGHT_SUM_TOLERANCE])).passed
    assert not _weights_sum_check(np.array([1.5, -0.5])).passed
    assert not _weights_sum_check(np.array([np.nan, 1.0])).passed
