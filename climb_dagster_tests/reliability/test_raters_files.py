"""Issue 28, item 5: a damaged raters model is refused naming the file, never used silently.

Real fastText models trained by `python -m climb_dagster.quality train`: truncated to half its bytes (fastText
used to load it and rate every document 3.0), to 100 and to 8 bytes (fastText used to fail with `min() arg is
an empty sequence` / `std::bad_alloc`, naming no file); a sha256 pin that does not match; a model damaged in
place whose scores no longer vary, and a one-label model (constant raters). A custom rater that is constant
over the drop is flagged in the asset's metadata.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
import pytest

from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.quality.base import build_rater, rate_documents
from climb_dagster.core.quality.config import load_raters
from climb_dagster.partitions import crawl_drops
from climb_dagster.quality.__main__ import main as quality_main
from climb_dagster_tests.assets.bootstrap_fixture import all_assets
from climb_dagster_tests.paths import DEMO_DATA
from climb_dagster_tests.reliability.helpers import (
    failure_text,
    files_under,
    local_resources,
    materialization_meta,
)
from climb_dagster_tests.unit.quality.test_config import _labelled
from climb_dagster_tests.unit.quality.test_model_file import train_fasttext

KEY = "drop-0001"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    tmp = tmp_path_factory.mktemp("raters")
    data, _ = _labelled(tmp)
    model = tmp / "quality.bin"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert quality_main(["train", "--input", str(data), "--output", str(model), "--epoch", "10"]) == 0
    return model, json.loads(out.getvalue())


def _raters_file(tmp_path: Path, model: Path, **extra) -> Path:
    path = tmp_path / "raters.json"
    path.write_text(json.dumps({"raters": [{"dimension": "quality", "model": str(model), **extra}]}))
    return path


def _load(raters: Path):
    return build_rater([entry.spec() for entry in load_raters(raters)])


def test_the_train_command_writes_the_sha256_that_pins_the_model(trained, tmp_path: Path):
    model, report = trained
    assert report["sha256"] == hashlib.sha256(model.read_bytes()).hexdigest()
    rater = _load(_raters_file(tmp_path, model, sha256=report["sha256"]))
    scores = rate_documents(
        rater, pl.DataFrame({"text": ["the server configuration file", "buy now cheap deal"]})
    )
    assert scores[0] != scores[1]


@pytest.mark.parametrize("keep", ["half", "100", "8"])
def test_truncated_model_is_refused_naming_the_file(trained, tmp_path: Path, keep: str):
    model, _ = trained
    data = model.read_bytes()
    cut = tmp_path / "quality.bin"
    cut.write_bytes(data[: len(data) // 2 if keep == "half" else int(keep)])
    with pytest.raises(ClimbInputError, match="is not a complete fastText model") as info:
        _load(_raters_file(tmp_path, cut))
    assert f"fastText model {str(cut)!r}" in str(info.value) and "copy the file again" in str(info.value)


def test_sha256_mismatch_is_refused_naming_file_and_both_digests(trained, tmp_path: Path):
    model, report = trained
    other = tmp_path / "other.bin"
    other.write_bytes(model.read_bytes()[:-1] + b"\x00")
    with pytest.raises(ClimbInputError) as info:
        _load(_raters_file(tmp_path, other, sha256=report["sha256"]))
    text = str(info.value)
    assert str(other) in text and report["sha256"] in text
    assert hashlib.sha256(other.read_bytes()).hexdigest() in text
    with pytest.raises(ClimbInputError, match="sha256 must be 64 hex digits"):
        load_raters(_raters_file(tmp_path, model, sha256="abc"))


def test_constant_raters_are_refused(trained, tmp_path: Path):
    """The output matrix zeroed in place (what an interrupted upload left, at the same length): every label
    equally likely, every document 3.0. And a model trained on one label only."""
    import fasttext

    model, _ = trained
    rows, dim = fasttext.load_model(str(model)).get_output_matrix().shape
    data = bytearray(model.read_bytes())
    data[-4 * rows * dim :] = bytes(4 * rows * dim)
    zeroed = tmp_path / "zeroed.bin"
    zeroed.write_bytes(bytes(data))
    with pytest.raises(ClimbInputError, match=r"rates all \d+ probe documents 3.0000") as info:
        _load(_raters_file(tmp_path, zeroed))
    assert str(zeroed) in str(info.value)

    lines = tmp_path / "one.txt"
    lines.write_text("".join(f"__label__5 document number {i} about tables\n" for i in range(50)))
    one = tmp_path / "one.bin"
    train_fasttext(lines, epoch=2, dim=8).save_model(str(one))
    with pytest.raises(ClimbInputError, match=r"rates all \d+ probe documents 5.0000"):
        _load(_raters_file(tmp_path, one))


def _drop(home: Path) -> None:
    docs = pl.read_parquet(DEMO_DATA / f"{KEY}.parquet").sort("id").head(120)
    docs.select("id", "text").write_parquet(home / "landing" / f"{KEY}.parquet")


def _quality(home: Path, config: dict) -> dg.ExecuteInProcessResult:
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(crawl_drops.name, [KEY])
    return dg.materialize(
        all_assets(),
        selection=["raw_documents", "document_quality"],
        partition_key=KEY,
        instance=instance,
        resources=local_resources(home),
        run_config={"ops": {"document_quality": {"config": config}}},
        raise_on_error=False,
    )


def test_document_quality_refuses_a_truncated_model_and_writes_no_scores(
    trained, fresh_home: Path, tmp_path: Path
):
    model, _ = trained
    _drop(fresh_home)
    cut = tmp_path / "quality.bin"
    cut.write_bytes(model.read_bytes()[: model.stat().st_size // 2])
    result = _quality(fresh_home, {"raters_file": str(_raters_file(tmp_path, cut))})
    assert not result.success
    text = failure_text(result)
    assert "ClimbInputError" in text and str(cut) in text and "not a complete fastText model" in text
    assert not [f for f in files_under(fresh_home / "storage") if f.startswith("document_quality")]


class ConstantRater:
    name = "constant"

    def rate(self, docs: pl.DataFrame) -> np.ndarray:
        return np.full(docs.height, 4.0)


def test_a_constant_custom_rater_is_flagged(fresh_home: Path):
    _drop(fresh_home)
    result = _quality(fresh_home, {"raters": ["heuristic", f"{__name__}:ConstantRater"]})
    assert result.success
    assert materialization_meta(result, "document_quality")["constant_raters"] == "constant"
