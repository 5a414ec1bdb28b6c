"""A frozen copy of the three proxy training loops as they were before issue 25 merged them (commit 1837f8c:
`train._loop`, `pack._pack_loop`, the DRO loop of `doremi.train_doremi`, and the helpers they called).

Only `test_loop.py` uses it: the one loop of `core/proxy/loop.py` must give the same per-step CPU losses bit
for bit. A copy rather than stored numbers because CPU float results differ between machines; on any one
machine both sides run the same kernels. Keep it as it is: it is the reference, not code to maintain.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from climb_dagster.core.common import schema
from climb_dagster.core.proxy import runtime
from climb_dagster.core.proxy.config import ProxyConfig, ProxyTrainConfig
from climb_dagster.core.proxy.loss import linear_cross_entropy
from climb_dagster.core.proxy.model import build_model, load_model, torch_threads
from climb_dagster.core.proxy.pack import PackedLlama
from climb_dagster.core.proxy.sampler import sample_windows, validate_mixture, window_plan
from climb_dagster.core.proxy.store import TokenStore
from climb_dagster.core.search.doremi import DoReMiConfig, dro_update

# (per-step losses, status, reason, steps done) of one proxy.
Run = tuple[np.ndarray, str, str, int]

# --- train.py helpers ---------------------------------------------------------------------------------


def lr_at(step: int, cfg: ProxyTrainConfig) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    decay_steps = max(1, cfg.steps - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / decay_steps)
    min_lr = cfg.lr * cfg.min_lr_ratio
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (cfg.lr - min_lr)


def make_optimizer(model: Any, cfg: ProxyTrainConfig, member_dims: int = 0) -> Any:
    params = list({id(p): p for p in model.parameters() if p.requires_grad}.values())
    decay = [p for p in params if p.ndim - member_dims >= 2]
    no_decay = [p for p in params if p.ndim - member_dims < 2]
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps, fused=True)


def set_lr(opt: Any, lr: float) -> None:
    for group in opt.param_groups:
        group["lr"] = lr


def optimizer_update(opt: Any, scaler: Any, clip: Callable[[], None] | None) -> None:
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
    bad = np.flatnonzero(~np.isfinite(seen) | (seen > limit))
    if not bad.size:
        return None
    value = float(seen[bad[0]])
    why = "non-finite" if not math.isfinite(value) else f"exploding (> {limit:.3g})"
    at = offset + int(bad[0])
    return at, f"diverged: {why} loss {value!r} at step {at}"


def step_loss(model: Any, x: Any, y: Any, fused_head: bool) -> Any:
    hidden = model.model(input_ids=x, use_cache=False).last_hidden_state
    weight = model.lm_head.weight
    if fused_head:
        return linear_cross_entropy(hidden.reshape(-1, hidden.shape[-1]), weight, y.reshape(-1))
    logits = hidden @ weight.t()
    return torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1))


# --- train._loop --------------------------------------------------------------------------------------


def single_loop(model: Any, windows: np.ndarray, config: ProxyConfig, rt: runtime.Runtime) -> Run:
    tcfg = config.train
    steps = tcfg.steps
    limit = divergence_limit(config)
    opt = make_optimizer(model, tcfg)
    scaler = rt.grad_scaler()
    params = [p for g in opt.param_groups for p in g["params"]]
    if tcfg.activation_checkpointing:
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})

    def loss_of(x: Any, y: Any) -> Any:
        with rt.autocast():
            return step_loss(model, x, y, rt.fused_head)

    forward = runtime.CompiledStep(loss_of, rt.compile)

    def backward(loss: Any) -> None:
        (loss if scaler is None else scaler.scale(loss)).backward()

    def reset() -> None:
        opt.zero_grad(set_to_none=True)

    batches = runtime.Batches(windows, rt.device, tcfg.batch_size)
    loss_buf = torch.empty(steps, dtype=torch.float32, device=rt.device)
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
    losses = loss_buf.cpu().numpy().astype(np.float64)
    if not bool(torch.stack([p.detach().isfinite().all() for p in params]).all()):
        return losses, schema.FAILED, f"diverged: non-finite weights after step {steps - 1}", steps
    return losses, schema.OK, "", steps


# --- pack.py ------------------------------------------------------------------------------------------


def clip_per_member(params: Sequence[torch.Tensor], max_norm: float) -> torch.Tensor:
    grads = [p.grad for p in params if p.grad is not None]
    per_param = torch.stack([torch.linalg.vector_norm(g.reshape(g.shape[0], -1), dim=1) for g in grads])
    norms = torch.linalg.vector_norm(per_param, dim=0)
    coef = (max_norm / (norms + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(coef.reshape(-1, *([1] * (g.ndim - 1))).to(g.dtype))
    return norms


def pack_loop(pack: PackedLlama, windows: np.ndarray, config: ProxyConfig, rt: runtime.Runtime) -> dict:
    tcfg = config.train
    steps, m = tcfg.steps, pack.size
    limit = divergence_limit(config)
    opt = make_optimizer(pack, tcfg, member_dims=1)
    scaler = rt.grad_scaler()
    params = [p for g in opt.param_groups for p in g["params"]]

    def losses_of(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with rt.autocast():
            return pack.losses(x, y, fused_head=rt.fused_head)

    forward = runtime.CompiledStep(losses_of, rt.compile)

    def backward(losses: torch.Tensor) -> None:
        total = losses.sum()
        (total if scaler is None else scaler.scale(total)).backward()

    def reset() -> None:
        opt.zero_grad(set_to_none=True)

    batches = runtime.Batches(windows, rt.device, tcfg.batch_size)
    loss_buf = torch.full((steps, m), float("nan"), dtype=torch.float32, device=rt.device)
    active = list(range(m))
    active_t = torch.arange(m, device=rt.device)
    outcome: dict[int, Run] = {}
    checked = 0

    def clip() -> None:
        clip_per_member(params, tcfg.grad_clip)

    for step in range(steps):
        set_lr(opt, lr_at(step, tcfg))
        x, y = batches.get(step)
        if len(active) < m:
            x, y = x.index_select(0, active_t), y.index_select(0, active_t)
        losses = forward.forward_backward((x, y), backward, reset)
        optimizer_update(opt, scaler, clip if tcfg.grad_clip > 0 else None)
        loss_buf[step].index_copy_(0, active_t, losses.detach().float())
        last = step == steps - 1
        if (step + 1) % tcfg.check_every == 0 or last:
            seen = loss_buf[checked : step + 1].cpu().numpy()
            failed = []
            for row, j in enumerate(active):
                hit = first_divergence(seen[:, j], checked, limit)
                if hit is not None:
                    at, why = hit
                    curve = loss_buf[: at + 1, j].cpu().numpy().astype(np.float64)
                    outcome[j] = (curve, schema.FAILED, why, at + 1)
                    failed.append(row)
            if failed:
                rows = [r for r in range(len(active)) if r not in failed]
                active = [active[r] for r in rows]
                if not active:
                    break
                pack.keep(rows, opt)
                params = [p for g in opt.param_groups for p in g["params"]]
                active_t = torch.as_tensor(active, device=rt.device)
            checked = step + 1
    finite = (
        [
            bool(torch.stack([p[row].detach().isfinite().all() for p in params]).all())
            for row in range(len(active))
        ]
        if active
        else []
    )
    for row, j in enumerate(active):
        curve = loss_buf[:, j].cpu().numpy().astype(np.float64)
        if not finite[row]:
            outcome[j] = (curve, schema.FAILED, f"diverged: non-finite weights after step {steps - 1}", steps)
        else:
            outcome[j] = (curve, schema.OK, "", steps)
    return outcome


# --- doremi.py ----------------------------------------------------------------------------------------


def _gather(store: TokenStore, clusters: np.ndarray, starts: np.ndarray, span: int) -> np.ndarray:
    out = np.empty((clusters.size, span), dtype=np.int64)
    ar = np.arange(span)
    for c in np.unique(clusters).tolist():
        rows = np.flatnonzero(clusters == c)
        out[rows] = store.tokens[c][starts[rows][:, None] + ar]
    return out


def _window_losses(model: Any, windows: Any) -> Any:
    import torch.nn.functional as F

    x, y = windows[:, :-1], windows[:, 1:]
    logits = model(input_ids=x, use_cache=False).logits
    per_token = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="none")
    return per_token.view(y.shape).mean(dim=1)


def doremi(
    store: TokenStore, prior: Sequence[float], config: ProxyConfig, seed: int, dro: DoReMiConfig
) -> dict[str, Any]:
    """train_doremi's numbers: the reference proxy (frozen single loop), then the DRO loop."""
    p = validate_mixture(prior, store.n_clusters, what="prior")
    mcfg, tcfg = config.model, config.train
    span = mcfg.block_size + 1
    domains = np.flatnonzero(np.asarray(store.n_tokens) >= span)
    (_, status, reason, _), ref_model = single(store, p, config, seed)
    assert status == schema.OK, reason

    uniform = np.zeros(store.n_clusters)
    uniform[domains] = 1.0 / domains.size
    n_windows = tcfg.steps * tcfg.batch_size
    clusters, starts = window_plan(store, uniform, n_windows, mcfg.block_size, seed + 2)
    local = np.searchsorted(domains, clusters)
    windows = _gather(store, clusters, starts, span)

    with torch_threads(tcfg.num_threads):
        device = torch.device(tcfg.device)
        data = torch.from_numpy(windows).to(device)
        ref_model.to(device)
        ref_model.eval()
        with torch.no_grad():
            ref_loss = torch.cat(
                [_window_losses(ref_model, data[i : i + 64]) for i in range(0, n_windows, 64)]
            )
        model = build_model(config.model, seed + 1, eod_id=store.eod_id)
        model.to(device).train()
        opt = make_optimizer(model, tcfg)
        labels = torch.from_numpy(local).to(device)
        d = domains.size
        alpha = np.full(d, 1.0 / d)
        total = np.zeros(d)
        losses = []
        bs = tcfg.batch_size

        def clip() -> None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), tcfg.grad_clip)

        for step in range(tcfg.steps):
            set_lr(opt, lr_at(step, tcfg))
            rows = slice(step * bs, (step + 1) * bs)
            loss_w = _window_losses(model, data[rows])
            lab = labels[rows]
            counts = torch.bincount(lab, minlength=d).to(loss_w.dtype)
            sums = torch.zeros(d, dtype=loss_w.dtype, device=device).index_add_(0, lab, loss_w)
            excess_sums = torch.zeros(d, dtype=loss_w.dtype, device=device).index_add_(
                0, lab, (loss_w.detach() - ref_loss[rows]).clamp_min(0.0)
            )
            present = counts > 0
            mean_loss = torch.where(present, sums / counts.clamp_min(1.0), torch.zeros_like(sums))
            excess = (excess_sums / counts.clamp_min(1.0)).cpu().numpy()
            alpha = dro_update(alpha, excess, dro)
            total += alpha
            weights_t = torch.as_tensor(alpha, dtype=loss_w.dtype, device=device)
            loss = (weights_t * mean_loss).sum()
            loss.backward()
            optimizer_update(opt, None, clip if tcfg.grad_clip > 0 else None)
            losses.append(float(loss_w.detach().mean()))
    averaged = np.zeros(store.n_clusters)
    averaged[domains] = total / tcfg.steps
    final = np.zeros(store.n_clusters)
    final[domains] = alpha
    tail = max(1, len(losses) // 10)
    return {
        "weights": (averaged / averaged.sum()).tolist(),
        "final_step_weights": final.tolist(),
        "reference_loss": float(ref_loss.mean()),
        "proxy_loss": float(np.mean(losses[-tail:])),
    }


# --- the callers' setup (train_proxy, train_pack) -----------------------------------------------------

def _start(config: ProxyConfig, seed: int, eod_id: int, source: Any) -> Any:
    return build_model(config.model, seed, eod_id=eod_id) if source is None else load_model(source)


def single(
    store: TokenStore, mixture: Sequence[float], config: ProxyConfig, seed: int, init_from: Any = None
) -> tuple[Run, Any]:
    """train_proxy's run and its trained model."""
    tcfg = config.train
    w = validate_mixture(mixture, store.n_clusters)
    windows = sample_windows(store, w, tcfg.steps * tcfg.batch_size, config.model.block_size, seed + 1)
    with torch_threads(tcfg.num_threads):
        rt = runtime.resolve(tcfg)
        model = _start(config, seed, store.eod_id, init_from)
        model.to(rt.device).train()
        return single_loop(model, windows, config, rt), model


def pack(
    store: TokenStore,
    mixtures: Sequence[Sequence[float]],
    config: ProxyConfig,
    seeds: Sequence[int],
    init_from: Sequence[Any] | None = None,
) -> list[Run]:
    tcfg = config.train
    n = tcfg.steps * tcfg.batch_size
    ws = [validate_mixture(w, store.n_clusters) for w in mixtures]
    windows = np.stack(
        [sample_windows(store, w, n, config.model.block_size, s + 1) for w, s in zip(ws, seeds, strict=True)]
    )
    sources = init_from or [None] * len(seeds)
    with torch_threads(tcfg.num_threads):
        rt = runtime.resolve(tcfg)
        members = [_start(config, s, store.eod_id, src) for s, src in zip(seeds, sources, strict=True)]
        packed = PackedLlama(members).to(rt.device).train()
        packed.checkpointing = tcfg.activation_checkpointing
        outcome = pack_loop(packed, windows, config, rt)
    return [outcome[j] for j in range(len(seeds))]
