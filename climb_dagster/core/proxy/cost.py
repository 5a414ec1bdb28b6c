"""What an experiment's proxies cost before any is trained, the refusals built on it, and the proxy step's
check of the memory free when it starts.

The estimate: parameters, tokens per proxy and in all, training FLOPs (6 x matmul parameters + attention a
token, PaLM appendix B), peak training memory per step (the pack memory model of config.bytes_per_member,
the token windows, the runtime), checkpoint disk, and wall time (FLOPs over the throughput of one worker,
round by round in waves of `workers x pack` proxies). Pure arithmetic on the configs, except where the
defaults read the machine (`CostLimits.workers`) or a step reads what is free (`free_memory`). Accuracy
against measured peak RSS and time: docs/cost.md (`python -m climb_dagster.bench cost`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from climb_dagster.core.common.errors import ClimbInputError, ClimbResourceError
from climb_dagster.core.io.settings import Settings
from climb_dagster.core.proxy.config import (
    DEFAULT_DEVICE_MEMORY,
    ProxyConfig,
    ProxyModelConfig,
    auto_pack_size,
    bytes_per_member,
    planned_precision,
)

# "A few days": past it an experiment is far more likely a typo (steps x 10^4) than a plan. Raise it per
# experiment with `max_hours` (README "Cost").
DEFAULT_MAX_HOURS = 72.0
# Effective training FLOP/s of one worker where none is stated (`device_tflops`).
# cpu, per torch thread: `bench cost` on the 2-core AMD EPYC dev machine (no AVX-512 BF16, fp32) measured
# 46 GFLOP per CPU second for the demo proxy and 42-66 for 4x its width, block, batch or a pack of 4
# (docs/cost.md); a busy machine's wall time is longer (2-2.5x there at a load of 5 on 2 cores).
# cuda: an H100 SXM's dense BF16 peak, 989 TFLOP/s (NVIDIA H100 Tensor Core GPU datasheet: 1,979 with
# sparsity), at an assumed 30% MFU: small proxies rarely fill the tensor cores better.
DEFAULT_FLOPS = {"cpu": 4.0e10, "cuda": 0.30 * 989e12}
# Memory a step process holds besides what its proxy's training allocates. cpu: a step process measured
# 663 MiB RSS before training (the forkserver's preloaded modules, kernels loaded; docs/cost.md), rounded up
# for the token store's pages and the target; cuda: the CUDA context and cuBLAS workspaces.
RUNTIME_BYTES = {"cpu": 2**30, "cuda": 2**30}
# Activation checkpointing runs each layer's forward twice: 8 instead of 6 FLOPs a parameter and token.
RECOMPUTE = 8 / 6
GIB = 2**30


def flops_per_token(cfg: ProxyModelConfig) -> float:
    """Training FLOPs per token (forward + backward): 6 * matmul params + attention (PaLM appendix B).

    Matmul params: q,k,v,o and the three SwiGLU matrices per layer, plus the LM head (tied to the
    embedding, whose lookup costs no FLOPs). Attention scores and values: 12 * L * d_model * block.
    """
    per_layer = 4 * cfg.d_model * cfg.d_model + 3 * cfg.d_model * cfg.d_ff
    matmul_params = cfg.n_layers * per_layer + cfg.vocab_size * cfg.d_model
    return 6.0 * matmul_params + 12.0 * cfg.n_layers * cfg.d_model * cfg.block_size


def window_bytes(config: ProxyConfig) -> int:
    """Host memory of one proxy's pre-sampled windows: int64 (steps * batch, block + 1) tokens, plus the
    plan's cluster and start (16 bytes) per window (sampler.py)."""
    n = config.train.steps * config.train.batch_size
    return n * (8 * (config.model.block_size + 1) + 16)


def host_bytes(config: ProxyConfig, members: int) -> int:
    """Host memory of a step's windows: a pack also holds its members' windows stacked into one array."""
    return window_bytes(config) * (members if members == 1 else 2 * members)


def checkpoint_bytes(config: ProxyConfig) -> int:
    """Disk of one saved proxy: fp32 safetensors, the tied head stored once (the tokenizer files add ~1 MB)."""
    return 4 * config.model.n_params


