from __future__ import annotations

import argparse
import json

import pytest

from climb_dagster_tests.unit import proxy_corpus as pc


@pytest.mark.slow
def test_proxy_bench_runs_both_trainers_on_real_text() -> None:
    from climb_dagster.bench import proxy

    parser = argparse.ArgumentParser()
    proxy.add_arguments(parser)
    args = parser.parse_args(
        [
            "--steps",
            "3",
            "--repeats",
            "1",
            "--vocab-size",
            "512",
            "--tokenizer-docs",
            "200",
            "--corpus",
            f"{pc.LICENSES}/*",
            "--no-hf-default-threads",
        ]
    )
    out = proxy.run(args)
    json.dumps(out, allow_nan=False)
    for key in ("ours_tokens_per_s", "hf_trainer_tokens_per_s", "ratio", "mfu", "peak_flops_measured"):
        assert out[key] > 0, key
    assert out["ratio"] == pytest.approx(out["ours_tokens_per_s"] / out["hf_trainer_tokens_per_s"], rel=1e-2)
    assert 0 < out["mfu"] < 1.5
    assert out["tokens_per_run"] == 3 * 16 * 128
    # Same init, same windows, same optimiser: the two trainers should end close to each other.
    assert out["ours_loss_last"] == pytest.approx(out["hf_loss_last"], abs=0.3)
