"""Sizing embedding and assignment work from a device's free memory: pure arithmetic on given figures
(free bytes, model shape), so it is tested on the CPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from climb_dagster.core.common.errors import ClimbInputError

# Token budgets are rounded down to a multiple of this (tensor-core friendly shapes) and never go below it.
BUDGET_QUANTUM = 1024


# Typical shortest padded window in a length-sorted chunk: bounds the documents per batch on a GPU.
MIN_TOKENS_PER_DOC = 32


CPU_TOKEN_BUDGET = 8192


CPU_MAX_BATCH = 256


@dataclass(frozen=True)
class EncoderShape:
    """What sets the activation memory of one token in a transformer encoder forward pass."""

    hidden: int
    intermediate: int
    heads: int
    layers: int

    @classmethod
    def of(cls, model_config: Any) -> EncoderShape:
        hidden = int(model_config.hidden_size)
        return cls(
            hidden=hidden,
            intermediate=int(getattr(model_config, "intermediate_size", 4 * hidden)),
            heads=int(getattr(model_config, "num_attention_heads", 1)),
            layers=int(getattr(model_config, "num_hidden_layers", 1)),
        )


def token_budget_from_memory(
    free_bytes: int, shape: EncoderShape, max_length: int, bytes_per_value: int, fraction: float = 0.5
) -> int:
    """Padded tokens per forward pass that fit in `fraction` of the free device memory.

    Under inference_mode only one layer's activations are alive at once: per token the hidden states
    (a few copies), the feed-forward intermediate, and the attention scores of its row (heads x length,
    an upper bound when the fused kernels do not materialise them).
    """
    if free_bytes < 0 or not 0 < fraction <= 1:
        raise ClimbInputError(f"free_bytes={free_bytes!r}, fraction={fraction!r}: need >= 0 and (0, 1]")
    per_token = bytes_per_value * (4 * shape.hidden + 2 * shape.intermediate + shape.heads * max_length)
    budget = int(free_bytes * fraction) // max(per_token, 1)
    return max(BUDGET_QUANTUM, budget // BUDGET_QUANTUM * BUDGET_QUANTUM)


def batch_cap(token_budget: int) -> int:
    """Documents per forward pass on a GPU: enough to fill the budget with short windows."""
    return max(1, token_budget // MIN_TOKENS_PER_DOC)


def rows_per_chunk(
    free_bytes: int, dim: int, n_centroids: int, fraction: float = 0.25, cap: int = 1 << 22
) -> int:
    """Assignment rows per chunk on a device: the chunk (dim floats) and its scores against every
    centroid (n_centroids floats) must fit in `fraction` of the free memory."""
    per_row = 4 * (dim + n_centroids)
    return int(max(1024, min(cap, int(free_bytes * fraction) // per_row)))


def shard_ranges(n: int, parts: int) -> list[tuple[int, int]]:
    """Contiguous [start, stop) ranges of nearly equal size covering range(n) once, one per part."""
    if parts < 1:
        raise ClimbInputError(f"parts={parts!r}: must be >= 1")
    bounds = np.linspace(0, n, parts + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]


def device_list(device: str) -> list[str] | None:
    """The devices of a multi-device setting: "cuda:all" (every visible GPU) or "cuda:0,cuda:1"; None for
    one device ("auto", "cpu", "cuda", "cuda:N", "mps")."""
    if device == "cuda:all":
        import torch

        n = torch.cuda.device_count()
        if n == 0:
            raise ClimbInputError("device='cuda:all': no CUDA device is visible on this machine")
        return [f"cuda:{i}" for i in range(n)]
    if "," not in device:
        return None
    names = [d.strip() for d in device.split(",")]
    if len(set(names)) != len(names):
        raise ClimbInputError(f"device={device!r}: a device is listed twice")
    return names
