"""Frozen, validated configs of a proxy run (their content hashes key cached runs: see `proxy_run_key` below).

Sizing, measured on the 2-core dev machine (AMD EPYC, AVX-512, fp32, 1 torch thread, shared with
other work): `ProxyConfig.default()` (vocab 4096, d_model 128, 2 layers, 4 heads, d_ff 384, block 128,
batch 16, 48 steps = 98k tokens, 0.95M parameters) trains at 8.5k-12k tokens/s, i.e. 8-12 s per proxy,
from loss 8.3 to about 6.6 on the demo corpus. Longer runs (150 steps: ~37 s) reach ~6.2.
`ProxyConfig.tiny()` trains in well under a second, for tests.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.common.hashing import content_hash


def _positive_int(owner: str, name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ClimbInputError(f"{owner}.{name} must be a positive integer, got {value!r}")


def _finite(owner: str, name: str, value: Any, lo: float, hi: float, lo_open: bool = False) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > lo if lo_open else value >= lo) and value <= hi
    if not ok:
        side = "(" if lo_open else "["
        raise ClimbInputError(f"{owner}.{name} must be a finite number in {side}{lo}, {hi}], got {value!r}")


@dataclass(frozen=True)
class ProxyModelConfig:
    """Sizes of the decoder-only proxy LM (Llama architecture, tied input/output embeddings).

    Args:
        vocab_size: embedding rows; must be >= the tokenizer's vocabulary.
        d_ff: MLP hidden size (Llama's SwiGLU uses three d_model x d_ff matrices).
    """

    vocab_size: int = 4096
    d_model: int = 128
    n_layers: int = 2
    n_heads: int = 4
    block_size: int = 128
    d_ff: int = 384
    rope_theta: float = 10000.0
    init_std: float = 0.02

    def __post_init__(self) -> None:
        for name in ("vocab_size", "d_model", "n_layers", "n_heads", "block_size", "d_ff"):
            _positive_int("ProxyModelConfig", name, getattr(self, name))
        if self.d_model % self.n_heads:
            raise ClimbInputError(
                f"ProxyModelConfig.d_model={self.d_model} is not divisible by n_heads={self.n_heads}"
            )
        if (self.d_model // self.n_heads) % 2:
            raise ClimbInputError(
                f"ProxyModelConfig head size d_model/n_heads={self.d_model // self.n_heads} must be even (RoPE)"
            )
        _finite("ProxyModelConfig", "rope_theta", self.rope_theta, 0.0, 1e12, lo_open=True)
        _finite("ProxyModelConfig", "init_std", self.init_std, 0.0, 1.0, lo_open=True)

    @classmethod
    def tiny(cls, vocab_size: int = 512) -> ProxyModelConfig:
        """A model that trains in about a second, for tests."""
        return cls(vocab_size=vocab_size, d_model=32, n_layers=1, n_heads=2, block_size=32, d_ff=64)

    @property
    def n_params(self) -> int:
        """Distinct parameters (the tied LM head counted once), as `model.count_params` counts them: per
        layer q, k, v, o, the three SwiGLU matrices and two RMSNorm weights; the embedding; the final norm."""
        d = self.d_model
        return self.n_layers * (4 * d * d + 3 * d * self.d_ff + 2 * d) + self.vocab_size * d + d

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ProxyTrainConfig:
    """Optimisation of one proxy run: AdamW, linear warmup then cosine decay to `min_lr_ratio * lr`.

    Args:
        steps: optimizer steps; the token budget is `steps * batch_size * block_size`.
        num_threads: torch intra-op threads during training (restored afterwards). Part of the config
            because CPU float sums are only reproducible bit-for-bit with the same thread count. Default 1:
            on the 2-core machines, shared with Dagster and other work, 2 OpenMP threads measured up to
            4x slower than 1 under load (a descheduled thread stalls every small op); one proxy per core
            is the efficient way to use both cores.
        divergence_factor: a loss above `divergence_factor * ln(vocab_size)` (uniform guessing is
            `ln(vocab_size)`) marks the run as diverged, like a NaN/inf loss does.
        check_every: how often (steps) the loss is checked for divergence; checking needs a host sync.
        device: "cpu" or "cuda".
        precision: "auto" (fp32 on CPU; bf16 autocast on CUDA, fp16 + loss scaling where the GPU has no
            bf16), "fp32", "bf16" or "fp16". Master weights and optimizer state stay fp32 in every mode.
        compile: "auto" (torch.compile on CUDA, eager on CPU), "on" or "off". A compilation failure falls
            back to eager and the run goes on.
        activation_checkpointing: recompute each layer's activations in the backward pass (for
            350M-class proxies whose activations do not fit).
        pack_size: proxies trained together as one batched model (see pack.py); 0 picks a size from the
            device's memory (`auto_pack_size`). Not part of a run's key: a packed member equals its
            separate run.
    """

    batch_size: int = 16
    steps: int = 48
    lr: float = 3e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 5
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    grad_clip: float = 1.0
    num_threads: int = 1
    divergence_factor: float = 3.0
    check_every: int = 8
    device: str = "cpu"
    precision: str = "auto"
    compile: str = "auto"
    activation_checkpointing: bool = False
    pack_size: int = 0

    def __post_init__(self) -> None:
        for name in ("batch_size", "steps", "num_threads", "check_every"):
            _positive_int("ProxyTrainConfig", name, getattr(self, name))
        if isinstance(self.warmup_steps, bool) or not isinstance(self.warmup_steps, int):
            raise ClimbInputError(
                f"ProxyTrainConfig.warmup_steps must be an integer, got {self.warmup_steps!r}"
            )
        if not 0 <= self.warmup_steps <= self.steps:
            raise ClimbInputError(
                f"ProxyTrainConfig.warmup_steps={self.warmup_steps} must be in [0, steps={self.steps}]"
            )
        # lr is allowed to be absurd (tests provoke divergence with it), only not non-finite or <= 0.
        _finite("ProxyTrainConfig", "lr", self.lr, 0.0, 1e38, lo_open=True)
        _finite("ProxyTrainConfig", "min_lr_ratio", self.min_lr_ratio, 0.0, 1.0)
        _finite("ProxyTrainConfig", "weight_decay", self.weight_decay, 0.0, 10.0)
        _finite("ProxyTrainConfig", "beta1", self.beta1, 0.0, 1.0)
        _finite("ProxyTrainConfig", "beta2", self.beta2, 0.0, 1.0)
        if self.beta1 >= 1.0 or self.beta2 >= 1.0:
            raise ClimbInputError(f"ProxyTrainConfig betas must be < 1, got ({self.beta1}, {self.beta2})")
        _finite("ProxyTrainConfig", "eps", self.eps, 0.0, 1.0, lo_open=True)
        _finite("ProxyTrainConfig", "grad_clip", self.grad_clip, 0.0, 1e9)
        _finite("ProxyTrainConfig", "divergence_factor", self.divergence_factor, 1.0, 1e9, lo_open=True)
        if self.device not in ("cpu", "cuda"):
            raise ClimbInputError(f"ProxyTrainConfig.device must be 'cpu' or 'cuda', got {self.device!r}")
        if self.precision not in PRECISIONS:
            raise ClimbInputError(
                f"ProxyTrainConfig.precision must be one of {PRECISIONS}, got {self.precision!r}"
            )
        if self.compile not in ("auto", "on", "off"):
            raise ClimbInputError(
                f"ProxyTrainConfig.compile must be 'auto', 'on' or 'off', got {self.compile!r}"
            )
        if not isinstance(self.activation_checkpointing, bool):
            raise ClimbInputError(
                f"ProxyTrainConfig.activation_checkpointing must be a bool, got {self.activation_checkpointing!r}"
            )
        if isinstance(self.pack_size, bool) or not isinstance(self.pack_size, int) or self.pack_size < 0:
            raise ClimbInputError(
                f"ProxyTrainConfig.pack_size must be an integer >= 0 (0 = automatic), got {self.pack_size!r}"
            )

    @classmethod
    def tiny(cls) -> ProxyTrainConfig:
        return cls(batch_size=8, steps=30, lr=1e-2, warmup_steps=3, check_every=5)

    def to_dict(self) -> dict[str, Any]:
        # Fields added after the first release are left out at their defaults, so that the keys of
        # runs cached before them stay valid.
        return {
            k: v
            for k, v in dataclasses.asdict(self).items()
            if k not in LATER_DEFAULTS or v != LATER_DEFAULTS[k]
        }


PRECISIONS = ("auto", "fp32", "bf16", "fp16")
LATER_DEFAULTS: dict[str, Any] = {
    "precision": "auto",
    "compile": "auto",
    "activation_checkpointing": False,
    "pack_size": 0,
}


@dataclass(frozen=True)
class ProxyConfig:
    """Everything that determines a proxy run besides the data, the mixture and the seed.

    Args:
        base_model: a Hugging Face checkpoint (local directory or `s3://...`) every proxy continues
            pre-training from instead of a fresh seeded init (the paper's setting). Its location is part
            of the run key: keep checkpoints immutable (a new version gets a new path).
    """

    model: ProxyModelConfig = field(default_factory=ProxyModelConfig)
    train: ProxyTrainConfig = field(default_factory=ProxyTrainConfig)
    base_model: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.model, ProxyModelConfig):
            raise ClimbInputError(f"ProxyConfig.model must be a ProxyModelConfig, got {self.model!r}")
        if not isinstance(self.train, ProxyTrainConfig):
            raise ClimbInputError(f"ProxyConfig.train must be a ProxyTrainConfig, got {self.train!r}")
        if self.base_model is not None and (not isinstance(self.base_model, str) or not self.base_model):
            raise ClimbInputError(
                f"ProxyConfig.base_model must be a checkpoint path or s3:// URL, got {self.base_model!r}"
            )

    @classmethod
    def default(cls) -> ProxyConfig:
        return cls()

    @classmethod
    def tiny(cls, vocab_size: int = 512) -> ProxyConfig:
        return cls(model=ProxyModelConfig.tiny(vocab_size), train=ProxyTrainConfig.tiny())

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProxyConfig:
        try:
            return cls(
                model=ProxyModelConfig(**data["model"]),
                train=ProxyTrainConfig(**data["train"]),
                base_model=data.get("base_model"),
            )
        except (KeyError, TypeError) as exc:
            raise ClimbInputError(f"bad proxy config {dict(data)!r}: {exc}") from exc

    @property
    def tokens_per_step(self) -> int:
        return self.train.batch_size * self.model.block_size

    @property
    def token_budget(self) -> int:
        return self.train.steps * self.tokens_per_step

    def with_token_budget(self, tokens: int) -> ProxyConfig:
        """The same config with `steps` chosen so that training sees at least `tokens` tokens."""
        _positive_int("ProxyConfig", "token budget", tokens)
        steps = -(-tokens // self.tokens_per_step)
        warmup = min(self.train.warmup_steps, steps)
        return dataclasses.replace(
            self, train=dataclasses.replace(self.train, steps=steps, warmup_steps=warmup)
        )

    def to_dict(self) -> dict[str, Any]:
        out = {"model": self.model.to_dict(), "train": self.train.to_dict()}
        if self.base_model is not None:
            out["base_model"] = self.base_model
        return out

    def run_dict(self) -> dict[str, Any]:
        """What keys a run: everything but how many proxies share the device (`pack_size`)."""
        out = self.to_dict()
        out["train"] = {k: v for k, v in out["train"].items() if k != "pack_size"}
        return out

    def content_hash(self) -> str:
        return content_hash(self.to_dict())


# Upper bound of the automatic pack size: beyond it one step's windows and logits outgrow the benefit.
MAX_AUTO_PACK = 64
# Device memory (bytes) assumed where none is declared or visible: a CPU machine or pod of 16 GiB; an 80 GB
# A100/H100 (what a planner without a GPU, e.g. the Dagster run pod, assumes).
DEFAULT_DEVICE_MEMORY = {"cpu": 16 * 2**30, "cuda": 80 * 10**9}
# Rows of logits the CPU's fused LM head (loss.py) materialises at a time: 256 x 4096 vocab x 4 bytes = 4 MiB,
# which fits in L2+L3 of current CPUs (128-512 measured equal); bytes_per_member counts it.
HEAD_CHUNK_ROWS = 256


def planned_precision(train: ProxyTrainConfig) -> str:
    """The compute precision a run will use, without looking at the device: "auto" is fp32 on CPU and bf16
    on CUDA (runtime.resolve picks fp16 on GPUs without bf16: the same two bytes a value)."""
    if train.precision != "auto":
        return train.precision
    return "fp32" if train.device == "cpu" else "bf16"


def bytes_per_member(config: ProxyConfig) -> float:
    """Device memory one pack member needs while training (an estimate, 25% slack included).

    fp32 weights, gradients and two AdamW moments (16 bytes a parameter); the activations kept for the
    backward pass, ~(14 d_model + 4 d_ff) values a token per layer (HF Llama with SDPA: norms, q/k/v,
    their RoPE'd copies, attention output, SwiGLU's four d_ff tensors) in the compute dtype (2 bytes under
    autocast, 4 in fp32), or with checkpointing one d_model vector per layer plus the layer recomputed;
    one more layer's worth for the gradients the backward pass holds at its peak; and the LM head: on the
    CPU's fused fp32 head (loss.py) the gradients of the hidden states and of the head plus one chunk of
    logits, elsewhere the whole logits (in the compute dtype, their fp32 copy and its gradient). Measured
    against peak RSS on CPU in docs/cost.md (`python -m climb_dagster.bench cost`).
    """
    m, t = config.model, config.train
    precision = planned_precision(t)
    value = 4 if precision == "fp32" else 2
    tokens = config.tokens_per_step
    layer = 14 * m.d_model + 4 * m.d_ff
    kept = (m.n_layers * m.d_model + layer if t.activation_checkpointing else m.n_layers * layer) + layer
    if t.device == "cpu" and precision == "fp32":
        head = 4 * (tokens * m.d_model + m.vocab_size * m.d_model + 3 * HEAD_CHUNK_ROWS * m.vocab_size)
    else:
        head = tokens * m.vocab_size * (value + 8)
    return 1.25 * (16 * m.n_params + tokens * kept * value + head)


def auto_pack_size(config: ProxyConfig, device_memory: int | None = None) -> int:
    """`config.train.pack_size`, or when 0 (automatic): on CPU 1, on CUDA as many members as fit in 80%
    of the device memory (capped at MAX_AUTO_PACK).

    CPU rule: Dagster already runs one proxy per core as parallel steps, which uses every core; a pack
    on one thread gains little there (the head, over half of a CPU step, runs member by member; a pack
    of 4 demo proxies measured 1.2x the one-at-a-time throughput), so set `pack_size` explicitly to pack
    on CPU. `device_memory` (bytes) defaults to the visible GPU's, else DEFAULT_DEVICE_MEMORY.
    """
    t = config.train
    if t.pack_size:
        return t.pack_size
    if t.device == "cpu":
        return 1
    if device_memory is None:
        import torch

        device_memory = (
            torch.cuda.mem_get_info()[1] if torch.cuda.is_available() else DEFAULT_DEVICE_MEMORY["cuda"]
        )
    return int(max(1, min(MAX_AUTO_PACK, 0.8 * device_memory // bytes_per_member(config))))


def proxy_run_key(mixture: Sequence[float], config: ProxyConfig, seed: int, data_key: str = "") -> str:
    """Key of a proxy run: hash of mixture + config + seed (+ an optional key of the token store)."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ClimbInputError(f"seed must be an integer, got {seed!r}")
    weights = [float(w) for w in mixture]
    if not all(math.isfinite(w) for w in weights):
        raise ClimbInputError(f"mixture weights must be finite, got {weights}")
    return content_hash({"mixture": weights, "config": config.run_dict(), "seed": seed, "data": data_key})
