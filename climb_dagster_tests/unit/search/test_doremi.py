"""DoReMi: the pure Group DRO weight update, and the reference + DRO proxy runs on a tiny token store."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.search.doremi import DoReMiConfig, average_weights, dro_update


def test_weights_move_toward_the_domain_with_excess_loss() -> None:
    cfg = DoReMiConfig(step_size=1.0, smoothing=1e-3)
    w = np.full(4, 0.25)
    # Domain 2 has excess loss; domain 0's proxy is better than the reference (negative: counts as 0).
    excess = np.array([-0.5, 0.0, 0.3, 0.0])
    steps = [w]
    for _ in range(10):
        steps.append(dro_update(steps[-1], excess, cfg))
    share = [s[2] for s in steps]
    assert all(b > a for a, b in zip(share, share[1:], strict=False))
    assert steps[-1][0] == pytest.approx(steps[-1][1]) and steps[-1][0] < 0.25
    assert all(abs(s.sum() - 1) < 1e-12 and (s > 0).all() for s in steps)
    avg = average_weights(w, [excess] * 10, cfg)
    assert 0.25 < avg[2] < steps[-1][2]  # the average lags the last step
    # Smoothing keeps every domain above smoothing / K however large the excess.
    hard = dro_update(w, np.array([0.0, 0.0, 1e6, 0.0]), DoReMiConfig(smoothing=0.1))
    assert hard.min() == pytest.approx(0.1 / 4) and np.isfinite(hard).all()


def test_dro_update_rejects_bad_input() -> None:
    cfg = DoReMiConfig()
    with pytest.raises(ClimbInputError, match="shape"):
        dro_update(np.full(3, 1 / 3), np.zeros(2), cfg)
    with pytest.raises(ClimbInputError, match="finite"):
        dro_update(np.full(2, 0.5), np.array([np.nan, 0.0]), cfg)
    with pytest.raises(ClimbInputError, match="step_size"):
        DoReMiConfig(step_size=0)
    with pytest.raises(ClimbInputError, match="no DRO steps"):
        average_weights(np.full(2, 0.5), [], cfg)


@pytest.mark.slow
def test_doremi_upweights_the_domain_the_reference_learned(tmp_path) -> None:
    """Reference trained almost only on domain 0: the uniform DRO proxy lags it there, so DoReMi moves
    weight to domain 0; the result is cached by content hash."""
    from upath import UPath

    from climb_dagster.core.proxy.config import ProxyConfig
    from climb_dagster.core.proxy.doremi import doremi_mixture
    from climb_dagster_tests.unit import proxy_corpus as pc

    cfg = ProxyConfig.tiny(pc.TINY_VOCAB)
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, steps=40))
    prior = [0.98, 0.01, 0.01]
    result, cached = doremi_mixture(pc.store(), prior, cfg, 0, UPath(tmp_path), DoReMiConfig(step_size=5.0))
    w = np.asarray(result.weights)
    assert not cached and result.proxies_trained == 2 and result.steps == 40
    assert abs(w.sum() - 1) < 1e-9 and (w > 0).all()
    assert w[0] > 1 / 3 and w[0] == w.max(), w
    again, cached = doremi_mixture(pc.store(), prior, cfg, 0, UPath(tmp_path), DoReMiConfig(step_size=5.0))
    assert cached and again.weights == result.weights
    json.dumps(result.to_dict(), allow_nan=False)


def test_doremi_is_an_experiment_strategy_with_its_proxies_in_the_budget() -> None:
    from climb_dagster.core.experiment.config import ExperimentConfig
    from climb_dagster.core.search.strategies import propose_round, select_final
    from climb_dagster.core.targets.config import TargetConfig

    exp = ExperimentConfig("d", TargetConfig(documents_path="t.parquet"), strategy="doremi", rounds=(6, 3, 2))
    assert exp.rounds == (2,) and exp.budget == 4 and exp.extra_proxies == 2
    cfg = exp.strategy_config()
    assert cfg.final == "first"
    with pytest.raises(ClimbInputError, match="does not propose"):
        propose_round(cfg, 0, None, None, np.full(3, 1 / 3), 0)
    hm = np.array([[0.2, 0.8], [0.5, 0.5]])
    # The answer is DoReMi's own mixture (row 0) even when the baseline scored better.
    assert select_final(cfg, None, hm, np.array([3.0, 1.0]), 0).tolist() == [0.2, 0.8]
