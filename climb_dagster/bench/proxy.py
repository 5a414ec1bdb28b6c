"""Bench: our proxy trainer against `transformers.Trainer` on the same model, windows and step count.

    python -m climb_dagster.bench proxy [--steps 48] [--repeats 3] [--threads 1] [--corpus GLOB]

Both sides start from the same initial weights (same seed) and see the same pre-sampled windows in
the same order with the same optimiser settings (AdamW fused, warmup + cosine to min_lr, clipping).
Runs alternate (ours, HF, ours, HF, ...) and each side keeps its best run, so a burst of load from
other processes on a shared machine hurts neither side alone. MFU is model FLOPs (6 * params + attention,
per token) over a float32 GEMM peak measured in the same process with the same threads, before and
after the runs; `mfu` counts CPU seconds on both sides (robust to other load), `mfu_wall` wall seconds.
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

DEMO_GLOB = str(Path(__file__).resolve().parents[1] / "demo" / "data" / "drop-000*.parquet")
FALLBACK_GLOB = "/usr/share/common-licenses/*"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--steps", type=int, default=48, help="optimizer steps per run (both trainers)")
    parser.add_argument(
        "--repeats", type=int, default=3, help="runs per trainer, alternating; the best is kept"
    )
    parser.add_argument("--batch-size", type=int, default=None, help="default: ProxyTrainConfig default")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (both sides); default: config"
    )
    parser.add_argument("--vocab-size", type=int, default=4096)
    parser.add_argument(
        "--clusters", type=int, default=8, help="super-clusters: groups (domains) mapped onto ids"
    )
    parser.add_argument(
        "--tokenizer-docs", type=int, default=4000, help="documents sampled to train the tokenizer"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--corpus", default=None, help="parquet glob (text column) or text-file glob")
    parser.add_argument(
        "--hf-default-threads",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time one HF Trainer run with torch's default thread count (how it runs out of the box)",
    )


def load_texts(pattern: str | None, max_docs: int = 20_000) -> tuple[list[str], list[str], str]:
    """Real English text and a group label per text (the demo's domain, else the file), and the source glob.

    The demo corpus when present, else the licence texts every Debian system has.
    """
    for pat in [pattern] if pattern else [DEMO_GLOB, FALLBACK_GLOB]:
        # Empty files are skipped: the demo corpus may be being (re)written next to us.
        files = sorted(f for f in glob.glob(pat) if os.path.isfile(f) and os.path.getsize(f) > 0)
        if not files:
            continue
        if files[0].endswith(".parquet"):
            import polars as pl

            frames = [pl.read_parquet(f) for f in files]
            df = pl.concat(
                [
                    f.select("text", pl.col("domain") if "domain" in f.columns else pl.lit(n).alias("domain"))
                    for n, f in zip(files, frames, strict=True)
                ]
            )
            pairs = list(zip(df["text"].to_list(), df["domain"].to_list(), strict=True))
        else:
            pairs = []
            for f in files:
                with open(f, encoding="utf-8", errors="replace") as fh:
                    # Paragraphs as documents: the licence files are few but long.
                    pairs += [(p, f) for p in fh.read().split("\n\n") if len(p) > 40]
        pairs = [(t, g) for t, g in pairs if t and t.strip()][:max_docs]
        if pairs:
            return [t for t, _ in pairs], [str(g) for _, g in pairs], pat
    raise SystemExit(f"no bench corpus found (tried {pattern or [DEMO_GLOB, FALLBACK_GLOB]})")


def measure_matmul_peak(threads: int, seconds: float = 1.0) -> tuple[float, float]:
    """Best float32 GEMM rate over a few square sizes with `threads` torch threads.

    Returns (FLOP per wall second, FLOP per CPU second of one thread). The second is what the
    process gets while it is scheduled, so it is not lowered by other load on a shared machine.
    """
    import torch

    prev = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        g = torch.Generator().manual_seed(0)
        best_wall = best_cpu = 0.0
        for n in (512, 1024, 2048):
            a = torch.randn(n, n, generator=g)
            b = torch.randn(n, n, generator=g)
            a @ b
            reps, t0, c0 = 0, time.perf_counter(), time.process_time()
            while True:
                a @ b
                reps += 1
                dt = time.perf_counter() - t0
                if dt > seconds / 3:
                    break
            dc = max(time.process_time() - c0, 1e-9)
            best_wall = max(best_wall, 2.0 * n**3 * reps / dt)
            best_cpu = max(best_cpu, 2.0 * n**3 * reps / dc)
        return best_wall, best_cpu
    finally:
        torch.set_num_threads(prev)


def run_hf_trainer(
    windows: np.ndarray, config: Any, seed: int, eod_id: int, threads: int, out_dir: str
) -> dict[str, Any]:
    """Build the proxy model and train it with transformers.Trainer on `windows` (in order).

    Timed like `train_proxy`: model construction + trainer setup + training. Returns wall time and the
    mean loss of the last 10% of steps.
    """
    import torch
    from torch.utils.data import Dataset, SequentialSampler
    from transformers import Trainer, TrainerCallback, TrainingArguments
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    from climb_dagster.core.proxy.model import build_model

    tcfg = config.train
    data = torch.from_numpy(windows[:, :-1].astype(np.int64))

    class Windows(Dataset):
        def __len__(self) -> int:
            return data.shape[0]

        def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
            # The standard HF causal-LM recipe: labels = input_ids, shifted inside the loss.
            return {"input_ids": data[i], "labels": data[i]}

    class InOrder(Trainer):
        def _get_train_sampler(self, *args: Any, **kwargs: Any) -> SequentialSampler:
            return SequentialSampler(self.train_dataset)

    losses: list[float] = []

    class LastLoss(TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            if logs and "loss" in logs:
                losses.append(float(logs["loss"]))

    args = TrainingArguments(
        output_dir=out_dir,
        max_steps=tcfg.steps,
        per_device_train_batch_size=tcfg.batch_size,
        learning_rate=tcfg.lr,
        lr_scheduler_type="cosine_with_min_lr",
        lr_scheduler_kwargs={"min_lr_rate": tcfg.min_lr_ratio},
        warmup_steps=tcfg.warmup_steps,
        weight_decay=tcfg.weight_decay,
        adam_beta1=tcfg.beta1,
        adam_beta2=tcfg.beta2,
        adam_epsilon=tcfg.eps,
        max_grad_norm=tcfg.grad_clip,
        optim="adamw_torch_fused",
        use_cpu=True,
        logging_strategy="steps",
        # Same tail as ProxyResult.loss_last (mean of the last 10% of steps).
        logging_steps=max(1, tcfg.steps // 10),
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        dataloader_pin_memory=False,
        seed=0,
    )
    prev = torch.get_num_threads()
    torch.set_num_threads(threads)
    # Trainer seeds the global RNGs; keep that side effect inside the bench.
    with torch.random.fork_rng(devices=[]):
        t0 = time.perf_counter()
        model = build_model(config.model, seed, eod_id=eod_id)
        trainer = InOrder(model=model, args=args, train_dataset=Windows(), callbacks=[LastLoss()])
        # Its printer would mix log dicts into the bench's JSON on stdout.
        trainer.remove_callback(PrinterCallback)
        trainer.remove_callback(ProgressCallback)
        trainer.train()
        wall = time.perf_counter() - t0
    torch.set_num_threads(prev)
    return {"wall_s": wall, "loss_last": losses[-1] if losses else None}


def run(args: argparse.Namespace) -> dict[str, Any]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from climb_dagster.core.proxy.config import ProxyConfig
    from climb_dagster.core.proxy.model import build_model, count_params, flops_per_token
    from climb_dagster.core.proxy.sampler import sample_windows
    from climb_dagster.core.proxy.tokens import train_tokenizer, write_token_store
    from climb_dagster.core.proxy.train import train_proxy

    base = ProxyConfig.default()
    train = dataclasses.replace(
        base.train,
        steps=args.steps,
        warmup_steps=min(base.train.warmup_steps, args.steps),
        batch_size=args.batch_size or base.train.batch_size,
        num_threads=args.threads or base.train.num_threads,
    )
    config = ProxyConfig(model=dataclasses.replace(base.model, vocab_size=args.vocab_size), train=train)
    threads = config.train.num_threads
    texts, groups, source = load_texts(args.corpus)

    with tempfile.TemporaryDirectory(prefix="climb-bench-proxy-") as tmp:
        t0 = time.perf_counter()
        tok_dir = train_tokenizer(
            texts, Path(tmp) / "tok", vocab_size=args.vocab_size, seed=args.seed, max_docs=args.tokenizer_docs
        )
        # Domains (or files) stand in for super-clusters: real structure for a mixture, no clustering needed.
        names = sorted(set(groups))
        k = min(args.clusters, len(names))
        cluster_of = {g: i % k for i, g in enumerate(names)}
        by_cluster: dict[int, list[str]] = {c: [] for c in range(k)}
        for t, g in zip(texts, groups, strict=True):
            by_cluster[cluster_of[g]].append(t)
        batches = ((c, ts[i : i + 256]) for c, ts in by_cluster.items() for i in range(0, len(ts), 256))
        store = write_token_store(batches, tok_dir, Path(tmp) / "store", n_clusters=k)
        prep_s = time.perf_counter() - t0
        mixture = np.full(k, 1.0 / k)
        windows = sample_windows(
            store, mixture, train.steps * train.batch_size, config.model.block_size, args.seed + 1
        )

        # Peak measured before and after the runs, the higher kept: load from other processes only lowers it.
        peaks = [measure_matmul_peak(threads)]
        ours, hf = [], []
        for r in range(args.repeats):
            c0, w0 = time.process_time(), time.perf_counter()
            res = train_proxy(store, mixture, config, seed=args.seed, windows=windows)
            wall = time.perf_counter() - w0
            if not res.ok:
                raise SystemExit(f"our trainer failed: {res.reason}")
            ours.append({"wall_s": wall, "cpu_s": time.process_time() - c0, "loss_last": res.loss_last})
            c0 = time.process_time()
            hf.append(
                run_hf_trainer(windows, config, args.seed, store.eod_id, threads, str(Path(tmp) / f"hf{r}"))
            )
            hf[-1]["cpu_s"] = time.process_time() - c0
        default_threads = torch.get_num_threads()
        hf_default = None
        if args.hf_default_threads and default_threads != threads:
            hf_default = run_hf_trainer(
                windows, config, args.seed, store.eod_id, default_threads, str(Path(tmp) / "hf-default")
            )
        peaks.append(measure_matmul_peak(threads))
    peak = max(p[0] for p in peaks)
    peak_cpu = max(p[1] for p in peaks)

    best_ours = min(ours, key=lambda r: r["wall_s"])
    best_hf = min(hf, key=lambda r: r["wall_s"])
    tokens = config.token_budget
    ours_tps = tokens / best_ours["wall_s"]
    hf_tps = tokens / best_hf["wall_s"]
    fpt = flops_per_token(config.model)
    return {
        "ours_tokens_per_s": round(ours_tps, 1),
        "hf_trainer_tokens_per_s": round(hf_tps, 1),
        "ratio": round(ours_tps / hf_tps, 3),
        # MFU in CPU time (model FLOPs per CPU second over GEMM FLOPs per CPU second): robust to other
        # load; the wall-time version below is only meaningful on an otherwise idle machine.
        "mfu": round(tokens * fpt / min(r["cpu_s"] for r in ours) / peak_cpu, 4),
        "hf_mfu": round(tokens * fpt / min(r["cpu_s"] for r in hf) / peak_cpu, 4),
        "peak_flops_measured": round(peak, 0),
        "peak_flops_per_cpu_s": round(peak_cpu, 0),
        "mfu_wall": round(ours_tps * fpt / peak, 4),
        "flops_per_token": fpt,
        # CPU seconds of the process: less sensitive than wall time to other load on a shared machine.
        "cpu_ratio": round(min(r["cpu_s"] for r in hf) / min(r["cpu_s"] for r in ours), 3),
        "ours_wall_s": [round(r["wall_s"], 3) for r in ours],
        "hf_wall_s": [round(r["wall_s"], 3) for r in hf],
        "ours_cpu_s": [round(r["cpu_s"], 3) for r in ours],
        "hf_cpu_s": [round(r["cpu_s"], 3) for r in hf],
        "ours_loss_last": best_ours["loss_last"],
        "hf_loss_last": best_hf["loss_last"],
        "steps": train.steps,
        "tokens_per_run": tokens,
        "n_params": count_params(build_model(config.model, 0)),
        "threads": threads,
        "torch_default_threads": default_threads,
        # HF Trainer left at torch's default thread count (one run): the effect of choosing the count.
        "hf_trainer_default_threads_tokens_per_s": round(tokens / hf_default["wall_s"], 1)
        if hf_default
        else None,
        "config": config.to_dict(),
        "corpus": source,
        "corpus_docs": len(texts),
        "prep_s": round(prep_s, 3),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }
