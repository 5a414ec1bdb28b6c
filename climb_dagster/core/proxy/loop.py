"""The one proxy training loop: a single proxy, a pack of proxies and DoReMi's DRO proxy all train here.

A `Trainee` holds what differs between them: how the losses of a batch are computed (one model, packed
members, per-window losses weighted by domain), what is differentiated, how gradients are clipped and
how a diverged row leaves. The loop holds the rest: AdamW with weight decay on matrices only, linear
warmup then cosine decay, fp16 loss scaling, the compiled forward with its eager fallback, a divergence
check every `check_every` steps (the only host syncs), progress reports and the final check for
non-finite weights.

Importing this module does not import torch (train.py and doremi.py are imported by the assets).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from climb_dagster.core.common import schema
from climb_dagster.core.proxy.config import ProxyConfig, ProxyTrainConfig

if TYPE_CHECKING:
    from climb_dagster.core.proxy import runtime

# Callback(step, total_steps, loss): called at most ~20 times per run, never per step.
Progress = Callable[[int, int, float], None]


@dataclass
class RowRun:
    """How one row (one proxy) of a trainee ended."""

    losses: np.ndarray  # float64, one per step done; a diverged run ends with the step that diverged
    status: str
    reason: str
    steps: int
    row: int | None  # its row in the trainee's final parameters; None when it was dropped


class Trainee:
    """What the loop trains: `rows` proxies held by one module, sharing no parameter.

    This base is one Hugging Face Llama proxy (one row): a single proxy's run. pack.py and doremi.py
    subclass it for packed members and for DoReMi's Group DRO proxy.
    """

    member_dims = 0  # leading dimensions of each parameter that index rows

    def __init__(self, model: Any) -> None:
        self.module = model
        self.rows = 1

    def losses(self, x: Any, y: Any, fused_head: bool) -> Any:
        """The (rows alive,) losses of a batch; the loop compiles this (and runs it under autocast)."""
        return step_loss(self.module, x, y, fused_head).reshape(1)

    def objective(self, step: int, out: Any) -> Any:
        """What is differentiated. Rows share no parameter: the gradient of the sum is each row's own."""
        return out.sum()

    def recorded(self, out: Any) -> Any:
        """The (rows alive,) losses the loop keeps and checks for divergence."""
        return out

    def clip(self, params: Sequence[Any], max_norm: float) -> None:
        import torch

        torch.nn.utils.clip_grad_norm_(params, max_norm, foreach=True)

    def checkpoint_activations(self) -> None:
        self.module.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})

    def keep(self, rows: Sequence[int], optimizer: Any) -> None:
        """Go on with `rows` only (positions among the rows alive)."""
        raise AssertionError("a one-row trainee stops when its row diverges")

    def finite(self, params: Sequence[Any]) -> list[bool]:
        """Per row alive: whether all its weights are finite."""
        import torch

        return [bool(torch.stack([p.detach().isfinite().all() for p in params]).all())]


def train_loop(
    trainee: Trainee,
    windows: np.ndarray,
    config: ProxyConfig,
    rt: runtime.Runtime,
    progress: Progress | None = None,
) -> list[RowRun]:
    """Train `trainee` for `config.train.steps` steps on `windows` ((rows,) steps * batch, block + 1);
    one RowRun per row, in row order."""
    import torch

    from climb_dagster.core.proxy import runtime

    tcfg = config.train
    steps, m = tcfg.steps, trainee.rows
    limit = divergence_limit(config)
    opt = make_optimizer(trainee.module, tcfg, trainee.member_dims)
    scaler = rt.grad_scaler()
    params = [p for g in opt.param_groups for p in g["params"]]
    if tcfg.activation_checkpointing:
        trainee.checkpoint_activations()

    def losses_of(x: Any, y: Any) -> Any:
        # Autocast covers the forward only; the backward runs in the dtypes the forward chose.
        with rt.autocast():
            return trainee.losses(x, y, rt.fused_head)

    forward = runtime.CompiledStep(losses_of, rt.compile)

    def reset() -> None:
        opt.zero_grad(set_to_none=True)

    def clip() -> None:
        trainee.clip(params, tcfg.grad_clip)  # `params` is rebound when rows are dropped

    batches = runtime.Batches(windows, rt.device, tcfg.batch_size)
    # Losses stay on the device and are read back only every `check_every` steps: no per-step sync.
    loss_buf = torch.full((steps, m), float("nan"), dtype=torch.float32, device=rt.device)
    active = list(range(m))  # original row of each row still training
    active_t = torch.arange(m, device=rt.device)
    runs: dict[int, RowRun] = {}
    report_every = max(1, steps // 20)
    checked = 0
    for step in range(steps):
        set_lr(opt, lr_at(step, tcfg))
        x, y = batches.get(step)
        if len(active) < m:
            x, y = x.index_select(0, active_t), y.index_select(0, active_t)

        def backward(out: Any, step: int = step) -> None:
            total = trainee.objective(step, out)
            (total if scaler is None else scaler.scale(total)).backward()

        out = forward.forward_backward((x, y), backward, reset)
        optimizer_update(opt, scaler, clip if tcfg.grad_clip > 0 else None)
        loss_buf[step].index_copy_(0, active_t, trainee.recorded(out).detach().float())
        last = step == steps - 1
        if (step + 1) % tcfg.check_every == 0 or last:
            seen = loss_buf[checked : step + 1].cpu().numpy()
            failed = []
            for row, j in enumerate(active):
                hit = first_divergence(seen[:, j], checked, limit)
                if hit is not None:
                    at, why = hit
                    curve = loss_buf[: at + 1, j].cpu().numpy().astype(np.float64)
                    runs[j] = RowRun(curve, schema.FAILED, why, at + 1, None)
                    failed.append(row)
            if failed:
                rows = [r for r in range(len(active)) if r not in failed]
                active = [active[r] for r in rows]
                if not active:
                    break
                trainee.keep(rows, opt)
                params = [p for g in opt.param_groups for p in g["params"]]
                active_t = torch.as_tensor(active, device=rt.device)
            checked = step + 1
        if progress is not None and ((step + 1) % report_every == 0 or last):
            progress(step + 1, steps, float(loss_buf[step, active_t].mean()))
    # The last update is not seen by any loss: a NaN/inf gradient there would only show in the weights.
    finite = trainee.finite(params) if active else []
    for row, j in enumerate(active):
        curve = loss_buf[:, j].cpu().numpy().astype(np.float64)
        if finite[row]:
            runs[j] = RowRun(curve, schema.OK, "", steps, row)
        else:
            why = f"diverged: non-finite weights after step {steps - 1}"
            runs[j] = RowRun(curve, schema.FAILED, why, steps, None)
    return [runs[j] for j in range(m)]


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
