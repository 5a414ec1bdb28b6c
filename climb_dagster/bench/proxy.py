"""Bench: our proxy trainer against `transformers.Trainer` on the same model, windows and step count,
and a pack of M proxies trained as one batched model against the same M trained one at a time.

    python -m climb_dagster.bench proxy [--device cpu|cuda] [--size demo|60m|350m] [--pack M]
        [--steps 48] [--repeats 3] [--threads 1] [--corpus GLOB]

Both trainers start from the same initial weights (same seed) and see the same pre-sampled windows in
the same order with the same optimiser settings (AdamW fused, warmup + cosine to min_lr, clipping) and
the same precision (fp32 on CPU; bf16, or fp16 where bf16 is missing, on CUDA). The Trainer runs as a
user would run it out of the box (no torch.compile). Runs alternate (ours, reference, ours, ...) and each
side keeps its best run, so a burst of load from other processes on a shared machine hurts neither side
alone. Wall times include building the model and, on CUDA, compiling it: a proxy run pays both.
MFU is model FLOPs (6 * params + attention, per token) over a GEMM peak measured in the same process:
on CPU fp32 with the same threads, counted in CPU seconds (robust to other load; `mfu_wall` uses wall
seconds); on CUDA bf16 (fp16 without bf16), wall seconds.
The pack (--pack M > 1) trains M proxies with different mixtures and seeds together and one at a time:
`aggregate_tokens_per_s`, `ratio_vs_one_at_a_time` and the largest relative difference of any member's
per-step loss from its separate run.
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

from climb_dagster.bench.proxy_parallel import bench_parallel
from climb_dagster.bench.proxy_pool import default_workers
from climb_dagster.bench.proxy_sizes import proxy_config, transfer_config
from climb_dagster.core.proxy.config import ProxyConfig
from climb_dagster.core.proxy.cost import flops_per_token
from climb_dagster.core.proxy.sampler import sample_windows
from climb_dagster.core.proxy.store import write_token_store
from climb_dagster.core.proxy.tokens import train_tokenizer
from climb_dagster.core.proxy.train import train_proxy

DEMO_GLOB = str(Path(__file__).resolve().parents[1] / "demo" / "data" / "drop-000*.parquet")
FALLBACK_GLOB = "/usr/share/common-licenses/*"


def _shape(config: ProxyConfig) -> dict[str, int]:
    m = config.model
    return {
        "d_model": m.d_model,
        "n_layers": m.n_layers,
        "n_heads": m.n_heads,
        "d_ff": m.d_ff,
        "block_size": m.block_size,
        "batch_size": config.train.batch_size,
    }


_E2E_PROXY = proxy_config("small", None)

# Model sizes (vocab from --vocab-size): the demo proxy, a 60M-class and a 350M-class proxy (block 1024), and
# `bench e2e --protocol full`'s proxy and transfer model (its steps: 48 and 240; its vocabulary: 2048).
SIZES: dict[str, dict[str, int]] = {
    "e2e-proxy": _shape(_E2E_PROXY),
    "e2e-transfer": _shape(transfer_config(_E2E_PROXY)),
    "demo": {},
    "60m": {"d_model": 768, "n_layers": 8, "n_heads": 12, "d_ff": 2048, "block_size": 1024, "batch_size": 32},
    "350m": {
        "d_model": 1024,
        "n_layers": 24,
        "n_heads": 16,
        "d_ff": 3072,
        "block_size": 1024,
        "batch_size": 16,
    },
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--size", choices=tuple(SIZES), default="demo", help="proxy model size")
    parser.add_argument(
        "--pack", type=int, default=0, help="also train M proxies as one pack vs one at a time (0: skip)"
    )
    parser.add_argument(
        "--activation-checkpointing", action="store_true", help="recompute activations (350M-class proxies)"
    )
    parser.add_argument("--steps", type=int, default=48, help="optimizer steps per run (both trainers)")
    parser.add_argument(
        "--repeats", type=int, default=3, help="runs per trainer, alternating; the best is kept"
    )
    parser.add_argument("--batch-size", type=int, default=None, help="default: ProxyTrainConfig default")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (both sides); default: config"
    )
    add_store_arguments(parser)
    parser.add_argument(
        "--parallel-compare",
        type=int,
        default=default_workers(),
        help="CPU: that many proxies as threads (one at a time) vs single-threaded processes (<2: skip)",
    )
    parser.add_argument(
        "--compile",
        choices=("auto", "on", "off"),
        default="auto",
        help="torch.compile of our trainer's step (auto: on CUDA only)",
    )
    parser.add_argument(
        "--reference",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="time transformers.Trainer on the same model and windows (needs accelerate)",
    )
    parser.add_argument(
        "--hf-default-threads",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time one HF Trainer run with torch's default thread count (how it runs out of the box)",
    )


def add_store_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of the bench's token store (`load_texts` + `build_store`) and its seed."""
    parser.add_argument("--vocab-size", type=int, default=4096)
    parser.add_argument(
        "--clusters", type=int, default=8, help="super-clusters: groups (domains) mapped onto ids"
    )
    parser.add_argument(
        "--tokenizer-docs", type=int, default=4000, help="documents sampled to train the tokenizer"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--corpus", default=None, help="parquet glob (text column) or text-file glob")


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
            # pyarrow, not polars: GPU machines this bench is meant for may lack polars.
            import pyarrow.parquet as pq

            pairs = []
            for f in files:
                table = pq.read_table(f)
                texts = table.column("text").to_pylist()
                groups = (
                    table.column("domain").to_pylist() if "domain" in table.column_names else [f] * len(texts)
                )
                pairs += list(zip(texts, groups, strict=True))
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


def build_store(texts: list[str], groups: list[str], work: Path, args: argparse.Namespace) -> Any:
    """A token store under `work`: a tokenizer of `args.vocab_size` trained on the texts, and the groups
    (domains or files) standing in for `args.clusters` super-clusters: real structure for a mixture, no
    clustering needed."""
    tok_dir = train_tokenizer(
        texts, work / "tok", vocab_size=args.vocab_size, seed=args.seed, max_docs=args.tokenizer_docs
    )
    names = sorted(set(groups))
    k = min(args.clusters, len(names))
    cluster_of = {g: i % k for i, g in enumerate(names)}
    by_cluster: dict[int, list[str]] = {c: [] for c in range(k)}
    for t, g in zip(texts, groups, strict=True):
        by_cluster[cluster_of[g]].append(t)
    batches = ((c, ts[i : i + 256]) for c, ts in by_cluster.items() for i in range(0, len(ts), 256))
    return write_token_store(batches, tok_dir, work / "store", n_clusters=k)


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
    windows: np.ndarray,
    config: Any,
    seed: int,
    eod_id: int,
    threads: int,
    out_dir: str,
    precision: str = "fp32",
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
    cuda = tcfg.device == "cuda"
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
        use_cpu=not cuda,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        logging_strategy="steps",
        # Same tail as ProxyResult.loss_last (mean of the last 10% of steps).
        logging_steps=max(1, tcfg.steps // 10),
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        dataloader_pin_memory=cuda,
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
        if cuda:
            torch.cuda.synchronize()
        wall = time.perf_counter() - t0
    torch.set_num_threads(prev)
    return {"wall_s": wall, "loss_last": losses[-1] if losses else None}


def _round(x: float | None, digits: int) -> float | None:
    return None if x is None else round(x, digits)


def measure_gpu_peak(dtype_name: str, seconds: float = 1.0) -> float:
    """Best GEMM rate (FLOP/s) of the visible GPU in `dtype_name` (bf16/fp16) over a few square sizes."""
    import torch

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[dtype_name]
    g = torch.Generator(device="cuda").manual_seed(0)
    best = 0.0
    for n in (4096, 8192):
        a = torch.randn(n, n, generator=g, device="cuda", dtype=dtype)
        b = torch.randn(n, n, generator=g, device="cuda", dtype=dtype)
        a @ b
        torch.cuda.synchronize()
        reps, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds / 2:
            for _ in range(10):
                a @ b
            torch.cuda.synchronize()
            reps += 10
        best = max(best, 2.0 * n**3 * reps / (time.perf_counter() - t0))
    return best


def bench_config(args: argparse.Namespace) -> Any:
    """The ProxyConfig of the chosen size and device (threads, steps and batch from the arguments)."""

    base = ProxyConfig.default()
    size = dict(SIZES[args.size])
    batch = size.pop("batch_size", base.train.batch_size)
    model = dataclasses.replace(base.model, vocab_size=args.vocab_size, **size)
    train = dataclasses.replace(
        base.train,
        steps=args.steps,
        warmup_steps=min(base.train.warmup_steps, args.steps),
        batch_size=args.batch_size or batch,
        num_threads=args.threads or base.train.num_threads,
        device=args.device,
        activation_checkpointing=args.activation_checkpointing,
        compile=args.compile,
        # Checked as often as a run of this length checks by default on CPU; on CUDA each check is a sync.
        check_every=base.train.check_every if args.device == "cpu" else max(base.train.check_every, 32),
    )
    return ProxyConfig(model=model, train=train)


def _timed(fn: Any, cuda: bool) -> tuple[Any, float, float]:
    """(fn(), wall seconds, CPU seconds of this process)."""
    import torch

    c0, w0 = time.process_time(), time.perf_counter()
    out = fn()
    if cuda:
        torch.cuda.synchronize()
    return out, time.perf_counter() - w0, time.process_time() - c0


def bench_pack(store: Any, config: Any, m: int, seed: int, cuda: bool) -> dict[str, Any]:
    """M proxies (Dirichlet mixtures, seeds seed..seed+M-1) trained one at a time, then as one pack."""
    from climb_dagster.core.proxy.pack import train_pack

    rng = np.random.default_rng(seed)
    mixtures = rng.dirichlet(np.ones(store.n_clusters), size=m)
    seeds = [seed + j for j in range(m)]
    n = config.train.steps * config.train.batch_size
    windows = np.stack(
        [
            sample_windows(store, w, n, config.model.block_size, s + 1)
            for w, s in zip(mixtures, seeds, strict=True)
        ]
    )
    singles, single_wall = [], 0.0
    for j in range(m):
        res, wall, _ = _timed(
            lambda j=j: train_proxy(store, mixtures[j], config, seeds[j], windows=windows[j]), cuda
        )
        singles.append(res)
        single_wall += wall
    packed, pack_wall, _ = _timed(lambda: train_pack(store, mixtures, config, seeds, windows=windows), cuda)
    diffs = []
    for a, b in zip(packed, singles, strict=True):
        if not (a.ok and b.ok):
            raise SystemExit(f"a pack bench run failed: pack {a.reason!r}, alone {b.reason!r}")
        diffs.append(float(np.max(np.abs(a.step_losses - b.step_losses) / np.abs(b.step_losses))))
    tokens = m * config.token_budget
    return {
        "m": m,
        "aggregate_tokens_per_s": round(tokens / pack_wall, 1),
        "one_at_a_time_tokens_per_s": round(tokens / single_wall, 1),
        "ratio_vs_one_at_a_time": round(single_wall / pack_wall, 3),
        "max_rel_loss_diff_vs_separate": diffs and max(diffs),
        "pack_wall_s": round(pack_wall, 3),
        "one_at_a_time_wall_s": round(single_wall, 3),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from climb_dagster.core.proxy import runtime
    from climb_dagster.core.proxy.model import build_model, count_params

    config = bench_config(args)
    train = config.train
    cuda = train.device == "cuda"
    rt = runtime.resolve(train)  # fails early, naming the field, without CUDA
    threads = train.num_threads
    texts, groups, source = load_texts(args.corpus)

    with tempfile.TemporaryDirectory(prefix="climb-bench-proxy-") as tmp:
        t0 = time.perf_counter()
        store = build_store(texts, groups, Path(tmp), args)
        prep_s = time.perf_counter() - t0
        k = store.n_clusters
        mixture = np.full(k, 1.0 / k)
        windows = sample_windows(
            store, mixture, train.steps * train.batch_size, config.model.block_size, args.seed + 1
        )

        # Peak measured before and after the runs, the higher kept: load from other processes only lowers it.
        peaks = [measure_gpu_peak(rt.precision) if cuda else measure_matmul_peak(threads)]
        ours, ref = [], []
        reference_error: str | None = None
        for r in range(args.repeats):
            res, wall, cpu = _timed(
                lambda: train_proxy(store, mixture, config, seed=args.seed, windows=windows), cuda
            )
            if not res.ok:
                raise SystemExit(f"our trainer failed: {res.reason}")
            ours.append({"wall_s": wall, "cpu_s": cpu, "loss_last": res.loss_last})
            if reference_error is not None or not args.reference:
                continue
            try:
                out, _, cpu = _timed(
                    lambda r=r: run_hf_trainer(
                        windows,
                        config,
                        args.seed,
                        store.eod_id,
                        threads,
                        str(Path(tmp) / f"hf{r}"),
                        rt.precision,
                    ),
                    cuda,
                )
            except ImportError as e:
                # transformers.Trainer needs accelerate, which a bare GPU machine may lack: our side still counts.
                reference_error = f"{type(e).__name__}: {e}"
                continue
            ref.append({**out, "cpu_s": cpu})
        default_threads = torch.get_num_threads()
        hf_default = None
        if ref and args.hf_default_threads and not cuda and default_threads != threads:
            hf_default = run_hf_trainer(
                windows, config, args.seed, store.eod_id, default_threads, str(Path(tmp) / "hf-default")
            )
        pack = bench_pack(store, config, args.pack, args.seed, cuda) if args.pack > 1 else None
        parallel = None
        if args.parallel_compare > 1 and not cuda:
            parallel = bench_parallel(store, config, args.parallel_compare, args.seed)
        peaks.append(measure_gpu_peak(rt.precision) if cuda else measure_matmul_peak(threads))

    best_ours = min(ours, key=lambda r: r["wall_s"])
    best_ref = min(ref, key=lambda r: r["wall_s"]) if ref else None
    tokens = config.token_budget
    ours_tps = tokens / best_ours["wall_s"]
    ref_tps = tokens / best_ref["wall_s"] if best_ref else None
    fpt = flops_per_token(config.model)
    if cuda:
        peak, peak_cpu = max(peaks), None
        mfu = mfu_wall = ours_tps * fpt / peak
        ref_mfu = ref_tps * fpt / peak if ref_tps else None
    else:
        peak = max(p[0] for p in peaks)
        peak_cpu = max(p[1] for p in peaks)
        # MFU in CPU time (model FLOPs per CPU second over GEMM FLOPs per CPU second): robust to other
        # load; the wall-time version is only meaningful on an otherwise idle machine.
        mfu = tokens * fpt / min(r["cpu_s"] for r in ours) / peak_cpu
        ref_mfu = tokens * fpt / min(r["cpu_s"] for r in ref) / peak_cpu if ref else None
        mfu_wall = ours_tps * fpt / peak
    return {
        "ours_tokens_per_s": round(ours_tps, 1),
        "reference_tokens_per_s": _round(ref_tps, 1),
        "ratio": _round(ours_tps / ref_tps if ref_tps else None, 3),
        "mfu": round(mfu, 4),
        "reference_mfu": _round(ref_mfu, 4),
        "pack": pack,
        "parallel": parallel,
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "size": args.size,
        "precision": rt.precision,
        "compiled": rt.compile,
        "peak_flops_measured": round(peak, 0),
        "peak_flops_per_cpu_s": round(peak_cpu, 0) if peak_cpu else None,
        "mfu_wall": round(mfu_wall, 4),
        "flops_per_token": fpt,
        # CPU seconds of the process: less sensitive than wall time to other load on a shared machine.
        "cpu_ratio": _round(min(r["cpu_s"] for r in ref) / min(r["cpu_s"] for r in ours) if ref else None, 3),
        "ours_wall_s": [round(r["wall_s"], 3) for r in ours],
        "reference_wall_s": [round(r["wall_s"], 3) for r in ref],
        "ours_cpu_s": [round(r["cpu_s"], 3) for r in ours],
        "reference_cpu_s": [round(r["cpu_s"], 3) for r in ref],
        "ours_loss_last": best_ours["loss_last"],
        "reference_loss_last": best_ref["loss_last"] if best_ref else None,
        "reference_error": reference_error,
        "steps": train.steps,
        "tokens_per_run": tokens,
        "n_params": count_params(build_model(config.model, 0)),
        "threads": threads,
        "torch_default_threads": default_threads,
        # HF Trainer left at torch's default thread count (one run): the effect of choosing the count.
        "reference_default_threads_tokens_per_s": round(tokens / hf_default["wall_s"], 1)
        if hf_default
        else None,
        "config": config.to_dict(),
        "corpus": source,
        "corpus_docs": len(texts),
        "prep_s": round(prep_s, 3),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }
