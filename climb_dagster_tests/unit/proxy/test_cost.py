"""The cost estimate and its guards (core/proxy/cost.py): what an experiment's proxies need, the refusals of
proxies that cannot fit or would train for days, and the proxy step's check of the memory free (an injected
figure: nothing is exhausted). The paper's schedule and the asset's refusals: reliability/test_cost_guard.py."""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path

import numpy as np
import pytest

from climb_dagster.core.common.errors import ClimbInputError, ClimbResourceError
from climb_dagster.core.experiment.config import ExperimentConfig
from climb_dagster.core.proxy.config import (
    DEFAULT_DEVICE_MEMORY,
    ProxyConfig,
    ProxyModelConfig,
    ProxyTrainConfig,
    bytes_per_member,
)
from climb_dagster.core.proxy.cost import (
    DEFAULT_FLOPS,
    DEFAULT_MAX_HOURS,
    CostEstimate,
    CostLimits,
    check_free_memory,
    estimate_cost,
    flops_per_token,
    host_bytes,
    host_free_memory,
)
from climb_dagster.core.proxy.pack import train_pack
from climb_dagster.core.proxy.train import train_proxy
from climb_dagster.core.targets.config import TargetConfig
from climb_dagster.demo.run import DEMO_ROUNDS
from climb_dagster_tests.unit import proxy_corpus as pc

TARGET = TargetConfig(documents_path="t.parquet")
CPU_WORKERS = CostLimits(parallel_workers=2)  # this dev machine's two cores, whatever the CI machine has


def demo_experiment(rounds=DEMO_ROUNDS, **sizes) -> ExperimentConfig:
    """The demo's proxy (the launchpad defaults) with some fields changed, as ExperimentSpec.build makes it."""
    model_fields = {f.name for f in dataclasses.fields(ProxyModelConfig)}
    model = {k: v for k, v in sizes.items() if k in model_fields}
    train = {k: v for k, v in sizes.items() if k not in model_fields}
    if "d_model" in model:
        model["d_ff"] = 3 * model["d_model"]
    train.setdefault("warmup_steps", min(5, train.get("steps", ProxyTrainConfig.steps)))
    proxy = ProxyConfig(ProxyModelConfig(**model), ProxyTrainConfig(**train))
    return ExperimentConfig("exp", TARGET, rounds=rounds, proxy=proxy)


def test_demo_estimate_adds_up_and_passes():
    exp = demo_experiment()
    cost = exp.check_cost(CPU_WORKERS)
    proxy = exp.proxy
    assert cost.proxies == sum(DEMO_ROUNDS) and cost.params == proxy.model.n_params
    assert cost.tokens_per_proxy == proxy.train.steps * proxy.train.batch_size * proxy.model.block_size
    assert cost.tokens_total == cost.proxies * cost.tokens_per_proxy
    assert cost.flops_total == pytest.approx(flops_per_token(proxy.model) * cost.tokens_total)
    # 6 N D with N the matmul parameters, plus attention: above 6 x (all parameters) x tokens here.
    assert cost.flops_total > 6 * 0.9 * cost.params * cost.tokens_total
    assert (cost.device, cost.precision, cost.pack_size) == ("cpu", "fp32", 1)
    assert cost.waves == tuple(math.ceil(n / 2) for n in DEMO_ROUNDS) and cost.workers == 2
    assert cost.hours == pytest.approx(sum(cost.waves) * cost.flops_per_proxy / DEFAULT_FLOPS["cpu"] / 3600)
    assert cost.device_memory_bytes == DEFAULT_DEVICE_MEMORY["cpu"]
    assert cost.train_bytes_per_proxy < cost.peak_bytes_per_step < cost.device_memory_bytes
    assert cost.checkpoint_bytes_total == cost.proxies * 4 * cost.params
    assert cost.max_hours == DEFAULT_MAX_HOURS and not cost.refusals()


def test_estimate_round_trips_as_json():
    cost = demo_experiment().cost(CPU_WORKERS)
    assert CostEstimate.from_dict(json.loads(json.dumps(cost.to_dict()))) == cost
    with pytest.raises(ClimbInputError, match="cost estimate is missing 'hours'"):
        CostEstimate.from_dict({k: v for k, v in cost.to_dict().items() if k != "hours"})


@pytest.mark.parametrize(
    ("sizes", "needles"),
    [
        ({"d_model": 1048576}, ["peak training memory", "d_model", "device_memory_gib"]),
        ({"batch_size": 10_000_000}, ["peak training memory", "batch_size", "max_hours=72"]),
        ({"n_layers": 1_000_000}, ["peak training memory", "n_layers", "TiB per step"]),
        ({"steps": 10**12}, ["peak training memory", "exceeds max_hours=72", "windows"]),
        ({"steps": 480_000}, ["exceeds max_hours=72", "983M tokens each", "raise max_hours"]),
    ],
)
def test_oversized_proxies_are_refused_at_once_with_the_estimate(sizes: dict, needles: list[str]):
    exp = demo_experiment(**sizes)
    start = time.perf_counter()
    with pytest.raises(ClimbInputError) as refused:
        exp.check_cost(CPU_WORKERS)
    assert time.perf_counter() - start < 1.0
    text = str(refused.value)
    assert text.startswith("experiment 'exp' refused before training: ") and "Estimate: " in text
    for needle in needles:
        assert needle in text, text


