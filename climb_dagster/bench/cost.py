"""Bench: the cost estimate (core/proxy/cost.py) against what proxy training really takes on this machine.

Each case trains in a fresh process (spawned), so its peak RSS is its own: the peak is reset just before
training (`/proc/self/clear_refs`), and the estimate's peak for the step (`estimate_cost`, less RUNTIME_BYTES:
pack members + windows) is compared with the peak RSS above the process's RSS before training; the wall and
CPU time with the estimate's time at the default throughput (DEFAULT_FLOPS), and the checkpoint on disk with
its estimate. A `runtime` probe gives
the RSS of a step process before its proxy trains (the forkserver's preloaded modules, one tiny proxy
trained), RUNTIME_BYTES' figure.
Prints one JSON object; docs/cost.md holds a table from it.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from climb_dagster.bench.proxy import add_store_arguments, build_store, load_texts
from climb_dagster.core.common.memory import proc_status_bytes
from climb_dagster.core.proxy.config import ProxyConfig, ProxyModelConfig, ProxyTrainConfig
from climb_dagster.core.proxy.cost import DEFAULT_FLOPS, RUNTIME_BYTES, CostLimits, estimate_cost
from climb_dagster.core.proxy.store import TokenStore
from climb_dagster.core.proxy.train import train_proxy

# Sizes around the demo proxy (ProxyConfig.default()): overrides of its model and train fields.
CASES: dict[str, dict[str, Any]] = {
    "demo": {},
    "wide4": {"d_model": 512, "d_ff": 1536},
    "block4": {"block_size": 512},
    "batch4": {"batch_size": 64},
    "pack4": {"pack_size": 4},
    "block4_checkpointing": {"block_size": 512, "activation_checkpointing": True},
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated, of: " + ", ".join(CASES))
    parser.add_argument(
        "--steps", type=int, default=16, help="optimizer steps per case (memory does not depend on it)"
    )
    add_store_arguments(parser)
    parser.add_argument(
        "--runtime",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also measure the RSS of a step process before training (imports the definitions: ~15 s)",
    )


def case_config(vocab_size: int, steps: int, overrides: dict[str, Any]) -> ProxyConfig:
    model_fields = {f.name for f in dataclasses.fields(ProxyModelConfig)}
    model = {k: v for k, v in overrides.items() if k in model_fields}
    train = {k: v for k, v in overrides.items() if k not in model_fields}
    return ProxyConfig(
        model=ProxyModelConfig(vocab_size=vocab_size, **model),
        train=ProxyTrainConfig(steps=steps, warmup_steps=min(5, steps), **train),
    )


def _status(field: str) -> int:
    """A VmRSS / VmHWM figure of this process, in bytes."""
    value = proc_status_bytes(field)
    if value is None:
        raise RuntimeError(f"{field} not in /proc/self/status")
    return value


def _probe(store_path: str, config: ProxyConfig, seed: int) -> dict[str, Any]:
    """Train one case in this (fresh) process; its peak RSS over the RSS before training, wall time, checkpoint."""
    from climb_dagster.core.proxy import model  # noqa: F401 - torch + transformers loaded before the baseline
    from climb_dagster.core.proxy.pack import train_pack

    store = TokenStore.open(store_path)
    m = max(1, config.train.pack_size)
    mixtures = np.random.default_rng(seed).dirichlet(np.ones(store.n_clusters), size=m)
    # A tiny proxy first: the kernels' code pages, thread pools and tokenizer a step process has loaded by
    # its first real proxy (RUNTIME_BYTES), not part of what a proxy's training allocates.
    train_proxy(store, mixtures[0], ProxyConfig.tiny(store.vocab_size), seed)
    with tempfile.TemporaryDirectory(prefix="climb-bench-cost-") as tmp:
        out = Path(tmp) / "model"
        before = _status("VmRSS")
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
        t0, c0 = time.perf_counter(), time.process_time()
        if m == 1:
            results = [train_proxy(store, mixtures[0], config, seed, out_dir=out)]
        else:
            results = train_pack(store, list(mixtures), config, [seed] * m, out_dirs=[out] + [None] * (m - 1))
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        peak = _status("VmHWM")
        disk = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
        weights = sum(p.stat().st_size for p in out.glob("*.safetensors"))
    return {
        "rss_before_bytes": before,
        "peak_above_bytes": peak - before,
        "wall_s": wall,
        "cpu_s": cpu,
        "loss_last": results[0].loss_last,
        "n_params": results[0].n_params,
        "checkpoint_dir_bytes": disk,
        "checkpoint_weights_bytes": weights,
    }


def _runtime_rss(store_path: str) -> int:
    """RSS of a step process before its proxy trains: what the forkserver preloads (demo/run.py
    STEP_PRELOAD_MODULES), after one tiny proxy has loaded the kernels' code pages and thread pools."""
    import importlib

    from climb_dagster.demo.run import STEP_PRELOAD_MODULES

    for name in STEP_PRELOAD_MODULES:
        importlib.import_module(name)
    store = TokenStore.open(store_path)
    train_proxy(store, np.full(store.n_clusters, 1 / store.n_clusters), ProxyConfig.tiny(store.vocab_size), 0)
    return _status("VmRSS")


