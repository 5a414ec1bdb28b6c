"""Raters config (several models, each with a dimension and weight) and training a fastText rater from
labelled JSONL with `python -m climb_dagster.quality train`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.quality.base import WeightedMeanRater, build_rater, rate_documents
from climb_dagster.core.quality.config import PAPER_DIMENSIONS, load_raters, parse_raters
from climb_dagster.quality.__main__ import main as quality_main
from climb_dagster_tests.paths import DEMO_DATA

ADS = ["buy", "now", "cheap", "deal", "click", "offer", "free", "win", "discount", "limited", "sale", "$$$"]


def _labelled(tmp_path: Path, per_label: int = 60) -> tuple[Path, dict[int, list[str]]]:
    """Score 5: PostgreSQL manual pages; 3: literature; 1: seeded advertisement word salad."""
    docs = pl.read_parquet(DEMO_DATA / "drop-0001.parquet").sort("id")
    by = {
        5: docs.filter(pl.col("domain") == "postgres_docs")["text"].head(per_label).to_list(),
        3: docs.filter(pl.col("domain") == "literature")["text"].head(per_label).to_list(),
    }
    rng = np.random.default_rng(0)
    by[1] = [" ".join(rng.choice(ADS, size=40)) for _ in range(per_label)]
    path = tmp_path / "labelled.jsonl"
    rows = [{"text": t[:2000], "score": s} for s, ts in by.items() for t in ts]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path, by


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, dict, dict[int, list[str]]]:
    tmp = tmp_path_factory.mktemp("rater")
    data, by = _labelled(tmp)
    model = tmp / "models" / "quality.bin"
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert quality_main(["train", "--input", str(data), "--output", str(model), "--epoch", "20"]) == 0
    return model, json.loads(out.getvalue()), by


def test_train_reports_heldout_accuracy_above_majority(trained) -> None:
    model, report, _ = trained
    assert model.is_file() and report["model_path"] == str(model)
    assert report["n_train"] + report["n_heldout"] == 180 and report["n_heldout"] == 36
    assert report["labels"] == {"1": 60, "3": 60, "5": 60}
    # Three well-separated sources: the classifier beats the majority label by a wide margin.
    assert report["heldout_accuracy"] >= 0.9 > report["majority_accuracy"] + 0.4
    assert 0 <= report["heldout_mae"] < 1.0


def test_train_names_bad_rows(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine", "score": 3}\n{"text": "too good", "score": 9}\n')
    assert quality_main(["train", "--input", str(bad), "--output", str(tmp_path / "m.bin")]) == 2
    assert "bad.jsonl:2: field 'score' must be a number in [1, 5], got 9" in capsys.readouterr().err


def test_raters_file_with_several_models_and_weights(trained, tmp_path: Path) -> None:
    model, _, by = trained
    cfg = tmp_path / "raters.yaml"
    cfg.write_text(
        "raters:\n"
        f"  - {{dimension: quality, model: {model}, weight: 2}}\n"
        f"  - {{dimension: educational, model: 'file://{model}', weight: 1}}\n"
        "  - {dimension: gopher, kind: heuristic, weight: 1}\n"
    )
    entries = load_raters(cfg)
    assert [e.dimension for e in entries] == ["quality", "educational", "gopher"]
    rater = build_rater([e.spec() for e in entries])
    assert isinstance(rater, WeightedMeanRater) and rater.weights == (2.0, 1.0, 1.0)
    assert [r.name for r in rater.raters] == ["quality", "educational", "heuristic"]
    frame = pl.DataFrame({"text": [by[5][-1], by[1][-1]]})
    scores = rate_documents(rater, frame)
    assert ((scores >= 1) & (scores <= 5)).all() and scores[0] > scores[1] + 1.5
    # JSON works the same; the paper's four dimensions are the documented example.
    js = tmp_path / "raters.json"
    js.write_text(json.dumps({"raters": [{"dimension": d, "model": str(model)} for d in PAPER_DIMENSIONS]}))
    assert len(build_rater([e.spec() for e in load_raters(js)]).raters) == 4


def test_raters_config_errors_name_the_field() -> None:
    with pytest.raises(ClimbInputError, match=r"dimensions \['q'\] appear more than once"):
        parse_raters([{"dimension": "q", "kind": "heuristic"}, {"dimension": "q", "kind": "heuristic"}])
    with pytest.raises(ClimbInputError, match="needs `model`"):
        parse_raters([{"dimension": "edu"}])
    with pytest.raises(ClimbInputError, match=r"unknown rater fields \['path'\]"):
        parse_raters([{"dimension": "edu", "path": "x.bin"}])
    with pytest.raises(ClimbInputError, match="model '/nope.bin' not found"):
        parse_raters([{"dimension": "edu", "model": "/nope.bin"}])[0].spec()
