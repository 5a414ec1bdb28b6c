"""Train one proxy LM on windows sampled from a mixture (the steps are loop.py's), summarize and save it.

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
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from climb_dagster.core.common import schema
from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.io import storage
from climb_dagster.core.proxy.config import ProxyConfig, proxy_run_key
from climb_dagster.core.proxy.cost import check_free_memory
from climb_dagster.core.proxy.loop import Progress, RowRun, Trainee, train_loop
from climb_dagster.core.proxy.sampler import sample_windows, validate_mixture
from climb_dagster.core.proxy.store import TokenStore

RUN_FILE = "proxy_run.json"


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
        (run,) = train_loop(Trainee(model), windows, config, rt, progress)
    wall = time.perf_counter() - t0
    result = summarize(run, run_key, config, wall, n_params)
    if result.ok:
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
    return storage.local_dir_copy(path, kind="checkpoint")


def summarize(run: RowRun, run_key: str, config: ProxyConfig, wall: float, n_params: int) -> ProxyResult:
    """The ProxyResult of a run from its per-step losses (the model is attached by the caller)."""
    losses, done = run.losses, run.steps
    tokens = done * config.tokens_per_step
    finite = losses[:done][np.isfinite(losses[:done])]
    tail = losses[max(0, done - max(1, done // 10)) : done]
    return ProxyResult(
        status=run.status,
        reason=run.reason,
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