def _machine() -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    names = [line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")]
    return {
        "cpu": names[0] if names else platform.processor(),
        "avx512_bf16": "avx512_bf16" in cpuinfo,
        "cores": os.cpu_count(),
        "load_avg": [round(x, 2) for x in os.getloadavg()],
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    names = [c for c in args.cases.split(",") if c]
    unknown = sorted(set(names) - set(CASES))
    if unknown:
        raise SystemExit(f"unknown cases {unknown}; choose from {list(CASES)}")
    texts, groups, source = load_texts(args.corpus)
    machine = _machine()
    rows = []
    spawn = get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="climb-bench-cost-") as tmp:
        store = build_store(texts, groups, Path(tmp), args)
        runtime = None
        if args.runtime:
            with ProcessPoolExecutor(1, mp_context=spawn) as pool:
                runtime = pool.submit(_runtime_rss, str(store.path)).result()
        for name in names:
            config = case_config(store.vocab_size, args.steps, CASES[name])
            with ProcessPoolExecutor(1, mp_context=spawn) as pool:
                got = pool.submit(_probe, str(store.path), config, args.seed).result()
            m = max(1, config.train.pack_size)
            # One step of m proxies on one worker, as the experiment asset estimates it.
            cost = estimate_cost(config, (m,), limits=CostLimits(parallel_workers=1))
            estimate = cost.peak_bytes_per_step - RUNTIME_BYTES["cpu"]
            flops = m * cost.flops_per_proxy
            rows.append(
                {
                    "case": name,
                    "overrides": CASES[name],
                    "params": config.model.n_params,
                    "tokens": m * config.token_budget,
                    "estimate_train_bytes": int(estimate),
                    "measured_peak_above_bytes": got["peak_above_bytes"],
                    "estimate_over_measured": round(estimate / max(1, got["peak_above_bytes"]), 2),
                    "wall_s": round(got["wall_s"], 2),
                    "cpu_s": round(got["cpu_s"], 2),
                    "estimate_s": round(cost.hours * 3600, 2),
                    "flops_per_s": round(flops / got["wall_s"], -6),
                    "flops_per_cpu_s": round(flops / got["cpu_s"], -6),
                    "estimate_checkpoint_bytes": cost.checkpoint_bytes_per_proxy,
                    "checkpoint_weights_bytes": got["checkpoint_weights_bytes"],
                    "checkpoint_dir_bytes": got["checkpoint_dir_bytes"],
                    "rss_before_bytes": got["rss_before_bytes"],
                    "loss_last": got["loss_last"],
                }
            )
    return {
        "machine": {**machine, "load_avg_after": [round(x, 2) for x in os.getloadavg()]},
        "corpus": source,
        "vocab_size": args.vocab_size,
        "steps": args.steps,
        "default_cpu_flops_per_thread": DEFAULT_FLOPS["cpu"],
        "step_runtime_rss_bytes": runtime,
        "cases": rows,
    }
