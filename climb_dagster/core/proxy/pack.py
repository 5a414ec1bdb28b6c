"""Proxy packs: m proxies of one ProxyModelConfig trained as one batched model on one device.

A demo-size proxy keeps a GPU a few percent busy; m of them with a leading member dimension on every
parameter (bmm for the linears, SDPA over m * batch rows) fill it. Packing changes nothing a member
computes, only how the device is used:
- each member starts from the weights `build_model(config, seed)` gives it (built, then stacked) or from
  the base checkpoint, and sees exactly the windows it would see alone (`sample_windows(.., seed + 1)`);
- the loss is each member's own mean; their sum is differentiated, and as no parameter is shared the
  gradients of one member never touch another's;
- AdamW is element-wise (its state is per member by construction), weight decay goes to the members'
  matrices as alone, the learning rate schedule is the same, and gradients are clipped by each member's
  own norm;
- a member whose loss diverges is cut out of the pack (its rows of every parameter and optimizer state are
  dropped) with the reason it would have had alone, and the others go on.
So in fp32 a member's losses equal its separate run up to float summation order (tested to 1e-4 relative).
Under fp16 loss scaling (GPUs without bf16) one scaler serves the pack: an overflow in one member skips
that step for all of them.

Imported lazily (it imports torch and transformers).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.proxy import runtime
from climb_dagster.core.proxy.config import ProxyConfig, proxy_run_key
from climb_dagster.core.proxy.cost import check_free_memory
from climb_dagster.core.proxy.loop import Progress, Trainee, train_loop
from climb_dagster.core.proxy.loss import linear_cross_entropy
from climb_dagster.core.proxy.model import count_params, torch_threads
from climb_dagster.core.proxy.sampler import sample_windows, validate_mixture
from climb_dagster.core.proxy.store import TokenStore
from climb_dagster.core.proxy.train import ProxyResult, check_run_inputs, initial_model, save_proxy, summarize


class PackedLlama(torch.nn.Module):
    """m Llama proxies of the same sizes as one module: parameter `name` of member j is `param(name)[j]`.

    Names are those of LlamaForCausalLM.named_parameters() (the tied LM head is the embedding).
    """

    def __init__(self, members: Sequence[torch.nn.Module]) -> None:
        super().__init__()
        if not members:
            raise ClimbInputError("a proxy pack needs at least one member")
        c = members[0].config
        self.n_heads, self.n_layers = int(c.num_attention_heads), int(c.num_hidden_layers)
        self.names = [n for n, _ in members[0].named_parameters()]
        own = [dict(m.named_parameters()) for m in members]
        self.stacked = torch.nn.ParameterList(
            [torch.nn.Parameter(torch.stack([o[n].detach() for o in own]).contiguous()) for n in self.names]
        )
        self.index = {n: i for i, n in enumerate(self.names)}
        self.eps = float(members[0].config.rms_norm_eps)
        # RoPE tables from the members' own rotary embedding (positions are the same for every member).
        inv_freq = members[0].model.rotary_emb.inv_freq.detach().float().cpu()
        freqs = torch.arange(int(c.max_position_embeddings), dtype=torch.float)[:, None] * inv_freq[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        self.register_buffer("cos", emb.cos(), persistent=False)
        self.register_buffer("sin", emb.sin(), persistent=False)
        self.checkpointing = False

    @property
    def size(self) -> int:
        return self.stacked[0].shape[0]

    def param(self, name: str) -> torch.Tensor:
        return self.stacked[self.index[name]]

    @torch.no_grad()
    def keep(self, rows: Sequence[int], optimizer: Any = None) -> None:
        """Keep only members `rows` (positions in the current pack), in parameters and optimizer state.

        New Parameter objects replace the old ones (autograd caches a parameter's shape), and the
        optimizer's groups and state move over to them.
        """
        idx = torch.as_tensor(list(rows), dtype=torch.long, device=self.stacked[0].device)
        for i, old in enumerate(list(self.stacked)):
            new = torch.nn.Parameter(old.detach().index_select(0, idx))
            self.stacked[i] = new
            if optimizer is None:
                continue
            state = optimizer.state.pop(old, None)
            if state is not None:
                # AdamW's moments have the parameter's shape; its step count is a scalar shared by all rows.
                optimizer.state[new] = {
                    k: v.index_select(0, idx) if torch.is_tensor(v) and v.ndim == old.ndim else v
                    for k, v in state.items()
                }
            for group in optimizer.param_groups:
                group["params"] = [new if q is old else q for q in group["params"]]

    def member_state(self, j: int) -> dict[str, torch.Tensor]:
        return {n: self.stacked[i][j] for i, n in enumerate(self.names)}

    # --- forward ---------------------------------------------------------------------------------------

    def _norm(self, h: torch.Tensor, name: str) -> torch.Tensor:
        # LlamaRMSNorm: statistics in fp32, weight applied in the input dtype.
        dtype = h.dtype
        x = h.to(torch.float32)
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.param(name)[:, None, :] * x.to(dtype)

    def _linear(self, h: torch.Tensor, name: str) -> torch.Tensor:
        # (m, N, in) x (m, out, in) -> (m, N, out): nn.Linear per member.
        return torch.bmm(h, self.param(name).transpose(1, 2))

    def _layer(self, h: torch.Tensor, i: int, batch: int) -> torch.Tensor:
        m, n, d = h.shape
        t = n // batch
        hd = d // self.n_heads
        pre = f"model.layers.{i}."
        x = self._norm(h, pre + "input_layernorm.weight")

        def heads(name: str) -> torch.Tensor:
            return self._linear(x, pre + name).reshape(m * batch, t, self.n_heads, hd).transpose(1, 2)

        q, k, v = (
            heads("self_attn.q_proj.weight"),
            heads("self_attn.k_proj.weight"),
            heads("self_attn.v_proj.weight"),
        )
        cos, sin = self.cos[:t].to(q.dtype), self.sin[:t].to(q.dtype)
        q = q * cos + _rotate_half(q) * sin
        k = k * cos + _rotate_half(k) * sin
        a = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=t > 1)
        a = a.transpose(1, 2).reshape(m, n, d)
        h = h + self._linear(a, pre + "self_attn.o_proj.weight")
        x = self._norm(h, pre + "post_attention_layernorm.weight")
        gate = torch.nn.functional.silu(self._linear(x, pre + "mlp.gate_proj.weight"))
        return h + self._linear(
            gate * self._linear(x, pre + "mlp.up_proj.weight"), pre + "mlp.down_proj.weight"
        )

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        """Final hidden states (m, batch * T, d) of token ids x (m, batch, T), member j on x[j]."""
        m, b, t = x.shape
        emb = self.param("model.embed_tokens.weight")
        vocab = emb.shape[1]
        offsets = torch.arange(m, device=x.device)[:, None, None] * vocab
        h = torch.nn.functional.embedding(x + offsets, emb.reshape(m * vocab, -1)).reshape(m, b * t, -1)
        for i in range(self.n_layers):
            if self.checkpointing and torch.is_grad_enabled():
                from torch.utils.checkpoint import checkpoint

                h = checkpoint(self._layer, h, i, b, use_reentrant=False)
            else:
                h = self._layer(h, i, b)
        return self._norm(h, "model.norm.weight")

    def losses(self, x: torch.Tensor, y: torch.Tensor, fused_head: bool) -> torch.Tensor:
        """Each member's mean next-token loss (m,) on its own batch (x, y: (m, batch, T))."""
        h = self.hidden(x)
        w = self.param("model.embed_tokens.weight")
        targets = y.reshape(y.shape[0], -1)
        if fused_head:
            # CPU: the chunked fused head, member by member, exactly as a separate run computes it.
            return torch.stack([linear_cross_entropy(h[j], w[j], targets[j]) for j in range(h.shape[0])])
        logits = torch.bmm(h, w.transpose(1, 2)).float()
        ce = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="none"
        )
        return ce.reshape(targets.shape).mean(dim=1)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """(m, batch, T, vocab) logits of every member on x (m, batch, T)."""
        h = self.hidden(x)
        w = self.param("model.embed_tokens.weight")
        return torch.bmm(h, w.transpose(1, 2)).reshape(*x.shape, -1)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)



