"""`python -m climb_dagster.bench cost`: the cost estimate against a real proxy's peak RSS, time and checkpoint."""

from __future__ import annotations

import argparse
import json

import pytest

from climb_dagster_tests.unit import proxy_corpus as pc


@pytest.mark.slow
def test_cost_bench_measures_real_proxies_against_the_estimate() -> None:
    from climb_dagster.bench import cost

    parser = argparse.ArgumentParser()
    cost.add_arguments(parser)
    args = parser.parse_args(
        ["--cases", "demo,pack4", "--steps", "2", "--vocab-size", "512", "--tokenizer-docs", "200"]
        + ["--corpus", f"{pc.LICENSES}/*", "--no-runtime"]
    )
    out = cost.run(args)
    json.dumps(out, allow_nan=False)
    assert [row["case"] for row in out["cases"]] == ["demo", "pack4"]
    for row in out["cases"]:
        assert row["measured_peak_above_bytes"] > 0 and row["wall_s"] > 0 and row["estimate_s"] > 0
        # The memory model is meant to be within tens of percent of the peak RSS (docs/cost.md).
        assert 0.5 < row["estimate_over_measured"] < 2.0, row
        assert row["checkpoint_weights_bytes"] == pytest.approx(row["estimate_checkpoint_bytes"], rel=0.01)
    assert out["cases"][1]["tokens"] == 4 * out["cases"][0]["tokens"]
