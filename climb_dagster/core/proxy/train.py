"""Train one proxy LM on windows sampled from a mixture: AdamW, warmup + cosine, clipping, explicit seeds.

Determinism: weights come from `seed`, windows from `seed + 1` (independent streams), the thread
count from the config, and nothing reads the global RNG; the same (store, mixture, config, seed)
gives the same losses bit-for-bit on CPU.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from climb_dagster.core.common import schema
from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.io import storage
from climb_dagster.core.proxy.config import ProxyConfig, ProxyTrainConfig, proxy_run_key
from climb_dagster.core.proxy.cost import check_free_memory
from climb_dagster.core.proxy.sampler import sample_windows, validate_mixture
from climb_dagster.core.proxy.tokens import TokenStore

if TYPE_CHECKING:
    from climb_dagster.core.proxy import runtime

RUN_FILE = "proxy_run.json"
# Callback(step, total_steps, loss): called at most ~20 times per run, never per step.
Progress = Callable[[int, int, float], None]


@dataclass
class ProxyResult:
    """Outcome of one proxy run. A diverged run has status "failed", a reason and no model."""

    status: str
    reason: str
    run_key: str
    steps: int
    tokens: int
    loss_first: float | None
    loss_last: float | None
    loss_min: float | None
    loss_curve: list[tuple[int, float]]
    wall_s: float
    tokens_per_s: float
    n_params: int
    model_dir: str | None = None
    model: Any = field(default=None, repr=False)
    # Every step's loss (not in to_dict: the curve above is the summary that gets stored).
    step_losses: np.ndarray | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return self.status == schema.OK

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe summary (no model object; NaN/inf losses become None)."""
        return {
            schema.STATUS: self.status,
            schema.REASON: self.reason,
            schema.RUN_KEY: self.run_key,
            schema.STEPS: self.steps,
            schema.TOKENS: self.tokens,
            schema.LOSS_FIRST: self.loss_first,
            schema.LOSS_LAST: self.loss_last,
            schema.LOSS_MIN: self.loss_min,
            schema.LOSS_CURVE: [[s, v] for s, v in self.loss_curve],
            schema.WALL_S: self.wall_s,
            schema.TOKENS_PER_S: self.tokens_per_s,
            schema.N_PARAMS: self.n_params,
            schema.MODEL_DIR: self.model_dir,
        }