@dataclass(frozen=True)
class CostLimits:
    """What the estimate is checked against; None picks the default of the proxy's device kind.

    Args:
        device_memory_gib: memory of the device a proxy step trains on (GiB); None: DEFAULT_DEVICE_MEMORY.
        device_tflops: effective training TFLOP/s of one worker; None: DEFAULT_FLOPS (per thread on CPU).
        parallel_workers: proxy steps that train at once; None: on CPU the cores of this machine over the
            threads per proxy (the demo runs one step per core), on CUDA CLIMB_MAX_GPU_STEPS (the
            deployment's limit on concurrent GPU steps).
        max_hours: most hours of proxy training (wall time) an experiment may plan.
    """

    device_memory_gib: float | None = None
    device_tflops: float | None = None
    parallel_workers: int | None = None
    max_hours: float = DEFAULT_MAX_HOURS

    def __post_init__(self) -> None:
        for name in ("device_memory_gib", "device_tflops", "max_hours"):
            value = getattr(self, name)
            if value is None and name != "max_hours":
                continue
            ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
            if not ok or value <= 0:
                raise ClimbInputError(f"{name} must be a positive number, got {value!r}")
        w = self.parallel_workers
        if w is not None and (isinstance(w, bool) or not isinstance(w, int) or w < 1):
            raise ClimbInputError(f"parallel_workers must be a positive integer, got {w!r}")

    def memory_bytes(self, device: str) -> int:
        if self.device_memory_gib is None:
            return DEFAULT_DEVICE_MEMORY[device]
        return int(self.device_memory_gib * GIB)

    def flops(self, config: ProxyConfig) -> float:
        if self.device_tflops is not None:
            return self.device_tflops * 1e12
        per = DEFAULT_FLOPS[config.train.device]
        return per * config.train.num_threads if config.train.device == "cpu" else per

    def workers(self, config: ProxyConfig) -> int:
        if self.parallel_workers is not None:
            return self.parallel_workers
        if config.train.device == "cuda":
            return Settings.from_env().max_gpu_steps
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        return max(1, cores // config.train.num_threads)


@dataclass(frozen=True)
class CostEstimate:
    """An experiment's proxy training, estimated before it starts (bytes, FLOPs, hours; per proxy and in all).

    `peak_bytes_per_step`: what one proxy step holds at its peak (a pack of `pack_size` members, their
    windows on CPU, the runtime), against `device_memory_bytes`. `hours`: wall time of the rounds in
    waves of `workers x pack_size` proxies, each wave `pack_size x hours_per_proxy` long.
    """

    device: str
    precision: str
    pack_size: int
    activation_checkpointing: bool
    params: int
    proxies: int
    rounds: tuple[int, ...]
    tokens_per_proxy: int
    tokens_total: int
    flops_per_proxy: float
    flops_total: float
    train_bytes_per_proxy: int
    window_bytes_per_proxy: int
    peak_bytes_per_step: int
    device_memory_bytes: int
    checkpoint_bytes_per_proxy: int
    checkpoint_bytes_total: int
    flops_per_s: float
    workers: int
    waves: tuple[int, ...]
    hours_per_proxy: float
    hours: float
    max_hours: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "rounds", tuple(int(r) for r in self.rounds))
        object.__setattr__(self, "waves", tuple(int(w) for w in self.waves))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"rounds": list(self.rounds), "waves": list(self.waves)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CostEstimate:
        try:
            return cls(**{f.name: data[f.name] for f in fields(cls)})
        except KeyError as exc:
            raise ClimbInputError(f"cost estimate is missing {exc.args[0]!r}: {dict(data)!r}"[:400]) from exc

    def summary(self) -> str:
        """The estimate in one line of round figures, for logs, errors and the demo."""
        ckpt = "activation checkpointing" if self.activation_checkpointing else "no checkpointing"
        return (
            f"{self.proxies} proxies of {_count(self.params)} parameters ({self.device}, {self.precision}, "
            f"pack {self.pack_size}, {ckpt}); {_count(self.tokens_per_proxy)} tokens each, "
            f"{_count(self.tokens_total)} in all; {self.flops_total:.2g} training FLOPs; peak memory "
            f"{_gib(self.peak_bytes_per_step)} per step of {_gib(self.device_memory_bytes)}; checkpoints "
            f"{_gib(self.checkpoint_bytes_per_proxy)} each, {_gib(self.checkpoint_bytes_total)} in all; "
            f"{self.hours:.3g} h on {self.workers} workers at {self.flops_per_s:.2g} FLOP/s each "
            f"(waves {list(self.waves)} of {self.hours_per_proxy:.3g} h per proxy; max_hours {self.max_hours:g})"
        )

    def refusals(self) -> list[str]:
        """Why the experiment cannot run as configured, naming the fields and the numbers (empty: it can)."""
        out = []
        if self.peak_bytes_per_step > self.device_memory_bytes:
            out.append(
                f"peak training memory {_gib(self.peak_bytes_per_step)} per step (pack of {self.pack_size}: "
                f"{_gib(self.train_bytes_per_proxy)} a proxy + windows {_gib(self.window_bytes_per_proxy)} "
                f"a proxy) exceeds the {self.device} device memory {_gib(self.device_memory_bytes)}: lower "
                f"batch_size, block_size, d_model, n_layers, steps or pack_size, turn on "
                f"activation_checkpointing, or declare the device's real memory (device_memory_gib)"
            )
        if self.hours > self.max_hours:
            out.append(
                f"estimated {self.hours:.3g} h of proxy training ({self.proxies} proxies x "
                f"{_count(self.tokens_per_proxy)} tokens = {self.flops_total:.2g} FLOPs at "
                f"{self.flops_per_s:.2g} FLOP/s per worker, {self.workers} workers: waves {list(self.waves)} "
                f"of {self.hours_per_proxy:.3g} h per proxy) exceeds max_hours={self.max_hours:g}: lower steps, "
                f"batch_size or rounds, add workers (parallel_workers), or raise max_hours"
            )
        return out


