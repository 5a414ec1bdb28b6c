"""The proxy LM: a small Llama built from a transformers config, initialised from an explicit seed.

Imported lazily (it imports torch and transformers at module level).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.proxy.checkpoint import mismatch_message, size_mismatch
from climb_dagster.core.proxy.config import ProxyModelConfig


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run a block with `n` torch intra-op threads, then restore the previous count."""
    prev = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(prev)


def llama_config(cfg: ProxyModelConfig, eod_id: int = 0, pad_id: int = 1) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.d_model,
        intermediate_size=cfg.d_ff,
        num_hidden_layers=cfg.n_layers,
        num_attention_heads=cfg.n_heads,
        num_key_value_heads=cfg.n_heads,
        max_position_embeddings=cfg.block_size,
        rope_theta=cfg.rope_theta,
        initializer_range=cfg.init_std,
        rms_norm_eps=1e-5,
        tie_word_embeddings=True,
        attention_bias=False,
        mlp_bias=False,
        bos_token_id=eod_id,
        eos_token_id=eod_id,
        pad_token_id=pad_id,
        use_cache=False,
        attn_implementation="sdpa",
    )


@torch.no_grad()
def init_weights(model: torch.nn.Module, cfg: ProxyModelConfig, seed: int) -> None:
    """GPT-2 style init from `seed` alone: N(0, std) matrices, residual projections scaled by 1/sqrt(2L).

    Uses its own torch.Generator, so the init neither reads nor advances the global RNG.
    """
    g = torch.Generator(device="cpu").manual_seed(seed)
    residual_std = cfg.init_std / math.sqrt(2 * cfg.n_layers)
    # Sorted names: the draw order, hence the weights, must not depend on module registration details.
    for name, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
        if p.ndim >= 2:
            std = residual_std if name.endswith(("o_proj.weight", "down_proj.weight")) else cfg.init_std
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float32) * std)
        elif name.endswith("norm.weight") or "layernorm" in name:
            p.fill_(1.0)
        else:
            p.zero_()


def build_model(cfg: ProxyModelConfig, seed: int, eod_id: int = 0, pad_id: int = 1) -> LlamaForCausalLM:
    """A freshly initialised proxy model (float32, SDPA attention, tied embeddings)."""
    # HF's own init draws from the global RNG; fork it so building a model has no global side effect.
    with torch.random.fork_rng(devices=[]):
        model = LlamaForCausalLM(llama_config(cfg, eod_id, pad_id))
    init_weights(model, cfg, seed)
    return model


def load_model(path: str | os.PathLike[str]) -> LlamaForCausalLM:
    """Load a proxy checkpoint saved in Hugging Face format (config.json + model.safetensors); pickled
    weights (pytorch_model.bin) are never loaded."""
    p = Path(path)
    if not (p / "config.json").is_file():
        raise ClimbInputError(f"not a Hugging Face checkpoint directory (no config.json): {p}")
    with torch.random.fork_rng(devices=[]):
        model = LlamaForCausalLM.from_pretrained(
            str(p), attn_implementation="sdpa", dtype=torch.float32, use_safetensors=True
        )
    return model


def check_compatible(model: LlamaForCausalLM, cfg: ProxyModelConfig, source: str) -> None:
    """Raise if a loaded checkpoint's sizes differ from `cfg` (continuing training needs the same shape)."""
    diff = size_mismatch(model.config.to_dict(), cfg)
    if diff:
        raise ClimbInputError(mismatch_message(source, diff))


def count_params(model: torch.nn.Module) -> int:
    """Distinct parameters (tied embeddings counted once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