class _Members(Trainee):
    """The members of a pack as the loop's rows: each its own loss, clipping and fate."""

    member_dims = 1

    def __init__(self, pack: PackedLlama) -> None:
        super().__init__(pack)
        self.rows = pack.size

    def losses(self, x: torch.Tensor, y: torch.Tensor, fused_head: bool) -> torch.Tensor:
        return self.module.losses(x, y, fused_head=fused_head)

    def clip(self, params: Sequence[torch.Tensor], max_norm: float) -> None:
        clip_per_member(params, max_norm)

    def checkpoint_activations(self) -> None:
        self.module.checkpointing = True

    def keep(self, rows: Sequence[int], optimizer: Any) -> None:
        self.module.keep(rows, optimizer)

    def finite(self, params: Sequence[torch.Tensor]) -> list[bool]:
        return [
            bool(torch.stack([p[row].detach().isfinite().all() for p in params]).all())
            for row in range(self.module.size)
        ]


def clip_per_member(params: Sequence[torch.Tensor], max_norm: float) -> torch.Tensor:
    """clip_grad_norm_ applied to each member on its own: by the norm of its gradients over all parameters.

    Same math as torch.nn.utils.clip_grad_norm_ (coef = max_norm / (norm + 1e-6), at most 1); no host sync.
    Returns the members' norms.
    """
    grads = [p.grad for p in params if p.grad is not None]
    per_param = torch.stack([torch.linalg.vector_norm(g.reshape(g.shape[0], -1), dim=1) for g in grads])
    norms = torch.linalg.vector_norm(per_param, dim=0)
    coef = (max_norm / (norms + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(coef.reshape(-1, *([1] * (g.ndim - 1))).to(g.dtype))
    return norms


def train_pack(
    store: TokenStore,
    mixtures: Sequence[Sequence[float] | np.ndarray],
    config: ProxyConfig,
    seeds: Sequence[int],
    out_dirs: Sequence[str | os.PathLike[str] | None] | None = None,
    progress: Progress | None = None,
    windows: np.ndarray | None = None,
    init_from: Sequence[str | os.PathLike[str] | None] | None = None,
    storage_options: dict[str, Any] | None = None,
    free_memory: int | None = None,
) -> list[ProxyResult]:
    """Train one proxy per (mixture, seed) together as one packed model; one ProxyResult per member.

    Each result is what `train_proxy(store, mixture, config, seed, out_dir)` returns for that member
    (same run key, losses within float rounding, model saved in Hugging Face format), except that
    wall_s is the pack's time. `windows` (m, steps * batch, block + 1) replaces the sampled windows;
    `init_from` gives members their own checkpoint to continue from (None: config.base_model or the seed).
    `free_memory`: as in `train_proxy`, for the whole pack.
    """
    mcfg, tcfg = config.model, config.train
    m = len(mixtures)
    if m == 0 or len(seeds) != m:
        raise ClimbInputError(f"a pack needs one seed per mixture: {m} mixtures, {len(seeds)} seeds")
    if out_dirs is not None and len(out_dirs) != m:
        raise ClimbInputError(f"a pack of {m} needs {m} out_dirs, got {len(out_dirs)}")
    if init_from is not None and len(init_from) != m:
        raise ClimbInputError(f"a pack of {m} needs {m} init_from entries, got {len(init_from)}")
    check_run_inputs(store, config, seeds)
    check_free_memory(config, m, free_memory)
    ws = [validate_mixture(w, store.n_clusters) for w in mixtures]
    keys = [proxy_run_key(w.tolist(), config, s, store.key()) for w, s in zip(ws, seeds, strict=True)]
    n_windows = tcfg.steps * tcfg.batch_size
    if windows is None:
        windows = np.stack(
            [
                sample_windows(store, w, n_windows, mcfg.block_size, s + 1)
                for w, s in zip(ws, seeds, strict=True)
            ]
        )
    elif windows.shape != (m, n_windows, mcfg.block_size + 1):
        raise ClimbInputError(
            f"windows have shape {windows.shape}, expected {(m, n_windows, mcfg.block_size + 1)}"
        )

    t0 = time.perf_counter()
    with torch_threads(tcfg.num_threads):
        rt = runtime.resolve(tcfg)
        members = []
        for j, s in enumerate(seeds):
            source = init_from[j] if init_from is not None and init_from[j] is not None else config.base_model
            members.append(initial_model(config, s, store.eod_id, source, storage_options))
        pack = PackedLlama(members).to(rt.device).train()
        runs = train_loop(_Members(pack), windows, config, rt, progress)
        n_params = count_params(members[0])
        results = []
        for j, run in enumerate(runs):
            results.append(summarize(run, keys[j], config, 0.0, n_params))
            if run.row is not None:
                state = pack.member_state(run.row)
                with torch.no_grad():
                    for name, p in members[j].named_parameters():
                        p.copy_(state[name].to(p.device))
                results[j].model = members[j].to(rt.device).train()
    wall = time.perf_counter() - t0
    for j, r in enumerate(results):
        r.wall_s = wall
        r.tokens_per_s = r.tokens / wall if wall > 0 else 0.0
        if r.ok and out_dirs is not None and out_dirs[j] is not None:
            r.model_dir = str(save_proxy(r.model, store, out_dirs[j], r, config, ws[j], seeds[j]))
    return results
