"""Continued pre-training: every proxy of an experiment starts from a base Hugging Face checkpoint."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.experiment.config import ExperimentConfig
from climb_dagster.core.io import storage
from climb_dagster.core.proxy.config import ProxyConfig, proxy_run_key
from climb_dagster.core.proxy.pack import train_pack
from climb_dagster.core.proxy.train import train_proxy
from climb_dagster_tests.unit import proxy_corpus as pc

MIX = [0.5, 0.25, 0.25]


def tiny(steps: int, base_model: str | None = None) -> ProxyConfig:
    cfg = ProxyConfig.tiny(pc.TINY_VOCAB)
    train = dataclasses.replace(cfg.train, steps=steps, warmup_steps=min(3, steps))
    return dataclasses.replace(cfg, train=train, base_model=base_model)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> str:
    r = train_proxy(pc.store(), MIX, tiny(30), seed=0, out_dir=tmp_path_factory.mktemp("base") / "ckpt")
    assert r.ok
    return r.model_dir


def test_proxies_continue_from_the_base_checkpoint(base: str) -> None:
    fresh = train_proxy(pc.store(), MIX, tiny(5), seed=4)
    cont = train_proxy(pc.store(), MIX, tiny(5, base), seed=4)
    same = train_proxy(pc.store(), MIX, tiny(5), seed=4, init_from=base)
    assert cont.ok and cont.loss_first < fresh.loss_first - 0.5
    assert cont.loss_curve == same.loss_curve  # the config field and the explicit argument agree
    # The base checkpoint keys the run: a cached fresh proxy is never reused for a continued one.
    assert cont.run_key != fresh.run_key
    assert cont.run_key == proxy_run_key(MIX, tiny(5, base), 4, pc.store().key())
    # A pack continues every member from the base too, and equals the separate runs.
    packed = train_pack(pc.store(), [MIX, [0.2, 0.4, 0.4]], tiny(5, base), [4, 9])
    assert packed[0].run_key == cont.run_key
    assert packed[0].step_losses.tolist() == pytest.approx(cont.step_losses.tolist(), rel=1e-4)


def test_base_model_from_a_remote_location(base: str) -> None:
    # memory:// goes through the same fetch-once path as s3:// (fsspec), without a server.
    remote = "memory://climb-test/base-ckpt"
    storage.upload_dir(Path(base), storage.make_path(remote), kind="checkpoint")
    local = train_proxy(pc.store(), MIX, tiny(3, base), seed=1)
    fetched = train_proxy(pc.store(), MIX, tiny(3, remote), seed=1)
    assert fetched.ok and fetched.loss_curve == local.loss_curve
    with pytest.raises(ClimbInputError, match="memory://climb-test/missing"):
        train_proxy(pc.store(), MIX, tiny(3, "memory://climb-test/missing"), seed=1)


def test_base_model_is_part_of_the_experiment_config(base: str) -> None:
    from climb_dagster.assets.experiments import ExperimentSpec
    from climb_dagster.assets.targets import DocumentsLossTarget

    exp = ExperimentSpec(
        target=DocumentsLossTarget(documents_path="t.parquet"),
        proxy_base_model=base,
        proxy_d_model=32,
        proxy_layers=1,
        proxy_heads=2,
    ).build("cpt", vocab_size=512)
    assert exp.proxy.base_model == base
    again = ExperimentConfig.from_dict(json.loads(json.dumps(exp.to_dict())))
    assert again == exp and again.proxy.base_model == base
    plain = ExperimentSpec(
        target=DocumentsLossTarget(documents_path="t.parquet"),
        proxy_d_model=32,
        proxy_layers=1,
        proxy_heads=2,
    ).build("cpt", vocab_size=512)
    assert "base_model" not in plain.proxy.to_dict()  # keys of runs without one are unchanged
    assert exp.content_hash() != plain.content_hash()
    wrong = dataclasses.replace(tiny(3, base), model=dataclasses.replace(tiny(3).model, d_model=64))
    with pytest.raises(ClimbInputError, match="d_model"):
        train_proxy(pc.store(), MIX, wrong, seed=0)
    with pytest.raises(ClimbInputError, match="base_model"):
        ProxyConfig(base_model="")
