from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.proxy.config import ProxyConfig, auto_pack_size, bytes_per_member, proxy_run_key
from climb_dagster.core.proxy.model import build_model, load_model
from climb_dagster.core.proxy.pack import clip_per_member, train_pack
from climb_dagster.core.proxy.runtime import CompiledStep
from climb_dagster.core.proxy.tokens import load_tokenizer
from climb_dagster.core.proxy.train import train_proxy
from climb_dagster.core.targets.evaluators import build_eval_windows, build_multiple_choice
from climb_dagster.core.targets.score import evaluate_pack, evaluate_target
from climb_dagster.core.targets.spec import EvaluatorSpec, TargetSpec
from climb_dagster_tests.unit import proxy_corpus as pc

MIXES = [[0.5, 0.25, 0.25], [0.1, 0.3, 0.6], [1 / 3, 1 / 3, 1 / 3]]
SEEDS = [0, 3, 7]
REL = 1e-4


def tiny(**train: object) -> ProxyConfig:
    cfg = ProxyConfig.tiny(pc.TINY_VOCAB)
    train.setdefault("warmup_steps", min(cfg.train.warmup_steps, int(train.get("steps", cfg.train.steps))))
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **train))


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> TargetSpec:
    d = tmp_path_factory.mktemp("pack-eval")
    texts = pc.texts()[-60:]
    windows = build_eval_windows(texts, pc.tokenizer_dir(), d / "heldout.npy", block_size=32, max_windows=40)
    mc = build_multiple_choice(texts, d / "mc.jsonl", n_items=20, n_choices=4, seed=0)
    return TargetSpec.combined(
        [EvaluatorSpec("loss", str(windows)), EvaluatorSpec("multiple_choice", str(mc), weight=0.5)],
        direction="minimize",
    )


def rel_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b) / np.abs(b)))


def test_packed_members_equal_their_separate_runs(tmp_path: Path, target: TargetSpec) -> None:
    cfg = tiny()
    tok = load_tokenizer(pc.tokenizer_dir())
    separate = [train_proxy(pc.store(), w, cfg, s) for w, s in zip(MIXES, SEEDS, strict=True)]
    dirs = [tmp_path / f"m{j}" for j in range(3)]
    packed = train_pack(pc.store(), MIXES, cfg, SEEDS, out_dirs=dirs)
    for a, b in zip(packed, separate, strict=True):
        assert a.ok and b.ok and a.run_key == b.run_key and a.steps == b.steps == cfg.train.steps
        assert a.step_losses.shape == (cfg.train.steps,)
        assert rel_diff(a.step_losses, b.step_losses) < REL
        assert a.loss_last == pytest.approx(b.loss_last, rel=REL)
    # Members really differ (own seed, own windows): a pack that mixed them up would fail above.
    assert len({round(r.loss_last, 6) for r in packed}) == 3
    alone = [evaluate_target(r.model, target, tok) for r in separate]
    # Target evaluation of the pack as one batched model, and of each saved Hugging Face checkpoint.
    batched = evaluate_pack([r.model for r in packed], target, tok)
    from_disk = [evaluate_target(str(d), target) for d in dirs]
    np.testing.assert_allclose(batched, alone, rtol=REL)
    np.testing.assert_allclose(from_disk, alone, rtol=REL)
    record = json.loads((dirs[1] / "proxy_run.json").read_text())
    assert record["seed"] == SEEDS[1] and record["mixture"] == pytest.approx(MIXES[1])
    assert record["run_key"] == proxy_run_key(MIXES[1], cfg, SEEDS[1], pc.store().key())


def test_diverging_member_fails_with_its_reason_and_the_others_go_on(tmp_path: Path) -> None:
    seed_run = train_proxy(pc.store(), MIXES[0], tiny(steps=2), seed=0, out_dir=tmp_path / "ok")
    model = load_model(seed_run.model_dir)
    with torch.no_grad():
        model.model.layers[0].mlp.down_proj.weight[0, 0] = float("nan")
    model.save_pretrained(tmp_path / "nan")
    cfg = tiny(steps=12, check_every=4)
    alone_bad = train_proxy(pc.store(), MIXES[1], cfg, SEEDS[1], init_from=tmp_path / "nan")
    dirs = [tmp_path / f"p{j}" for j in range(3)]
    packed = train_pack(
        pc.store(), MIXES, cfg, SEEDS, out_dirs=dirs, init_from=[None, tmp_path / "nan", None]
    )
    bad = packed[1]
    assert bad.status == "failed" and bad.reason == alone_bad.reason and bad.steps == alone_bad.steps
    assert bad.model is None and bad.model_dir is None and not dirs[1].exists()
    for j in (0, 2):
        alone = train_proxy(pc.store(), MIXES[j], cfg, SEEDS[j])
        assert packed[j].ok and dirs[j].is_dir()
        assert rel_diff(packed[j].step_losses, alone.step_losses) < REL


