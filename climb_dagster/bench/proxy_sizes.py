"""The e2e protocol's model sizes, apart from the lab so that a machine without polars or faiss (a lent GPU) can
time and check them with `bench proxy --size e2e-proxy|e2e-transfer`."""

from __future__ import annotations

from dataclasses import replace

from climb_dagster.core.proxy.config import ProxyConfig, ProxyModelConfig, ProxyTrainConfig


def transfer_config(proxy: ProxyConfig, width: int = 2, depth: int = 2, tokens: int = 5) -> ProxyConfig:
    """The larger model final mixtures are retrained on: `width` x the proxy's d_model and d_ff, `depth` x its
    layers, `tokens` x its training tokens (same vocabulary, block and batch, so the same token store)."""
    m, t = proxy.model, proxy.train
    model = replace(m, d_model=m.d_model * width, d_ff=m.d_ff * width, n_layers=m.n_layers * depth)
    train = replace(t, steps=t.steps * tokens, warmup_steps=t.warmup_steps * tokens)
    return replace(proxy, model=model, train=train)


def proxy_config(name: str, steps: int | None) -> ProxyConfig:
    """default: the pipeline's 0.95M proxy; small: a 0.24M one the full protocol can afford on 2 cores; tiny:
    tests."""
    if name == "tiny":
        proxy = ProxyConfig.tiny()
    elif name == "small":
        proxy = ProxyConfig(
            model=ProxyModelConfig(
                vocab_size=2048, d_model=64, n_layers=2, n_heads=4, block_size=64, d_ff=192
            ),
            train=ProxyTrainConfig(batch_size=16, steps=48),
        )
    else:
        proxy = ProxyConfig.default()
    if steps is not None:
        proxy = replace(
            proxy, train=replace(proxy.train, steps=steps, warmup_steps=min(proxy.train.warmup_steps, steps))
        )
    return proxy


def train_device(choice: str) -> str:
    """`auto`: CUDA when torch sees a GPU, else the CPU; the protocol itself is the same on both."""
    if choice != "auto":
        return choice
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def on_device(config: ProxyConfig, device: str) -> ProxyConfig:
    return replace(config, train=replace(config.train, device=device))
