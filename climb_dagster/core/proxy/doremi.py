"""DoReMi's two proxy runs: a reference proxy on the prior, then a Group DRO proxy whose loss weights the
domains (super-clusters) by excess loss over the reference; its averaged domain weights are the answer.

The reference run is an ordinary `train_proxy`. The DRO run trains in the same loop (loop.py: model,
optimizer, LR schedule, divergence checks), on windows drawn uniformly over the domains (as in DoReMi),
with the weight update of `core/search/doremi.py`. It reads the per-step excess losses back to the host
each step: the weights steer the step's loss, so the sync is inherent to the method.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from climb_dagster.core.common import schema
from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.common.hashing import content_hash
from climb_dagster.core.common.timing import Timer
from climb_dagster.core.io import storage
from climb_dagster.core.proxy.config import ProxyConfig
from climb_dagster.core.proxy.loop import Trainee, train_loop
from climb_dagster.core.proxy.sampler import validate_mixture, window_plan
from climb_dagster.core.proxy.store import TokenStore
from climb_dagster.core.proxy.train import initial_model, train_proxy
from climb_dagster.core.search.doremi import DoReMiConfig, dro_update
from climb_dagster.core.search.strategies.doremi import DOREMI_PROXIES

EVAL_CHUNK = 64  # reference windows scored per forward pass


@dataclass(frozen=True)
class DoReMiResult:
    """DoReMi's averaged weights over all super-clusters (0 where a cluster is too small to sample)."""

    weights: list[float]
    final_step_weights: list[float]
    reference_loss: float
    proxy_loss: float
    steps: int
    proxies_trained: int
    wall_s: float

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DoReMiResult:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__})


def doremi_key(
    prior: Sequence[float], proxy: ProxyConfig, dro: DoReMiConfig, seed: int, store_key: str
) -> str:
    """Content hash of everything that determines the DoReMi weights (for the proxy-run cache)."""
    return "doremi-" + content_hash(
        {
            "prior": [round(float(p), 12) for p in prior],
            "proxy": proxy.run_dict(),  # pack_size does not change a run
            "dro": dro.to_dict(),
            "seed": int(seed),
            "store": store_key,
        }
    )


def _gather(store: TokenStore, clusters: np.ndarray, starts: np.ndarray, span: int) -> np.ndarray:
    out = np.empty((clusters.size, span), dtype=np.int64)
    ar = np.arange(span)
    for c in np.unique(clusters).tolist():
        rows = np.flatnonzero(clusters == c)
        out[rows] = store.tokens[c][starts[rows][:, None] + ar]
    return out


def _window_losses(model: Any, x: Any, y: Any) -> Any:
    """Mean next-token loss of each window, [n] (with grad when the model is in train mode)."""
    import torch.nn.functional as F

    logits = model(input_ids=x, use_cache=False).logits
    per_token = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="none")
    return per_token.view(y.shape).mean(dim=1)


class _GroupDRO(Trainee):
    """DoReMi's DRO proxy in the one loop: the loss of a batch is the per-domain mean loss weighted by the
    domain weights, which move each step toward the domains whose loss exceeds the reference's there.

    `weights[s + 1]`: the domain weights step s weighted its loss with (`weights[0]`: uniform). A step that
    runs again (the eager rerun after a compile failure) recomputes `weights[s + 1]` from `weights[s]`.
    """

    def __init__(
        self, model: Any, labels: Any, reference: Any, n_domains: int, dro: DoReMiConfig, batch_size: int
    ) -> None:
        super().__init__(model)
        self.labels, self.reference, self.d = labels, reference, n_domains  # per window: domain, ref loss
        self.dro, self.bs = dro, batch_size
        self.weights = [np.full(n_domains, 1.0 / n_domains)]

    def losses(self, x: Any, y: Any, fused_head: bool) -> Any:
        return _window_losses(self.module, x, y)

    def objective(self, step: int, out: Any) -> Any:
        import torch

        rows = slice(step * self.bs, (step + 1) * self.bs)
        lab, d, device = self.labels[rows], self.d, out.device
        counts = torch.bincount(lab, minlength=d).to(out.dtype)
        sums = torch.zeros(d, dtype=out.dtype, device=device).index_add_(0, lab, out)
        excess_sums = torch.zeros(d, dtype=out.dtype, device=device).index_add_(
            0, lab, (out.detach() - self.reference[rows]).clamp_min(0.0)
        )
        present = counts > 0
        mean_loss = torch.where(present, sums / counts.clamp_min(1.0), torch.zeros_like(sums))
        # The weights steer this step's loss: reading the excess back each step is inherent to DRO.
        excess = (excess_sums / counts.clamp_min(1.0)).cpu().numpy()
        alpha = dro_update(self.weights[step], excess, self.dro)
        self.weights[step + 1 :] = [alpha]
        return (torch.as_tensor(alpha, dtype=out.dtype, device=device) * mean_loss).sum()

    def recorded(self, out: Any) -> Any:
        return out.detach().mean().reshape(1)

    def clip(self, params: Sequence[Any], max_norm: float) -> None:
        import torch

        # In the module's parameter order, as DRO runs always clipped: the order of the norms' sum
        # decides the last bit of the clipping coefficient.
        torch.nn.utils.clip_grad_norm_(self.module.parameters(), max_norm)