def test_all_members_diverging_ends_the_pack() -> None:
    results = train_pack(
        pc.store(), MIXES[:2], tiny(lr=1e6, warmup_steps=0, steps=20, check_every=2), SEEDS[:2]
    )
    assert [r.status for r in results] == ["failed", "failed"]
    assert all(r.reason.startswith("diverged") and r.steps < 20 for r in results)


def test_clip_per_member_matches_clip_grad_norm_of_each_member() -> None:
    g = torch.Generator().manual_seed(0)
    stacked = [torch.nn.Parameter(torch.zeros(3, 4, 5)), torch.nn.Parameter(torch.zeros(3, 7))]
    for p in stacked:
        p.grad = torch.randn(p.shape, generator=g) * torch.tensor([0.01, 1.0, 30.0]).reshape(
            -1, *[1] * (p.ndim - 1)
        )
    singles = [[torch.nn.Parameter(p[j].detach().clone()) for p in stacked] for j in range(3)]
    for j, ps in enumerate(singles):
        for p, s in zip(stacked, ps, strict=True):
            s.grad = p.grad[j].clone()
        torch.nn.utils.clip_grad_norm_(ps, 1.0, foreach=True)
    clip_per_member(stacked, 1.0)
    for j, ps in enumerate(singles):
        for p, s in zip(stacked, ps, strict=True):
            torch.testing.assert_close(p.grad[j], s.grad)


def test_pack_size_rules() -> None:
    cfg = ProxyConfig.default()
    assert auto_pack_size(cfg) == 1  # CPU rule: one proxy per step, one step per core
    assert auto_pack_size(dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, pack_size=5))) == 5
    cuda = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, device="cuda"))
    per = bytes_per_member(cuda)
    assert auto_pack_size(cuda, device_memory=int(10 * per / 0.8)) == 10
    assert auto_pack_size(cuda, device_memory=int(per)) == 1
    assert auto_pack_size(cuda, device_memory=10**15) == 64
    ckpt = dataclasses.replace(cuda, train=dataclasses.replace(cuda.train, activation_checkpointing=True))
    assert bytes_per_member(ckpt) < per


def test_pack_size_is_not_part_of_the_run_key() -> None:
    cfg = tiny()
    packed = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, pack_size=8))
    assert proxy_run_key(MIXES[0], cfg, 0) == proxy_run_key(MIXES[0], packed, 0)
    assert ProxyConfig.from_dict(json.loads(json.dumps(packed.to_dict()))) == packed
    fp16 = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, precision="bf16"))
    assert proxy_run_key(MIXES[0], cfg, 0) != proxy_run_key(MIXES[0], fp16, 0)


def test_pack_input_errors() -> None:
    with pytest.raises(ClimbInputError, match="one seed per mixture"):
        train_pack(pc.store(), MIXES, tiny(), SEEDS[:2])
    with pytest.raises(ClimbInputError, match="windows have shape"):
        train_pack(pc.store(), MIXES[:1], tiny(), [0], windows=np.zeros((1, 3, 33), dtype=np.int64))
    with pytest.raises(ClimbInputError, match="fp16"):
        train_pack(pc.store(), MIXES[:1], tiny(precision="fp16"), [0])


def test_compile_failure_falls_back_to_eager() -> None:
    def broken(fn):  # a compiler whose compiled code raises, like a Dynamo/Inductor failure
        def run(*args):
            raise RuntimeError("inductor: no C++ compiler")

        return run

    step = CompiledStep(lambda a, b: a * b, enabled=True, compiler=broken)
    assert step.compiled
    assert step(torch.tensor(2.0), torch.tensor(3.0)).item() == 6.0
    assert not step.compiled and "no C++ compiler" in step.fallback_reason
    assert not CompiledStep(lambda a: a, enabled=False).compiled