def test_typo_of_the_demo_steps_is_refused_on_any_number_of_cores():
    """A 10^4x typo takes more than max_hours even with one worker per proxy: three rounds in a row."""
    exp = demo_experiment(steps=480_000)
    with pytest.raises(ClimbInputError, match="exceeds max_hours"):
        exp.check_cost(CostLimits(parallel_workers=sum(DEMO_ROUNDS)))
    assert not demo_experiment(steps=4_800).cost(CPU_WORKERS).refusals(), "a 100x longer demo is a plan"


def test_max_hours_and_declared_memory_lift_the_refusals():
    slow = demo_experiment(steps=480_000)
    hours = slow.cost(CPU_WORKERS).hours
    slow.check_cost(dataclasses.replace(CPU_WORKERS, max_hours=math.ceil(hours)))
    wide = demo_experiment(d_model=4096, n_heads=32, n_layers=4)
    assert "peak training memory" in " ".join(wide.cost(CPU_WORKERS).refusals())
    big = dataclasses.replace(CPU_WORKERS, device_memory_gib=1024.0)
    assert wide.cost(big).device_memory_bytes == 1024 * 2**30
    wide.check_cost(big)


def test_memory_model_follows_device_precision_and_checkpointing():
    cpu = ProxyConfig.default()
    cuda = dataclasses.replace(cpu, train=dataclasses.replace(cpu.train, device="cuda"))
    fp32_cuda = dataclasses.replace(cuda, train=dataclasses.replace(cuda.train, precision="fp32"))
    assert bytes_per_member(cuda) < bytes_per_member(fp32_cuda)  # bf16 activations
    long = dataclasses.replace(cpu, model=dataclasses.replace(cpu.model, block_size=1024, n_layers=8))
    ckpt = dataclasses.replace(long, train=dataclasses.replace(long.train, activation_checkpointing=True))
    assert bytes_per_member(ckpt) < 0.5 * bytes_per_member(long)
    packed = dataclasses.replace(cpu, train=dataclasses.replace(cpu.train, pack_size=4))
    cost = estimate_cost(packed, (8,), limits=CPU_WORKERS)
    assert cost.pack_size == 4 and cost.waves == (1,)
    assert cost.peak_bytes_per_step > 4 * bytes_per_member(packed) + host_bytes(packed, 4)


def test_limits_are_validated():
    for bad in ({"max_hours": 0}, {"device_memory_gib": -1.0}, {"device_tflops": math.nan}):
        with pytest.raises(ClimbInputError, match="must be a positive number"):
            CostLimits(**bad)
    with pytest.raises(ClimbInputError, match="parallel_workers must be a positive integer"):
        CostLimits(parallel_workers=0)


def test_free_memory_check_refuses_below_the_estimate():
    cfg = ProxyConfig.default()
    need = bytes_per_member(cfg) + host_bytes(cfg, 1)
    check_free_memory(cfg, 1, free=int(need) + 1)
    with pytest.raises(ClimbResourceError) as refused:
        check_free_memory(cfg, 1, free=int(need) // 2)
    text = str(refused.value)
    assert "not enough free memory to train 1 proxy of 951k parameters" in text
    assert "batch_size=16 x block_size=128" in text and "free" in text and "on the host" in text
    with pytest.raises(ClimbResourceError, match="a pack of 4 proxies of 951k parameters"):
        check_free_memory(cfg, 4, free=int(2 * need))
    assert 0 < host_free_memory()


def test_proxy_step_refuses_before_allocating(tmp_path: Path):
    """train_proxy and train_pack check the memory free first: nothing is trained or written."""
    cfg = ProxyConfig.tiny(pc.TINY_VOCAB)
    mix = np.full(pc.store().n_clusters, 1 / pc.store().n_clusters)
    with pytest.raises(ClimbResourceError, match=r"MiB on the host \(training .*\), 1 MiB free"):
        train_proxy(pc.store(), mix, cfg, 0, out_dir=tmp_path / "one", free_memory=2**20)
    with pytest.raises(ClimbResourceError, match="a pack of 2 proxies"):
        train_pack(
            pc.store(), [mix, mix], cfg, [0, 1], out_dirs=[tmp_path / "a", tmp_path / "b"], free_memory=2**20
        )
    assert not any(tmp_path.iterdir())
    assert train_proxy(pc.store(), mix, cfg, 0, free_memory=2**40).ok
