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
            "--pack",
            "2",
            "--parallel-compare",
            "2",
        ]
    )
    out = proxy.run(args)
    json.dumps(out, allow_nan=False)
    for key in ("ours_tokens_per_s", "reference_tokens_per_s", "ratio", "mfu", "peak_flops_measured"):
        assert out[key] > 0, key
    assert out["ratio"] == pytest.approx(out["ours_tokens_per_s"] / out["reference_tokens_per_s"], rel=1e-2)
    assert 0 < out["mfu"] < 1.5
    assert out["tokens_per_run"] == 3 * 16 * 128
    # Same init, same windows, same optimiser: the two trainers should end close to each other.
    assert out["ours_loss_last"] == pytest.approx(out["reference_loss_last"], abs=0.3)
    assert out["device"] == "cpu" and out["precision"] == "fp32" and out["size"] == "demo"
    pack = out["pack"]
    assert pack["m"] == 2 and pack["aggregate_tokens_per_s"] > 0 and pack["ratio_vs_one_at_a_time"] > 0
    # fp32 on CPU: every member of the pack follows its separate run.
    assert 0 <= pack["max_rel_loss_diff_vs_separate"] < 1e-4
    par = out["parallel"]
    assert par["proxies"] == 2 and par["faster"] in ("threads", "processes")
    assert par["threads_tokens_per_s"] > 0 and par["processes_tokens_per_s"] > 0
    # Same seeds and windows in both modes: only the thread count's summation order differs.
    assert par["max_abs_loss_diff"] < 1e-3


def test_proxy_bench_times_e2e_sizes_without_the_reference() -> None:
    """`--size e2e-proxy` is `bench e2e`'s proxy (what the GPU check times); `--no-reference` leaves the Trainer
    fields empty instead of failing, as on a machine without accelerate."""
    from climb_dagster.bench import proxy
    from climb_dagster.bench.proxy_sizes import proxy_config

    parser = argparse.ArgumentParser()
    proxy.add_arguments(parser)
    args = parser.parse_args(
        "--size e2e-proxy --steps 2 --repeats 1 --vocab-size 512 --tokenizer-docs 200 --no-reference "
        f"--compile off --parallel-compare 0 --corpus {pc.LICENSES}/*".split()
    )
    out = proxy.run(args)
    json.dumps(out, allow_nan=False)
    small = proxy_config("small", None)
    assert out["config"]["model"]["d_model"] == small.model.d_model
    assert out["config"]["train"]["batch_size"] == small.train.batch_size
    assert out["config"]["train"]["compile"] == "off"
    assert out["ours_tokens_per_s"] > 0 and out["reference_tokens_per_s"] is None and out["ratio"] is None
    assert out["reference_error"] is None and out["reference_wall_s"] == []