def test_members_start_from_the_init_build_model_gives_them() -> None:
    from climb_dagster.core.proxy.pack import PackedLlama

    cfg = tiny().model
    members = [build_model(cfg, s) for s in SEEDS]
    pack = PackedLlama(members)
    for j, s in enumerate(SEEDS):
        fresh = dict(build_model(cfg, s).named_parameters())
        for name, value in pack.member_state(j).items():
            assert torch.equal(value, fresh[name]), name


def test_pack_job_trains_only_uncached_members_and_caches_each(tmp_path: Path, target: TargetSpec) -> None:
    from upath import UPath

    from climb_dagster.core.common import schema
    from climb_dagster.core.proxy.cache import ProxyCache
    from climb_dagster.core.proxy.jobs import run_proxy_job, run_proxy_pack_job
    from climb_dagster.core.proxy.records import ProxyJob

    cfg = tiny(steps=10)
    tok = load_tokenizer(pc.tokenizer_dir())
    cache = ProxyCache(UPath(tmp_path / "runs"))
    jobs = [ProxyJob(f"r1-{i:03d}", proxy_run_key(w, cfg, 0, "data"), w) for i, w in enumerate(MIXES)]
    alone = run_proxy_job(jobs[1], pc.store(), cfg, 0, lambda m: evaluate_target(m, target, tok), cache)
    calls: list[int] = []

    def evaluate_many(models: list) -> list[float]:
        calls.append(len(models))
        return evaluate_pack(models, target, tok)

    outcomes = run_proxy_pack_job(jobs, pc.store(), cfg, 0, evaluate_many, cache)
    assert [o.mixture_id for o in outcomes] == [j.mixture_id for j in jobs]
    assert [o.cached for o in outcomes] == [False, True, False] and calls == [2]
    assert outcomes[1].score == alone.score
    for job, o in zip(jobs, outcomes, strict=True):
        assert o.status == schema.OK and cache.get(job.proxy_key).score == o.score
        assert (cache.model_path(job.proxy_key) / "model.safetensors").is_file()
    # The packed member scores what its separate run scores.
    separate = run_proxy_job(
        dataclasses.replace(jobs[0], proxy_key="separate"),
        pc.store(),
        cfg,
        0,
        lambda m: evaluate_target(m, target, tok),
        cache,
    )
    assert outcomes[0].score == pytest.approx(separate.score, rel=REL)
    again = run_proxy_pack_job(jobs, pc.store(), cfg, 0, evaluate_many, cache)
    assert all(o.cached for o in again) and calls == [2]


def test_activation_checkpointing_changes_nothing_but_memory() -> None:
    plain, ckpt = tiny(steps=6), tiny(steps=6, activation_checkpointing=True)
    a = train_proxy(pc.store(), MIXES[0], plain, 0)
    b = train_proxy(pc.store(), MIXES[0], ckpt, 0)
    assert a.step_losses.tolist() == b.step_losses.tolist()
    pa = train_pack(pc.store(), MIXES[:2], plain, SEEDS[:2])
    pb = train_pack(pc.store(), MIXES[:2], ckpt, SEEDS[:2])
    for x, y in zip(pa, pb, strict=True):
        assert x.step_losses.tolist() == y.step_losses.tolist()


def test_bf16_autocast_path_trains_with_fp32_master_weights() -> None:
    # The mixed-precision path of CUDA (autocast, plain logits + cross-entropy), run here on the CPU.
    cfg = tiny(precision="bf16")
    single = train_proxy(pc.store(), MIXES[0], cfg, 0)
    assert single.ok and single.loss_last < single.loss_first - 1.0
    assert all(p.dtype == torch.float32 for p in single.model.parameters())
    fp32 = train_proxy(pc.store(), MIXES[0], tiny(), 0)
    assert single.loss_last == pytest.approx(fp32.loss_last, rel=0.05)
    packed = train_pack(pc.store(), MIXES[:2], cfg, SEEDS[:2])
    assert packed[0].ok and packed[0].loss_last == pytest.approx(single.loss_last, rel=0.02)
