from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.proxy.config import ProxyConfig, ProxyModelConfig, ProxyTrainConfig, proxy_run_key
from climb_dagster.core.proxy.cost import flops_per_token
from climb_dagster.core.proxy.loss import linear_cross_entropy
from climb_dagster.core.proxy.model import build_model, count_params
from climb_dagster.core.proxy.train import train_proxy
from climb_dagster_tests.unit import proxy_corpus as pc

MIX = [0.5, 0.25, 0.25]


def tiny(**train: object) -> ProxyConfig:
    cfg = ProxyConfig.tiny(pc.TINY_VOCAB)
    train.setdefault("warmup_steps", min(cfg.train.warmup_steps, int(train.get("steps", cfg.train.steps))))
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **train))


def test_loss_goes_down_on_real_text_and_result_is_complete() -> None:
    calls: list[tuple[int, int, float]] = []
    r = train_proxy(pc.store(), MIX, tiny(), seed=0, progress=lambda s, n, loss: calls.append((s, n, loss)))
    assert r.ok and r.reason == "" and r.steps == 30
    assert r.tokens == 30 * 8 * 32 and r.tokens_per_s > 0 and r.wall_s > 0
    assert r.loss_first == pytest.approx(math.log(pc.TINY_VOCAB), abs=0.3)
    assert r.loss_last < r.loss_first - 1.0
    assert r.loss_min <= r.loss_last
    assert r.loss_curve[-1][0] == 30 and len(r.loss_curve) <= 20
    assert calls and calls[-1][:2] == (30, 30) and len(calls) <= 30
    assert r.model is not None and r.n_params > 0
    json.dumps(r.to_dict(), allow_nan=False)


def test_training_is_deterministic_by_seed_and_leaves_global_rng_alone() -> None:
    state = torch.random.get_rng_state()
    a = train_proxy(pc.store(), MIX, tiny(steps=10), seed=1)
    b = train_proxy(pc.store(), MIX, tiny(steps=10), seed=1)
    c = train_proxy(pc.store(), MIX, tiny(steps=10), seed=2)
    assert torch.equal(state, torch.random.get_rng_state())
    assert a.loss_curve == b.loss_curve and a.loss_last == b.loss_last
    for (na, pa), (_, pb) in zip(a.model.state_dict().items(), b.model.state_dict().items(), strict=True):
        assert torch.equal(pa, pb), na
    assert a.loss_last != c.loss_last
    assert a.run_key == b.run_key != c.run_key


def test_absurd_learning_rate_is_reported_as_failed_not_raised() -> None:
    r = train_proxy(pc.store(), MIX, tiny(lr=1e6, warmup_steps=0, steps=20, check_every=2), seed=0)
    assert r.status == "failed" and not r.ok
    assert r.reason.startswith("diverged") and "step" in r.reason
    assert r.model is None and r.model_dir is None and r.steps < 20
    d = r.to_dict()
    json.dumps(d, allow_nan=False)
    assert all(math.isfinite(v) for _, v in d["loss_curve"])


def test_injected_nan_weights_fail_with_non_finite_reason(tmp_path: Path) -> None:
    ok = train_proxy(pc.store(), MIX, tiny(steps=2), seed=0, out_dir=tmp_path / "m")
    from transformers import LlamaForCausalLM

    model = LlamaForCausalLM.from_pretrained(ok.model_dir)
    with torch.no_grad():
        model.model.layers[0].mlp.down_proj.weight[0, 0] = float("nan")
    model.save_pretrained(tmp_path / "nan")
    r = train_proxy(
        pc.store(), MIX, tiny(steps=6), seed=0, init_from=tmp_path / "nan", out_dir=tmp_path / "x"
    )
    assert r.status == "failed" and "non-finite" in r.reason and "step 0" in r.reason
    assert not (tmp_path / "x").exists()


def test_saved_model_loads_with_from_pretrained(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    r = train_proxy(pc.store(), MIX, tiny(steps=5), seed=0, out_dir=tmp_path / "proxy")
    d = Path(r.model_dir)
    for f in ("model.safetensors", "config.json", "tokenizer.json", "proxy_run.json"):
        assert (d / f).is_file(), f
    assert not list(tmp_path.glob("*.tmp"))
    run = json.loads((d / "proxy_run.json").read_text())
    assert run["run_key"] == r.run_key and run["mixture"] == MIX and run["seed"] == 0
    loaded = AutoModelForCausalLM.from_pretrained(str(d))
    tok = AutoTokenizer.from_pretrained(str(d))
    ids = torch.tensor([tok.encode("This program is free software")])
    r.model.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(input_ids=ids).logits, r.model(input_ids=ids).logits)


