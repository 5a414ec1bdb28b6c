"""The one training loop: its LR schedule, and the CPU losses of the three loops it replaced (frozen_loops.py)
bit for bit: a single proxy, a pack, DoReMi's reference and DRO proxies; with clipping on and off, a
diverging run, a diverging pack member, a run continued from a checkpoint and the bf16 autocast path."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from climb_dagster.core.proxy.config import ProxyConfig, ProxyTrainConfig
from climb_dagster.core.proxy.doremi import train_doremi
from climb_dagster.core.proxy.loop import lr_at
from climb_dagster.core.proxy.model import load_model
from climb_dagster.core.proxy.pack import train_pack
from climb_dagster.core.proxy.train import ProxyResult, train_proxy
from climb_dagster.core.search.doremi import DoReMiConfig
from climb_dagster_tests.unit import proxy_corpus as pc
from climb_dagster_tests.unit.proxy import frozen_loops as frozen

MIXES = [[0.5, 0.25, 0.25], [0.1, 0.3, 0.6], [1 / 3, 1 / 3, 1 / 3]]
SEEDS = [0, 3, 7]


def tiny(**train: object) -> ProxyConfig:
    """The tiny proxy with two layers: with one, the optimizer's parameter order is the module's, and a
    loop that clipped in the wrong order would go unnoticed."""
    cfg = ProxyConfig.tiny(pc.TINY_VOCAB)
    train.setdefault("warmup_steps", min(cfg.train.warmup_steps, int(train.get("steps", cfg.train.steps))))
    model = dataclasses.replace(cfg.model, n_layers=2)
    return dataclasses.replace(cfg, model=model, train=dataclasses.replace(cfg.train, **train))


def assert_same(result: ProxyResult, reference: frozen.Run) -> None:
    """Same status, reason and steps, and the same float64 losses bit for bit (NaN included)."""
    losses, status, reason, done = reference
    assert (result.status, result.reason, result.steps) == (status, reason, done)
    assert result.step_losses.dtype == np.float64 and result.step_losses.shape == losses.shape
    assert result.step_losses.tobytes() == losses.tobytes()


@pytest.mark.parametrize(
    "config",
    [
        pytest.param(tiny(), id="default-clip"),
        pytest.param(tiny(grad_clip=0.05), id="clip-active"),
        pytest.param(tiny(grad_clip=0.0), id="no-clip"),
        pytest.param(tiny(steps=12, check_every=5, precision="bf16"), id="bf16-autocast"),
        pytest.param(tiny(lr=1e6, warmup_steps=0, steps=20, check_every=3), id="diverges"),
    ],
)
def test_single_proxy_losses_are_unchanged(config: ProxyConfig) -> None:
    ours = train_proxy(pc.store(), MIXES[0], config, seed=0)
    reference, _ = frozen.single(pc.store(), MIXES[0], config, 0)
    assert_same(ours, reference)
    if config.train.lr == 1e6:
        assert not ours.ok and ours.steps < config.train.steps


def test_single_proxy_from_a_checkpoint_is_unchanged(tmp_path: Path) -> None:
    base = train_proxy(pc.store(), MIXES[1], tiny(steps=4), seed=1, out_dir=tmp_path / "base")
    config = tiny(steps=6)
    ours = train_proxy(pc.store(), MIXES[0], config, seed=2, init_from=base.model_dir)
    reference, _ = frozen.single(pc.store(), MIXES[0], config, 2, init_from=base.model_dir)
    assert ours.ok
    assert_same(ours, reference)


@pytest.mark.parametrize(
    "config",
    [
        pytest.param(tiny(), id="default-clip"),
        pytest.param(tiny(grad_clip=0.05, steps=12), id="clip-active"),
        pytest.param(tiny(steps=12, check_every=5, precision="bf16"), id="bf16-autocast"),
    ],
)
def test_pack_losses_are_unchanged(config: ProxyConfig) -> None:
    ours = train_pack(pc.store(), MIXES, config, SEEDS)
    reference = frozen.pack(pc.store(), MIXES, config, SEEDS)
    for result, ref in zip(ours, reference, strict=True):
        assert result.ok
        assert_same(result, ref)


def test_pack_with_a_diverging_member_is_unchanged(tmp_path: Path) -> None:
    """The member that starts from NaN weights is dropped at the first check; the others go on."""
    seed_run = train_proxy(pc.store(), MIXES[0], tiny(steps=2), seed=0, out_dir=tmp_path / "ok")
    model = load_model(seed_run.model_dir)
    with torch.no_grad():
        model.model.layers[0].mlp.down_proj.weight[0, 0] = float("nan")
    model.save_pretrained(tmp_path / "nan")
    config = tiny(steps=12, check_every=4)
    sources = [None, tmp_path / "nan", None]
    ours = train_pack(pc.store(), MIXES, config, SEEDS, init_from=sources)
    reference = frozen.pack(pc.store(), MIXES, config, SEEDS, init_from=sources)
    assert [r.status for r in ours] == ["ok", "failed", "ok"]
    for result, ref in zip(ours, reference, strict=True):
        assert_same(result, ref)


def test_all_members_diverging_is_unchanged() -> None:
    config = tiny(lr=1e6, warmup_steps=0, steps=20, check_every=2)
    ours = train_pack(pc.store(), MIXES[:2], config, SEEDS[:2])
    reference = frozen.pack(pc.store(), MIXES[:2], config, SEEDS[:2])
    assert [r.status for r in ours] == ["failed", "failed"]
    for result, ref in zip(ours, reference, strict=True):
        assert_same(result, ref)


@pytest.mark.parametrize("grad_clip", [1.0, 0.05])
def test_doremi_weights_and_losses_are_unchanged(grad_clip: float) -> None:
    config = tiny(steps=16, grad_clip=grad_clip)
    dro = DoReMiConfig(step_size=5.0)
    ours = train_doremi(pc.store(), [0.98, 0.01, 0.01], config, 0, dro)
    reference = frozen.doremi(pc.store(), [0.98, 0.01, 0.01], config, 0, dro)
    for name in ("weights", "final_step_weights", "reference_loss", "proxy_loss"):
        assert getattr(ours, name) == reference[name], name


def test_lr_schedule_warms_up_then_decays_to_min() -> None:
    cfg = ProxyTrainConfig(steps=100, warmup_steps=10, lr=1.0, min_lr_ratio=0.1)
    lrs = [lr_at(s, cfg) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:], strict=False))
    assert lrs[-1] == pytest.approx(0.1, abs=1e-3)
