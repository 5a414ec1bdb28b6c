"""bench transfer on its quick protocol: every mixture is trained with every seed at both sizes, only validation
splits are read, and the report holds each target's noise and rank-transfer figures."""

from __future__ import annotations

import numpy as np
import pytest

from climb_dagster_tests.unit.bench.protocol_args import quick_args

# Builds a real lab and trains 16 tiny models: ~1 minute.
pytestmark = pytest.mark.slow


def test_quick_protocol_reports_noise_and_rank_transfer_on_validation(tmp_path):
    from climb_dagster.bench import transfer

    args = quick_args(transfer, tmp_path)
    out = transfer.run(args)
    assert out["split"] == "validation" and out["mixtures"] == 4 and out["noise_seeds"] == 2
    lab = out["lab_details"][0]
    assert lab["runs_trained"] == {"proxy": 8, "transfer": 8}
    mixtures = np.asarray(lab["mixtures"])
    assert mixtures.shape[0] == 4 and np.allclose(mixtures.sum(axis=1), 1.0, atol=1e-3)
    for target, row in lab["targets"].items():
        assert np.asarray(row["scores"]["transfer"]).shape == (4, 2), target
        assert {"seed_std", "reliability", "seed_rank"} <= set(row["proxy_noise"])
        assert {"mean_rank", "one_seed_rank", "top_half_rank", "best_regret"} == set(row["rank_transfer"])
    assert set(out["summary"]) == {"domain", "blend", "mc"}
    from climb_dagster.bench.results_transfer import render

    text = render(out)
    assert "validation splits" in text and all(f"| {t} |" in text for t in ("domain", "blend", "mc"))
    # Run again: every run comes from the work folder's cache.
    again = transfer.run(args)
    assert again["lab_details"][0]["runs_trained"] == {"proxy": 0, "transfer": 0}
    assert again["summary"] == out["summary"]