def estimate_cost(
    proxy: ProxyConfig,
    rounds: Sequence[int],
    extra_proxies: int = 0,
    limits: CostLimits | None = None,
) -> CostEstimate:
    """The cost of training `rounds` (proxies per round, run one after the other) plus `extra_proxies`
    trained one after another (DoReMi's reference and DRO runs) with `proxy`, on the device of `limits`."""
    limits = limits or CostLimits()
    device = proxy.train.device
    memory = limits.memory_bytes(device)
    pack = auto_pack_size(proxy, memory)
    member = bytes_per_member(proxy)
    windows = window_bytes(proxy)
    peak = RUNTIME_BYTES[device] + pack * member + (host_bytes(proxy, pack) if device == "cpu" else 0)
    proxies = sum(rounds) + extra_proxies
    flops = flops_per_token(proxy.model) * proxy.token_budget
    rate = limits.flops(proxy)
    workers = limits.workers(proxy)
    hours_per_proxy = flops * (RECOMPUTE if proxy.train.activation_checkpointing else 1.0) / rate / 3600
    waves = tuple(-(-n // (workers * pack)) for n in rounds)
    hours = (sum(waves) * pack + extra_proxies) * hours_per_proxy
    return CostEstimate(
        device=device,
        precision=planned_precision(proxy.train),
        pack_size=pack,
        activation_checkpointing=proxy.train.activation_checkpointing,
        params=proxy.model.n_params,
        proxies=proxies,
        rounds=tuple(rounds),
        tokens_per_proxy=proxy.token_budget,
        tokens_total=proxies * proxy.token_budget,
        flops_per_proxy=flops,
        flops_total=proxies * flops,
        train_bytes_per_proxy=int(member),
        window_bytes_per_proxy=windows,
        peak_bytes_per_step=int(peak),
        device_memory_bytes=memory,
        checkpoint_bytes_per_proxy=checkpoint_bytes(proxy),
        checkpoint_bytes_total=proxies * checkpoint_bytes(proxy),
        flops_per_s=rate,
        workers=workers,
        waves=waves,
        hours_per_proxy=hours_per_proxy,
        hours=hours,
        max_hours=limits.max_hours,
    )


def check_cost(estimate: CostEstimate, what: str) -> None:
    """Refuse (ClimbInputError) `what` when its proxies cannot fit the device or exceed max_hours."""
    problems = estimate.refusals()
    if problems:
        raise ClimbInputError(
            f"{what} refused before training: {'; '.join(problems)}. Estimate: {estimate.summary()}"
        )


def host_free_memory() -> int:
    """Bytes this process may still allocate on the host: MemAvailable, or less under a cgroup memory limit
    (a container's OOM killer acts at the cgroup's limit, whatever the machine has free)."""
    free = _meminfo_available()
    for limit_file, usage_file in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
    ):
        limit, usage = _read_int(limit_file), _read_int(usage_file)
        if limit is not None and usage is not None and limit < 2**60:
            free = min(free, max(0, limit - usage))
            break
    return free


def _meminfo_available() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def _read_int(path: str) -> int | None:
    try:
        text = Path(path).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def check_free_memory(
    config: ProxyConfig, members: int = 1, free: int | None = None, host_free: int | None = None
) -> None:
    """Refuse (ClimbResourceError) a proxy step whose training would not fit the memory free now, before it
    allocates anything, rather than let the OOM killer end it without a word.

    Args:
        members: proxies trained together (a pack).
        free: bytes free on the training device (on CPU the host); None: read from the device.
        host_free: bytes free on the host for the windows of a CUDA run; None: read from the host.
    """
    device = config.train.device
    model = members * bytes_per_member(config)
    windows = host_bytes(config, members)
    what = (
        f"{'1 proxy' if members == 1 else f'a pack of {members} proxies'} of "
        f"{_count(config.model.n_params)} parameters (batch_size={config.train.batch_size} x block_size={config.model.block_size}, "
        f"steps={config.train.steps}, {planned_precision(config.train)})"
    )
    if device == "cpu":
        needs = [(model + windows, "host", free)]
    else:
        needs = [(model, "GPU", free), (windows, "host", host_free)]
    for need, where, have in needs:
        if have is None:
            have = host_free_memory() if where == "host" else _cuda_free()
        if have is not None and need > have:
            raise ClimbResourceError(
                f"not enough free memory to train {what}: estimated {_gib(need)} on the {where} "
                f"(training {_gib(model)}, windows {_gib(windows)}), {_gib(have)} free; free memory, lower "
                f"batch_size/block_size/steps/pack_size, or run the step where more memory is free"
            )


def _cuda_free() -> int | None:
    """Free bytes on the current GPU; None without CUDA (runtime.resolve then refuses the run by name)."""
    import torch

    return int(torch.cuda.mem_get_info()[0]) if torch.cuda.is_available() else None


def _gib(n: float) -> str:
    if n >= 2**40:
        return f"{n / 2**40:.3g} TiB"
    if n >= GIB:
        return f"{n / GIB:.3g} GiB"
    return f"{n / 2**20:.3g} MiB"


def _count(n: float) -> str:
    for scale, unit in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if n >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:g}"