def train_doremi(
    store: TokenStore,
    prior: Sequence[float] | np.ndarray,
    config: ProxyConfig,
    seed: int,
    dro: DoReMiConfig | None = None,
    storage_options: dict[str, Any] | None = None,
) -> DoReMiResult:
    """Run DoReMi on the token store: reference proxy on `prior`, then the DRO proxy; return its weights.

    Both proxies start where every proxy of the experiment starts: a fresh model, or `config.base_model`
    (continued pre-training; a remote one is fetched with `storage_options`).
    """
    import torch

    from climb_dagster.core.proxy import runtime
    from climb_dagster.core.proxy.model import torch_threads

    dro = dro or DoReMiConfig()
    p = validate_mixture(prior, store.n_clusters, what="prior")
    mcfg, tcfg = config.model, config.train
    span = mcfg.block_size + 1
    domains = np.flatnonzero(np.asarray(store.n_tokens) >= span)
    if domains.size < 2:
        raise ClimbInputError(
            f"DoReMi needs >= 2 super-clusters with at least {span} tokens; {store.path} has {domains.size}"
        )
    timer = Timer()
    reference = train_proxy(store, p, config, seed, storage_options=storage_options)
    if not reference.ok:
        raise ClimbInputError(f"DoReMi reference proxy failed: {reference.reason}")
    ref_model = reference.model

    # DoReMi samples the DRO batches uniformly over domains and reweights the loss instead.
    uniform = np.zeros(store.n_clusters)
    uniform[domains] = 1.0 / domains.size
    n_windows = tcfg.steps * tcfg.batch_size
    clusters, starts = window_plan(store, uniform, n_windows, mcfg.block_size, seed + 2)
    local = np.searchsorted(domains, clusters)  # domain index 0..D-1 of each window
    windows = _gather(store, clusters, starts, span)

    with torch_threads(tcfg.num_threads):
        # The DRO proxy trains in fp32 and eagerly on every device, as it always has (its weights stay).
        rt = runtime.Runtime(torch.device(tcfg.device), amp_dtype=None, loss_scaling=False, compile=False)
        data = torch.from_numpy(windows).to(rt.device)
        ref_model.to(rt.device)
        ref_model.eval()
        with torch.no_grad():
            ref_loss = torch.cat(
                [
                    _window_losses(ref_model, data[i : i + EVAL_CHUNK, :-1], data[i : i + EVAL_CHUNK, 1:])
                    for i in range(0, n_windows, EVAL_CHUNK)
                ]
            )
        model = initial_model(config, seed + 1, store.eod_id, config.base_model, storage_options)
        model.to(rt.device).train()
        labels = torch.from_numpy(local).to(rt.device)
        trainee = _GroupDRO(model, labels, ref_loss, domains.size, dro, tcfg.batch_size)
        (run,) = train_loop(trainee, windows, config, rt)
    if run.status != schema.OK:
        raise ClimbInputError(f"DoReMi DRO proxy failed: {run.reason}")
    total = np.zeros(domains.size)
    for alpha in trainee.weights[1:]:  # summed step by step, as the average always was
        total += alpha
    averaged = np.zeros(store.n_clusters)
    averaged[domains] = total / tcfg.steps
    final = np.zeros(store.n_clusters)
    final[domains] = trainee.weights[-1]
    tail = max(1, run.steps // 10)
    return DoReMiResult(
        weights=(averaged / averaged.sum()).tolist(),
        final_step_weights=final.tolist(),
        reference_loss=float(ref_loss.mean()),
        proxy_loss=float(np.mean(run.losses[-tail:])),
        steps=tcfg.steps,
        proxies_trained=DOREMI_PROXIES,
        wall_s=timer.rounded(3),
    )


def doremi_mixture(
    store: TokenStore,
    prior: Sequence[float] | np.ndarray,
    config: ProxyConfig,
    seed: int,
    cache_dir: Any,
    dro: DoReMiConfig | None = None,
    storage_options: dict[str, Any] | None = None,
) -> tuple[DoReMiResult, bool]:
    """`train_doremi`, cached as JSON under `cache_dir/<doremi key>/result.json` (no cache: None); returns
    (result, cached)."""
    import json

    dro = dro or DoReMiConfig()
    if cache_dir is None:
        return train_doremi(store, prior, config, seed, dro, storage_options), False
    key = doremi_key(list(prior), config, dro, seed, store.key())
    path = cache_dir / key / "result.json"
    if path.exists():
        return DoReMiResult.from_dict(json.loads(path.read_text())), True
    result = train_doremi(store, prior, config, seed, dro, storage_options)
    storage.atomic_write_text(path, json.dumps(result.to_dict(), indent=1, allow_nan=False))
    return result, False


def doremi_round(
    store: TokenStore,
    prior: np.ndarray,
    config: ProxyConfig,
    seed: int,
    cache_dir: Any,
    storage_options: dict[str, Any] | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """A DoReMi experiment's one round: [its averaged weights, the prior] and metadata on how they came.

    The own-proxies step of the doremi strategy (`core/search/strategies/doremi.py`)."""
    result, cached = doremi_mixture(store, prior, config, seed, cache_dir, storage_options=storage_options)
    answer = np.asarray(result.weights, dtype=np.float64)
    info = {
        "doremi_cached": cached,
        "doremi_reference_loss": round(result.reference_loss, 4),
        "doremi_proxy_loss": round(result.proxy_loss, 4),
        "doremi_proxies": result.proxies_trained,
        "doremi_seconds": result.wall_s,
    }
    return np.vstack([answer, np.asarray(prior, dtype=np.float64)]), info
