"""`python -m climb_dagster.bench embed` reports the figures issue 13 asks for, on a few demo documents."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from climb_dagster.bench import embed


@pytest.mark.slow
def test_embed_bench_reports_speed_agreement_and_chosen_sizes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLIMB_CACHE_DIR", str(tmp_path))
    parser = argparse.ArgumentParser()
    embed.add_arguments(parser)
    report = embed.run(parser.parse_args(["--docs", "12", "--rounds", "2", "--device", "cpu"]))
    for key in ("pipeline_tokens_per_s", "reference_tokens_per_s", "ratio", "mean_cosine", "min_cosine"):
        assert report[key] > 0, key
    assert report["precision"] in ("bf16", "onnx-int8", "fp32")
    assert (report["token_budget"], report["max_batch_size"], report["reference_precision"]) == (
        8192,
        256,
        "fp32",
    )
    assert report["mean_cosine"] >= 0.98
