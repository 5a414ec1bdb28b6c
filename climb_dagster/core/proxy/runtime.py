"""How proxy steps run on their device: precision, TF32, compilation with a fallback, host->device batches.

Imported lazily (it imports torch). On CPU everything here is the identity: fp32, eager, the windows
as one tensor, so the CPU path keeps its speed and its bit-for-bit reproducibility. On CUDA: bf16
autocast over fp32 master weights (fp16 + loss scaling where the GPU lacks bf16), TF32 matmuls,
`torch.compile` of the forward + loss (eager if compilation fails), pinned host windows copied one batch
ahead with non-blocking copies.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.proxy.config import ProxyTrainConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Runtime:
    """The resolved execution settings of one run (from a ProxyTrainConfig and the device present)."""

    device: torch.device
    amp_dtype: torch.dtype | None  # None: plain fp32
    loss_scaling: bool
    compile: bool

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def precision(self) -> str:
        return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.amp_dtype]

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def grad_scaler(self) -> Any:
        return torch.amp.GradScaler("cuda") if self.loss_scaling else None

    @property
    def fused_head(self) -> bool:
        """The chunked fused LM head + loss (loss.py) is the fp32 CPU path; elsewhere plain logits +
        cross-entropy, which autocast and torch.compile handle."""
        return self.device.type == "cpu" and self.amp_dtype is None


def resolve(tcfg: ProxyTrainConfig) -> Runtime:
    """Settings for `tcfg` on this machine; also switches TF32 matmuls on when the run is on CUDA."""
    if tcfg.device == "cuda" and not torch.cuda.is_available():
        raise ClimbInputError("ProxyTrainConfig.device='cuda' but CUDA is not available")
    device = torch.device(tcfg.device)
    precision = tcfg.precision
    if precision == "auto":
        if device.type == "cpu":
            precision = "fp32"
        else:
            precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if precision == "fp16" and device.type != "cuda":
        raise ClimbInputError(
            "ProxyTrainConfig.precision='fp16' needs device='cuda' (loss scaling is CUDA-only)"
        )
    amp = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    if device.type == "cuda":
        # TF32 for the fp32 matmuls that autocast leaves (optimizer-side, norms' weights): ~8x on Ampere+.
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    compile_on = tcfg.compile == "on" or (tcfg.compile == "auto" and device.type == "cuda")
    return Runtime(device, amp, precision == "fp16", compile_on)


class CompiledStep:
    """`fn` compiled with torch.compile when enabled; if compiling (or running the compiled code) raises,
    the reason is kept, a warning logged, and this and every later call run `fn` eagerly."""

    def __init__(
        self,
        fn: Callable[..., Any],
        enabled: bool,
        compiler: Callable[[Callable[..., Any]], Any] | None = None,
    ) -> None:
        self.eager = fn
        self.fallback_reason: str | None = None
        self.fn = (compiler or torch.compile)(fn) if enabled else fn

    @property
    def compiled(self) -> bool:
        return self.fn is not self.eager

    def __call__(self, *args: Any) -> Any:
        return self.forward_backward(args)

    def forward_backward(
        self,
        args: tuple[Any, ...],
        backward: Callable[[Any], None] | None = None,
        reset: Callable[[], None] | None = None,
    ) -> Any:
        """`fn(*args)`, then `backward(result)` when given. Compiled code may fail in either (the backward
        graph is compiled on first use); then `reset()` clears partial gradients and both rerun eagerly."""
        if not self.compiled:
            out = self.eager(*args)
            if backward is not None:
                backward(out)
            return out
        try:
            out = self.fn(*args)
            if backward is not None:
                backward(out)
            return out
        except Exception as exc:  # noqa: BLE001 - Dynamo/Inductor raise many types; eager is always correct
            self.fallback_reason = f"{type(exc).__name__}: {exc}"[:500]
            log.warning("torch.compile failed, continuing eagerly: %s", self.fallback_reason)
            self.fn = self.eager
            if reset is not None:
                reset()
            return self.forward_backward(args, backward, reset)


class Batches:
    """Per-step (x, y) batches of pre-sampled windows, on the run's device.

    `windows` is (..., n, block + 1): batches slice the window axis (-2), so a pack's (m, n, block + 1)
    windows give (m, batch, block) batches. On CPU the windows become one int64 tensor (no copies).
    On CUDA they stay in pinned host memory and each batch is copied asynchronously one step ahead.
    """

    def __init__(self, windows: np.ndarray, device: torch.device, batch_size: int) -> None:
        self.device = device
        self.bs = batch_size
        host = torch.from_numpy(np.ascontiguousarray(windows, dtype=np.int64))
        self.host = host.pin_memory() if device.type == "cuda" else host
        self._next: tuple[int, torch.Tensor] | None = None

    def _copy(self, step: int) -> torch.Tensor:
        part = self.host[..., step * self.bs : (step + 1) * self.bs, :]
        if self.device.type == "cpu":
            return part
        return part.to(self.device, non_blocking=True)

    def get(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        batch = self._next[1] if self._next is not None and self._next[0] == step else self._copy(step)
        if self.device.type == "cuda" and (step + 1) * self.bs < self.host.shape[-2]:
            self._next = (step + 1, self._copy(step + 1))
        return batch[..., :-1], batch[..., 1:]