def lr_at(step: int, cfg: ProxyTrainConfig) -> float:
    """Linear warmup over `warmup_steps`, then cosine from `lr` down to `min_lr_ratio * lr` at the last step."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    decay_steps = max(1, cfg.steps - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / decay_steps)
    min_lr = cfg.lr * cfg.min_lr_ratio
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (cfg.lr - min_lr)


def make_optimizer(model: Any, cfg: ProxyTrainConfig, member_dims: int = 0) -> Any:
    """AdamW with weight decay on 2-D parameters only (matrices and embeddings, not norms).

    member_dims: leading dimensions that index pack members (pack.py), not counted as matrix dimensions.
    """
    import torch

    params = list({id(p): p for p in model.parameters() if p.requires_grad}.values())
    decay = [p for p in params if p.ndim - member_dims >= 2]
    no_decay = [p for p in params if p.ndim - member_dims < 2]
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    # Fused AdamW: one kernel over all parameters per step (CPU support since torch 2.4).
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps, fused=True)


def set_lr(opt: Any, lr: float) -> None:
    for group in opt.param_groups:
        group["lr"] = lr


def optimizer_update(opt: Any, scaler: Any, clip: Callable[[], None] | None) -> None:
    """One optimizer step after the backward: unscale (fp16), clip, step, clear the gradients."""
    if scaler is not None:
        scaler.unscale_(opt)
    if clip is not None:
        clip()
    if scaler is not None:
        scaler.step(opt)
        scaler.update()
    else:
        opt.step()
    opt.zero_grad(set_to_none=True)


def _downsample(losses: np.ndarray, points: int = 20) -> list[tuple[int, float]]:
    """About `points` (step, mean loss over the preceding interval) pairs: a curve small enough for metadata."""
    n = losses.size
    if n == 0:
        return []
    edges = np.unique(np.linspace(0, n, min(points, n) + 1).astype(int))
    return [(int(hi), float(losses[lo:hi].mean())) for lo, hi in zip(edges[:-1], edges[1:], strict=True)]


def train_proxy(
    store: TokenStore,
    mixture: Sequence[float] | np.ndarray,
    config: ProxyConfig,
    seed: int,
    out_dir: str | os.PathLike[str] | None = None,
    init_from: str | os.PathLike[str] | None = None,
    progress: Progress | None = None,
    windows: np.ndarray | None = None,
    storage_options: dict[str, Any] | None = None,
    free_memory: int | None = None,
) -> ProxyResult:
    """Train a proxy LM on `config.train.steps` batches of windows drawn from `mixture`.

    Args:
        init_from: a Hugging Face checkpoint directory to continue from instead of a fresh model.
        out_dir: where to save the trained model in Hugging Face format (model.safetensors,
            config.json, tokenizer files, proxy_run.json); written to a temp dir, then renamed.
        windows: pre-sampled (steps * batch_size, block_size + 1) token windows, to train two trainers
            on identical data (the bench); by default they are sampled from `mixture` with `seed + 1`.
        storage_options: s3 options (endpoint, retries) to fetch a remote `config.base_model`.
        free_memory: bytes free on the training device (None: read it); a run whose estimated memory
            exceeds it is refused with ClimbResourceError before anything is allocated (cost.py).

    A run whose loss becomes NaN/inf or explodes is returned with status "failed" and a reason.
    """
    from climb_dagster.core.proxy import runtime
    from climb_dagster.core.proxy.model import count_params, torch_threads

    mcfg, tcfg = config.model, config.train
    w = validate_mixture(mixture, store.n_clusters)
    check_run_inputs(store, config, [seed])
    check_free_memory(config, 1, free_memory)
    run_key = proxy_run_key(w.tolist(), config, seed, store.key())
    n_windows = tcfg.steps * tcfg.batch_size
    if windows is None:
        windows = sample_windows(store, w, n_windows, mcfg.block_size, seed + 1)
    elif windows.shape != (n_windows, mcfg.block_size + 1):
        raise ClimbInputError(
            f"windows have shape {windows.shape}, expected {(n_windows, mcfg.block_size + 1)}"
        )

    t0 = time.perf_counter()
    with torch_threads(tcfg.num_threads):
        rt = runtime.resolve(tcfg)
        source = init_from if init_from is not None else config.base_model
        model = initial_model(config, seed, store.eod_id, source, storage_options)
        model.to(rt.device).train()
        n_params = count_params(model)
        losses, status, reason, done = _loop(model, windows, config, rt, progress)
    wall = time.perf_counter() - t0
    result = summarize(losses, status, reason, done, run_key, config, wall, n_params)
    if status == schema.OK:
        result.model = model
        if out_dir is not None:
            result.model_dir = str(save_proxy(model, store, out_dir, result, config, w, seed))
    return result


def check_run_inputs(store: TokenStore, config: ProxyConfig, seeds: Sequence[Any]) -> None:
    """Seeds are integers and the token store's vocabulary fits the model's embedding."""
    for seed in seeds:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ClimbInputError(f"seed must be an integer, got {seed!r}")
    if store.vocab_size > config.model.vocab_size:
        raise ClimbInputError(
            f"token store {store.path} has vocab_size {store.vocab_size} > "
            f"ProxyModelConfig.vocab_size {config.model.vocab_size}"
        )


def initial_model(
    config: ProxyConfig,
    seed: int,
    eod_id: int,
    source: str | os.PathLike[str] | None,
    storage_options: dict[str, Any] | None = None,
) -> Any:
    """The model a proxy starts from: the checkpoint at `source` (checked against the config), or a fresh
    one from `seed` when `source` is None."""
    from climb_dagster.core.proxy.model import build_model, check_compatible, load_model

    base_dir = checkpoint_dir(source, storage_options)
    if base_dir is None:
        return build_model(config.model, seed, eod_id=eod_id)
    model = load_model(base_dir)
    check_compatible(model, config.model, str(source))
    return model


def checkpoint_dir(
    location: str | os.PathLike[str] | None, storage_options: dict[str, Any] | None = None
) -> Path | None:
    """A local directory holding the checkpoint at `location` (a path, or an s3:// URL fetched once)."""
    if location is None:
        return None
    text = str(location)
    if "://" not in text:
        return Path(text)

    path = storage.make_path(text, storage_options)
    if not path.exists():
        raise ClimbInputError(f"base checkpoint not found: {text}")
    return storage.local_dir_copy(path)


def summarize(
    losses: np.ndarray,
    status: str,
    reason: str,
    done: int,
    run_key: str,
    config: ProxyConfig,
    wall: float,
    n_params: int,
) -> ProxyResult:
    """The ProxyResult of a run from its per-step losses (the model is attached by the caller)."""
    tokens = done * config.tokens_per_step
    finite = losses[:done][np.isfinite(losses[:done])]
    tail = losses[max(0, done - max(1, done // 10)) : done]
    return ProxyResult(
        status=status,
        reason=reason,
        run_key=run_key,
        steps=done,
        tokens=tokens,
        loss_first=float(losses[0]) if done and np.isfinite(losses[0]) else None,
        loss_last=float(tail.mean()) if done and np.all(np.isfinite(tail)) else None,
        loss_min=float(finite.min()) if finite.size else None,
        loss_curve=[(s, v) for s, v in _downsample(losses[:done]) if math.isfinite(v)],
        wall_s=wall,
        tokens_per_s=tokens / wall if wall > 0 else 0.0,
        n_params=n_params,
        step_losses=losses[:done],
    )


def divergence_limit(config: ProxyConfig) -> float:
    return config.train.divergence_factor * math.log(config.model.vocab_size)


def first_divergence(seen: np.ndarray, offset: int, limit: float) -> tuple[int, str] | None:
    """(step, reason) of the first non-finite or exploding loss in `seen` (losses from step `offset`)."""
    bad = np.flatnonzero(~np.isfinite(seen) | (seen > limit))
    if not bad.size:
        return None
    value = float(seen[bad[0]])
    why = "non-finite" if not math.isfinite(value) else f"exploding (> {limit:.3g})"
    at = offset + int(bad[0])
    return at, f"diverged: {why} loss {value!r} at step {at}"


def step_loss(model: Any, x: Any, y: Any, fused_head: bool) -> Any:
    """Mean next-token loss of one batch. CPU: the chunked fused head (loss.py); CUDA: plain logits +
    cross-entropy, which torch.compile fuses and which runs in the autocast dtype."""
    import torch

    hidden = model.model(input_ids=x, use_cache=False).last_hidden_state
    weight = model.lm_head.weight
    if fused_head:
        from climb_dagster.core.proxy.loss import linear_cross_entropy

        return linear_cross_entropy(hidden.reshape(-1, hidden.shape[-1]), weight, y.reshape(-1))
    logits = hidden @ weight.t()
    return torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1))


def _loop(
    model: Any, windows: np.ndarray, config: ProxyConfig, rt: runtime.Runtime, progress: Progress | None
) -> tuple[np.ndarray, str, str, int]:
    """The training loop proper; returns (per-step losses, status, reason, steps done)."""
    import torch

    from climb_dagster.core.proxy import runtime

    tcfg = config.train
    steps = tcfg.steps
    limit = divergence_limit(config)
    opt = make_optimizer(model, tcfg)
    scaler = rt.grad_scaler()
    params = [p for g in opt.param_groups for p in g["params"]]
    if tcfg.activation_checkpointing:
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})

    def loss_of(x: Any, y: Any) -> Any:
        # Autocast covers the forward only; the backward runs in the dtypes the forward chose.
        with rt.autocast():
            return step_loss(model, x, y, rt.fused_head)

    forward = runtime.CompiledStep(loss_of, rt.compile)

    def backward(loss: Any) -> None:
        (loss if scaler is None else scaler.scale(loss)).backward()

    def reset() -> None:
        opt.zero_grad(set_to_none=True)

    batches = runtime.Batches(windows, rt.device, tcfg.batch_size)
    # Losses stay on the device and are read back only every `check_every` steps: no per-step sync.
    loss_buf = torch.empty(steps, dtype=torch.float32, device=rt.device)
    report_every = max(1, steps // 20)
    checked = 0

    def clip() -> None:
        torch.nn.utils.clip_grad_norm_(params, tcfg.grad_clip, foreach=True)

    for step in range(steps):
        set_lr(opt, lr_at(step, tcfg))
        x, y = batches.get(step)
        loss = forward.forward_backward((x, y), backward, reset)
        optimizer_update(opt, scaler, clip if tcfg.grad_clip > 0 else None)
        loss_buf[step] = loss.detach()
        last = step == steps - 1
        if (step + 1) % tcfg.check_every == 0 or last:
            hit = first_divergence(loss_buf[checked : step + 1].cpu().numpy(), checked, limit)
            if hit is not None:
                at, why = hit
                return loss_buf[: at + 1].cpu().numpy().astype(np.float64), schema.FAILED, why, at + 1
            checked = step + 1
        if progress is not None and ((step + 1) % report_every == 0 or last):
            progress(step + 1, steps, float(loss_buf[step]))
    losses = loss_buf.cpu().numpy().astype(np.float64)
    # The last update is not seen by any loss: a NaN/inf gradient there would only show in the weights.
    if not bool(torch.stack([p.detach().isfinite().all() for p in params]).all()):
        return losses, schema.FAILED, f"diverged: non-finite weights after step {steps - 1}", steps
    return losses, schema.OK, "", steps


def save_proxy(
    model: Any,
    store: TokenStore,
    out_dir: str | os.PathLike[str],
    result: ProxyResult,
    config: ProxyConfig,
    mixture: np.ndarray,
    seed: int,
) -> Path:
    """Save in Hugging Face format (+ tokenizer + proxy_run.json) via a temp dir renamed when complete."""
    out = Path(out_dir)
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    model.save_pretrained(str(tmp), safe_serialization=True)
    store.load_tokenizer().save_pretrained(str(tmp))
    record = {
        **result.to_dict(),
        "model_dir": str(out),
        "mixture": mixture.tolist(),
        "seed": seed,
        "config": config.to_dict(),
        "token_store": str(store.path),
        "token_store_key": store.key(),
    }
    (tmp / RUN_FILE).write_text(json.dumps(record, indent=1))
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out