def test_continue_from_checkpoint(tmp_path: Path) -> None:
    first = train_proxy(pc.store(), MIX, tiny(steps=20), seed=0, out_dir=tmp_path / "a")
    more = train_proxy(pc.store(), MIX, tiny(steps=5), seed=5, init_from=first.model_dir)
    fresh = train_proxy(pc.store(), MIX, tiny(steps=5), seed=5)
    assert more.ok and more.loss_first < fresh.loss_first - 0.5
    wider = ProxyConfig(model=dataclasses.replace(tiny().model, d_model=64), train=tiny().train)
    with pytest.raises(ClimbInputError, match="d_model"):
        train_proxy(pc.store(), MIX, wider, seed=0, init_from=first.model_dir)
    with pytest.raises(ClimbInputError, match="config.json"):
        train_proxy(pc.store(), MIX, tiny(), seed=0, init_from=tmp_path / "missing")


def test_input_errors() -> None:
    small = ProxyConfig(model=ProxyModelConfig.tiny(vocab_size=100), train=ProxyTrainConfig.tiny())
    with pytest.raises(ClimbInputError, match="vocab_size"):
        train_proxy(pc.store(), MIX, small, seed=0)
    with pytest.raises(ClimbInputError, match="sum to"):
        train_proxy(pc.store(), [0.5, 0.5, 0.5], tiny(), seed=0)
    with pytest.raises(ClimbInputError, match="seed"):
        train_proxy(pc.store(), MIX, tiny(), seed="0")  # type: ignore[arg-type]
    with pytest.raises(ClimbInputError, match="windows have shape"):
        train_proxy(pc.store(), MIX, tiny(), seed=0, windows=np.zeros((3, 33), dtype=np.int64))


def test_fused_linear_cross_entropy_matches_reference() -> None:
    g = torch.Generator().manual_seed(0)
    h = torch.randn(300, 16, generator=g, requires_grad=True)
    w = torch.randn(50, 16, generator=g, requires_grad=True)
    y = torch.randint(0, 50, (300,), generator=g)
    ref = torch.nn.functional.cross_entropy(h @ w.t(), y)
    gh, gw = torch.autograd.grad(ref, [h, w])
    ours = linear_cross_entropy(h, w, y, chunk_rows=64)
    oh, ow = torch.autograd.grad(ours * 2.0, [h, w])
    torch.testing.assert_close(ours, ref)
    torch.testing.assert_close(oh, 2.0 * gh)
    torch.testing.assert_close(ow, 2.0 * gw)
    with torch.no_grad():
        torch.testing.assert_close(linear_cross_entropy(h, w, y, chunk_rows=7), ref)


def test_model_init_is_seeded_and_sized() -> None:
    cfg = ProxyModelConfig.tiny()
    a, b, c = build_model(cfg, 3), build_model(cfg, 3), build_model(cfg, 4)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["model.embed_tokens.weight"], sc["model.embed_tokens.weight"])
    assert a.lm_head.weight is a.model.embed_tokens.weight
    assert a.config._attn_implementation == "sdpa"
    assert flops_per_token(cfg) > 6 * cfg.vocab_size * cfg.d_model
    assert count_params(a) == cfg.n_params  # the cost estimate counts parameters without building a model


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        (lambda: ProxyModelConfig(d_model=130, n_heads=4), "130"),
        (lambda: ProxyModelConfig(vocab_size=0), "vocab_size.*0"),
        (lambda: ProxyModelConfig(d_model=12, n_heads=4), "head size"),
        (lambda: ProxyTrainConfig(lr=float("nan")), "lr.*nan"),
        (lambda: ProxyTrainConfig(steps=10, warmup_steps=11), "warmup_steps=11"),
        (lambda: ProxyTrainConfig(beta2=1.0), "betas"),
        (lambda: ProxyTrainConfig(device="tpu"), "tpu"),
        (lambda: ProxyTrainConfig(num_threads=0), "num_threads.*0"),
        (lambda: ProxyConfig.from_dict({"model": {"bogus": 1}, "train": {}}), "bogus"),
    ],
)
def test_config_validation_names_the_value(factory, message: str) -> None:
    with pytest.raises(ClimbInputError, match=message):
        factory()


def test_config_dict_hash_and_budget() -> None:
    cfg = ProxyConfig.default()
    assert ProxyConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert cfg.content_hash() == ProxyConfig.default().content_hash()
    assert cfg.content_hash() != ProxyConfig.tiny().content_hash()
    b = cfg.with_token_budget(100_000)
    assert b.token_budget >= 100_000 > b.token_budget - b.tokens_per_step
    assert proxy_run_key(MIX, cfg, 0) != proxy_run_key(MIX, cfg, 1) != proxy_run_key([0.5, 0.5, 0.0], cfg, 1)
    with pytest.raises(ClimbInputError):
        proxy_run_key([math.nan, 1.0], cfg, 0)


@pytest.mark.slow
def test_default_config_is_deterministic_bit_for_bit() -> None:
    cfg = ProxyConfig.default()
    cfg = dataclasses.replace(
        cfg, train=dataclasses.replace(cfg.train, steps=4, warmup_steps=2, check_every=2)
    )
    a = train_proxy(pc.store(), MIX, cfg, seed=11)
    b = train_proxy(pc.store(), MIX, cfg, seed=11)
    assert a.ok and a.loss_curve == b.loss_curve
    for (name, pa), (_, pb) in zip(a.model.state_dict().items(), b.model.state_dict().items(), strict=True):
        assert torch.equal(pa, pb), name
